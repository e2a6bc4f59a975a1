"""Pure tests of simulator.bitfinex.ExchangeSession's hot path, no sockets: client frames, market frames and
books, flags, heartbeats, the order path, determinism and fuzzing.

The control events (info, ping, conf, subscribe/unsubscribe, auth; simulator.bitfinex_events) are tested in
test_bitfinex_events.py."""

from __future__ import annotations

import json
import zlib
from typing import Any

import numpy as np
import pytest
from _exchange_session_helpers import (
    KEY,
    SECRET,
    auth_message,
    authed,
    error_of,
    frames,
    make,
    notification,
    order_message,
    send,
    signed,
    step,
    subscribe,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.bitfinex import (
    CLOSE_MESSAGE_TOO_BIG,
    ERR_AUTH_FAILED,
    ERR_PARAMS,
    ERR_RATE_LIMIT,
    ERR_UNKNOWN_EVENT,
    ERR_UNKNOWN_PAIR,
    FLAG_OB_CHECKSUM,
    FLAG_SEQ_ALL,
    FLAG_TIMESTAMP,
    Close,
    ExchangeSession,
    Order,
    Send,
)
from simulator.market import MarketFeed

# --- client frames --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", ["{not json", "", "42", '"text"', "null", "[" * 100_000, b"\xff\xfe"])
def test_malformed_or_wrong_type_frames_get_10000(frame: str | bytes) -> None:
    assert error_of(frames(make().on_message(frame, 0.0)))[0] == ERR_UNKNOWN_EVENT


def test_binary_frames_holding_json_are_accepted() -> None:
    reply = frames(make().on_message(b'{"event":"ping","cid":1}', 0.0))
    assert reply[0]["event"] == "pong" and reply[0]["cid"] == 1


def test_oversized_frame_is_closed_with_1009() -> None:
    s = make(max_frame_bytes=100)
    assert s.on_message("x" * 101, 0.0) == [Close(CLOSE_MESSAGE_TOO_BIG, "message too big")]
    assert s.closed and s.on_message('{"event":"ping"}', 0.0) == []
    # the limit counts bytes, not characters
    t = make(max_frame_bytes=100)
    assert t.on_message("é" * 51, 0.0) == [Close(CLOSE_MESSAGE_TOO_BIG, "message too big")]
    assert isinstance(make(max_frame_bytes=100).on_message("é" * 49, 0.0)[0], Send)
    assert make(max_frame_bytes=100).on_message(b"x" * 101, 0.0)[0] == Close(1009, "message too big")


def test_internal_errors_become_error_events_unless_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    s = make(strict=False)

    def boom(*_: Any) -> list[Any]:
        raise RuntimeError("bug")

    monkeypatch.setattr(s, "_ping", boom)
    assert error_of(send(s, {"event": "ping"}))[0] == ERR_UNKNOWN_EVENT
    s.strict = True
    with pytest.raises(RuntimeError):
        s.on_message('{"event":"ping"}', 0.0)


# --- market frames and books ----------------------------------------------------------------------------------------


def test_book_updates_with_checksums_keep_a_client_copy_exact() -> None:
    s = make()
    send(s, {"event": "conf", "flags": FLAG_OB_CHECKSUM})
    subscribed, snapshot, cs = subscribe(s, channel="book", symbol="tBTCUSD", len=25)
    chan = subscribed["chanId"]
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}

    def apply(level: list[Any]) -> None:
        price, count, amount = level
        side = bids if amount > 0 else asks
        if count == 0:
            del side[price]
        else:
            side[price] = amount

    def checksum() -> int:
        b = sorted(bids.items(), reverse=True)[:25]
        a = sorted(asks.items())[:25]
        parts: list[str] = []
        for i in range(25):
            for side in (b, a):
                if i < len(side):
                    parts += [repr(v) if isinstance(v, float) else str(v) for v in side[i]]
        return signed(zlib.crc32(":".join(parts).encode()))

    for level in snapshot[1]:
        apply(level)
    assert cs == [chan, "cs", checksum()]
    checked = 0
    for t in range(1, 101):
        for msg in step(s, t * 0.1):
            if msg[0] != chan:
                continue
            if msg[1] == "cs":
                assert msg[2] == checksum()
                checked += 1
            else:
                apply(msg[1])
    assert checked > 10


