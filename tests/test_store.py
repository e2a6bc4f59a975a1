import asyncio
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfinal import ConnectionConfig, ConnectionState, ConnectionType, InvalidTransitionError, UsageError
from wsfinal.store import InMemoryConnectionStore

S = ConnectionState
URL = "ws://127.0.0.1:9001/ws/2"


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def cfg(kind=ConnectionType.MARKET_DATA, hb=10.0, **kw):
    return ConnectionConfig(url=URL, connection_type=kind, heartbeat_interval_seconds=hb, **kw)


def test_seed_api_register_update_get_by_type():
    async def main():
        store = InMemoryConnectionStore()
        assert await store.register_connection("a", ConnectionType.MARKET_DATA, cfg())
        assert await store.register_connection("b", ConnectionType.TRADING, cfg(ConnectionType.TRADING))
        assert not await store.register_connection("a", ConnectionType.MARKET_DATA, cfg())  # duplicate id
        assert not await store.register_connection("c", ConnectionType.TRADING, cfg())  # type disagrees
        assert await store.update_connection_state("a", S.CONNECTING)
        assert await store.update_connection_state("a", S.CONNECTED)
        assert not await store.update_connection_state("a", S.CONNECTING)  # illegal: connected -> connecting
        assert not await store.update_connection_state("zzz", S.CONNECTING)  # unknown
        [a] = store.get_connections_by_type(ConnectionType.MARKET_DATA)
        assert a.connection_id == "a" and a.state is S.CONNECTED and a.endpoint == "127.0.0.1:9001"
        assert [r.connection_id for r in store.get_connections_by_type(ConnectionType.TRADING)] == ["b"]

    asyncio.run(main())


def test_set_state_raises_and_emits_events():
    clock = FakeClock(5.0)
    store = InMemoryConnectionStore(clock=clock)
    events = []
    store.add_listener(events.append)
    store.register("a", cfg())
    with pytest.raises(InvalidTransitionError, match="disconnected -> connected"):
        store.set_state("a", S.CONNECTED)  # must pass through connecting
    assert store.get("a").state is S.DISCONNECTED
    store.set_state("a", S.CONNECTING)
    store.set_state("a", S.CONNECTING)  # the state it already has: a no-op, no event
    kinds = [(e.kind, e.detail.get("new")) for e in events]
    assert kinds == [("registered", None), ("state_changed", "connecting")]
    assert all(e.time == 5.0 for e in events)
    with pytest.raises(UsageError, match="already registered"):
        store.register("a", cfg())


def test_metrics_tracking_per_connection():
    clock = FakeClock(0.0)
    store = InMemoryConnectionStore(clock=clock)
    store.register("a", cfg())
    store.request_started("a")
    store.request_started("a")
    assert store.get("a").outstanding == 2
    clock.t = 1.0
    store.request_finished("a", ok=True, latency_ms=10.0)
    store.request_finished("a", ok=False, latency_ms=None)
    store.message_sent("a", 100)
    store.message_received("a", 50)
    store.record_error("a", "decode")
    store.record_reconnect("a")
    r = store.get("a")
    assert (r.outstanding, r.requests_ok, r.requests_failed, r.consecutive_failures) == (0, 1, 1, 1)
    assert (r.messages_sent, r.messages_received, r.bytes_sent, r.bytes_received) == (1, 1, 100, 50)
    assert (r.errors, r.reconnects, r.latency_ewma_ms) == (1, 1, 10.0)
    assert store.metrics()["operations"]["error:decode"] == 1
    store.request_finished("gone", ok=True, latency_ms=1.0)  # removed connections are ignored, not an error
    with pytest.raises(UsageError, match="unknown connection id 'gone'"):
        store.request_started("gone")


def test_stale_connections_are_marked_then_removed_with_events():
    clock = FakeClock(0.0)
    store = InMemoryConnectionStore(clock=clock, stale_multiplier=3.0)
    store.register("quiet", cfg(hb=10.0))
    store.register("busy", cfg(hb=10.0))
    events = []
    store.add_listener(events.append)
    clock.t = 29.0
    store.message_received("busy")
    assert store.cleanup_stale() == []
    clock.t = 31.0
    [ev] = store.cleanup_stale()
    assert (ev.kind, ev.connection_id) == ("stale", "quiet") and store.get("quiet").stale
    clock.t = 59.0
    assert [e.kind for e in store.cleanup_stale()] == ["stale"]  # busy went stale at 59 (30 s silent)
    clock.t = 61.0
    removed = store.cleanup_stale()
    assert [(e.kind, e.connection_id) for e in removed] == [("removed", "quiet")]
    assert store.get("quiet") is None and store.get("busy") is not None
    assert ("removed", "quiet") in [(e.kind, e.connection_id) for e in events]


