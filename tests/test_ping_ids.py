"""The connection's own app-level pings use a reserved cid range: a caller's ping never times ours."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.faults import Fault
from simulator.memory import MemoryNetwork, MemoryTransport
from simulator.node import ExchangeNode
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.virtual import run_virtual
from wsfinal import ConnectionConfig, ConnectionState, ConnectionType
from wsfinal.connection import ManagedConnection
from wsfinal.exceptions import UsageError
from wsfinal.ping_ids import (
    PING_CID_BASE,
    PING_CID_LIMIT,
    PingTable,
    is_own_ping_cid,
    refuse_reserved_ping,
    reserved_ping_cid,
)
from wsfinal.store import InMemoryConnectionStore

# --- the pure part ---------------------------------------------------------------------------------------------


def test_the_table_hands_out_reserved_cids_and_times_only_its_own_pongs() -> None:
    table = PingTable()
    a = table.send(1.0)
    b = table.send(1.5)
    assert a == PING_CID_BASE and b == PING_CID_BASE + 1
    assert all(is_own_ping_cid(c) for c in (a, b))
    assert table.answer(1, 1.01) is None  # a caller's pong (the cid our first ping had before)
    assert table.answer(None, 1.01) is None
    assert table.answer(b + 100, 1.01) is None  # reserved, but not in flight
    assert table.answer(a, 1.02) == pytest.approx(20.0)
    assert table.answer(a, 1.03) is None  # answered already
    assert table.answer(b, 1.6) == pytest.approx(100.0)
    assert table.pending == {}


def test_the_table_forgets_the_oldest_ping_beyond_its_bound_and_clears() -> None:
    table = PingTable(max_in_flight=3)
    cids = [table.send(float(i)) for i in range(5)]
    assert list(table.pending) == cids[2:]
    assert table.answer(cids[0], 10.0) is None  # forgotten: its pong was not coming
    table.clear()
    assert table.pending == {} and table.answer(cids[4], 10.0) is None
    with pytest.raises(ValueError, match="max_in_flight"):
        PingTable(max_in_flight=0)


def test_the_ids_wrap_around_within_the_range() -> None:
    table = PingTable()
    table._next = PING_CID_LIMIT - 1  # (no other way to get there: 2**44 pings)
    assert table.send(0.0) == PING_CID_LIMIT - 1
    assert table.send(0.0) == PING_CID_BASE


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("send"), st.floats(0.0, 100.0)),
            st.tuples(st.just("caller"), st.integers(-(2**60), 2**60)),
            st.tuples(st.just("ours"), st.integers(0, 20)),
        ),
        max_size=60,
    )
)
def test_a_pong_outside_the_range_never_changes_the_table(ops: list[tuple[str, Any]]) -> None:
    """Whatever mix of our pings, caller pongs (any integer cid outside the range) and pongs of ours: the table
    holds at most 8 pings, every one with a distinct reserved cid, and only a pong of ours removes one."""
    table = PingTable()
    sent: list[int] = []
    for kind, value in ops:
        before = dict(table.pending)
        if kind == "send":
            sent.append(table.send(value))
        elif kind == "caller":
            if is_own_ping_cid(value):
                continue
            assert table.answer(value, 200.0) is None
            assert table.pending == before
        elif sent:
            cid = sent[value % len(sent)]
            rtt = table.answer(cid, 200.0)
            assert (rtt is not None) == (cid in before)
            assert cid not in table.pending
        assert len(table.pending) <= 8
        assert all(is_own_ping_cid(c) for c in table.pending)


@pytest.mark.parametrize(
    ("message", "cid"),
    [
        ({"event": "ping", "cid": PING_CID_BASE}, PING_CID_BASE),
        ({"event": "ping", "cid": PING_CID_LIMIT - 1}, PING_CID_LIMIT - 1),
        (json.dumps({"event": "ping", "cid": PING_CID_BASE + 7}), PING_CID_BASE + 7),
        (json.dumps({"cid": PING_CID_BASE + 7, "event": "ping"}).encode(), PING_CID_BASE + 7),
        ({"event": "ping", "cid": PING_CID_BASE - 1}, None),
        ({"event": "ping", "cid": PING_CID_LIMIT}, None),
        ({"event": "ping", "cid": 1}, None),
        ({"event": "ping"}, None),
        ({"event": "ping", "cid": float(PING_CID_BASE)}, None),  # not an int: the exchange echoes it as a float
        ({"event": "subscribe", "cid": PING_CID_BASE}, None),
        ([0, "on", None, {"cid": PING_CID_BASE}], None),  # an order: its cid is in another namespace
        ("{nope ping", None),
        ("[1, 2]", None),
        ('"ping"', None),
        (b"\x00\x01", None),
        (42, None),
    ],
)
def test_reserved_ping_cid_recognises_a_caller_ping_in_the_range(message: object, cid: int | None) -> None:
    assert reserved_ping_cid(message) == cid
    if cid is None:
        refuse_reserved_ping(message, "c1")
    else:
        with pytest.raises(UsageError, match=rf"c1: a ping with cid {cid} cannot be sent: cids {PING_CID_BASE}"):
            refuse_reserved_ping(message, "c1")


# --- against the fake exchange, in virtual time ----------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.pings: list[tuple[float, float]] = []

    def record_ping(self, connection_id: str, connection_type: Any, rtt_ms: float, now: float) -> None:
        self.pings.append((rtt_ms, now))


def _exchange(network: MemoryNetwork) -> ExchangeNode:
    spec = NodeSpec(
        id="node-p",
        service=ServiceSpec("constant", 2, {"value": 0.002}),
        symbols=("tBTCUSD",),
        market_update_interval_s=0.1,
    )
    # 10 ms each way: every ping's round trip through the exchange session is exactly 20 ms
    faults = [Fault("latency", at_s=0.0, duration_s=None, params={"latency": 0.01, "jitter": 0.0})]
    node = ExchangeNode(spec, faults=faults, seed=3)
    network.add("127.0.0.1:7101", node)
    node.start()
    return node


def test_a_callers_pings_with_small_cids_never_time_ours_in_virtual_time() -> None:
    """The caller pings every millisecond with cids 1-8, the ids our own pings had before they moved to the
    reserved range. Then, a caller's pong with the cid of our ping in flight (sent up to 1 ms before ours, so
    answered up to 1 ms before ours) was taken for ours: its round trip read below 20 ms. Now every one of our
    round trips is the link's 20 ms, exactly one per ping, and the caller's pongs time nothing."""

    async def main() -> tuple[list[tuple[float, float]], int, float]:
        loop = asyncio.get_running_loop()
        network = MemoryNetwork()
        node = _exchange(network)
        config = ConnectionConfig(
            url="ws://127.0.0.1:7101/ws/2",
            connection_type=ConnectionType.MARKET_DATA,
            heartbeat_interval_seconds=1.0,
            message_timeout_seconds=0.5,
        )
        store = InMemoryConnectionStore(clock=loop.time)
        store.register("c1", config)
        conn = ManagedConnection(
            config, connection_id="c1", rng=random.Random(1), transport=MemoryTransport(network), store=store
        )
        analytics = Recorder()
        conn.bind(store, analytics)
        assert await conn.connect()
        start = loop.time()
        sent = 0
        while loop.time() < start + 3.5:
            assert conn.send_message_nowait({"event": "ping", "cid": sent % 8 + 1}) is True
            sent += 1
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.1)  # the last pongs
        received = conn.metrics.messages_received
        record = store.get("c1")
        assert record is not None and conn.state is ConnectionState.CONNECTED
        rtt = record.ping_rtt_ms
        await conn.disconnect()
        node.stop()
        return analytics.pings, received - sent, rtt

    pings, other_messages, rtt = run_virtual(main())
    assert len(pings) == 3  # one per heartbeat interval, at about 1, 2 and 3 s
    assert all(ms == pytest.approx(20.0, abs=1e-6) for ms, _ in pings), pings
    assert rtt == pytest.approx(20.0, abs=1e-6)
    # every caller ping was answered too (a pong each), besides the greeting, the conf answer and our 3 pongs
    assert other_messages == 5


def test_a_caller_ping_with_a_reserved_cid_is_refused_and_nothing_is_sent() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        network = MemoryNetwork()
        node = _exchange(network)
        config = ConnectionConfig(
            url="ws://127.0.0.1:7101/ws/2", connection_type=ConnectionType.MARKET_DATA, heartbeat_interval_seconds=1.0
        )
        store = InMemoryConnectionStore(clock=loop.time)
        store.register("c1", config)
        conn = ManagedConnection(
            config, connection_id="c1", rng=random.Random(1), transport=MemoryTransport(network), store=store
        )
        conn.bind(store)
        assert await conn.connect()
        before = conn.metrics.messages_sent
        for message in (
            {"event": "ping", "cid": PING_CID_BASE},
            json.dumps({"event": "ping", "cid": PING_CID_BASE + 1}),
            json.dumps({"event": "ping", "cid": PING_CID_LIMIT - 1}).encode(),
        ):
            with pytest.raises(UsageError, match="reserved for the connection's own pings"):
                conn.send_message_nowait(message)
            with pytest.raises(UsageError, match="reserved for the connection's own pings"):
                await conn.send_message(message)
        assert conn.metrics.messages_sent == before
        # one just below the range goes out, and its pong times nothing of ours
        assert await conn.send_message({"event": "ping", "cid": PING_CID_BASE - 1})
        await asyncio.sleep(0.05)
        assert conn.metrics.messages_sent == before + 1 and conn.metrics.last_ping_latency_ms is None
        await asyncio.sleep(1.0)  # our first ping, at 1 s: 20 ms
        assert conn.metrics.last_ping_latency_ms == pytest.approx(20.0, abs=1e-6)
        await conn.disconnect()
        node.stop()

    run_virtual(main())
