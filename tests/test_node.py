"""The exchange node over an in-memory channel, on virtual time: service model, network latency, faults, cleanup.

The node's per-connection fast paths are tested in test_node_connection.py, the exact texts of its order path in
test_order_text.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from _node_helpers import MemoryChannel, connected, is_order_reply, order_message, reply_cid, reply_status, spec
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.faults import Fault
from simulator.node import MAINTENANCE_CODE, RATE_LIMIT_CODE, ExchangeNode
from simulator.scenario import ServiceSpec
from simulator.virtual import run_virtual


def test_info_on_connect_and_pong() -> None:
    async def main() -> list[Any]:
        node = ExchangeNode(spec())
        node.start()
        ch = MemoryChannel()
        conn = node.connect(ch)
        conn.receive(json.dumps({"event": "ping", "cid": 7}))
        await asyncio.sleep(0.01)
        node.stop()
        return ch.messages()

    msgs = run_virtual(main())
    assert msgs[0]["event"] == "info" and msgs[0]["version"] == 2
    assert any(m.get("event") == "pong" and m.get("cid") == 7 for m in msgs if isinstance(m, dict))


def test_network_latency_each_way() -> None:
    async def main() -> float:
        node = ExchangeNode(spec(network_latency_s=0.020))
        node.start()
        ch = MemoryChannel()
        conn = node.connect(ch)
        await asyncio.sleep(0.1)
        t0 = node.loop.time()
        conn.receive(json.dumps({"event": "ping", "cid": 1}))
        await asyncio.sleep(0.1)
        node.stop()
        [(t, _)] = ch.find(lambda m: isinstance(m, dict) and m.get("event") == "pong")
        return t - t0

    assert run_virtual(main()) == pytest.approx(0.040)


def order_latencies(n: int, gap: float, **kw: Any) -> list[tuple[float, str]]:
    async def main() -> list[tuple[float, str]]:
        node = ExchangeNode(spec(**kw))
        node.start()
        conn, ch = await connected(node)
        sent = {}
        for cid in range(1, n + 1):
            sent[cid] = node.loop.time()
            conn.receive(order_message(cid))
            await asyncio.sleep(gap)
        await asyncio.sleep(2.0)
        node.stop()
        return [(t - sent[reply_cid(m)], reply_status(m)) for t, m in ch.find(is_order_reply)]

    return run_virtual(main())


def test_order_latency_grows_with_load() -> None:
    light = order_latencies(20, 0.05)  # 20/s against 100/s capacity
    heavy = order_latencies(20, 0.0)  # all at once
    assert all(s == "SUCCESS" for _, s in light + heavy)
    assert [lat for lat, _ in light] == pytest.approx([0.010] * 20)
    assert [lat for lat, _ in heavy] == pytest.approx([0.010 * (i + 1) for i in range(20)])


def test_full_queue_answers_with_rate_limit_error() -> None:
    replies = order_latencies(10, 0.0, queue_limit=3)
    statuses = [s for _, s in replies]
    assert statuses.count("SUCCESS") == 4 and statuses.count("ERROR") == 6


def test_rate_limit_reply_carries_the_code() -> None:
    async def main() -> list[Any]:
        node = ExchangeNode(spec(queue_limit=0))
        node.start()
        conn, ch = await connected(node)
        for cid in (1, 2):
            conn.receive(order_message(cid))
        await asyncio.sleep(0.1)
        node.stop()
        return [m for _, m in ch.find(is_order_reply)]

    replies = run_virtual(main())
    errors = [m for m in replies if reply_status(m) == "ERROR"]
    assert len(errors) == 1 and errors[0][2][5] == RATE_LIMIT_CODE


def test_capacity_drop_and_latency_factor_slow_orders() -> None:
    base = order_latencies(5, 0.0, service=ServiceSpec("constant", 5, {"value": 0.010}))
    assert [lat for lat, _ in base] == pytest.approx([0.010] * 5)

    async def main(faults: list[Fault]) -> list[float]:
        node = ExchangeNode(spec(service=ServiceSpec("constant", 5, {"value": 0.010})), faults=faults)
        node.start()
        await asyncio.sleep(0.5)
        conn, ch = await connected(node)
        t0 = node.loop.time()
        for cid in range(1, 6):
            conn.receive(order_message(cid))
        await asyncio.sleep(1.0)
        node.stop()
        return [t - t0 for t, _ in ch.find(is_order_reply)]

    dropped = run_virtual(main([Fault("capacity_drop", at_s=0.1, duration_s=5, params={"workers": 1})]))
    assert dropped == pytest.approx([0.010 * (i + 1) for i in range(5)])
    slow = run_virtual(main([Fault("latency_factor", at_s=0.1, duration_s=5, params={"factor": 10.0})]))
    assert slow == pytest.approx([0.100] * 5)


def test_error_reply_and_maintenance_refuse_orders() -> None:
    async def main(fault: Fault) -> tuple[list[Any], list[Any]]:
        node = ExchangeNode(spec(), faults=[fault])
        node.start()
        conn, ch = await connected(node)
        conn.receive(order_message(1))
        await asyncio.sleep(0.5)
        node.stop()
        return [m for _, m in ch.find(is_order_reply)], ch.messages()

    replies, _ = run_virtual(main(Fault("error_reply", params={"code": 10001, "rate": 1.0})))
    assert reply_status(replies[0]) == "ERROR" and "10001" in json.dumps(replies[0])
    replies, msgs = run_virtual(main(Fault("maintenance", at_s=0, duration_s=0.2)))
    assert reply_status(replies[0]) == "ERROR"
    codes = [m.get("code") for m in msgs if isinstance(m, dict) and m.get("event") == "info"]
    assert MAINTENANCE_CODE in codes and 20061 in codes


def test_closed_connection_leaves_no_timers() -> None:
    async def main() -> tuple[int, int, int]:
        node = ExchangeNode(spec(network_latency_s=0.05))
        node.start()
        conn, ch = await connected(node)
        for cid in range(1, 50):
            conn.receive(order_message(cid))
        await asyncio.sleep(0.06)
        before = len(ch.frames)
        conn.closed()
        scheduled = len(node.loop.scheduled_handles())  # type: ignore[attr-defined]
        await asyncio.sleep(2.0)
        node.stop()
        return before, len(ch.frames), scheduled

    before, after, scheduled = run_virtual(main())
    assert before == after  # nothing sent after the connection went away
    assert scheduled <= 2  # the market timer (and possibly the sleep), no per-order or per-connection timers


def test_close_fault_and_slow_close() -> None:
    async def main() -> MemoryChannel:
        node = ExchangeNode(
            spec(),
            faults=[
                Fault("slow_close", at_s=0, duration_s=5, params={"delay": 0.3}),
                Fault("close", at_s=0.5, params={"code": 1012, "reason": "restart"}),
            ],
        )
        node.start()
        ch = MemoryChannel()
        node.connect(ch)
        await asyncio.sleep(2)
        node.stop()
        return ch

    ch = run_virtual(main())
    assert ch.closed is not None and ch.closed[1:] == (1012, "restart")
    assert ch.closed[0] == pytest.approx(0.8)


def test_node_down_refuses_and_aborts() -> None:
    async def main() -> tuple[Any, Any, Any, MemoryChannel]:
        node = ExchangeNode(spec(), faults=[Fault("node_down", at_s=0.2, duration_s=0.3)])
        node.start()
        ch = MemoryChannel()
        node.connect(ch)
        before = node.refuse("127.0.0.1")
        await asyncio.sleep(0.3)
        during = node.refuse("127.0.0.1")
        await asyncio.sleep(0.3)
        after = node.refuse("127.0.0.1")
        node.stop()
        return before, during, after, ch

    before, during, after, ch = run_virtual(main())
    assert before is None and during is not None and during[0] == 503 and after is None
    assert ch.aborted == pytest.approx(0.2)


def market_stream(seed: int) -> list[tuple[float, Any]]:
    async def main() -> list[tuple[float, Any]]:
        node = ExchangeNode(spec(), seed=seed, faults=[Fault("loss", params={"rate": 0.2})])
        node.start()
        ch = MemoryChannel()
        conn = node.connect(ch)
        conn.receive(json.dumps({"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"}))
        conn.receive(json.dumps({"event": "subscribe", "channel": "book", "symbol": "tBTCUSD"}))
        await asyncio.sleep(3.0)
        node.stop()
        return ch.frames

    return run_virtual(main())


def test_same_seed_same_stream_and_fault_decisions() -> None:
    a, b = market_stream(5), market_stream(5)
    assert len(a) > 20 and a == b
    assert market_stream(6) != a


def test_malformed_client_frames_never_break_the_node() -> None:
    async def main() -> tuple[bool, list[Any]]:
        node = ExchangeNode(spec())
        node.start()
        ch = MemoryChannel()
        conn = node.connect(ch)
        for junk in ["", "{", "[", "null", "42", '{"event":"nope"}', b"\x00\xff", '[0,"on"]', '{"event":"auth"}']:
            conn.receive(junk)
        conn.receive(json.dumps({"event": "ping", "cid": 3}))
        await asyncio.sleep(0.1)
        still_open = conn.open and ch.closed is None and ch.aborted is None
        node.stop()
        return still_open, ch.messages()

    still_open, msgs = run_virtual(main())
    assert still_open
    assert any(isinstance(m, dict) and m.get("event") == "pong" for m in msgs)
    assert any(isinstance(m, dict) and m.get("event") == "error" for m in msgs)


@settings(max_examples=40, deadline=None)
@given(
    frames=st.lists(
        st.one_of(
            st.text(max_size=60),
            st.binary(max_size=40),
            st.builds(
                json.dumps,
                st.recursive(
                    st.none() | st.integers() | st.text(max_size=8),
                    lambda c: (
                        st.lists(c, max_size=4)
                        | st.dictionaries(
                            st.sampled_from(["event", "channel", "symbol", "cid", "flags", "apiKey", "chanId"]),
                            c,
                            max_size=4,
                        )
                    ),
                    max_leaves=10,
                ),
            ),
        ),
        max_size=25,
    )
)
def test_random_client_frames_never_crash_or_close(frames: list[str | bytes]) -> None:
    async def main() -> tuple[bool, list[Any]]:
        node = ExchangeNode(spec())
        node.start()
        ch = MemoryChannel()
        conn = node.connect(ch)
        for frame in frames:
            conn.receive(frame)
        conn.receive(json.dumps({"event": "ping", "cid": 99}))
        await asyncio.sleep(0.05)
        still_open = conn.open and ch.closed is None and ch.aborted is None
        node.stop()
        return still_open, ch.messages()

    still_open, msgs = run_virtual(main())
    assert still_open
    assert any(isinstance(m, dict) and m.get("event") == "pong" and m.get("cid") == 99 for m in msgs)


# -- market on demand, order completions, notification text ----------------------------------------------------


def subscribe_message(channel: str, **extra: Any) -> str:
    return json.dumps({"event": "subscribe", "channel": channel, "symbol": "tBTCUSD", **extra})


def market_frames(on_demand: bool, subscribe_at: float, until: float, unsubscribe_at: float | None = None) -> Any:
    async def main() -> tuple[list[tuple[float, Any]], int, int]:
        node = ExchangeNode(spec(), seed=7, market_on_demand=on_demand, market_update_interval_s=0.05)
        node.start()
        conn, ch = await connected(node)
        await asyncio.sleep(subscribe_at - node.loop.time())
        steps_before = node.market.last_seq
        for channel, extra in (("ticker", {}), ("trades", {}), ("book", {"prec": "P0", "len": "25"})):
            conn.receive(subscribe_message(channel, **extra))
        if unsubscribe_at is not None:
            await asyncio.sleep(unsubscribe_at - node.loop.time())
            for chan_id in conn.session.channel_ids():
                conn.receive(json.dumps({"event": "unsubscribe", "chanId": chan_id}))
        await asyncio.sleep(until - node.loop.time())
        steps_after = node.market.last_seq
        node.stop()
        frames = [(round(t, 9), d) for t, d in ch.frames if t >= subscribe_at]
        return frames, steps_before, steps_after

    return run_virtual(main())


def test_market_on_demand_gives_subscribers_the_always_running_stream() -> None:
    for subscribe_at in (0.0101, 3.33, 60.0):  # 60 s: 1200 missed steps, more than one advance() catches up
        eager, eager_before, _ = market_frames(False, subscribe_at, subscribe_at + 2.0)
        lazy, lazy_before, _ = market_frames(True, subscribe_at, subscribe_at + 2.0)
        assert lazy == eager and len(eager) > 40
        assert lazy_before == 0  # the dormant feed had not stepped before the subscribe
        assert eager_before == int(subscribe_at / 0.05)


def test_market_on_demand_sleeps_again_without_subscribers() -> None:
    _, _, stepped = market_frames(True, 1.0, 30.0, unsubscribe_at=2.0)
    frames, _, always = market_frames(False, 1.0, 30.0, unsubscribe_at=2.0)
    assert stepped < always / 10  # stopped stepping about a tick after the last unsubscribe
    assert frames == market_frames(True, 1.0, 30.0, unsubscribe_at=2.0)[0]


def test_a_dormant_market_wakes_only_for_subscribe_events() -> None:
    async def main() -> tuple[int, bool]:
        node = ExchangeNode(spec(), market_on_demand=True)
        node.start()
        conn, ch = await connected(node)
        await asyncio.sleep(5.0)
        conn.receive(json.dumps({"event": "ping", "cid": 1}))
        conn.receive(order_message(1))
        conn.receive(b"\xff not json")
        await asyncio.sleep(1.0)
        dormant = node._market_dormant
        steps = node.market.last_seq
        node.stop()
        return steps, dormant

    assert run_virtual(main()) == (0, True)


def test_pending_orders_share_one_completion_timer() -> None:
    async def main() -> tuple[int, int, int]:
        node = ExchangeNode(spec(), market_on_demand=True)
        node.start()
        conn, ch = await connected(node)
        baseline = len(node.loop.scheduled_handles())  # type: ignore[attr-defined]
        for cid in range(1, 51):
            conn.receive(order_message(cid))
        pending = conn.pending_orders
        timers = len(node.loop.scheduled_handles()) - baseline  # type: ignore[attr-defined]
        await asyncio.sleep(1.0)
        node.stop()
        return pending, timers, len(ch.find(is_order_reply))

    pending, timers, replies = run_virtual(main())
    assert pending == 50 and timers == 1 and replies == 50
