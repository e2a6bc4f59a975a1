"""Pure tests of the exchange session's control events (simulator.bitfinex_events), no sockets: info on open and
on request, ping, conf, subscriptions with their snapshots and errors, auth."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from _exchange_session_helpers import (
    SECRET,
    auth_message,
    authed,
    error_of,
    frames,
    make,
    notification,
    order_message,
    send,
    step,
    subscribe,
)

from simulator.bitfinex import (
    ERR_AUTH_FAILED,
    ERR_SUB_DUP,
    ERR_SUB_FAILED,
    ERR_SUB_LIMIT,
    ERR_SUB_UNKNOWN_CHANNEL,
    ERR_UNKNOWN_EVENT,
    ERR_UNKNOWN_PAIR,
    ERR_UNSUB_FAILED,
    ERR_UNSUB_NOT_SUBSCRIBED,
    FLAG_OB_CHECKSUM,
    FLAG_SEQ_ALL,
    FLAG_TIMESTAMP,
    INFO_MAINTENANCE_END,
    INFO_MAINTENANCE_START,
    INFO_RECONNECT,
    Order,
    SessionUsageError,
)

# --- events ---------------------------------------------------------------------------------------------------------


def test_on_open_sends_the_info_event() -> None:
    s = make(platform_status=0, server_id="node-a")
    assert frames(s.on_open(0.0)) == [{"event": "info", "version": 2, "serverId": "node-a", "platform": {"status": 0}}]


def test_ping_pong_echoes_cid_and_stamps_time() -> None:
    s = make()
    assert send(s, {"event": "ping", "cid": 1234}, 2.5) == [{"event": "pong", "ts": s.market.mts(2.5), "cid": 1234}]
    assert send(s, {"event": "ping"}, 0.0) == [{"event": "pong", "ts": s.market.mts(0.0)}]


def test_conf_sets_flags_or_fails() -> None:
    s = make()
    flags = FLAG_TIMESTAMP | FLAG_SEQ_ALL | FLAG_OB_CHECKSUM
    assert send(s, {"event": "conf", "flags": flags}) == [{"event": "conf", "status": "OK", "flags": flags}]
    assert s.flags == flags
    for bad in ["65536", -1, True, None, 2**40]:
        reply = send(s, {"event": "conf", "flags": bad})
        assert reply[0]["event"] == "conf" and reply[0]["status"] == "FAILED"
    assert s.flags == flags


@pytest.mark.parametrize(
    "frame",
    ['{"event":"nope"}', '{"foo":1}', '{"event":5}', "[1,2,3]", '[0,"oc",null,{}]', "[]"],
)
def test_unknown_events_get_10000(frame: str) -> None:
    assert error_of(frames(make().on_message(frame, 0.0)))[0] == ERR_UNKNOWN_EVENT


def test_info_codes_and_maintenance_refuses_orders() -> None:
    s = authed()
    for code in (INFO_RECONNECT, INFO_MAINTENANCE_START):
        (msg,) = frames(s.info(code, 0.0))
        assert msg["event"] == "info" and msg["code"] == code and msg["msg"]
    (msg,) = send(s, order_message())
    assert notification(msg)[5] == INFO_MAINTENANCE_START
    (msg,) = frames(s.info(INFO_MAINTENANCE_END, 1.0))
    assert msg["code"] == INFO_MAINTENANCE_END
    assert isinstance(s.on_message(json.dumps(order_message()), 1.0)[0], Order)
    with pytest.raises(SessionUsageError):
        s.info(12345, 0.0)


# --- subscriptions --------------------------------------------------------------------------------------------------


def test_subscribe_ticker_replies_and_sends_the_current_ticker() -> None:
    s = make()
    subscribed, snapshot = subscribe(s, channel="ticker", symbol="tBTCUSD", subId="t1")
    assert subscribed == {
        "event": "subscribed",
        "channel": "ticker",
        "chanId": subscribed["chanId"],
        "symbol": "tBTCUSD",
        "subId": "t1",
        "pair": "BTCUSD",
    }
    assert snapshot[0] == subscribed["chanId"] and len(snapshot[1]) == 10
    updates = step(s, 1.0)
    assert updates and all(u[0] == subscribed["chanId"] and len(u[1]) == 10 for u in updates)


def test_subscribe_trades_by_pair_gets_snapshot_then_te_and_tu() -> None:
    s = make()
    s.market.advance(20.0)  # some history
    subscribed, snapshot = subscribe(s, 20.0, channel="trades", pair="BTCUSD")
    chan = subscribed["chanId"]
    assert subscribed["symbol"] == "tBTCUSD"
    assert snapshot[0] == chan and isinstance(snapshot[1], list) and snapshot[1]
    assert all(len(t) == 4 for t in snapshot[1])
    kinds = [m[1] for m in step(s, 40.0) if m[0] == chan]
    assert "te" in kinds and "tu" in kinds


def test_subscribe_book_echoes_parameters_and_sends_a_snapshot() -> None:
    s = make()
    subscribed, snapshot = subscribe(s, channel="book", symbol="tETHUSD", prec="P1", freq="F0", len="100", subId=9)
    assert subscribed == {
        "event": "subscribed",
        "channel": "book",
        "chanId": subscribed["chanId"],
        "symbol": "tETHUSD",
        "prec": "P1",
        "freq": "F0",
        "len": "100",
        "subId": 9,
        "pair": "ETHUSD",
    }
    levels = snapshot[1]
    bids = [lv for lv in levels if lv[2] > 0]
    asks = [lv for lv in levels if lv[2] < 0]
    assert levels == bids + asks  # bids first, then asks
    assert 0 < len(bids) <= 100 and 0 < len(asks) <= 100
    assert max(b[0] for b in bids) < min(a[0] for a in asks)


def test_book_defaults_are_p0_f0_25() -> None:
    s = make()
    subscribed, _ = subscribe(s, channel="book", symbol="tBTCUSD")
    assert (subscribed["prec"], subscribed["freq"], subscribed["len"]) == ("P0", "F0", "25")


def test_unsubscribe_stops_the_channel_and_releases_the_view() -> None:
    s = make()
    chan = subscribe(s, channel="book", symbol="tBTCUSD")[0]["chanId"]
    assert s.market.retained_keys() == {"book:tBTCUSD:P0:F0:25": 1}
    assert send(s, {"event": "unsubscribe", "chanId": chan}) == [
        {"event": "unsubscribed", "status": "OK", "chanId": chan}
    ]
    assert s.market.retained_keys() == {}
    assert step(s, 2.0) == []
    again = subscribe(s, channel="book", symbol="tBTCUSD")[0]["chanId"]
    assert again != chan


def test_on_close_releases_everything_and_silences_the_session() -> None:
    s = make()
    subscribe(s, channel="book", symbol="tBTCUSD")
    subscribe(s, channel="book", symbol="tETHUSD", prec="P2")
    s.on_close(1.0)
    s.on_close(1.0)
    assert s.market.retained_keys() == {}
    assert s.on_message('{"event":"ping"}', 2.0) == []
    assert s.on_tick(100.0) == [] and s.next_deadline() is None
    assert s.on_market(s.market.advance(3.0), 3.0) == []


# --- subscription errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"channel": "ticker", "symbol": "tFOOBAR"}, ERR_UNKNOWN_PAIR),
        ({"channel": "book", "pair": "FOOBAR"}, ERR_UNKNOWN_PAIR),
        ({"channel": "ticker"}, ERR_SUB_FAILED),
        ({"channel": "ticker", "symbol": 5}, ERR_SUB_FAILED),
        ({"symbol": "tBTCUSD"}, ERR_SUB_FAILED),
        ({"channel": "book", "symbol": "tBTCUSD", "prec": "R0"}, ERR_SUB_FAILED),
        ({"channel": "book", "symbol": "tBTCUSD", "len": 30}, ERR_SUB_FAILED),
        ({"channel": "book", "symbol": "tBTCUSD", "len": True}, ERR_SUB_FAILED),
        ({"channel": "book", "symbol": "tBTCUSD", "freq": "F9"}, ERR_SUB_FAILED),
        ({"channel": "candles", "key": "trade:1m:tBTCUSD"}, ERR_SUB_UNKNOWN_CHANNEL),
    ],
)
def test_subscribe_errors_carry_code_and_request_fields(fields: dict[str, Any], code: int) -> None:
    s = make()
    (reply,) = subscribe(s, **fields)
    assert reply["code"] == code and reply["event"] == "error"
    for k in ("channel", "symbol", "pair", "prec", "freq", "len"):
        if k in fields and isinstance(fields[k], str):
            assert reply[k] == fields[k]
    assert s.subscription_count == 0 and s.market.retained_keys() == {}


def test_duplicate_subscription_gets_10301() -> None:
    s = make()
    subscribe(s, channel="book", symbol="tBTCUSD", prec="P0", len=25)
    code, text = error_of(subscribe(s, channel="book", symbol="tBTCUSD", prec="P0", len="25"))
    assert (code, text) == (ERR_SUB_DUP, "subscribe: dup")
    # another precision of the same book is a different channel
    assert subscribe(s, channel="book", symbol="tBTCUSD", prec="P1")[0]["event"] == "subscribed"


def test_the_26th_channel_gets_10305() -> None:
    s = make()
    shapes = [(p, f, n) for p in ("P0", "P1", "P2", "P3", "P4") for f in ("F0", "F1") for n in (1, 25, 100)]
    for prec, freq, length in shapes[:25]:
        reply = subscribe(s, channel="book", symbol="tBTCUSD", prec=prec, freq=freq, len=length)
        assert reply[0]["event"] == "subscribed"
    prec, freq, length = shapes[25]
    code, _ = error_of(subscribe(s, channel="book", symbol="tBTCUSD", prec=prec, freq=freq, len=length))
    assert code == ERR_SUB_LIMIT and s.subscription_count == 25
    send(s, {"event": "unsubscribe", "chanId": s.channel_ids()[0]})
    assert subscribe(s, channel="ticker", symbol="tBTCUSD")[0]["event"] == "subscribed"


def test_subscription_limit_is_configurable() -> None:
    s = make(max_subscriptions=1)
    subscribe(s, channel="ticker", symbol="tBTCUSD")
    assert error_of(subscribe(s, channel="ticker", symbol="tETHUSD"))[0] == ERR_SUB_LIMIT


@pytest.mark.parametrize(
    ("chan", "code"), [("1", ERR_UNSUB_FAILED), (None, ERR_UNSUB_FAILED), (999, ERR_UNSUB_NOT_SUBSCRIBED)]
)
def test_unsubscribe_errors(chan: Any, code: int) -> None:
    s = make()
    subscribe(s, channel="ticker", symbol="tBTCUSD")
    msg: dict[str, Any] = {"event": "unsubscribe"}
    if chan is not None:
        msg["chanId"] = chan
    assert error_of(send(s, msg))[0] == code


# --- auth -----------------------------------------------------------------------------------------------------------


def test_auth_success_with_a_real_hmac() -> None:
    s = make()
    reply = send(s, auth_message())
    ok = reply[0]
    assert ok["event"] == "auth" and ok["status"] == "OK" and ok["chanId"] == 0
    assert isinstance(ok["userId"], int)
    assert [m[1] for m in reply[1:]] == ["ps", "ws", "os"] and all(m[0] == 0 for m in reply[1:])
    assert s.authenticated


def test_auth_accepts_the_payload_of_the_official_node_library() -> None:
    s = make()
    msg = auth_message()
    msg["authPayload"] = "AUTH17000000000001700000000000"  # bfx-api-node-util signs AUTH<nonce><nonce>
    msg["authSig"] = hmac.new(SECRET.encode(), msg["authPayload"].encode(), hashlib.sha384).hexdigest()
    assert send(s, msg)[0]["status"] == "OK"


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"authSig": "0" * 96}, "apikey: digest invalid"),
        ({"apiKey": "other"}, "apikey: invalid"),
        ({"apiKey": None}, "apikey: invalid"),
        ({"authPayload": "NOPE1"}, "apikey: digest invalid"),
        ({"authSig": 5}, "apikey: digest invalid"),
        ({"authSig": "\ud800"}, "apikey: digest invalid"),
    ],
)
def test_auth_failure(change: dict[str, Any], text: str) -> None:
    s = make()
    msg = auth_message()
    msg.update(change)
    reply = frames(s.on_message(json.dumps(msg), 0.0))
    assert reply == [{"event": "auth", "status": "FAILED", "chanId": 0, "msg": text, "code": ERR_AUTH_FAILED}]
    assert not s.authenticated


def test_wrong_secret_fails_and_second_auth_is_a_dup() -> None:
    assert send(make(), auth_message(secret="wrong"))[0]["status"] == "FAILED"
    s = authed()
    assert send(s, auth_message())[0]["msg"] == "auth: dup"
