"""The exchange node over an in-memory channel, on virtual time: service model, network latency, faults, cleanup."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.bitfinex import Order
from simulator.faults import Fault
from simulator.node import MAINTENANCE_CODE, RATE_LIMIT_CODE, ExchangeNode, NodeConnection
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.virtual import run_virtual

KEY, SECRET = "demo-key", "demo-secret"


class MemoryChannel:
    """Records what the node sends, with the loop time of each call."""

    def __init__(self, peer: str = "127.0.0.1") -> None:
        self.peer = peer
        self.frames: list[tuple[float, Any]] = []
        self.closed: tuple[float, int, str] | None = None
        self.aborted: float | None = None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def send(self, data: str | bytes) -> None:
        self.frames.append((self._now(), data))

    def send_fragments(self, parts: Sequence[str | bytes], delay_s: float) -> None:
        self.frames.append((self._now(), tuple(parts)))

    def close(self, code: int, reason: str = "") -> None:
        self.closed = (self._now(), code, reason)

    def abort(self) -> None:
        self.aborted = self._now()

    def messages(self) -> list[Any]:
        return [json.loads(d) for _, d in self.frames if isinstance(d, str)]

    def find(self, pred: Any) -> list[tuple[float, Any]]:
        out = []
        for t, d in self.frames:
            if isinstance(d, str):
                m = json.loads(d)
                if pred(m):
                    out.append((t, m))
        return out


def spec(**kw: Any) -> NodeSpec:
    base: dict[str, Any] = {
        "id": "node-a",
        "service": ServiceSpec("constant", 1, {"value": 0.010}),
        "queue_limit": 100,
        "network_latency_s": 0.0,
        "heartbeat_interval_s": 15.0,
        "symbols": ("tBTCUSD",),
        "api_keys": {KEY: SECRET},
    }
    base.update(kw)
    return NodeSpec(**base)


def auth_message(nonce: int = 1) -> str:
    payload = f"AUTH{nonce}"
    sig = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha384).hexdigest()
    return json.dumps({"event": "auth", "apiKey": KEY, "authNonce": nonce, "authPayload": payload, "authSig": sig})


def order_message(cid: int) -> str:
    return json.dumps(
        [0, "on", None, {"cid": cid, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "price": "30000"}]
    )


def is_order_reply(m: Any) -> bool:
    return isinstance(m, list) and len(m) >= 3 and m[0] == 0 and m[1] == "n" and m[2][1] == "on-req"


def reply_status(m: Any) -> str:
    return str(m[2][6])


def reply_cid(m: Any) -> int:
    return int(m[2][4][2])


async def connected(node: ExchangeNode) -> tuple[Any, MemoryChannel]:
    ch = MemoryChannel()
    conn = node.connect(ch)
    conn.receive(auth_message())
    await asyncio.sleep(0.001)
    return conn, ch


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


def _reference_note(session: Any, o: dict[str, Any], now: float, *, ok: bool, code: Any, text: str, oid: int) -> str:
    """The notification as a 32-field list through json (the original implementation): the oracle."""
    from simulator.bitfinex import _EVENT_DUMPS, ERR_UNKNOWN_EVENT, _number

    cid = o.get("cid") if type(o.get("cid")) is int else None
    gid = o.get("gid") if type(o.get("gid")) is int else None
    symbol = o.get("symbol") if isinstance(o.get("symbol"), str) and len(o["symbol"]) <= 32 else None
    order_type = o.get("type") if isinstance(o.get("type"), str) and len(o["type"]) <= 64 else None
    amount, price = _number(o.get("amount")), _number(o.get("price"))
    flags = o.get("flags") if type(o.get("flags")) is int and 0 <= o["flags"] < 2**31 else 0
    mts = session.market.mts(now)
    stamp = mts if ok else None
    order = [
        oid if ok else None, gid, cid, symbol, stamp, stamp, amount, amount, order_type, None,
        None, None, flags, "ACTIVE" if ok else None, None, None, price or 0, 0, 0, 0,
        None, None, None, 0, 1 if o.get("hidden") in (1, True) else 0, None, None, None, "API>BFX", None,
        None, None,
    ]  # fmt: skip
    if ok:
        side = "buy" if (amount or 0) > 0 else "sell"
        base = (symbol or "t???")[1:4] if symbol and ":" not in symbol else (symbol or "t?:").split(":")[0][1:]
        text = text or f"Submitting {(order_type or '').lower()} {side} order for {abs(amount or 0)} {base}."
    else:
        text = text or session.order_error_text(code or ERR_UNKNOWN_EVENT)
    note = [mts, "on-req", None, None, order, code, "SUCCESS" if ok else "ERROR", text]
    return '"n",' + _EVENT_DUMPS(note)


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=2),
)
_any_fields = st.dictionaries(
    st.sampled_from(["cid", "gid", "symbol", "type", "amount", "price", "flags", "hidden", "meta"]), _scalar
)
_text = st.text(max_size=12)
_common_fields = st.fixed_dictionaries(
    {
        "type": st.one_of(_text, st.sampled_from(["EXCHANGE LIMIT", "EXCHANGE MARKET", "x" * 70])),
        "symbol": st.one_of(_text, st.sampled_from(["tBTCUSD", "tTEST:USD", "t" * 40])),
        "amount": st.one_of(_text, st.sampled_from(["0.1", "-2", "1e400", "nan", "0"])),
        "price": st.one_of(_text, st.sampled_from(["1000", "-1", "0"])),
        "cid": st.integers(-5, 2**60),
    }
)


_valid_fields = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["EXCHANGE LIMIT", "EXCHANGE MARKET", "LIMIT"]),
        "symbol": st.just("tBTCUSD"),
        "amount": st.sampled_from(["0.1", "-2", "3.5e-3"]),
        "price": st.sampled_from(["1000", "0.5"]),
        "cid": st.integers(0, 2**53 - 1),
    }
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(_any_fields, _common_fields, _valid_fields),
            st.booleans(),
            st.one_of(st.none(), st.integers(0, 30000)),
            st.sampled_from(["", "boom \u00e9"]),
            st.floats(0, 1e6),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_order_notifications_are_the_json_of_the_reference_list(calls: list[Any]) -> None:
    from simulator.bitfinex import ExchangeSession, Order
    from simulator.market import MarketFeed

    session = ExchangeSession(market=MarketFeed(("tBTCUSD",), __import__("numpy").random.default_rng(1)))
    # flags 0: every frame is "[0," + payload + "]" (tests/test_bitfinex.py covers the flags' tails)
    for fields, ok, code, text, now in calls:  # one session: later calls hit the per-shape cache
        oid = session.market._order_id + 1
        got = session._notification(fields, now, ok=ok, code=code, text=text).text
        assert got == "[0," + _reference_note(session, fields, now, ok=ok, code=code, text=text, oid=oid) + "]"
        if type(fields.get("cid")) is int and 0 <= fields["cid"] < 2**53:
            assert session._order_problem(fields) == session._fields_problem(fields)
        # the order path proper: accepted orders carry their shape to order_done
        session.authenticated = True
        [action] = session._order([0, "on", None, fields], now)
        if isinstance(action, Order):
            oid = session.market._order_id + 1
            [sent, new] = session.order_done(action, now, ok=True)
            accepted = action.request[3]  # the fields, with the cid the exchange gave an order that had none
            note = _reference_note(session, accepted, now, ok=True, code=None, text="", oid=oid)
            assert sent.text == "[0," + note + "]"
            assert new.text == '[0,"on",' + json.dumps(json.loads(sent.text)[2][4], separators=(",", ":")) + "]"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
).map(json.dumps)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=30), _json_values),
    st.sampled_from(["", " ", "\n", "x", "\ufeff", "]", " 1"]),
    st.sampled_from(["", " ", "\ufeff", "\t"]),
)
def test_frames_parse_exactly_as_json_loads(body: str, tail: str, head: str) -> None:
    # The exchange's decoder gives json.loads's value and refuses what json refuses; only an integer beyond
    # 64 bits reads as a float (orjson)
    from json_rfc import int_within_64_bits

    from simulator.order_text import loads as _loads

    text = head + body + tail

    def outcome(parse: Any) -> str:
        try:
            return repr(("ok", parse(text)))
        except (ValueError, RecursionError) as exc:
            return repr(("error", type(exc)))

    assert outcome(_loads) == outcome(lambda t: json.loads(t, parse_int=int_within_64_bits))


class PairChannel(MemoryChannel):
    """A channel with the optional send_pair (as the in-memory transport's server end has)."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs = 0

    def send_pair(self, first: str | bytes, second: str | bytes) -> bool:
        self.pairs += 1
        self.send(first)
        self.send(second)
        return True


@pytest.mark.parametrize(("latency", "jitter"), [(0.0, 0.0), (0.0, 0.004), (0.02, 0.0), (0.02, 0.01)])
def test_order_answers_are_the_same_with_and_without_send_pair(latency: float, jitter: float) -> None:
    # NodeConnection._send_answer: on a plain link both frames of an order's answer go out with one send_pair()
    # when the channel has it and both are due now; otherwise frame by frame as execute() would. Same frames,
    # same times, same jitter draws, same count.
    async def main(ch: MemoryChannel) -> tuple[list[tuple[float, Any]], int]:
        node = ExchangeNode(
            spec(
                network_latency_s=latency,
                network_jitter_s=jitter,
                service=ServiceSpec("exponential", 1, {"mean": 0.005}),
            )
        )
        node.start()
        conn = node.connect(ch)
        conn.receive(auth_message())
        for cid in range(1, 40):
            await asyncio.sleep(0.002 * (cid % 4))
            conn.receive(order_message(cid))
        await asyncio.sleep(1.0)
        node.stop()
        return ch.frames, node.frames_sent

    plain, paired = MemoryChannel(), PairChannel()
    assert run_virtual(main(plain)) == run_virtual(main(paired))
    assert len(plain.find(is_order_reply)) == 39
    if latency == 0.0:
        assert paired.pairs > 0  # the one-call path ran (with jitter: when both draws came out at 0)
    elif jitter == 0.0:
        assert paired.pairs == 0  # every answer waited for the latency: the frame-by-frame path


def test_a_send_pair_that_closes_at_the_first_frame_counts_one() -> None:
    class ClosingChannel(MemoryChannel):
        conn: Any = None

        def send_pair(self, first: str | bytes, second: str | bytes) -> bool:
            self.send(first)
            self.conn.closed()  # the first frame was too big: the shell closed the connection
            return False

    async def main() -> tuple[int, int]:
        node = ExchangeNode(spec())
        node.start()
        ch = ClosingChannel()
        ch.conn = conn = node.connect(ch)
        conn.receive(auth_message())
        await asyncio.sleep(0.001)
        before = node.frames_sent
        conn.receive(order_message(1))
        await asyncio.sleep(0.1)
        node.stop()
        return node.frames_sent - before, len(ch.find(is_order_reply))

    assert run_virtual(main()) == (1, 1)


@pytest.mark.parametrize("queue_limit", [100, 3])
def test_an_order_frame_goes_the_same_way_with_and_without_the_receive_fast_path(
    monkeypatch: pytest.MonkeyPatch, queue_limit: int
) -> None:
    # NodeConnection.receive hands a frame that is exactly one accepted Order to the service model itself,
    # without execute(): same answers (rate-limit errors included), same times, same counts as execute() gives.
    async def main() -> tuple[list[tuple[float, Any]], int, int]:
        node = ExchangeNode(spec(queue_limit=queue_limit, service=ServiceSpec("exponential", 1, {"mean": 0.005})))
        node.start()
        ch = MemoryChannel()
        conn = node.connect(ch)
        conn.receive(auth_message())
        for cid in range(1, 30):
            await asyncio.sleep(0.002 * (cid % 3))
            conn.receive(order_message(cid))
            conn.receive("not json")  # and other frames, which go through execute() either way
        await asyncio.sleep(1.0)
        node.stop()
        return ch.frames, node.frames_sent, node.frames_received

    fast = run_virtual(main())
    executed = []
    real_execute = NodeConnection.execute

    def execute(self: NodeConnection, actions: Any, now: float) -> None:
        executed.extend(actions)
        real_execute(self, actions, now)

    def general_receive(self: NodeConnection, data: str | bytes) -> None:  # the fast path's general form
        self._handle_inbound(data, self.node.loop.time())

    monkeypatch.setattr(NodeConnection, "execute", execute)
    monkeypatch.setattr(NodeConnection, "receive", general_receive)
    assert run_virtual(main()) == fast
    assert sum(isinstance(a, Order) for a in executed) == 29
    replies = [m for _, m in fast[0] if '"on-req"' in m]
    assert len(replies) == 29 and any('"SUCCESS"' in m for m in replies)
    assert any('"ERROR"' in m for m in replies) == (queue_limit == 3)  # rate-limit errors where the queue is short