def test_events_before_the_subscription_are_not_applied_twice() -> None:
    s = make()
    events = s.market.advance(1.0)  # generated, not yet delivered
    subscribed, _ = subscribe(s, 1.0, channel="book", symbol="tBTCUSD")
    assert frames(s.on_market(events, 1.0)) == []
    later = step(s, 2.0)
    assert any(m[0] == subscribed["chanId"] for m in later)


def test_two_sessions_receive_the_same_payloads() -> None:
    a = make()
    b = ExchangeSession(market=a.market, strict=True)
    subscribe(b, channel="ticker", symbol="tETHUSD")  # b's channel ids differ from a's
    ca = subscribe(a, channel="book", symbol="tBTCUSD")[0]["chanId"]
    cb = subscribe(b, channel="book", symbol="tBTCUSD")[0]["chanId"]
    events = a.market.advance(3.0)
    fa = [m[1:] for m in frames(a.on_market(events, 3.0)) if m[0] == ca]
    fb = [m[1:] for m in frames(b.on_market(events, 3.0)) if m[0] == cb]
    assert fa and fa == fb


def test_f1_books_arrive_as_periodic_snapshots_with_checksums() -> None:
    s = make()
    send(s, {"event": "conf", "flags": FLAG_OB_CHECKSUM})
    chan = subscribe(s, channel="book", symbol="tBTCUSD", freq="F1")[0]["chanId"]
    msgs = [m for m in step(s, 6.0) if m[0] == chan]
    snapshots = [m for m in msgs if m[1] != "cs"]
    assert 2 <= len(snapshots) <= 4
    assert all(isinstance(m[1][0], list) for m in snapshots)  # whole books, not level updates
    assert len([m for m in msgs if m[1] == "cs"]) == len(snapshots)


# --- flags ----------------------------------------------------------------------------------------------------------


def test_seq_all_numbers_every_array_message_consecutively() -> None:
    s = make(heartbeat_interval_s=1.0)
    send(s, {"event": "conf", "flags": FLAG_SEQ_ALL | FLAG_OB_CHECKSUM})
    out = subscribe(s, channel="book", symbol="tBTCUSD")
    out += subscribe(s, channel="trades", symbol="tETHUSD")
    for t in range(1, 31):
        out += step(s, t * 0.1)
    out += frames(s.on_tick(10.0))
    arrays = [m for m in out if isinstance(m, list)]
    assert any(m[1] == "hb" for m in arrays) and any(m[1] == "cs" for m in arrays)
    seqs = [m[-1] for m in arrays]
    assert seqs == list(range(1, len(seqs) + 1))
    assert all("seq" not in m for m in out if isinstance(m, dict))


def test_timestamp_appends_mts_last_and_after_seq() -> None:
    s = make()
    send(s, {"event": "conf", "flags": FLAG_TIMESTAMP})
    _, snap = subscribe(s, 0.5, channel="ticker", symbol="tBTCUSD")
    assert snap[-1] == s.market.mts(0.5) and len(snap) == 3
    events = s.market.advance(1.0)
    for msg, ev in zip(frames(s.on_market(events, 1.05)), [e for e in events if e.symbol == "tBTCUSD"]):
        assert msg[-1] == s.market.mts(ev.time)
    send(s, {"event": "conf", "flags": FLAG_TIMESTAMP | FLAG_SEQ_ALL})
    msg = step(s, 1.1)[0]
    assert msg[-1] == s.market.mts(1.1) and msg[-2] == 1


# --- heartbeats -----------------------------------------------------------------------------------------------------


