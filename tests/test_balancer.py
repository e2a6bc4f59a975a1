import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfinal import ConnectionConfig, ConnectionState, ConnectionType, LoadBalancingStrategy, UsageError
from wsfinal.balancer import WebSocketLoadBalancer
from wsfinal.requests import OutcomeKind, RequestOutcome
from wsfinal.store import InMemoryConnectionStore

LBS = LoadBalancingStrategy
S = ConnectionState
T = ConnectionType.TRADING


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def setup(n=4, **kw):
    clock = Clock()
    store = InMemoryConnectionStore(clock=clock)
    lb = WebSocketLoadBalancer(store, seed=7, **kw)
    for i in range(n):
        store.register(f"c{i}", ConnectionConfig(url=f"ws://127.0.0.1:{9000 + i}/", connection_type=T))
        store.set_state(f"c{i}", S.CONNECTING)
        store.set_state(f"c{i}", S.CONNECTED)
    return clock, store, lb


def fail(store, cid, n):
    for _ in range(n):
        store.request_started(cid)
        store.request_finished(cid, ok=False, latency_ms=None)


def test_select_connection_seed_api_and_none_exactly_when_nothing_connected():
    async def main():
        store = InMemoryConnectionStore()
        lb = WebSocketLoadBalancer(store)
        assert await lb.select_connection(T) is None
        store.register("a", ConnectionConfig(url="ws://127.0.0.1:1/", connection_type=T))
        assert await lb.select_connection(T) is None  # registered, not connected
        store.set_state("a", S.CONNECTING)
        assert await lb.select_connection(T) is None
        store.set_state("a", S.CONNECTED)
        assert (await lb.select_connection(T, LBS.LEAST_LATENCY)).connection_id == "a"
        assert await lb.select_connection(ConnectionType.MARKET_DATA) is None
        store.set_state("a", S.RECONNECTING)
        assert await lb.select_connection(T) is None

    asyncio.run(main())


def test_consecutive_failures_eject_with_growing_duration():
    clock, store, lb = setup(4, base_ejection_s=10.0, max_ejection_s=25.0, consecutive_failures_threshold=3)
    fail(store, "c0", 3)
    r = store.get("c0")
    assert r.ejected_until == 10.0 and r.ejection_count == 1
    assert "c0" not in {x.connection_id for x in lb.eligible(T)}
    assert all(lb.choose(T, LBS.ROUND_ROBIN).record.connection_id != "c0" for _ in range(20))
    clock.t = 10.0
    assert lb.choose(T) is not None  # expiry is checked on the pick path too
    assert r.ejected_until is None and "c0" in {x.connection_id for x in lb.eligible(T)}
    fail(store, "c0", 3)
    assert r.ejected_until == 30.0  # second ejection: 2 x 10 s
    clock.t = 30.0
    lb.perform_health_checks(clock.t)
    fail(store, "c0", 3)
    assert r.ejected_until == 55.0  # third: 3 x 10 capped at 25 s
    assert [e[1] for e in lb.ejection_log] == ["c0", "c0", "c0"]


def test_max_ejection_percent_and_panic_mode():
    clock, store, lb = setup(4, max_ejection_percent=50.0, consecutive_failures_threshold=1)
    for cid in ("c0", "c1", "c2"):
        fail(store, cid, 1)
    assert len(lb.eligible(T)) == 2  # at most 50 % of 4 ejected
    assert not lb.choose(T).panic
    # With the eligible share below the panic threshold, every connected connection is used again.
    clock2, store2, lb2 = setup(3, max_ejection_percent=100.0, consecutive_failures_threshold=1, panic_threshold=0.5)
    fail(store2, "c0", 1)
    fail(store2, "c1", 1)
    assert len(lb2.eligible(T)) == 1
    picked = {lb2.choose(T, LBS.ROUND_ROBIN).record.connection_id for _ in range(6)}
    assert picked == {"c0", "c1", "c2"}
    assert lb2.panic_selections[T] == 6


def test_success_rate_outlier_ejected_at_health_check():
    clock, store, lb = setup(6, success_rate_request_volume=20, consecutive_failures_threshold=1000)
    for i in range(6):
        cid = f"c{i}"
        for k in range(40):
            store.request_started(cid)
            ok = not (cid == "c5" and k % 2 == 0)  # c5 fails half its requests
            store.request_finished(cid, ok=ok, latency_ms=1.0)
    lb.perform_health_checks(clock.t)
    assert store.get("c5").ejected_until is not None
    assert all(store.get(f"c{i}").ejected_until is None for i in range(5))
    assert "success rate" in lb.ejection_log[-1][3]