def test_activity_clears_stale_mark():
    clock = FakeClock(0.0)
    store = InMemoryConnectionStore(clock=clock)
    store.register("a", cfg(hb=1.0))
    clock.t = 3.5
    store.cleanup_stale()
    assert store.get("a").stale
    store.message_received("a")
    assert not store.get("a").stale
    clock.t = 6.0
    assert store.cleanup_stale() == []  # silent 2.5 s < 3 s limit


def test_cluster_nodes_heartbeat_and_down_after_timeout():
    clock = FakeClock(0.0)
    store = InMemoryConnectionStore(clock=clock, node_timeout_s=10.0)
    events = []
    store.add_listener(events.append)
    store.register_node("n1", "10.0.0.1:1")
    store.register_node("n2")
    store.register("a", cfg(), cluster_node="n1")
    store.register("b", cfg(cluster_node_id="n2"))
    clock.t = 8.0
    store.node_heartbeat("n1")
    clock.t = 12.0
    nodes = {n.node_id: n.up for n in store.list_nodes()}
    assert nodes == {"n1": True, "n2": False}
    assert [e.detail["node_id"] for e in events if e.kind == "node_down"] == ["n2"]
    store.node_heartbeat("n2")
    assert [e.kind for e in events][-1] == "node_up"
    assert [r.connection_id for r in store.connections_by_node("n1")] == ["a"]
    assert [r.connection_id for r in store.connections_by_node("n2")] == ["b"]
    with pytest.raises(UsageError, match="unknown cluster node 'n3'"):
        store.node_heartbeat("n3")


def test_no_clock_outside_loop_is_a_clear_error():
    store = InMemoryConnectionStore()
    with pytest.raises(UsageError, match="no running event loop"):
        store.register("a", cfg())


def test_failing_listener_does_not_break_the_store(caplog):
    store = InMemoryConnectionStore(clock=FakeClock())

    def bad(event):
        raise RuntimeError("boom")

    store.add_listener(bad)
    store.register("a", cfg())
    assert store.get("a") is not None
    assert "store listener" in caplog.text


def test_thread_safety_under_hammering_from_threads():
    """Eight threads register, update and remove concurrently; every count adds up afterwards."""
    clock = FakeClock(0.0)
    store = InMemoryConnectionStore(clock=clock)
    n_threads, per_thread, shared = 8, 300, 16
    for i in range(shared):
        store.register(f"shared-{i}", cfg())
    errors = []
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                cid = f"t{t}-{i}"
                store.register(cid, cfg(ConnectionType.TRADING))
                store.set_state(cid, S.CONNECTING)
                store.set_state(cid, S.CONNECTED)
                target = f"shared-{i % shared}"
                store.request_started(target)
                store.message_sent(target, 10)
                store.request_finished(target, ok=True, latency_ms=1.0)
                if i % 3 == 0:
                    assert store.remove(cid)
                store.get_connections_by_type(ConnectionType.TRADING)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert errors == []
    total = n_threads * per_thread
    removed = n_threads * len(range(0, per_thread, 3))
    assert len(store.get_connections_by_type(ConnectionType.TRADING)) == total - removed
    shared_records = store.get_connections_by_type(ConnectionType.MARKET_DATA)
    assert sum(r.messages_sent for r in shared_records) == total
    assert sum(r.requests_ok for r in shared_records) == total
    assert all(r.outstanding == 0 for r in shared_records)
    assert store.metrics()["operations"]["register"] == total + shared


def test_a_request_not_sent_at_submit_is_a_failed_request_and_nothing_else():
    clock = FakeClock(1.0)
    store = InMemoryConnectionStore(clock=clock)
    seen = CountingObserver()
    store.subscribe(seen)
    store.register("a", cfg())
    store.request_sent("a", 100)
    clock.t = 2.0
    store.answer_received("a", 40, ok=False, latency_ms=20.0)  # one real failure before
    before = store.get("a").snapshot()
    notified = seen.load_changes
    clock.t = 50.0
    store.request_not_sent("a")
    store.request_not_sent("a")
    r = store.get("a")
    assert (r.requests_failed, r.requests_not_sent, r.requests_ok) == (3, 2, 0)
    # not sent: no message, no load, no latency, no activity; and no sign of how the exchange answers
    after = r.snapshot()
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"requests_failed", "requests_not_sent"}
    assert r.consecutive_failures == 1 and seen.load_changes == notified
    store.request_not_sent("gone")  # unknown or removed: ignored
    assert store.request_totals() == {
        "submitted": 3, "ok": 0, "failed": 3, "not_sent": 2, "outstanding": 0, "no_connection": 0
    }  # fmt: skip


