"""A connection's health score is computed once per time and shared (WebSocketAnalytics' health-score memo).

The balancer's health check and the manager's view of the same connection at the same time get the same number,
computed once; anything that changes an input of the formula in between (a sample, an error, a ping, a state
change, an aggregation...) makes the next call compute it again, so a memoised score always equals a fresh one.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from wsfinal.analytics import WebSocketAnalytics
from wsfinal.config import ConnectionConfig, ConnectionType, IntegrationConfig
from wsfinal.health import HealthInputs, health_breakdown, health_score
from wsfinal.manager import WebSocketIntegrationManager
from wsfinal.states import ConnectionState
from wsfinal.store import InMemoryConnectionStore

TR = ConnectionType.TRADING
IDS = ("a", "b", "c")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _connect(store: InMemoryConnectionStore, cid: str) -> None:
    store.register(cid, ConnectionConfig(url=f"ws://127.0.0.1:1/{cid}", connection_type=TR))
    store.set_state(cid, ConnectionState.CONNECTING)
    store.set_state(cid, ConnectionState.CONNECTED)


def _manager() -> tuple[WebSocketIntegrationManager, Clock]:
    clock = Clock()
    manager = WebSocketIntegrationManager(IntegrationConfig(), clock=clock)
    for cid in IDS:
        _connect(manager.store, cid)
    return manager, clock


def _count_inputs(analytics: WebSocketAnalytics) -> list[str]:
    """Record the connection of every health_inputs call (each is one computation of a score)."""
    calls: list[str] = []
    inner = analytics.health_inputs

    def counting(connection_id: str, now: float | None = None) -> Any:
        calls.append(connection_id)
        return inner(connection_id, now)

    analytics.health_inputs = counting  # type: ignore[method-assign]
    return calls


def test_the_balancer_and_the_manager_see_one_score_computed_once() -> None:
    manager, clock = _manager()
    analytics, balancer = manager.analytics, manager.load_balancer
    assert analytics is not None and balancer is not None
    for i, cid in enumerate(IDS):
        for k in range(5):
            analytics.record_answer(cid, TR, 100, 10.0 * (i + 1) + k, now=0.5 + 0.1 * k)
    analytics.record_error("c", TR, now=0.7)
    clock.t = 1.0
    calls = _count_inputs(analytics)
    balancer.perform_health_checks(1.0)
    assert sorted(calls) == sorted(IDS)  # one computation per connection for the check
    for cid in IDS:
        record = manager.store.get(cid)
        assert record is not None
        assert manager._health_score(cid) == record.health_score  # the manager reports what the balancer saw
    assert manager.get_system_overview()["health"]["overall_health_score"] == (
        sum(r.health_score for r in manager.store.all()) / len(IDS)
    )
    assert sorted(calls) == sorted(IDS)  # ... without computing it again
    scores = {cid: manager._health_score(cid) for cid in IDS}
    assert scores["c"] < scores["a"]  # the scores differ by connection: not one number shared by all


def test_a_change_at_the_same_time_is_seen_at_once() -> None:
    manager, clock = _manager()
    analytics, balancer = manager.analytics, manager.load_balancer
    assert analytics is not None and balancer is not None
    for cid in IDS:
        analytics.record_answer(cid, TR, 100, 10.0, now=0.5)
    clock.t = 1.0
    balancer.perform_health_checks(1.0)
    before = manager._health_score("a")
    for _ in range(5):
        analytics.record_error("a", TR, now=1.0)  # at the very time of the check
    after = manager._health_score("a")
    assert after < before
    assert after == health_score(analytics.health_inputs("a", 1.0))
    balancer.perform_health_checks(1.0)
    record = manager.store.get("a")
    assert record is not None and record.health_score == after
    manager.store.set_state("a", ConnectionState.DISCONNECTED, now=1.0)  # a store change, same time
    assert manager._health_score("a") == health_score(analytics.health_inputs("a", 1.0)) != after


def _change(a: WebSocketAnalytics, store: InMemoryConnectionStore, kind: str) -> None:
    """One change at t = 1.5 that moves connection a's score while its last event stays at 1.5: each is caught
    by one part of the memo's key only (the others stay as they were)."""
    t = 1.5
    if kind == "latency":  # hist.count (and the ops window)
        for _ in range(30):
            a.record_latency("a", TR, 5000.0, now=t)
    elif kind == "timeout":  # changes (censored samples)
        for _ in range(30):
            a.record_timeout("a", TR, 5000.0, now=t)
    elif kind == "error":  # errors
        a.record_error("a", TR, now=t)
    elif kind == "reconnect":  # reconnects
        a.record_reconnect("a", TR, now=t)
    elif kind == "aggregate":  # aggregations: the baseline moves, the counters come back to what they were
        a.update_performance_metrics(t)
        for _ in range(12):
            a.record_latency("a", TR, 40.0, now=t)
    elif kind == "state":  # the store's record
        store.set_state("a", ConnectionState.DISCONNECTED, now=t)
    elif kind == "peer_cache_s":  # peer_cache_s: the peer values are taken again
        a.peer_cache_s = 0.25
    elif kind == "peer_cache":  # the peer cache in use: another connection's score took it again
        a.peer_cache_s = 0.25
        a.get_connection_health_score("b", t)
        a.peer_cache_s = 1.0