def test_health_scorer_feeds_health_based():
    async def main():
        loop = asyncio.get_running_loop()
        store = InMemoryConnectionStore()
        lb = WebSocketLoadBalancer(
            store, seed=1, health_scorer=lambda r, now: 90.0 if r.connection_id == "c1" else 10.0
        )
        for i in range(2):
            store.register(f"c{i}", ConnectionConfig(url="ws://127.0.0.1:1/", connection_type=T))
            store.set_state(f"c{i}", S.CONNECTING)
            store.set_state(f"c{i}", S.CONNECTED)
        await lb._perform_health_checks()
        assert store.get("c1").health_score == 90.0 and lb.health_checks == 1
        picks = {lb.choose(T, LBS.HEALTH_BASED, now=loop.time()).record.connection_id for _ in range(20)}
        assert picks == {"c1"}

    asyncio.run(main())


def test_strategy_performance_counts():
    clock, store, lb = setup(2)
    for i in range(10):
        sel = lb.choose(T, LBS.RANDOM)
        lb.report(sel, ok=i % 5 != 0, latency_ms=4.0)
    perf = lb.get_strategy_performance()
    assert perf[LBS.RANDOM]["selections"] == 10
    assert perf[LBS.RANDOM]["success_rate"] == pytest.approx(0.8)
    assert perf[LBS.RANDOM]["mean_latency_ms"] == pytest.approx(4.0)


def test_removed_connection_never_selected_again():
    clock, store, lb = setup(3)
    store.remove("c1")
    for kind in LBS:
        for _ in range(10):
            assert lb.choose(T, kind).record.connection_id != "c1"


def test_bad_parameters_are_clear():
    store = InMemoryConnectionStore(clock=Clock())
    with pytest.raises(UsageError, match="panic_threshold=2"):
        WebSocketLoadBalancer(store, panic_threshold=2)


def test_paused_connections_are_not_eligible_until_resumed():
    clock, store, lb = setup(3)
    store.set_paused("c0", True)
    assert "c0" not in {r.connection_id for r in lb.eligible(T)}
    assert all(lb.choose(T, LBS.ROUND_ROBIN).record.connection_id != "c0" for _ in range(9))
    store.set_paused("c0", False)
    assert {lb.choose(T, LBS.ROUND_ROBIN).record.connection_id for _ in range(9)} == {"c0", "c1", "c2"}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["start", "finish", "pick"]),
            st.integers(0, 4),
            st.sampled_from([LBS.ROUND_ROBIN, LBS.RANDOM, LBS.LEAST_CONNECTIONS, LBS.LEAST_LOAD, LBS.ADAPTIVE]),
        ),
        max_size=60,
    )
)
def test_measure_tracking_strategies_see_every_load_change_whenever_they_start(ops):
    # on_load_changed skips all work until some pool has a measure-tracking strategy: a tracking strategy built
    # late (directly or by ADAPTIVE) must still see the loads as they are, and follow every change after that.
    clock, store, lb = setup(5, consecutive_failures_threshold=1000)
    assert not lb._tracking
    for op, i, kind in ops:
        cid = f"c{i}"
        if op == "start":
            store.request_sent(cid, 10)
        elif op == "finish":
            if store.get(cid).outstanding:
                store.answer_received(cid, 10, ok=True, latency_ms=1.0)
        else:
            picked = lb.choose(T, kind).record
            records = lb.eligible(T)
            if kind is LBS.LEAST_CONNECTIONS:
                assert picked.outstanding == min(r.outstanding for r in records)
            elif kind is LBS.LEAST_LOAD:
                load = picked.messages_sent + picked.messages_received
                assert load == min(r.messages_sent + r.messages_received for r in records)
    pools = [p for tp in lb._pools.values() for p in (tp.connected, tp.eligible)]
    assert lb._tracking == any(p.tracking for p in pools)


def test_failures_eject_on_the_fast_path_too():
    # No tracking strategy in use (ROUND_ROBIN): the failure streak alone takes the slow path and ejects.
    clock, store, lb = setup(4, consecutive_failures_threshold=2)
    lb.choose(T, LBS.ROUND_ROBIN)
    fail(store, "c1", 1)
    assert store.get("c1").ejected_until is None
    fail(store, "c1", 1)
    assert store.get("c1").ejected_until is not None and not lb._tracking


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([LBS.RANDOM, LBS.ROUND_ROBIN, LBS.ADAPTIVE]),
            st.sampled_from(list(OutcomeKind)),
            st.none() | st.floats(0.0, 500.0),
        ),
        max_size=30,
    )
)
def test_report_outcome_counts_what_report_counts(requests):
    # report_outcome is report() inline (once per request): both must leave the same statistics and bandit state
    (_, _, by_outcome), (_, _, by_report) = setup(3), setup(3)
    for kind, outcome_kind, latency in requests:
        a, b = by_outcome.choose(T, kind, 1.0), by_report.choose(T, kind, 1.0)
        assert (a.record.connection_id, a.strategy, a.arm) == (b.record.connection_id, b.strategy, b.arm)
        outcome = RequestOutcome(outcome_kind, 1, 0.0, 1.0, latency)
        by_outcome.report_outcome(outcome, a)
        by_report.report(b, ok=outcome.ok, latency_ms=latency)
    assert by_outcome.get_strategy_performance() == by_report.get_strategy_performance()
    assert by_outcome.adaptive_state(T) == by_report.adaptive_state(T)
