"""The request ledger: exactly one outcome per request, and submitted == finished + in flight at all times."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from wsfinal.requests import OutcomeKind, PendingRequest, RequestLedger, RequestOutcome


def test_an_answer_ends_a_request_once_and_a_late_answer_is_counted_not_applied() -> None:
    ledger = RequestLedger()
    entry = ledger.start(10.0, deadline=12.0)
    assert entry.cid == 1 and ledger.in_flight == 1
    done = ledger.finish(entry.cid, OutcomeKind.ACKNOWLEDGED, 10.25, connection_id="c1")
    assert done is not None
    _, outcome = done
    assert outcome.ok and outcome.latency_ms == pytest.approx(250.0) and outcome.connection_id == "c1"
    assert ledger.finish(entry.cid, OutcomeKind.TIMED_OUT, 12.0) is None
    assert ledger.counts.late == 1
    assert ledger.summary()["acknowledged"] == 1 and ledger.summary()["timed_out"] == 0
    ledger.check()


def test_rejection_keeps_the_exchange_code_and_timeouts_have_no_latency() -> None:
    ledger = RequestLedger(first_cid=100)
    a, b = ledger.start(0.0), ledger.start(0.0)
    assert (a.cid, b.cid) == (100, 101)
    rejected = ledger.finish(a.cid, OutcomeKind.REJECTED, 0.1, code=10001, text="unknown pair")
    timed_out = ledger.finish(b.cid, OutcomeKind.TIMED_OUT, 5.0)
    assert rejected is not None and rejected[1].code == 10001 and rejected[1].text == "unknown pair"
    assert timed_out is not None and timed_out[1].latency_ms is None and not timed_out[1].ok


def test_fail_all_tells_sent_from_unsent() -> None:
    ledger = RequestLedger()
    sent, unsent = ledger.start(0.0), ledger.start(0.0)
    ledger.mark_sent(sent.cid)
    kinds = {o.cid: o.kind for _, o in ledger.fail_all(1.0)}
    assert kinds == {sent.cid: OutcomeKind.CONNECTION_LOST, unsent.cid: OutcomeKind.NOT_SENT}
    assert ledger.in_flight == 0
    ledger.check()


def test_immediate_outcomes_are_submitted_and_finished() -> None:
    ledger = RequestLedger()
    outcome = ledger.record_immediate(OutcomeKind.NO_CONNECTION, 3.0)
    assert outcome.kind is OutcomeKind.NO_CONNECTION and outcome.submitted_at == outcome.finished_at == 3.0
    assert ledger.submitted == 1 and ledger.finished == 1
    ledger.check()


def test_on_immediate_is_told_of_requests_that_end_at_submit_only() -> None:
    told: list[RequestOutcome] = []
    ledger = RequestLedger(on_immediate=told.append)
    entry = ledger.start(0.0)
    ledger.finish(entry.cid, OutcomeKind.ACKNOWLEDGED, 0.5)
    queued = ledger.start(1.0)
    assert [o.cid for _, o in ledger.fail_all(2.0)] == [queued.cid]  # NOT_SENT, but it was started: not told
    assert told == []
    not_sent = ledger.record_immediate(OutcomeKind.NOT_SENT, 3.0, connection_id="c1")
    no_connection = ledger.record_immediate(OutcomeKind.NO_CONNECTION, 4.0)
    assert told == [not_sent, no_connection] and not_sent.connection_id == "c1"
    ledger.on_immediate = None  # may be unset again
    ledger.record_immediate(OutcomeKind.NO_CONNECTION, 5.0)
    assert len(told) == 2 and ledger.finished == 5
    ledger.check()


def test_given_client_ids_are_kept_and_never_reissued() -> None:
    ledger = RequestLedger()
    ledger.start(0.0, cid=50)
    with pytest.raises(ValueError, match="50"):
        ledger.start(0.0, cid=50)
    assert ledger.start(0.0).cid == 51


class LedgerMachine(RuleBasedStateMachine):
    """Random interleavings of submit, send, answer, timeout, loss and late answers keep the books balanced."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[RequestOutcome] = []
        self.ledger = RequestLedger(on_immediate=self.told.append)
        self.now = 0.0
        self.open: set[int] = set()
        self.ended: dict[int, OutcomeKind] = {}
        self.immediate = 0

    @rule(dt=st.floats(0.0, 1.0))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule()
    def submit(self) -> None:
        self.open.add(self.ledger.start(self.now, deadline=self.now + 1.0).cid)

    @rule(kind=st.sampled_from([OutcomeKind.NOT_SENT, OutcomeKind.NO_CONNECTION]))
    def immediate_outcome(self, kind: OutcomeKind) -> None:
        outcome = self.ledger.record_immediate(kind, self.now)
        self.ended[outcome.cid] = kind
        self.immediate += 1
        assert self.told[-1] is outcome

    @rule(data=st.data())
    def send(self, data: st.DataObject) -> None:
        if self.open:
            self.ledger.mark_sent(data.draw(st.sampled_from(sorted(self.open))))

    @rule(
        data=st.data(),
        kind=st.sampled_from([OutcomeKind.ACKNOWLEDGED, OutcomeKind.REJECTED, OutcomeKind.TIMED_OUT]),
    )
    def answer_or_timeout(self, data: st.DataObject, kind: OutcomeKind) -> None:
        if not self.open:
            return
        cid = data.draw(st.sampled_from(sorted(self.open)))
        assert self.ledger.finish(cid, kind, self.now) is not None
        self.open.discard(cid)
        self.ended[cid] = kind

    @rule(data=st.data())
    def late_or_duplicate_answer(self, data: st.DataObject) -> None:
        if self.ended:
            cid = data.draw(st.sampled_from(sorted(self.ended)))
            late_before = self.ledger.counts.late
            assert self.ledger.finish(cid, OutcomeKind.ACKNOWLEDGED, self.now) is None
            assert self.ledger.counts.late == late_before + 1

    @rule()
    def connection_lost(self) -> None:
        for _, outcome in self.ledger.fail_all(self.now):
            assert outcome.kind in (OutcomeKind.CONNECTION_LOST, OutcomeKind.NOT_SENT)
            self.ended[outcome.cid] = outcome.kind
        self.open.clear()

    @invariant()
    def books_balance(self) -> None:
        self.ledger.check()
        assert self.ledger.in_flight == len(self.open)
        assert self.ledger.finished == len(self.ended)  # each request ended exactly once
        counted = {k: 0 for k in OutcomeKind}
        for kind in self.ended.values():
            counted[kind] += 1
        assert counted == self.ledger.counts.by_kind
        # on_immediate hears of the requests that ended at submit, each once, and of no other
        assert len(self.told) == self.immediate == len({o.cid for o in self.told})


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase


def test_outcomes_are_immutable_values_and_counts_by_kind_follow_the_enum() -> None:
    ledger = RequestLedger()
    a, b = ledger.start(1.0), ledger.start(1.0)
    done_a = ledger.finish(a.cid, OutcomeKind.ACKNOWLEDGED, 1.5, connection_id="c")
    done_b = ledger.finish(b.cid, OutcomeKind.TIMED_OUT, 6.0, connection_id="c")
    assert done_a is not None and done_b is not None
    outcome = done_a[1]
    assert outcome == RequestOutcome(OutcomeKind.ACKNOWLEDGED, a.cid, 1.0, 1.5, 500.0, None, "", "c")
    assert hash(outcome) == hash(RequestOutcome(OutcomeKind.ACKNOWLEDGED, a.cid, 1.0, 1.5, 500.0, None, "", "c"))
    assert outcome != done_b[1] and not done_b[1].ok and outcome.ok
    with pytest.raises(AttributeError):
        outcome.kind = OutcomeKind.REJECTED  # type: ignore[misc]
    assert outcome._replace(code=7).code == 7 and outcome.code is None
    assert "kind=<OutcomeKind.ACKNOWLEDGED" in repr(outcome)
    assert list(ledger.counts.by_kind) == list(OutcomeKind)
    assert ledger.counts.by_kind[OutcomeKind.ACKNOWLEDGED] == ledger.counts.by_kind[OutcomeKind.TIMED_OUT] == 1
    assert ledger.finished == 2 and ledger.summary()["timed_out"] == 1


@given(st.floats(allow_nan=False), st.none() | st.floats(allow_nan=False), st.none() | st.integers(0, 10**6))
def test_start_makes_the_entry_the_constructor_makes(now: float, deadline: float | None, cid: int | None) -> None:
    # start() builds its PendingRequest without the dataclass __init__ (once per request): every field must be
    # set as PendingRequest(cid, now, deadline) sets it (a field added to the class must be added there too)
    ledger = RequestLedger(first_cid=5)
    entry = ledger.start(now, deadline=deadline, cid=cid)
    expected = PendingRequest(5 if cid is None else cid, now, deadline)
    assert [f.name for f in dataclasses.fields(PendingRequest)] == [
        "cid", "submitted_at", "deadline", "sent", "token", "tag", "on_done"
    ]  # fmt: skip
    assert dataclasses.astuple(entry) == dataclasses.astuple(expected) and entry == expected