def test_a_queued_request_dropped_unsent_at_a_loss_ends_its_load_without_a_failure_streak():
    clock = FakeClock(0.0)
    store = InMemoryConnectionStore(clock=clock)
    store.register("a", cfg())
    for _ in range(3):
        store.request_started("a")  # queued, not written yet
    clock.t = 4.0
    store.request_finished("a", ok=False, latency_ms=None, outcome="not_sent")
    store.request_finished("a", ok=False, latency_ms=None, outcome="connection_lost")
    r = store.get("a")
    assert (r.outstanding, r.requests_failed, r.requests_not_sent, r.consecutive_failures) == (1, 2, 1, 1)
    assert (r.messages_sent, r.bytes_sent) == (0, 0) and r.latency_ewma_ms != r.latency_ewma_ms  # NaN: none


def test_requests_with_no_connection_are_counted_by_type_beside_the_records():
    store = InMemoryConnectionStore(clock=FakeClock(0.0))
    store.register("t", cfg(ConnectionType.TRADING))
    store.register("m", cfg())
    store.request_sent("t", 10)
    store.answer_received("t", 10, ok=True, latency_ms=1.0)
    store.request_sent("t", 10)  # still in flight
    store.request_not_sent("m")
    for _ in range(2):
        store.request_no_connection(ConnectionType.TRADING)
    store.request_no_connection(ConnectionType.USER_DATA)
    trading = store.request_totals(ConnectionType.TRADING)
    assert trading == {"submitted": 4, "ok": 1, "failed": 0, "not_sent": 0, "outstanding": 1, "no_connection": 2}
    assert store.request_totals(ConnectionType.USER_DATA)["submitted"] == 1
    requests = store.metrics()["requests"]
    assert (requests["submitted"], requests["failed"], requests["not_sent"], requests["no_connection"]) == (6, 1, 1, 3)
    assert requests["no_connection_by_type"] == {"trading": 2, "user_data": 1}


#: One request's life as the store hears of it: (how it starts, how it ends); None: still in flight.
LIVES = st.sampled_from(
    [
        ("sent", "answer_ok"),
        ("sent", "answer_rejected"),
        ("sent", "timed_out"),
        ("sent", None),
        ("queued", "not_sent"),
        ("queued", "connection_lost"),
        ("queued", None),
        ("refused", None),  # NOT_SENT at submit: request_not_sent
        ("no_connection", None),
    ]
)


@settings(max_examples=60, deadline=None)
@given(lives=st.lists(st.tuples(st.sampled_from(["a", "b"]), LIVES), max_size=40))
def test_request_totals_account_for_every_request_once(lives):
    store = InMemoryConnectionStore(clock=FakeClock(0.0))
    store.register("a", cfg(ConnectionType.TRADING))
    store.register("b", cfg())
    ends = []
    for cid, (start, end) in lives:
        if start == "sent":
            store.request_sent(cid, 10)
        elif start == "queued":
            store.request_started(cid)
        elif start == "refused":
            store.request_not_sent(cid)
        else:
            store.request_no_connection(store.get(cid).connection_type)
        if end is not None:
            ends.append((cid, end))
    for cid, end in ends:  # answers and losses come later, in the order of the requests
        if end.startswith("answer"):
            store.answer_received(cid, 5, ok=end == "answer_ok", latency_ms=1.0)
        else:
            store.request_finished(cid, ok=False, latency_ms=None, outcome=end)
    totals = store.request_totals()
    in_flight = sum(1 for _, (start, end) in lives if end is None and start in ("sent", "queued"))
    assert totals["submitted"] == len(lives) and totals["outstanding"] == in_flight
    assert totals["ok"] == sum(1 for _, (_, end) in lives if end == "answer_ok")
    assert totals["not_sent"] == sum(1 for _, life in lives if life in (("queued", "not_sent"), ("refused", None)))
    assert totals["no_connection"] == sum(1 for _, (start, _) in lives if start == "no_connection")
    by_type = [store.request_totals(t) for t in (ConnectionType.TRADING, ConnectionType.MARKET_DATA)]
    assert {k: by_type[0][k] + by_type[1][k] for k in totals} == totals
    assert store.metrics()["requests"]["submitted"] == len(lives)


class CountingObserver:
    def __init__(self) -> None:
        self.load_changes = 0

    def on_registered(self, record):
        pass

    def on_state_changed(self, record, old):
        pass

    def on_load_changed(self, record):
        self.load_changes += 1

    def on_eligibility_changed(self, record):
        pass

    def on_removed(self, record):
        pass


