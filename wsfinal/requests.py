"""The request ledger: every request gets a client id and ends in exactly one terminal outcome.

Pure bookkeeping, no I/O and no clock: the connection passes ``now`` (loop time). The ledger guarantees the
accounting identity ``submitted == finished + in_flight`` at every moment, and that a request finishes at most
once: a late acknowledgement for a request that already timed out is counted as ``late`` and changes nothing.

Outcomes::

    ACKNOWLEDGED     the exchange accepted it (on-req SUCCESS)
    REJECTED         the exchange refused it; ``code`` carries the exchange's error code when it gave one
    TIMED_OUT        no answer within the request timeout
    CONNECTION_LOST  it was written to the socket and the connection died before the answer came
    NOT_SENT         never written: paused for maintenance, or the write failed before it reached the socket
    NO_CONNECTION    no usable connection when it was submitted
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class OutcomeKind(enum.Enum):
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    CONNECTION_LOST = "connection_lost"
    NOT_SENT = "not_sent"
    NO_CONNECTION = "no_connection"


class RequestOutcome(NamedTuple):
    """How one request ended. ``latency_ms`` is submit-to-answer time for answered requests, else ``None``.

    Immutable, compared and hashed by its fields. A named tuple rather than a frozen dataclass: one is made per
    request, and a frozen dataclass's ``__init__`` (an ``object.__setattr__`` call per field) costs several times
    as much (``_replace`` and ``_asdict`` stand in for ``dataclasses.replace`` and ``asdict``).
    """

    kind: OutcomeKind
    cid: int
    submitted_at: float
    finished_at: float
    latency_ms: float | None = None
    code: int | None = None
    text: str = ""
    connection_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind is _ACKNOWLEDGED  # a module constant: an enum member read costs about 0.2 us


#: ``RequestOutcome`` from a tuple of all eight fields without the generated ``__new__``'s Python frame.
_new_outcome: Callable[[type[RequestOutcome], tuple[Any, ...]], RequestOutcome] = tuple.__new__
_ACKNOWLEDGED = OutcomeKind.ACKNOWLEDGED
_REJECTED = OutcomeKind.REJECTED


@dataclass(slots=True)
class PendingRequest:
    """A request in flight. ``sent`` turns True once the frame was handed to the transport."""

    cid: int
    submitted_at: float
    deadline: float | None
    sent: bool = False
    token: Any = None  # the shell's own handle (its future, its timer); the ledger never looks at it
    tag: Any = None  # the caller's label for the outcome (the manager's selection); the ledger never looks at it
    on_done: Any = None  # the caller's synchronous outcome callback; the ledger never looks at it


_new_entry = object.__new__


@dataclass(slots=True)
class LedgerCounts:
    submitted: int = 0
    late: int = 0
    #: Finished requests by outcome value (``"acknowledged"``...): keyed by the value, not the member, because
    #: enum members hash in Python code (``Enum.__hash__``) and this is counted once per request.
    by_value: dict[str, int] = field(default_factory=lambda: {k.value: 0 for k in OutcomeKind})

    @property
    def by_kind(self) -> dict[OutcomeKind, int]:
        """Finished requests by outcome (a new dict, in :class:`OutcomeKind` order)."""
        return {k: self.by_value[k.value] for k in OutcomeKind}

    @property
    def finished(self) -> int:
        return sum(self.by_value.values())


class RequestLedger:
    """Client ids and in-flight requests of one connection.

    Call :meth:`start` when a request is submitted (it returns the entry, with a fresh ``cid`` unless one was
    given), :meth:`mark_sent` when its frame reached the transport, and :meth:`finish` exactly when its answer,
    its timeout or its connection's loss is known. :meth:`fail_all` ends everything in flight at once.
    :meth:`record_immediate` records a request that ended at submit and tells :attr:`on_immediate`.
    """

    def __init__(self, *, first_cid: int = 1, on_immediate: Callable[[RequestOutcome], None] | None = None) -> None:
        self._next_cid = first_cid
        self._pending: dict[int, PendingRequest] = {}
        self.counts = LedgerCounts()
        #: Called with the outcome of every request that ended the moment it was submitted (NOT_SENT,
        #: NO_CONNECTION; see :meth:`record_immediate`): the one place those are seen, since no answer, timer
        #: or loss ever reports them. The owner forwards them (a connection: to its store). Never called for
        #: requests that were started and finished.
        self.on_immediate = on_immediate

    def new_cid(self) -> int:
        """A client id not used before by this ledger."""
        cid = self._next_cid
        self._next_cid += 1
        return cid

    def start(self, now: float, *, deadline: float | None = None, cid: int | None = None) -> PendingRequest:
        """Record a submitted request. Raises ValueError if ``cid`` is already in flight."""
        if cid is None:  # new_cid(), inline
            cid = self._next_cid
            self._next_cid = cid + 1
        elif cid in self._pending:
            raise ValueError(f"client id {cid} is already in flight on this connection")
        elif cid >= self._next_cid:
            self._next_cid = cid + 1
        # PendingRequest(cid, now, deadline) without the generated __init__'s Python frame (once per request; a
        # test checks this sets every field as the constructor does)
        entry = _new_entry(PendingRequest)
        entry.cid = cid
        entry.submitted_at = now
        entry.deadline = deadline
        entry.sent = False
        entry.token = entry.tag = entry.on_done = None
        self._pending[cid] = entry
        self.counts.submitted += 1
        return entry

    def mark_sent(self, cid: int) -> None:
        entry = self._pending.get(cid)
        if entry is not None:
            entry.sent = True

    def get(self, cid: int) -> PendingRequest | None:
        return self._pending.get(cid)

    def finish(
        self,
        cid: int,
        kind: OutcomeKind,
        now: float,
        *,
        code: int | None = None,
        text: str = "",
        connection_id: str | None = None,
    ) -> tuple[PendingRequest, RequestOutcome] | None:
        """End request ``cid`` with ``kind``. ``None`` if it is not in flight (a late or unknown answer)."""
        entry = self._pending.pop(cid, None)
        if entry is None:
            self.counts.late += 1
            return None
        self.counts.by_value[kind._value_] += 1
        submitted_at = entry.submitted_at
        latency = (now - submitted_at) * 1000.0 if kind is _ACKNOWLEDGED or kind is _REJECTED else None
        return entry, _new_outcome(RequestOutcome, (kind, cid, submitted_at, now, latency, code, text, connection_id))

    def fail_all(self, now: float, *, connection_id: str | None = None) -> list[tuple[PendingRequest, RequestOutcome]]:
        """End every request in flight: CONNECTION_LOST if its frame was sent, NOT_SENT otherwise."""
        done = []
        for cid in list(self._pending):
            kind = OutcomeKind.CONNECTION_LOST if self._pending[cid].sent else OutcomeKind.NOT_SENT
            result = self.finish(cid, kind, now, connection_id=connection_id)
            if result is not None:
                done.append(result)
        return done

    def record_immediate(
        self, kind: OutcomeKind, now: float, *, cid: int | None = None, connection_id: str | None = None
    ) -> RequestOutcome:
        """A request that ended the moment it was submitted (NOT_SENT, NO_CONNECTION); :attr:`on_immediate`, if
        set, is called with its outcome before it is returned (its exceptions propagate to the caller)."""
        entry = self.start(now, cid=cid)
        result = self.finish(entry.cid, kind, now, connection_id=connection_id)
        assert result is not None
        outcome = result[1]
        if self.on_immediate is not None:
            self.on_immediate(outcome)
        return outcome

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def submitted(self) -> int:
        return self.counts.submitted

    @property
    def finished(self) -> int:
        return self.counts.finished

    def pending(self) -> Iterator[PendingRequest]:
        return iter(list(self._pending.values()))

    def check(self) -> None:
        """Raise AssertionError unless submitted == finished + in flight."""
        if self.counts.submitted != self.counts.finished + len(self._pending):
            raise AssertionError(
                f"request accounting broken: submitted={self.counts.submitted} "
                f"finished={self.counts.finished} in_flight={len(self._pending)}"
            )

    def summary(self) -> dict[str, int]:
        """Counts by outcome name plus submitted, finished, in_flight and late."""
        out = dict(self.counts.by_value)
        out.update(
            submitted=self.counts.submitted,
            finished=self.counts.finished,
            in_flight=len(self._pending),
            late=self.counts.late,
        )
        return out