@pytest.mark.parametrize(
    "kind", ["latency", "timeout", "error", "reconnect", "aggregate", "state", "peer_cache_s", "peer_cache"]
)
def test_each_input_that_changes_at_the_same_time_is_seen(kind: str) -> None:
    pairs = []
    for _ in range(2):
        store = InMemoryConnectionStore(clock=lambda: 0.0)
        a = WebSocketAnalytics(store, clock=lambda: 0.0)
        for cid in IDS:
            _connect(store, cid)
            for k in range(9):
                a.record_latency(cid, TR, 10.0, now=0.1 * (k + 1))
        a.update_performance_metrics(1.0)
        for cid in IDS:
            a.get_connection_health_score(cid, 1.0)  # the peer cache is taken at 1.0 and kept at 1.5
        for _ in range(12):  # the last event of each is at 1.5 from here on
            a.record_latency("a", TR, 40.0, now=1.5)
        for _ in range(10):
            a.record_latency("b", TR, 500.0, now=1.5)
            a.record_latency("c", TR, 500.0, now=1.5)
        pairs.append((a, store))
    (memo, memo_store), (fresh, fresh_store) = pairs
    first = memo.get_connection_health_score("a", 1.5)
    assert first == memo.get_connection_health_score("a", 1.5)
    _change(memo, memo_store, kind)
    _change(fresh, fresh_store, kind)
    got = memo.get_connection_health_score("a", 1.5)
    assert got == health_score(fresh.health_inputs("a", 1.5))
    assert got != first  # the change mattered: a stale memo would have failed the line above


@pytest.mark.parametrize("kind", ["message", "touch"])
def test_activity_at_the_same_time_ends_staleness_at_once(kind: str) -> None:
    """A connection quiet for 60 s (past the grace of a third of 90 s) that shows activity at the time it was
    scored: a message (the analytics' last event) or a pong (the store's last activity)."""
    store = InMemoryConnectionStore(clock=lambda: 0.0)
    a = WebSocketAnalytics(store, clock=lambda: 0.0)
    _connect(store, "a")
    a.record_latency("a", TR, 10.0, now=1.0)
    quiet = a.get_connection_health_score("a", 61.0)
    if kind == "message":
        a.record_message("a", TR, "in", 10, now=61.0)
    else:
        store.touch("a", now=61.0)
    again = a.get_connection_health_score("a", 61.0)
    assert again == health_score(a.health_inputs("a", 61.0)) > quiet


def test_without_a_store_the_default_stale_limit_is_in_the_key() -> None:
    a = WebSocketAnalytics(clock=lambda: 0.0)  # no store: the stale limit is analytics' stale_after_s
    a.record_latency("a", TR, 10.0, now=1.0)
    before = a.get_connection_health_score("a", 61.0)  # quiet 60 s: past the grace of a third of 90 s
    a.stale_after_s = 600.0
    after = a.get_connection_health_score("a", 61.0)
    assert after == health_score(a.health_inputs("a", 61.0)) > before


