"""The control side of one exchange session: the ``info`` event on open and on a fault's request, ``ping``,
``conf``, subscriptions with their snapshots, ``auth``, and the session's end.

:class:`SessionEvents` is a mixin of :class:`simulator.bitfinex.ExchangeSession`, which owns the state (set in its
``__init__``) and the hot path (client frames, market frames, heartbeats, orders). Nothing here runs per request or
per market frame: a client sends these events a few times per connection. Shells call the public methods through
the session (see :mod:`simulator.bitfinex` for how to drive one).
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .bitfinex_protocol import (
    API_VERSION,
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
    INFO_MAINTENANCE_END,
    INFO_MAINTENANCE_START,
    INFO_TEXTS,
    Action,
    Send,
    SessionUsageError,
)
from .bitfinex_protocol import EVENT_DUMPS as _EVENT_DUMPS
from .bitfinex_protocol import is_short_scalar as _is_short_scalar
from .bitfinex_protocol import utf8 as _utf8
from .book import FREQUENCIES, LENGTHS, PRECISIONS
from .market import MarketFeed, channel_key


@dataclass(slots=True)
class _Sub:
    """One public subscription of the session (its channel id, market key and frame prefix)."""

    chan_id: int
    key: str
    channel: str
    symbol: str
    prefix: str  # '[chanId,'
    since_seq: int  # market events up to this seq are already in the snapshot
    book: bool


class SessionEvents:
    """Control events of :class:`~simulator.bitfinex.ExchangeSession` (a mixin: the session owns the state)."""

    # The session's state and hot-path helper these methods use, set by ExchangeSession.__init__ and declared
    # here for readers and type checkers (annotations only: no class attributes).
    market: MarketFeed
    api_keys: Mapping[str, str]
    max_subscriptions: int
    platform_status: int
    server_id: str
    flags: int
    authenticated: bool
    user_id: int | None
    maintenance: bool
    closed: bool
    _subs: dict[int, _Sub]
    _by_key: dict[str, _Sub]
    _by_symbol: dict[str, list[_Sub]]
    _last_sent: dict[int, float]
    _next_chan_id: int
    _wrap: Callable[..., str]

    # ------------------------------------------------------------------ properties

    @property
    def subscription_count(self) -> int:
        return len(self._subs)

    def channel_ids(self) -> list[int]:
        """Channel ids of the public subscriptions, in subscription order."""
        return list(self._subs)

    # ------------------------------------------------------------------ shell entry points

    def on_open(self, now: float) -> list[Action]:
        """The ``info`` event a client receives right after connecting."""
        return [
            self._event(
                {
                    "event": "info",
                    "version": API_VERSION,
                    "serverId": self.server_id,
                    "platform": {"status": self.platform_status},
                }
            )
        ]

    def info(self, code: int, now: float) -> list[Action]:
        """An info event 20051 (reconnect), 20060 (maintenance start: orders refused) or 20061 (end)."""
        if code not in INFO_TEXTS:
            raise SessionUsageError(f"info code {code!r} is not one of {sorted(INFO_TEXTS)}")
        if self.closed:
            return []
        if code == INFO_MAINTENANCE_START:
            self.maintenance = True
        elif code == INFO_MAINTENANCE_END:
            self.maintenance = False
        return [self._event({"event": "info", "code": code, "msg": INFO_TEXTS[code]})]

    def on_close(self, now: float) -> None:
        """The connection is gone: release this session's book views. Later calls return nothing."""
        if self.closed:
            return
        self.closed = True
        for sub in self._subs.values():
            self.market.release(sub.key)
        self._subs.clear()
        self._by_key.clear()
        self._by_symbol.clear()
        self._last_sent.clear()

    # ------------------------------------------------------------------ framing helpers

    def _event(self, obj: dict[str, Any]) -> Send:
        return Send(_EVENT_DUMPS(obj))

    def _error(self, code: int, msg: str, **fields: Any) -> Send:
        body: dict[str, Any] = {"event": "error", "msg": msg, "code": code}
        body.update(fields)
        return self._event(body)

    # ------------------------------------------------------------------ dispatch

    def _on_event(self, msg: dict[str, Any], now: float) -> list[Action]:
        """A JSON object from the client (``{"event": ...}``), parsed by on_message."""
        event = msg.get("event")
        if event == "ping":
            return self._ping(msg, now)
        if event == "subscribe":
            return self._subscribe(msg, now)
        if event == "unsubscribe":
            return self._unsubscribe(msg)
        if event == "conf":
            return self._conf(msg)
        if event == "auth":
            return self._auth(msg, now)
        return [self._error(ERR_UNKNOWN_EVENT, "error: unknown event")]

    def _ping(self, msg: dict[str, Any], now: float) -> list[Action]:
        reply: dict[str, Any] = {"event": "pong", "ts": self.market.mts(now)}
        if "cid" in msg and _is_short_scalar(msg["cid"]):
            reply["cid"] = msg["cid"]
        return [self._event(reply)]

    def _conf(self, msg: dict[str, Any]) -> list[Action]:
        flags = msg.get("flags")
        if type(flags) is not int or not 0 <= flags < 2**31:
            shown = flags if type(flags) is int or (isinstance(flags, str) and len(flags) <= 64) else None
            return [self._event({"event": "conf", "status": "FAILED", "flags": shown})]
        self.flags = flags
        return [self._event({"event": "conf", "status": "OK", "flags": flags})]

    # ------------------------------------------------------------------ subscriptions

    def _subscribe(self, msg: dict[str, Any], now: float) -> list[Action]:
        echo = {k: msg[k] for k in ("channel", "symbol", "pair", "prec", "freq", "len", "subId") if k in msg}
        echo = {k: v for k, v in echo.items() if _is_short_scalar(v)}

        def fail(code: int, text: str) -> list[Action]:
            return [self._error(code, text, **echo)]

        channel = msg.get("channel")
        if not isinstance(channel, str):
            return fail(ERR_SUB_FAILED, "subscribe: channel missing")
        if channel not in ("ticker", "trades", "book"):
            return fail(ERR_SUB_UNKNOWN_CHANNEL, "subscribe: unknown channel")
        symbol = msg.get("symbol")
        if symbol is None and isinstance(msg.get("pair"), str):
            pair = msg["pair"]
            symbol = pair if pair.startswith("t") else "t" + pair
        if not isinstance(symbol, str):
            return fail(ERR_SUB_FAILED, "subscribe: symbol missing")
        if not self.market.has_symbol(symbol):
            return fail(ERR_UNKNOWN_PAIR, "symbol: invalid")
        prec, freq, length = "P0", "F0", 25
        if channel == "book":
            prec = msg.get("prec", "P0")
            freq = msg.get("freq", "F0")
            raw_len = msg.get("len", 25)
            if not isinstance(prec, str) or prec not in PRECISIONS:
                return fail(ERR_SUB_FAILED, "subscribe: prec invalid")
            if not isinstance(freq, str) or freq not in FREQUENCIES:
                return fail(ERR_SUB_FAILED, "subscribe: freq invalid")
            if isinstance(raw_len, str) and raw_len.isdigit() and len(raw_len) <= 4:
                raw_len = int(raw_len)
            if type(raw_len) is not int or raw_len not in LENGTHS:
                return fail(ERR_SUB_FAILED, "subscribe: len invalid")
            length = raw_len
        key = channel_key(channel, symbol, prec, freq, length)
        if key in self._by_key:
            return fail(ERR_SUB_DUP, "subscribe: dup")
        if len(self._subs) >= self.max_subscriptions:
            return fail(ERR_SUB_LIMIT, "subscribe: limit")
        chan_id = self._next_chan_id
        self._next_chan_id += 1
        self.market.retain(key)
        sub = _Sub(chan_id, key, channel, symbol, f"[{chan_id},", self.market.last_seq, channel == "book")
        self._subs[chan_id] = sub
        self._by_key[key] = sub
        self._by_symbol.setdefault(symbol, []).append(sub)
        reply: dict[str, Any] = {"event": "subscribed", "channel": channel, "chanId": chan_id, "symbol": symbol}
        if channel == "book":
            reply.update(prec=prec, freq=freq, len=str(length))
        if "subId" in echo:
            reply["subId"] = echo["subId"]
        reply["pair"] = symbol[1:]
        out: list[Action] = [self._event(reply)]
        payload, checksum = self.market.snapshot(key)
        out.append(Send(self._wrap(sub.prefix, payload, now)))
        if checksum is not None and self.flags & FLAG_OB_CHECKSUM:
            out.append(Send(self._wrap(sub.prefix, f'"cs",{checksum}', now)))
        self._last_sent[chan_id] = now
        return out

    def _unsubscribe(self, msg: dict[str, Any]) -> list[Action]:
        chan_id = msg.get("chanId")
        if type(chan_id) is not int:
            shown = {"chanId": chan_id} if _is_short_scalar(chan_id) else {}
            return [self._error(ERR_UNSUB_FAILED, "unsubscribe: invalid", **shown)]
        sub = self._subs.pop(chan_id, None)
        if sub is None:
            return [self._error(ERR_UNSUB_NOT_SUBSCRIBED, "unsubscribe: not subscribed", chanId=chan_id)]
        del self._by_key[sub.key]
        self._by_symbol[sub.symbol].remove(sub)
        self._last_sent.pop(chan_id, None)
        self.market.release(sub.key)
        return [self._event({"event": "unsubscribed", "status": "OK", "chanId": chan_id})]

    # ------------------------------------------------------------------ auth

    def _auth(self, msg: dict[str, Any], now: float) -> list[Action]:
        def failed(text: str) -> list[Action]:
            return [
                self._event({"event": "auth", "status": "FAILED", "chanId": 0, "msg": text, "code": ERR_AUTH_FAILED})
            ]

        if self.authenticated:
            return failed("auth: dup")
        key, sig, payload = msg.get("apiKey"), msg.get("authSig"), msg.get("authPayload")
        if not isinstance(key, str) or key not in self.api_keys:
            return failed("apikey: invalid")
        if not isinstance(sig, str) or not isinstance(payload, str) or not payload.startswith("AUTH"):
            return failed("apikey: digest invalid")
        expected = hmac.new(_utf8(self.api_keys[key]), _utf8(payload), hashlib.sha384).hexdigest()
        if not hmac.compare_digest(expected.encode(), _utf8(sig.lower())):
            return failed("apikey: digest invalid")
        self.authenticated = True
        self.user_id = zlib.crc32(_utf8(key)) % 10_000_000
        out: list[Action] = [
            self._event(
                {
                    "event": "auth",
                    "status": "OK",
                    "chanId": 0,
                    "userId": self.user_id,
                    "auth_id": f"{self.server_id}-{self.user_id}",
                    "caps": {"orders": {"read": 1, "write": 1}, "wallets": {"read": 1, "write": 0}},
                }
            )
        ]
        # the account snapshots a Bitfinex client receives after auth (this simulated account is empty)
        for kind in ("ps", "ws", "os"):
            out.append(Send(self._wrap("[0,", f'"{kind}",[]', now, auth=True)))
        self._last_sent[0] = now
        return out