def test_combined_request_calls_equal_their_parts_with_one_notification_each():
    clock = FakeClock(0.0)
    parts, combined = InMemoryConnectionStore(clock=clock), InMemoryConnectionStore(clock=clock)
    seen_parts, seen_combined = CountingObserver(), CountingObserver()
    parts.subscribe(seen_parts)
    combined.subscribe(seen_combined)
    for store in (parts, combined):
        store.register("a", cfg())
    steps = [(0.5, 120, True, 3.0), (1.0, 80, False, 7.5), (2.5, 64, True, None), (4.0, 99, False, None)]
    for t, size, ok, latency in steps:
        clock.t = t
        parts.request_started("a")
        parts.message_sent("a", size)
        combined.request_sent("a", size)
        clock.t = t + 0.25
        parts.message_received("a", size // 2)
        parts.request_finished("a", ok=ok, latency_ms=latency)
        combined.answer_received("a", size // 2, ok=ok, latency_ms=latency)
    assert parts.get("a").snapshot() == combined.get("a").snapshot()
    assert parts.get("a").consecutive_failures == combined.get("a").consecutive_failures == 1
    assert seen_parts.load_changes == 2 * seen_combined.load_changes == 4 * len(steps)
    combined.answer_received("gone", 10, ok=True, latency_ms=1.0)  # removed: ignored, like request_finished
    with pytest.raises(UsageError, match="unknown connection id 'gone'"):
        combined.request_sent("gone", 10)


def test_a_new_session_starts_a_new_failure_streak():
    # Requests lost with a session count against it; the reconnected session must not inherit the streak (the
    # balancer would eject the healthy new session at its first request).
    store = InMemoryConnectionStore(clock=FakeClock(0.0))
    store.register("a", cfg())
    store.set_state("a", S.CONNECTING)
    store.set_state("a", S.CONNECTED)
    for _ in range(6):
        store.request_started("a")
    for _ in range(6):
        store.request_finished("a", ok=False, latency_ms=None, outcome="connection_lost")
    store.set_state("a", S.RECONNECTING)
    store.set_state("a", S.CONNECTING)
    assert store.get("a").consecutive_failures == 6  # kept while down: it is what happened to that session
    store.set_state("a", S.CONNECTED)
    r = store.get("a")
    assert r.consecutive_failures == 0 and r.requests_failed == 6  # the totals stay


def test_ping_rtts_are_kept_apart_and_are_selection_events():
    store = InMemoryConnectionStore(clock=FakeClock(0.0))
    seen = CountingObserver()
    store.subscribe(seen)
    store.register("a", cfg(latency_stale_after_seconds=4.0))
    r = store.get("a")
    assert r.latency_stale_after_s == 4.0 and math.isnan(r.ping_rtt_ms)
    assert r.snapshot()["ping_rtt_ms"] is None and r.snapshot()["routing_latency_ms"] is None
    store.answer_received("a", 10, ok=True, latency_ms=30.0, now=1.0)
    before = seen.load_changes
    store.record_ping("a", 2.5, now=3.0)
    assert seen.load_changes == before + 1  # the balancer re-keys LEAST_LATENCY on it
    assert (r.latency_ewma_ms, r.peak_ewma_ms, r.last_latency_ms, r.latency_stamp) == (30.0, 30.0, 30.0, 1.0)
    assert (r.ping_rtt_ms, r.ping_stamp) == (2.5, 3.0)
    assert r.routing_latency_ms() == 30.0  # 2 s after the request sample: fresh
    store.record_ping("a", 2.0, now=5.0)
    assert r.routing_latency_ms() == 2.0  # 4 s: stale, the ping RTT stands in
    assert r.snapshot()["ping_rtt_ms"] == 2.0 and r.snapshot()["routing_latency_ms"] == 2.0
    store.record_ping("gone", 1.0, now=5.0)  # unknown ids are ignored


def test_a_timeout_is_a_censored_latency_sample():
    store = InMemoryConnectionStore(clock=FakeClock(0.0))
    store.register("a", cfg())
    seen = CountingObserver()
    store.subscribe(seen)
    store.request_started("a", now=0.0)
    store.record_timeout("a", 5000.0, now=5.0)  # no answer in 5 s: at least 5 s
    store.request_finished("a", ok=False, latency_ms=None, outcome="timed_out", now=5.0)
    r = store.get("a")
    assert r.latency_ewma_ms == r.peak_ewma_ms == 5000.0 and r.latency_stamp == 5.0
    assert math.isnan(r.last_latency_ms)  # answered requests only
    assert (r.requests_failed, r.outstanding, seen.load_changes) == (1, 0, 3)
    store.answer_received("a", 10, ok=True, latency_ms=10.0, now=6.0)
    assert r.last_latency_ms == 10.0 and 10.0 < r.latency_ewma_ms < 5000.0
    store.record_timeout("gone", 1.0)  # unknown ids are ignored
