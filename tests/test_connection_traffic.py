"""wsfinal.traffic, the request path of ManagedConnection (its behaviour is tested live in test_connection_requests.py;
here: the frame encoder, and the receive path in virtual time)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from typing import Any

import pytest

from simulator.memory import MemoryNetwork, MemoryTransport
from simulator.node import ExchangeNode
from simulator.scenario import NodeSpec
from simulator.virtual import run_virtual
from wsfinal import ConnectionConfig, ConnectionState, ConnectionType
from wsfinal.connection import ManagedConnection
from wsfinal.exceptions import ConnectionLost
from wsfinal.requests import OutcomeKind
from wsfinal.store import InMemoryConnectionStore

# --- the receive path in virtual time: the frames every request brings -----------------------------------------

KEY, SECRET = "demo-key", "demo-secret"
ORDER = {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "price": "30000"}


class Recorder:
    """A duck-typed analytics object that records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("record_"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


def _virtual_orders(handlers: int, *, break_receive_at: int | None = None) -> dict[str, Any]:
    """Connect over the in-memory transport in virtual time, send 20 orders (one at a time), and say what was seen.
    ``break_receive_at=i``: the protocol raises on the ``i``-th answer (counting from 0)."""

    async def main() -> dict[str, Any]:
        network = MemoryNetwork()
        node = ExchangeNode(NodeSpec(id="node-t", symbols=("tBTCUSD",), api_keys={KEY: SECRET}), seed=2)
        network.add("127.0.0.1:7003", node)
        node.start()
        config = ConnectionConfig(
            url="ws://127.0.0.1:7003/ws/2", connection_type=ConnectionType.TRADING, message_timeout_seconds=5.0
        )
        store = InMemoryConnectionStore()
        store.register("c1", config)
        conn = ManagedConnection(
            config,
            connection_id="c1",
            rng=random.Random(1),
            transport=MemoryTransport(network),
            api_key=KEY,
            api_secret=SECRET,
            nonce=itertools.count(1).__next__,
        )
        analytics = Recorder()
        conn.bind(store, analytics)
        seen: list[list[tuple[Any, Any]]] = [[] for _ in range(handlers)]
        for i in range(handlers):
            conn.add_data_handler(lambda sub, data, out=seen[i]: out.append((sub, data)))
        assert await conn.connect()
        if break_receive_at is not None:
            receive = conn.protocol.receive
            count = itertools.count()

            def breaking(data: str | bytes, now: float = 0.0, *, deliver: bool = True) -> list[Any]:
                if '"on-req"' in str(data) and next(count) == break_receive_at:
                    raise RuntimeError("a bug")
                return receive(data, now, deliver=deliver)

            conn.protocol.receive = breaking  # type: ignore[method-assign]
        outcomes = []
        for _ in range(20):
            outcomes.append(await conn.request(ORDER))
        await asyncio.sleep(1.0)
        m = conn.metrics
        record = store.get("c1")
        assert record is not None
        received = [a for name, a in analytics.calls if name == "record_answer" or a[2:3] == ("in",)]
        result = {
            "kinds": [o.kind for o in outcomes],
            "metrics": (m.messages_received, m.bytes_received, dict(m.errors_by_kind)),
            "store": (record.messages_received, record.bytes_received),
            "analytics_in": len(received),
            "seen": seen,
            "sequence": (conn.protocol.sequence.last, conn.protocol.sequence.gaps),
        }
        await conn.disconnect()
        node.stop()
        return result

    return run_virtual(main())


def test_without_data_handlers_the_order_updates_are_counted_and_not_delivered() -> None:
    bare = _virtual_orders(0)
    watched = _virtual_orders(2)
    assert bare["kinds"] == [OutcomeKind.ACKNOWLEDGED] * 20
    # each order brings its answer and an order-new frame; both counted everywhere, handlers or not
    messages, size, errors = bare["metrics"]
    assert messages >= 40 and not errors
    assert bare["store"] == (messages, size) and bare["analytics_in"] == messages
    assert watched["metrics"] == bare["metrics"] and watched["store"] == bare["store"]
    assert watched["sequence"] == bare["sequence"] and bare["sequence"][1] == 0
    first, second = watched["seen"]
    assert first == second
    updates = [data for sub, data in first if sub is None and data.chan_id == 0 and data.kind == "on"]
    assert [data.payload[2] for data in updates] == list(range(1, 21))  # the order array's cid
    assert all(data.seq is not None for data in updates)


def test_a_failure_while_handling_one_frame_is_counted_and_the_next_frames_go_on() -> None:
    broken = _virtual_orders(0, break_receive_at=2)  # the third order's answer
    kinds = broken["kinds"]
    assert kinds[2] is OutcomeKind.TIMED_OUT  # that request lost its answer, and the others did not
    assert kinds.count(OutcomeKind.ACKNOWLEDGED) == 19
    # ... and the protocol never saw that frame's sequence number: the next frame reports the gap
    assert broken["metrics"][2] == {"internal": 1, "sequence_gap": 1}


# -- a lost channel leaves CONNECTED at once; what a loss does to requests still queued ---------------------------


class ScriptChannel:
    """A channel the test drives by hand: it pushes (``push_to``), so the test calls the connection's
    ``on_message``/``on_lost`` itself. ``accept=False`` declines ``send_nowait`` (frames go to the writer task),
    and ``send`` then blocks until the channel closes."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.sent: list[str | bytes] = []
        self.on_message: Any = None
        self.on_lost: Any = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.get_running_loop().create_future()

    def push_to(self, on_message: Any, on_lost: Any) -> bool:
        self.on_message, self.on_lost = on_message, on_lost
        return True

    def send_nowait(self, data: str | bytes) -> bool:
        if self.accept:
            self.sent.append(data)
        return self.accept

    async def send(self, data: str | bytes) -> None:
        self.sent.append(data)
        await asyncio.shield(self.closed)

    async def recv(self) -> str:  # never called: the channel pushes
        raise AssertionError("recv on a pushing channel")

    async def ping(self) -> float:
        return 0.001

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.abort()

    def abort(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class ScriptTransport:
    """Opens a new :class:`ScriptChannel` per connect; ``channels`` lists them."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.channels: list[ScriptChannel] = []

    async def connect(self, url: str, config: ConnectionConfig) -> ScriptChannel:
        channel = ScriptChannel(self.accept)
        self.channels.append(channel)
        return channel


def scripted(
    cid: str = "c1", *, attempts: int = 5, accept: bool = True, store: InMemoryConnectionStore | None = None
) -> tuple[ManagedConnection, ScriptTransport, InMemoryConnectionStore, list[Any]]:
    """A connection over a :class:`ScriptTransport`, bound to a store, its events recorded."""
    config = ConnectionConfig(
        url="ws://script/ws/2",
        connection_type=ConnectionType.TRADING,
        reconnect_delay_seconds=0.1,
        max_reconnect_attempts=attempts,
        enable_heartbeat=False,
    )
    store = store if store is not None else InMemoryConnectionStore()
    store.register(cid, config)
    transport = ScriptTransport(accept)
    conn = ManagedConnection(
        config,
        connection_id=cid,
        transport=transport,
        rng=random.Random(3),
        sequence_checks=False,
        checksums=False,
        await_info=False,
    )
    conn.bind(store)
    events: list[Any] = []
    conn.add_listener(events.append)
    return conn, transport, store, events


def _end_by(how: str, channel: ScriptChannel) -> None:
    """End ``channel``'s session the way ``how`` says, from the channel's side."""
    if how == "lost":
        channel.on_lost(ConnectionLost("gone", 1006))
    elif how == "policy":
        channel.on_lost(ConnectionLost("gone", 1008, "policy"))
    else:  # "20051": the exchange asks us to reconnect
        channel.on_message(json.dumps({"event": "info", "code": 20051, "msg": "Stop/Restart Websocket Server"}))


@pytest.mark.parametrize(
    ("how", "attempts", "after", "final_event"),
    [
        ("lost", 5, ConnectionState.RECONNECTING, "reconnect_scheduled"),
        ("20051", 5, ConnectionState.RECONNECTING, "reconnect_scheduled"),
        ("policy", 5, ConnectionState.FAILED, "gave_up"),
        ("lost", 0, ConnectionState.DISCONNECTED, "disconnected"),
    ],
)
def test_a_lost_channel_leaves_connected_before_anything_else_runs(
    how: str, attempts: int, after: ConnectionState, final_event: str
) -> None:
    async def main() -> None:
        conn, transport, store, events = scripted(attempts=attempts)
        assert await conn.connect()
        record = store.get("c1")
        assert record is not None and record.state is ConnectionState.CONNECTED
        _end_by(how, transport.channels[0])
        # synchronously, in the callback that saw the loss: the state (the store's too, which the balancer
        # follows) has left CONNECTED, so no request is routed here any more
        assert conn.state is after and record.state is after
        assert [e.detail["new"] for e in events if e.kind == "state_changed"][-1] == after.value
        assert not [e for e in events if e.kind == final_event]  # the rest is the supervisor's next step
        outcome = await conn.submit(ORDER)
        assert outcome.kind is OutcomeKind.NO_CONNECTION
        await asyncio.sleep(0.05)
        assert len([e for e in events if e.kind == final_event]) == 1
        changes = [(e.detail["old"], e.detail["new"]) for e in events if e.kind == "state_changed"]
        assert changes.count(("connected", after.value)) == 1  # once, not again by the supervisor
        if after is ConnectionState.RECONNECTING:
            scheduled = next(e for e in events if e.kind == "reconnect_scheduled")
            assert scheduled.detail["lost_at"] == outcome.submitted_at  # the loss's own time
            await asyncio.sleep(1.0)
            assert conn.state is ConnectionState.CONNECTED and len(transport.channels) == 2
        else:
            await asyncio.sleep(1.0)
            assert conn.state is after and len(transport.channels) == 1
        await conn.disconnect()
        assert conn.state is ConnectionState.DISCONNECTED and not conn.tasks

    run_virtual(main())


def test_disconnect_goes_to_disconnected_without_passing_through_failed_or_reconnecting() -> None:
    async def main() -> None:
        conn, transport, store, events = scripted()
        assert await conn.connect()
        await conn.disconnect("bye")
        changes = [(e.detail["old"], e.detail["new"]) for e in events if e.kind == "state_changed"]
        assert changes == [("disconnected", "connecting"), ("connecting", "connected"), ("connected", "disconnected")]
        assert not [e for e in events if e.kind in ("reconnect_scheduled", "gave_up")]
        await asyncio.sleep(1.0)
        assert conn.state is ConnectionState.DISCONNECTED and len(transport.channels) == 1

    run_virtual(main())


def test_requests_still_queued_at_a_loss_count_as_not_sent_and_leave_the_failure_streak_alone() -> None:
    async def main() -> None:
        conn, transport, store, events = scripted(accept=False)  # every frame goes through the writer task
        assert await conn.connect()
        await asyncio.sleep(0.01)
        record = store.get("c1")
        assert record is not None
        futures = [conn.submit(ORDER) for _ in range(4)]
        await asyncio.sleep(0.01)  # the writer takes the first and blocks on sending it: three stay queued
        assert record.outstanding == 4
        _end_by("lost", transport.channels[0])
        await asyncio.sleep(0.01)
        kinds = [f.result().kind for f in futures]
        assert kinds == [OutcomeKind.CONNECTION_LOST] + [OutcomeKind.NOT_SENT] * 3
        assert (record.requests_failed, record.requests_not_sent, record.outstanding) == (4, 3, 0)
        assert record.consecutive_failures == 1  # only the request that reached the wire
        assert store.request_totals()["not_sent"] == 3 == conn.ledger.counts.by_value["not_sent"]
        await conn.disconnect()

    run_virtual(main())


def test_submit_uses_the_time_its_caller_read_and_reads_the_loop_otherwise() -> None:
    async def main() -> list[tuple[float, float, float | None]]:
        network = MemoryNetwork()
        node = ExchangeNode(NodeSpec(id="node-t", symbols=("tBTCUSD",), api_keys={KEY: SECRET}), seed=2)
        network.add("127.0.0.1:7003", node)
        node.start()
        config = ConnectionConfig(url="ws://127.0.0.1:7003/ws/2", connection_type=ConnectionType.TRADING)
        conn = ManagedConnection(
            config, connection_id="c1", rng=random.Random(1), transport=MemoryTransport(network),
            api_key=KEY, api_secret=SECRET, nonce=itertools.count(1).__next__,
        )  # fmt: skip
        assert await conn.connect()
        loop = asyncio.get_running_loop()
        seen = []
        for given in (None, -0.25):
            t = loop.time()
            outcome = await conn.submit(ORDER, now=None if given is None else t + given)
            assert outcome.kind is OutcomeKind.ACKNOWLEDGED
            seen.append((outcome.submitted_at - t, outcome.finished_at - t, outcome.latency_ms))
        await conn.disconnect()
        node.stop()
        return seen

    (own, own_end, own_ms), (given, given_end, given_ms) = run_virtual(main())
    assert own == 0.0 and given == -0.25
    assert 0.0 < own_end < 0.25 and 0.0 < given_end < 0.25  # answered at once in both cases
    # the latency runs from the time given
    assert own_ms == pytest.approx(own_end * 1000.0) and given_ms == pytest.approx((given_end + 0.25) * 1000.0)
