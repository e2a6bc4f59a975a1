"""Bitfinex frames on the client side (wsfinal.bitfinex_frames): events, the parser, the auth message."""

from __future__ import annotations

import pytest

from wsfinal import bitfinex_frames as bfx
from wsfinal.exceptions import ProtocolViolation

# --- parsing -----------------------------------------------------------------------------------------------


def test_events_and_channel_frames_are_classified() -> None:
    info = bfx.parse({"event": "info", "version": 2, "platform": {"status": 1}})
    assert info == bfx.Info(None, "", 2, 1)
    assert bfx.parse({"event": "info", "code": 20051, "msg": "restart"}) == bfx.Info(20051, "restart", None, None)
    sub = bfx.parse({"event": "subscribed", "channel": "book", "chanId": 7, "symbol": "tBTCUSD"})
    assert isinstance(sub, bfx.Subscribed) and sub.chan_id == 7
    assert bfx.parse({"event": "unsubscribed", "status": "OK", "chanId": 7}) == bfx.Unsubscribed(7)
    assert bfx.parse([7, "hb", 12]) == bfx.Heartbeat(7, 12)
    assert bfx.parse([7, "hb"]) == bfx.Heartbeat(7, None)
    assert bfx.parse([7, "cs", -123, 13]) == bfx.Checksum(7, -123, 13)
    assert bfx.parse([7, [100.0, 1, 2.5], 14]) == bfx.ChannelData(7, [100.0, 1, 2.5], 14)
    assert bfx.parse([5, "te", [1, 2, 3, 4], 15]).kind == "te"  # type: ignore[union-attr]
    assert bfx.parse({"event": "auth", "status": "FAILED", "code": 10100, "msg": "bad"}) == bfx.Auth(
        False, 10100, "bad"
    )
    assert bfx.parse({"event": "pong", "cid": 3}) == bfx.Pong(3)
    err = bfx.parse({"event": "error", "code": 10300, "msg": "Subscription failed"})
    assert isinstance(err, bfx.ErrorEvent) and err.code == 10300


def test_order_notifications_carry_the_client_id_status_and_code() -> None:
    order = [1, None, 42, "tBTCUSD", 0, 0, 0.1, 0.1, "EXCHANGE LIMIT"]
    ok = bfx.parse([0, "n", [0, "on-req", None, None, order, None, "SUCCESS", "Submitted"], 9, 3])
    assert ok == bfx.OrderNotification("on-req", 42, True, None, "Submitted", 9)
    bad = bfx.parse([0, "n", [0, "on-req", None, None, order, 10001, "ERROR", "unknown pair"], 10])
    assert bad == bfx.OrderNotification("on-req", 42, False, 10001, "unknown pair", 10)
    other = bfx.parse([0, "n", [0, "uca", None, None, None, None, "SUCCESS", "hi"]])
    assert isinstance(other, bfx.ChannelData)  # not a request notification: plain channel-0 data


@pytest.mark.parametrize("frame", ['{"event": ', "[]", "[1]", '"text"', '["x", 1]', "\xff", b"\xff\xfe"])
def test_undecodable_or_shapeless_frames_raise_protocol_violation(frame: str | bytes) -> None:
    with pytest.raises(ProtocolViolation):
        bfx.parse(bfx.decode(frame))


def test_auth_message_signs_the_nonce() -> None:
    msg = bfx.auth_message("key", "secret", 1234)
    assert msg["authPayload"] == "AUTH1234" and msg["authNonce"] == 1234
    import hashlib
    import hmac

    assert msg["authSig"] == hmac.new(b"secret", b"AUTH1234", hashlib.sha384).hexdigest()
