import asyncio
import threading

import pytest

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
