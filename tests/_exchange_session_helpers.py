"""Shared by the pure tests of the exchange session (test_bitfinex.py, test_bitfinex_events.py): a session on a
seeded market feed, and helpers that send it JSON, decode what it returns, and pick replies apart."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from typing import Any

import numpy as np

from simulator.bitfinex import ExchangeSession, Send
from simulator.market import MarketFeed

KEY, SECRET = "demo-key", "demo-secret"


def make(seed: int = 7, **kw: Any) -> ExchangeSession:
    market = MarketFeed(["tBTCUSD", "tETHUSD"], np.random.default_rng(seed))
    kw.setdefault("strict", True)
    return ExchangeSession(market=market, api_keys={KEY: SECRET}, **kw)


def frames(actions: list[Any]) -> list[Any]:
    assert all(isinstance(a, Send) for a in actions), actions
    return [json.loads(a.text) for a in actions]


def send(s: ExchangeSession, obj: Any, now: float = 0.0) -> list[Any]:
    return frames(s.on_message(json.dumps(obj), now))


def subscribe(s: ExchangeSession, now: float = 0.0, **fields: Any) -> list[Any]:
    return send(s, {"event": "subscribe", **fields}, now)


def step(s: ExchangeSession, until: float) -> list[Any]:
    return frames(s.on_market(s.market.advance(until), until))


def auth_message(key: str = KEY, secret: str = SECRET, nonce: int = 1_700_000_000_000) -> dict[str, Any]:
    payload = f"AUTH{nonce}"
    sig = hmac.new(secret.encode(), payload.encode(), hashlib.sha384).hexdigest()
    return {"event": "auth", "apiKey": key, "authSig": sig, "authNonce": nonce, "authPayload": payload}


def order_message(**fields: Any) -> list[Any]:
    order = {"cid": 42, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.5", "price": "30000"}
    order.update(fields)
    return [0, "on", None, {k: v for k, v in order.items() if v is not None}]


def authed(**kw: Any) -> ExchangeSession:
    s = make(**kw)
    assert send(s, auth_message())[0]["status"] == "OK"
    return s


def signed(value: int) -> int:
    return struct.unpack("<i", struct.pack("<I", value))[0]


def error_of(reply: list[Any]) -> tuple[int, str]:
    (msg,) = reply
    assert msg["event"] == "error" and isinstance(msg["msg"], str)
    return msg["code"], msg["msg"]


def notification(msg: list[Any]) -> list[Any]:
    assert msg[0] == 0 and msg[1] == "n"
    note = msg[2]
    assert note[1] == "on-req" and len(note) == 8
    return note
