"""One client connection to the fake exchange, speaking a subset of the Bitfinex WebSocket API v2.

:class:`ExchangeSession` is a pure protocol core (no sockets, no clock, no I/O): the shell feeds it what
happened together with the current loop time, and executes the actions it returns, in order:

* :class:`Send` - send ``text`` as one frame (text frame for ``str``, binary for ``bytes``);
* :class:`Close` - start the closing handshake with ``code`` / ``reason``; then stop calling the session;
* :class:`Order` - an authenticated order: pass it through the node's service model, and when the model
  finishes it call :meth:`ExchangeSession.order_done` and execute what that returns.

How a shell must drive one session (the live server, the virtual transport, the tests)::

    s = ExchangeSession(market=feed, api_keys={"key": "secret"})
    run(s.on_open(now))                          # once, right after the handshake
    run(s.on_message(frame, now))                # each client frame (str or bytes); never raises
    run(s.on_market(events, now))                # events = feed.advance(now), delivered to every session
    run(s.on_tick(now))                          # whenever now >= s.next_deadline() (None: nothing to do)
    run(s.order_done(order, now, ok=True))       # when the service model finished an Order
    run(s.info(INFO_RECONNECT, now))             # a fault asks for 20051 / 20060 / 20061
    s.on_close(now)                              # once, when the connection is gone (releases book views)

After any call, re-read :meth:`ExchangeSession.next_deadline`: it moves whenever something is sent.
Queue-full and other service errors are ``order_done(order, now, ok=False, code=ERR_RATE_LIMIT)``;
:meth:`ExchangeSession.order_error_text` gives the text that goes with a code.

Flags (``conf``): TIMESTAMP appends the message time in ms as the last element of every array message;
SEQ_ALL appends a per-connection public sequence number to every array message, and on channel 0 a
second, authenticated sequence number after it (error notifications carry the public one only, as the
Bitfinex client libraries expect); OB_CHECKSUM sends ``[chanId,"cs",checksum]`` after a book snapshot and
after each event's book updates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from wsfinal.exceptions import UsageError

from .book import FREQUENCIES, LENGTHS, PRECISIONS
from .market import MarketEvent, MarketFeed, channel_key
from .order_text import ORDER_CACHE_SIZE as _ORDER_CACHE_SIZE
from .order_text import OrderShape as _OrderShape
from .order_text import note_parts as _note_parts
from .order_text import number as _number
from .order_text import order_shape as _order_shape

# ----------------------------------------------------------------------------- protocol constants

API_VERSION = 2

FLAG_DEC_S = 8  # accepted, not implemented: decimals stay numbers
FLAG_TIME_S = 32  # accepted, not implemented: timestamps stay numbers
FLAG_TIMESTAMP = 32768
FLAG_SEQ_ALL = 65536
FLAG_OB_CHECKSUM = 131072

ERR_UNKNOWN_EVENT = 10000  # also: malformed JSON, wrong message shape
ERR_UNKNOWN_PAIR = 10001
ERR_PARAMS = 10020  # order input with a missing or invalid field
ERR_AUTH_FAILED = 10100
ERR_SUB_FAILED = 10300
ERR_SUB_DUP = 10301
ERR_SUB_UNKNOWN_CHANNEL = 10302
ERR_SUB_LIMIT = 10305
ERR_UNSUB_FAILED = 10400
ERR_UNSUB_NOT_SUBSCRIBED = 10401
ERR_RATE_LIMIT = 11010  # Bitfinex's "ratelimit: error"; the node uses it when its queue is full

INFO_RECONNECT = 20051
INFO_MAINTENANCE_START = 20060
INFO_MAINTENANCE_END = 20061

INFO_TEXTS: dict[int, str] = {
    INFO_RECONNECT: "Stopping. Please try to reconnect",
    INFO_MAINTENANCE_START: (
        "Entering in Maintenance mode. Please pause any activity and resume after receiving the info "
        "message 20061 (it should take 120 seconds at most)."
    ),
    INFO_MAINTENANCE_END: (
        "Maintenance ended. You can resume normal activity. It is advised to unsubscribe/subscribe again all channels."
    ),
}

#: Texts of ERROR notifications by code (order_done with ok=False and no text uses these).
ORDER_ERROR_TEXTS: dict[int, str] = {
    ERR_UNKNOWN_EVENT: "error: unknown",
    ERR_UNKNOWN_PAIR: "symbol: invalid",
    ERR_PARAMS: "Invalid order: parameters",
    ERR_AUTH_FAILED: "auth: not authenticated",
    ERR_RATE_LIMIT: "ratelimit: error",
    INFO_MAINTENANCE_START: "maintenance: orders refused",
}

CLOSE_MESSAGE_TOO_BIG = 1009
_MAX_CID = 2**53  # cids must survive a JavaScript client
# ASCII-only output: echoed client strings may hold lone surrogates, which a frame could not carry as UTF-8
#: order_text.loads's two decoders, for its inline copy in ExchangeSession.on_message
_orjson_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_json_loads = json.loads
_EVENT_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


class SessionUsageError(UsageError, ValueError):
    """The shell called the session wrongly (e.g. an info code that does not exist)."""


# ----------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``text`` to the client as one frame (``bytes``: a binary frame)."""

    text: str | bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with this WebSocket close code and reason."""

    code: int
    reason: str = ""


class Order(NamedTuple):
    """An authenticated order input ``[0,"on",null,{...}]`` waiting for the node's service model.

    A named tuple, not a frozen dataclass like the other actions: one is made per simulated request, and the
    session builds it with ``tuple.__new__`` (about 0.1 us; the frozen dataclass's ``__init__``, one
    ``object.__setattr__`` per field, about 0.9 us). Equality, hashing and repr are the dataclass's (``shape`` left
    out); as a tuple it also unpacks, indexes and orders like one, and equals a plain tuple of its four values.
    """

    cid: int
    request: list[Any]
    received_at: float
    #: What the session validated and cached for orders of this shape (its ``_OrderShape``), or None.
    shape: Any = None

    def __eq__(self, other: object) -> bool:
        if type(other) is not Order:
            return NotImplemented
        return self[:3] == other[:3]  # type: ignore[index]

    def __ne__(self, other: object) -> bool:
        if type(other) is not Order:
            return NotImplemented
        return self[:3] != other[:3]  # type: ignore[index]

    def __hash__(self) -> int:
        return hash(self[:3])

    def __repr__(self) -> str:
        return f"Order(cid={self.cid!r}, request={self.request!r}, received_at={self.received_at!r})"


#: ``Order`` from a tuple of its four fields, without the generated ``__new__``'s Python frame.
_new_order: Callable[[type[Order], tuple[Any, ...]], Order] = tuple.__new__


Action = Send | Close | Order


@dataclass(slots=True)
class _Sub:
    chan_id: int
    key: str
    channel: str
    symbol: str
    prefix: str  # '[chanId,'
    since_seq: int  # market events up to this seq are already in the snapshot
    book: bool


# ----------------------------------------------------------------------------- the session


class ExchangeSession:
    """One client connection: Bitfinex v2 protocol state, fed events, returning actions (see module doc)."""

    def __init__(
        self,
        *,
        market: MarketFeed,
        api_keys: Mapping[str, str] | None = None,
        heartbeat_interval_s: float = 15.0,
        max_subscriptions: int = 25,
        platform_status: int = 1,
        max_frame_bytes: int = 1 << 20,
        server_id: str = "wsfinal-sim-0000",
        strict: bool = False,
    ) -> None:
        self.market = market
        self.api_keys: Mapping[str, str] = api_keys or {}
        self.heartbeat_interval_s = float(heartbeat_interval_s)
        self.max_subscriptions = int(max_subscriptions)
        self.platform_status = int(platform_status)
        self.max_frame_bytes = int(max_frame_bytes)
        self.server_id = server_id
        #: re-raise internal errors instead of answering them with an error event (for tests)
        self.strict = strict
        self.flags = 0
        self.authenticated = False
        self.user_id: int | None = None
        self.maintenance = False
        self.closed = False
        self._subs: dict[int, _Sub] = {}
        self._by_key: dict[str, _Sub] = {}
        self._by_symbol: dict[str, list[_Sub]] = {}
        self._last_sent: dict[int, float] = {}  # chanId -> last time anything was sent on it
        self._next_chan_id = 1
        self._pub_seq = 0
        self._auth_seq = 0
        self._epoch_s = market.epoch_s
        self._order_cache: dict[tuple[str, str, str, str], _OrderShape] = {}  # order path: see _order_shape

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

    def on_message(self, data: str | bytes, now: float) -> list[Action]:
        """Handle one client frame. Bad input gets a Bitfinex error event; an oversized frame, Close(1009)."""
        if self.closed:
            return []
        size = len(data)
        limit = self.max_frame_bytes
        if size > limit or (size * 4 > limit and isinstance(data, str) and len(_utf8(data)) > limit):
            self.on_close(now)
            return [Close(CLOSE_MESSAGE_TOO_BIG, "message too big")]
        try:
            # Decoding and the array (order) case written here, not in a helper: this runs once per client frame.
            if type(data) is not str and isinstance(data, bytes | bytearray | memoryview):
                try:
                    data = bytes(data).decode("utf-8")
                except UnicodeDecodeError:
                    return [self._error(ERR_UNKNOWN_EVENT, "error: malformed message (not UTF-8)")]
            try:
                try:  # order_text.loads, inline (this runs once per client frame)
                    msg = _orjson_loads(data)
                except _JSONDecodeError:
                    msg = _json_loads(data)
            except (ValueError, RecursionError):
                return [self._error(ERR_UNKNOWN_EVENT, "error: malformed message (not JSON)")]
            # json gives exact lists and dicts: type() tests, cheaper than isinstance()
            kind = type(msg)
            if kind is list:
                if len(msg) >= 2 and type(msg[0]) is int and msg[0] == 0 and msg[1] == "on":
                    return self._order(msg, now)
                return [self._error(ERR_UNKNOWN_EVENT, "error: unknown input")]
            if kind is dict:
                return self._on_event(msg, now)
            return [self._error(ERR_UNKNOWN_EVENT, "error: message must be a JSON object or array")]
        except Exception:
            if self.strict:
                raise
            return [self._error(ERR_UNKNOWN_EVENT, "error: internal")]

    def on_market(self, events: Sequence[MarketEvent], now: float) -> list[Action]:
        """Frames for the market events on this session's channels (call with every batch from advance())."""
        if self.closed or not self._subs:
            return []
        out: list[Action] = []
        by_symbol = self._by_symbol
        flags = self.flags
        # Without SEQ_ALL a frame depends only on the event, the channel id and the flags: it is made once per
        # event and shared (in ev.frames) by every session with the same channel id and flags.
        shared = not flags & FLAG_SEQ_ALL
        timestamps = bool(flags & FLAG_TIMESTAMP)
        checksums = bool(flags & FLAG_OB_CHECKSUM)
        last_sent = self._last_sent
        for ev in events:
            subs = by_symbol.get(ev.symbol)
            if not subs:
                continue
            payloads = ev.payloads
            for sub in subs:
                texts = payloads.get(sub.key)
                if texts is None or ev.seq <= sub.since_seq:
                    continue
                prefix = sub.prefix
                with_cs = checksums and sub.book and sub.key in ev.checksums
                if shared:
                    frame_key = (sub.key, prefix, with_cs, timestamps)
                    sends = ev.frames.get(frame_key)
                    if sends is None:
                        if with_cs:
                            texts = (*texts, f'"cs",{ev.checksums[sub.key]}')
                        tail = f",{round((self._epoch_s + ev.time) * 1000.0)}]" if timestamps else "]"
                        sends = ev.frames[frame_key] = [Send(prefix + text + tail) for text in texts]
                    out.extend(sends)
                    last_sent[sub.chan_id] = now
                    continue
                if with_cs:
                    texts = (*texts, f'"cs",{ev.checksums[sub.key]}')
                # SEQ_ALL: _wrap() inlined, this loop runs once per frame per client
                tail = f",{round((self._epoch_s + ev.time) * 1000.0)}]" if timestamps else "]"
                seq = self._pub_seq
                for text in texts:
                    seq += 1
                    out.append(Send(f"{prefix}{text},{seq}{tail}"))
                self._pub_seq = seq
                last_sent[sub.chan_id] = now
        return out

    def on_tick(self, now: float) -> list[Action]:
        """Heartbeats ``[chanId,"hb"]`` for every channel silent for ``heartbeat_interval_s``."""
        if self.closed:
            return []
        out: list[Action] = []
        hb = self.heartbeat_interval_s
        for chan_id, last in self._last_sent.items():
            # The same expression as next_deadline(), so a tick at exactly that time always finds the work:
            # `last <= now - hb` can miss it by one rounding and a virtual-time loop would spin at `now`.
            if last + hb <= now:
                out.append(Send(self._wrap(f"[{chan_id},", '"hb"', now)))
                self._last_sent[chan_id] = now
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`on_tick` next has work (a heartbeat is due), or None when no channel is open."""
        if self.closed or not self._last_sent:
            return None
        return min(self._last_sent.values()) + self.heartbeat_interval_s

    def order_done(
        self, order: Order, now: float, *, ok: bool, code: int | None = None, text: str = ""
    ) -> list[Action]:
        """The ``n`` / ``on-req`` notification for a finished order: SUCCESS if ``ok`` (followed, as Bitfinex
        does, by the ``on`` order-new message ``[0,"on",[ORDER]]`` with the same order), else ERROR ``code``."""
        if self.closed:
            return []
        if ok and not text:
            texts = self.order_texts(order, now)
            return [] if texts is None else [Send(texts[0]), Send(texts[1])]
        request = order.request
        fields = request[3] if len(request) > 3 and isinstance(request[3], dict) else {"cid": order.cid}
        if ok:
            note, order_array = self._note_texts(fields, now, ok=True, code=None, text=text, shape=order.shape)
            return [
                Send(self._wrap("[0,", note, now, auth=True)),
                Send(self._wrap("[0,", f'"on",{order_array}', now, auth=True)),
            ]
        code = ERR_UNKNOWN_EVENT if code is None else code
        return [self._notification(fields, now, ok=False, code=code, text=text)]

    def order_texts(self, order: Order, now: float) -> tuple[str, str] | None:
        """``order_done(order, now, ok=True)`` as the texts of its two frames (the ``n`` notification, then the
        ``on`` order-new message), or None when the session is closed (order_done returns nothing then).

        For shells that send both at once (the node's plain-link path): the same texts, the same state changes.

        Runs once per simulated request, so the common case (an order whose shape the session cached when it
        accepted it) writes both frames here: _note_texts() and two _wrap() calls, inlined. Any other order goes
        through them; tests/test_bitfinex.py checks that both ways give the same bytes.
        """
        if self.closed:
            return None
        entry: _OrderShape | None = order.shape
        parts = None if entry is None else entry.success
        if parts is None:  # no shape, or its first success: the general path
            request = order.request
            fields = request[3] if len(request) > 3 and isinstance(request[3], dict) else {"cid": order.cid}
            note, order_array = self._note_texts(fields, now, ok=True, code=None, text="", shape=entry)
            return self._wrap("[0,", note, now, auth=True), self._wrap("[0,", f'"on",{order_array}', now, auth=True)
        # An order with a shape was accepted by _order: its cid is an int, the one in its fields.
        cid_text = int.__repr__(order.cid)
        mts = int.__repr__(round((self._epoch_s + now) * 1000.0))  # = market.mts(now), inlined
        gid_text, symbol_text, rest, tail = parts
        order_array = f"[{self.market.next_order_id()},{gid_text},{cid_text},{symbol_text},{mts},{mts},{rest}"
        flags = self.flags
        end = end_new = "]"
        if flags & (FLAG_SEQ_ALL | FLAG_TIMESTAMP):  # _wrap(..., auth=True) for two frames in a row
            stamp = f",{mts}]" if flags & FLAG_TIMESTAMP else "]"
            end = end_new = stamp
            if flags & FLAG_SEQ_ALL:
                pub, auth = self._pub_seq, self._auth_seq
                self._pub_seq, self._auth_seq = pub + 2, auth + 2
                end = f",{pub + 1},{auth + 1}{stamp}"
                end_new = f",{pub + 2},{auth + 2}{stamp}"
        return f'[0,"n",[{mts},"on-req",null,null,{order_array}{tail}{end}', f'[0,"on",{order_array}{end_new}'

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

    @staticmethod
    def order_error_text(code: int) -> str:
        """The text of an ERROR notification with this code (what ``order_done(ok=False)`` sends)."""
        return ORDER_ERROR_TEXTS.get(code, f"error: {code}")

    # ------------------------------------------------------------------ framing helpers

    def _event(self, obj: dict[str, Any]) -> Send:
        return Send(_EVENT_DUMPS(obj))

    def _error(self, code: int, msg: str, **fields: Any) -> Send:
        body: dict[str, Any] = {"event": "error", "msg": msg, "code": code}
        body.update(fields)
        return self._event(body)

    def _wrap(self, prefix: str, payload: str, t: float, *, auth: bool = False) -> str:
        """``prefix + payload`` closed with the sequence number(s) and timestamp the flags ask for."""
        flags = self.flags
        tail = ""
        if flags & FLAG_SEQ_ALL:
            self._pub_seq += 1
            tail = f",{self._pub_seq}"
            if auth:
                self._auth_seq += 1
                tail += f",{self._auth_seq}"
        if flags & FLAG_TIMESTAMP:
            tail += f",{round((self._epoch_s + t) * 1000.0)}"  # = market.mts(t), inlined: hot path
        return prefix + payload + tail + "]"

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

    # ------------------------------------------------------------------ authenticated path

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

    def _order(self, msg: list[Any], now: float) -> list[Action]:
        body = msg[3] if len(msg) >= 4 else None
        fields = body if type(body) is dict else {}  # msg comes from json: a dict is exactly a dict
        if not self.authenticated:
            return [self._notification(fields, now, ok=False, code=ERR_AUTH_FAILED, text="")]
        if self.maintenance:
            return [self._notification(fields, now, ok=False, code=INFO_MAINTENANCE_START, text="")]
        cid = fields.get("cid")
        if cid is None and fields is body:
            # Bitfinex takes an order without a client id (bitfinex-api-py's README example sends none) and
            # gives it one: here, as most clients do, the order's arrival time in milliseconds.
            cid = round((self._epoch_s + now) * 1000.0)
            fields = msg[3] = {**fields, "cid": cid}
        if type(cid) is not int or not 0 <= cid < _MAX_CID:
            problem: tuple[int, str] | None = (ERR_PARAMS, _BAD_CID)
            entry = None
        else:
            key = _order_shape(fields)
            # self._shape_entry(key, fields), its lookup inlined: one call less per order
            entry = None if key is None else self._order_cache.get(key) or self._shape_entry(key, fields)
            problem = self._fields_problem(fields) if entry is None else entry.problem
        if problem is not None:
            code, text = problem
            return [self._notification(fields, now, ok=False, code=code, text=text)]
        return [_new_order(Order, (cid, msg, now, entry))]  # Order(cid, msg, now, entry), quicker

    def _order_problem(self, o: dict[str, Any]) -> tuple[int, str] | None:
        """What is wrong with an order's fields (``[0,"on",null,{fields}]``), or None."""
        cid = o.get("cid")
        if type(cid) is not int or not 0 <= cid < _MAX_CID:
            return ERR_PARAMS, _BAD_CID
        shape = _order_shape(o)
        if shape is None:
            return self._fields_problem(o)
        return self._shape_entry(shape, o).problem

    def _shape_entry(self, shape: tuple[str, str, str, str], o: dict[str, Any]) -> _OrderShape:
        cache = self._order_cache
        entry = cache.get(shape)
        if entry is None:
            if len(cache) >= _ORDER_CACHE_SIZE:
                cache.clear()
            entry = cache[shape] = _OrderShape(self._fields_problem(o))
        return entry

    def _fields_problem(self, o: dict[str, Any]) -> tuple[int, str] | None:
        """What is wrong with an order's fields other than ``cid``, or None."""
        order_type = o.get("type")
        if not isinstance(order_type, str) or not order_type or len(order_type) > 64:
            return ERR_PARAMS, "Invalid order: type"
        symbol = o.get("symbol")
        if not isinstance(symbol, str) or not self.market.has_symbol(symbol):
            return ERR_UNKNOWN_PAIR, "symbol: invalid"
        amount = _number(o.get("amount"))
        if amount is None or amount == 0:
            return ERR_PARAMS, "Invalid order: amount"
        price = _number(o.get("price"))
        if "MARKET" not in order_type.upper() and (price is None or price <= 0):
            return ERR_PARAMS, "Invalid order: price"
        return None

    def _notification(
        self, o: dict[str, Any], now: float, *, ok: bool, code: int | None, text: str, shape: Any = None
    ) -> Send:
        """The ``[0,"n",[..., "on-req", ...]]`` frame for order fields ``o``."""
        note, _ = self._note_texts(o, now, ok=ok, code=code, text=text, shape=shape)
        return Send(self._wrap("[0,", note, now, auth=ok))

    def _note_texts(
        self, o: dict[str, Any], now: float, *, ok: bool, code: int | None, text: str, shape: Any = None
    ) -> tuple[str, str]:
        """The payload of the notification (after ``[0,``) and the JSON text of its order array."""
        # Written out by hand (f-strings, not json over a 32-element list): this runs once per order, and the
        # parts that do not depend on cid, time and order id are made once per order shape (see _OrderShape).
        # The text is exactly what _EVENT_DUMPS gives for the same list (tests/test_order_text.py checks it).
        cid = o.get("cid")
        cid_text = int.__repr__(cid) if type(cid) is int else "null"
        parts = None
        if ok and not text and code is None:
            entry = shape  # the _OrderShape found when the order was accepted, if any
            if entry is None:
                key = _order_shape(o)
                entry = None if key is None else self._shape_entry(key, o)
            if entry is not None:
                parts = entry.success
                if parts is None:
                    parts = entry.success = _note_parts(o, ok=True, code=None, text="")
        if parts is None:
            if not ok:
                text = text or self.order_error_text(code or ERR_UNKNOWN_EVENT)
            parts = _note_parts(o, ok=ok, code=code, text=text)
        mts = round((self._epoch_s + now) * 1000.0)  # = market.mts(now), inlined: hot path
        gid_text, symbol_text, rest, tail = parts
        if ok:
            stamp = int.__repr__(mts)
            order = f"[{self.market.next_order_id()},{gid_text},{cid_text},{symbol_text},{stamp},{stamp},{rest}"
        else:
            order = f"[null,{gid_text},{cid_text},{symbol_text},null,null,{rest}"
        return f'"n",[{mts},"on-req",null,null,{order}{tail}', order


_BAD_CID = "Invalid order: cid must be an integer in [0, 2^53)"


# ----------------------------------------------------------------------------- small helpers


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _is_short_scalar(value: object) -> bool:
    if isinstance(value, str):
        return len(value) <= 64
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, int | bool)