def test_heartbeats_follow_silence_per_channel() -> None:
    quiet = MarketFeed(["tBTCUSD", "tETHUSD"], np.random.default_rng(1), trade_rate_per_s=0.0)
    s = ExchangeSession(market=quiet, heartbeat_interval_s=15.0, strict=True)
    assert s.next_deadline() is None
    chan = subscribe(s, channel="trades", symbol="tBTCUSD")[0]["chanId"]
    assert s.next_deadline() == 15.0
    assert s.on_tick(14.9) == []
    assert frames(s.on_tick(15.0)) == [[chan, "hb"]]
    assert s.next_deadline() == 30.0
    # data on a channel counts as activity
    ticker = subscribe(s, 20.0, channel="ticker", symbol="tETHUSD")[0]["chanId"]
    s.on_market(s.market.advance(25.0), 25.0)
    assert s.next_deadline() == 30.0  # no trades: the trades channel stayed silent
    beats = frames(s.on_tick(39.0))  # ticker data at 25 s: not due before 40 s
    assert [chan, "hb"] in beats and [ticker, "hb"] not in beats


def test_authenticated_connections_get_channel_zero_heartbeats() -> None:
    s = make(heartbeat_interval_s=5.0)
    send(s, auth_message(), 1.0)
    assert s.next_deadline() == 6.0
    assert frames(s.on_tick(6.0)) == [[0, "hb"]]


# --- orders ---------------------------------------------------------------------------------------------------------


def test_orders_before_auth_are_refused_with_an_error_notification() -> None:
    s = make()
    (msg,) = send(s, order_message(), 3.0)
    note = notification(msg)
    assert note[0] == s.market.mts(3.0)
    assert note[4][2] == 42 and note[4][0] is None
    assert note[5] == ERR_AUTH_FAILED and note[6] == "ERROR" and note[7]


def test_order_flow_success() -> None:
    s = authed()
    actions = s.on_message(json.dumps(order_message(cid=7, amount="-0.25", price=31000)), 4.0)
    assert len(actions) == 1 and isinstance(actions[0], Order)
    order = actions[0]
    assert order.cid == 7 and order.received_at == 4.0 and order.request[3]["cid"] == 7
    (msg, new) = frames(s.order_done(order, 4.25, ok=True))
    note = notification(msg)
    info = note[4]
    assert new == [0, "on", info]  # the order-new message follows the notification, with the same order
    assert len(info) == 32
    assert isinstance(info[0], int) and info[2] == 7 and info[3] == "tBTCUSD"
    assert info[4] == s.market.mts(4.25) and info[6] == -0.25 and info[8] == "EXCHANGE LIMIT"
    assert info[13] == "ACTIVE" and info[16] == 31000.0
    assert note[5] is None and note[6] == "SUCCESS" and "sell" in note[7]


def test_order_done_with_rate_limit_code() -> None:
    s = authed()
    (order,) = s.on_message(json.dumps(order_message()), 0.0)
    assert isinstance(order, Order)
    (msg,) = frames(s.order_done(order, 0.1, ok=False, code=ERR_RATE_LIMIT))
    note = notification(msg)
    assert note[5] == ERR_RATE_LIMIT and note[6] == "ERROR"
    assert note[7] == ExchangeSession.order_error_text(ERR_RATE_LIMIT) == "ratelimit: error"
    assert note[4][2] == 42 and note[4][0] is None
    (msg,) = frames(s.order_done(order, 0.1, ok=False, code=10001, text="custom"))
    assert notification(msg)[5:] == [10001, "ERROR", "custom"]
    assert ExchangeSession.order_error_text(99999) == "error: 99999"


def test_market_orders_need_no_price() -> None:
    s = authed()
    assert isinstance(s.on_message(json.dumps(order_message(type="MARKET", price=None)), 0.0)[0], Order)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"cid": "42"}, ERR_PARAMS),
        ({"cid": 1.5}, ERR_PARAMS),
        ({"cid": -1}, ERR_PARAMS),
        ({"cid": 2**60}, ERR_PARAMS),
        ({"type": None}, ERR_PARAMS),
        ({"symbol": "tNOPE"}, ERR_UNKNOWN_PAIR),
        ({"amount": "0"}, ERR_PARAMS),
        ({"amount": "abc"}, ERR_PARAMS),
        ({"amount": True}, ERR_PARAMS),
        ({"price": None}, ERR_PARAMS),
        ({"price": "-5"}, ERR_PARAMS),
    ],
)
def test_invalid_orders_are_refused_at_once(fields: dict[str, Any], code: int) -> None:
    s = authed()
    (msg,) = send(s, order_message(**fields))
    note = notification(msg)
    assert note[5] == code and note[6] == "ERROR"