# one operation: (kind, connection index, value); kinds that move time advance it by value
_OPS = hs.lists(
    hs.tuples(
        hs.sampled_from(
            [
                "answer",
                "latency",
                "timeout",
                "ping",
                "error",
                "reconnect",
                "message",
                "aggregate",
                "touch",
                "state",
                "forget",
                "peer_cache",
                "score",
                "score",
                "score",
                "advance",
            ]
        ),
        hs.integers(0, len(IDS) - 1),
        hs.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 1.5, 3.0, 20.0, 400.0]),
    ),
    max_size=60,
)


def _apply(a: WebSocketAnalytics, store: InMemoryConnectionStore, op: str, cid: str, v: float, t: float) -> None:
    if op == "answer":
        a.record_answer(cid, TR, 10, 5.0 + 40.0 * v, now=t)
    elif op == "latency":
        a.record_latency(cid, TR, 1.0 + v, now=t)
    elif op == "timeout":
        a.record_timeout(cid, TR, 5000.0 + v, now=t)
    elif op == "ping":
        a.record_ping(cid, TR, 2.0 + v, now=t)
    elif op == "error":
        a.record_error(cid, TR, now=t)
    elif op == "reconnect":
        a.record_reconnect(cid, TR, now=t)
    elif op == "message":
        a.record_message(cid, TR, "out", 10, now=t)
    elif op == "aggregate":
        a.update_performance_metrics(t)
    elif op == "touch":
        store.touch(cid, now=t)
    elif op == "state":
        rec = store.get(cid)
        assert rec is not None
        new = ConnectionState.DISCONNECTED if rec.state is ConnectionState.CONNECTED else ConnectionState.CONNECTING
        store.set_state(cid, new, now=t)
        if new is ConnectionState.CONNECTING:
            store.set_state(cid, ConnectionState.CONNECTED, now=t)
    elif op == "forget":
        a.forget_connection(cid)
    elif op == "peer_cache":
        a.peer_cache_s = 0.5 if a.peer_cache_s == 1.0 else 1.0


def _same(x: float, y: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y))


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_a_memoised_score_always_equals_a_fresh_one(ops: list[tuple[str, int, float]]) -> None:
    """Two analytics fed the same events: one answers through the memo, the other always computes afresh (the
    formula on health_inputs). Every score asked, at repeated times and after any change, is the same."""
    pairs = []
    for _ in range(2):
        store = InMemoryConnectionStore(clock=lambda: 0.0)
        for cid in IDS:
            _connect(store, cid)
        pairs.append((WebSocketAnalytics(store, clock=lambda: 0.0), store))
    (memo, memo_store), (fresh, fresh_store) = pairs
    t = 1.0
    for op, i, v in ops:
        cid = IDS[i]
        if op == "advance":
            t += v
        elif op == "score":
            for c in IDS:  # every connection: the peer cache is shared by the type
                got = memo.get_connection_health_score(c, t)
                want = health_score(fresh.health_inputs(c, t))
                assert _same(got, want), (c, t, got, want)
        else:
            _apply(memo, memo_store, op, cid, v, t)
            _apply(fresh, fresh_store, op, cid, v, t)


_LATENCY = hs.one_of(
    hs.none(), hs.just(math.nan), hs.floats(0.0, 1e6, allow_nan=False), hs.sampled_from([0.0, 1e-9, 10.0, 80.0])
)


@settings(max_examples=300, deadline=None)
@given(
    latency=_LATENCY,
    baseline=_LATENCY,
    peer=_LATENCY,
    error_rate=hs.one_of(hs.floats(0.0, 1e9, allow_nan=False), hs.just(math.inf)),
    staleness=hs.one_of(hs.just(math.nan), hs.floats(-10.0, 1e6, allow_nan=False)),
    stale_after=hs.floats(1e-6, 1e6),
    reconnects=hs.integers(0, 1000),
    state=hs.sampled_from(list(ConnectionState)),
)
def test_health_score_is_the_breakdowns_score(
    latency: float | None,
    baseline: float | None,
    peer: float | None,
    error_rate: float,
    staleness: float,
    stale_after: float,
    reconnects: int,
    state: ConnectionState,
) -> None:
    """health_score computes the score without health_breakdown's dictionaries: the very same float."""
    inputs = HealthInputs(latency, baseline, peer, error_rate, staleness, stale_after, reconnects, state)
    assert health_score(inputs) == health_breakdown(inputs)["score"]