def test_an_order_without_a_cid_gets_one_from_the_exchange() -> None:
    # bitfinex-api-py's README example sends no cid; Bitfinex accepts the order.
    s = authed()
    (order,) = s.on_message(json.dumps(order_message(cid=None)), 2.5)
    assert isinstance(order, Order) and order.cid == s.market.mts(2.5) == order.request[3]["cid"]
    (msg, new) = frames(s.order_done(order, 3.0, ok=True))
    assert notification(msg)[4][2] == order.cid == new[2][2] and notification(msg)[6] == "SUCCESS"


def test_order_without_fields_object_is_refused() -> None:
    s = authed()
    (msg,) = send(s, [0, "on", None])
    assert notification(msg)[6] == "ERROR"


def test_seq_all_on_channel_zero_carries_public_and_auth_numbers() -> None:
    s = make()
    send(s, {"event": "conf", "flags": FLAG_SEQ_ALL})
    reply = send(s, auth_message())
    assert [m[-2:] for m in reply[1:]] == [[1, 1], [2, 2], [3, 3]]
    (order,) = s.on_message(json.dumps(order_message()), 0.0)
    assert isinstance(order, Order)
    (ok, new) = frames(s.order_done(order, 0.0, ok=True))
    assert ok[-2:] == [4, 4] and new[-2:] == [5, 5]
    (err,) = frames(s.order_done(order, 0.0, ok=False, code=ERR_RATE_LIMIT))
    assert err[-1] == 6 and isinstance(err[-2], list)  # error notifications carry the public number only


@settings(max_examples=150, deadline=None)
@given(
    flags=st.sampled_from([0, FLAG_SEQ_ALL, FLAG_TIMESTAMP, FLAG_SEQ_ALL | FLAG_TIMESTAMP | FLAG_OB_CHECKSUM]),
    orders=st.lists(
        st.tuples(
            st.sampled_from([{}, {"cid": None}, {"amount": "-2"}, {"type": "MARKET", "price": None}, {"gid": 3}]),
            st.floats(0, 1e6),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_order_answer_fast_path_gives_the_general_paths_bytes(flags: int, orders: list[Any]) -> None:
    # order_done(ok=True) writes an order with a cached shape in _answer_texts(); without a shape it goes through
    # _note_texts() and _wrap(). Two sessions in the same state, one forced down the general path: same frames,
    # same sequence numbers, same order ids; order_texts() is order_done's texts.
    fast, slow = authed(), authed()
    for s in (fast, slow):
        send(s, {"event": "conf", "flags": flags})
    for fields, now in orders:
        (order,) = fast.on_message(json.dumps(order_message(**fields)), now)
        (twin,) = slow.on_message(json.dumps(order_message(**fields)), now)
        assert isinstance(order, Order) and isinstance(twin, Order)
        twin = Order(twin.cid, twin.request, twin.received_at)  # no shape: the general path
        got = fast.order_texts(order, now) if now > 5e5 else tuple(a.text for a in fast.order_done(order, now, ok=True))
        want = tuple(a.text for a in slow.order_done(twin, now, ok=True))
        assert got == want
        assert (fast._pub_seq, fast._auth_seq) == (slow._pub_seq, slow._auth_seq)
    fast.on_close(1e6)
    assert fast.order_texts(order, 1e6) is None and fast.order_done(order, 1e6, ok=True) == []


def test_order_done_accepts_an_order_built_by_the_shell() -> None:
    s = authed()
    (msg,) = frames(s.order_done(Order(cid=5, request=[0, "on", None], received_at=0.0), 1.0, ok=False))
    note = notification(msg)
    assert note[4][2] == 5 and note[5] == ERR_UNKNOWN_EVENT and note[6] == "ERROR"


def test_an_order_compares_hashes_and_prints_without_its_shape() -> None:
    # Order is a named tuple built with tuple.__new__ on the order path: the frozen dataclass's semantics stay
    s = authed()
    (order,) = s.on_message(json.dumps(order_message()), 1.0)
    assert isinstance(order, Order)
    assert order.shape is not None
    twin = Order(order.cid, order.request, order.received_at)
    assert order == twin and (order != twin) is False and twin.shape is None
    assert order != Order(order.cid + 1, order.request, order.received_at)
    assert order != Order(order.cid, order.request, 2.0) and (order == "order") is False
    assert repr(order) == f"Order(cid={order.cid!r}, request={order.request!r}, received_at=1.0)"
    assert "shape" not in repr(order)
    with pytest.raises(TypeError):  # the request is a list: unhashable, as with the dataclass
        hash(order)
    assert hash(Order(5, (0, "on"), 1.0, "a")) == hash(Order(5, (0, "on"), 1.0, "b"))  # type: ignore[arg-type]


# --- determinism and fuzzing ----------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_session_stream() -> None:
    def run(seed: int) -> list[str]:
        s = make(seed)
        send(s, {"event": "conf", "flags": FLAG_SEQ_ALL | FLAG_OB_CHECKSUM | FLAG_TIMESTAMP})
        out = s.on_message('{"event":"subscribe","channel":"book","symbol":"tBTCUSD"}', 0.0)
        out += s.on_message('{"event":"subscribe","channel":"trades","symbol":"tETHUSD"}', 0.0)
        for t in range(1, 51):
            out += s.on_market(s.market.advance(t * 0.2), t * 0.2)
        return [a.text for a in out if isinstance(a, Send) and isinstance(a.text, str)]

    assert run(3) == run(3)
    assert run(3) != run(4)


_FUZZ_FEED = MarketFeed(["tBTCUSD", "tETHUSD"], np.random.default_rng(0))


def fuzz_session(login: bool = True) -> ExchangeSession:
    """A session on a shared feed (building a feed per example would dominate the fuzzing time)."""
    s = ExchangeSession(market=_FUZZ_FEED, api_keys={KEY: SECRET}, strict=True)
    if login:
        assert send(s, auth_message())[0]["status"] == "OK"
    return s


def _check_actions(actions: list[Any]) -> None:
    assert isinstance(actions, list)
    for a in actions:
        assert isinstance(a, Send | Close | Order)
        if isinstance(a, Send):
            assert isinstance(a.text, str)
            a.text.encode("utf-8")  # strict: a frame must be valid UTF-8
            json.loads(a.text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_on_message_never_raises_on_arbitrary_frames(data: str | bytes) -> None:
    s = fuzz_session()
    _check_actions(s.on_message(data, 0.0))
    s.on_close(0.0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

fields = st.sampled_from(
    ["event", "channel", "symbol", "pair", "prec", "freq", "len", "subId", "chanId", "cid", "flags",
     "apiKey", "authSig", "authPayload", "authNonce"]
)  # fmt: skip

events = st.sampled_from(["ping", "conf", "subscribe", "unsubscribe", "auth", "other"])


@settings(max_examples=200, deadline=None)
@given(events, st.dictionaries(fields, json_values, max_size=6), st.booleans())
def test_on_message_never_raises_on_structured_events(event: str, body: dict[str, Any], login: bool) -> None:
    s = fuzz_session(login)
    body["event"] = event
    _check_actions(s.on_message(json.dumps(body), 0.0))
    _check_actions(s.on_market(_FUZZ_FEED.advance(_FUZZ_FEED.next_time()), 0.0))
    s.on_close(0.0)
    assert _FUZZ_FEED.retained_keys() == {}


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["cid", "gid", "type", "symbol", "amount", "price", "flags", "hidden"]), json_values
    )
)
def test_order_inputs_never_raise(order: dict[str, Any]) -> None:
    s = fuzz_session()
    actions = s.on_message(json.dumps([0, "on", None, order]), 0.0)
    _check_actions(actions)
    for a in actions:
        if isinstance(a, Order):
            _check_actions(s.order_done(a, 1.0, ok=True))
            _check_actions(s.order_done(a, 1.0, ok=False, code=ERR_RATE_LIMIT))


def test_echoed_lone_surrogates_are_escaped() -> None:
    s = make()
    actions = s.on_message('{"event":"subscribe","channel":"ticker","symbol":"\\ud800"}', 0.0)
    _check_actions(actions)
    assert error_of(frames(actions))[0] == ERR_UNKNOWN_PAIR
