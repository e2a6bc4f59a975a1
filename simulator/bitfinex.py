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

The module is in three parts, all importable from here: this hot path (client frames, market frames,
heartbeats, the order path); :mod:`simulator.bitfinex_events` (the control events: info, ping, conf,
subscriptions with their snapshots, auth, the session's end; :class:`~simulator.bitfinex_events.SessionEvents`,
a mixin of :class:`ExchangeSession`); :mod:`simulator.bitfinex_protocol` (the constants and the actions).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .bitfinex_events import SessionEvents, _Sub
from .bitfinex_protocol import (  # re-exported: the constants and actions lived here
    API_VERSION,
    CLOSE_MESSAGE_TOO_BIG,
    ERR_AUTH_FAILED,
    ERR_PARAMS,
    ERR_RATE_LIMIT,
    ERR_SUB_DUP,
    ERR_SUB_FAILED,
    ERR_SUB_LIMIT,
    ERR_SUB_UNKNOWN_CHANNEL,
    ERR_UNKNOWN_EVENT,
    ERR_UNKNOWN_PAIR,
    ERR_UNSUB_FAILED,
    ERR_UNSUB_NOT_SUBSCRIBED,
    FLAG_DEC_S,
    FLAG_OB_CHECKSUM,
    FLAG_SEQ_ALL,
    FLAG_TIME_S,
    FLAG_TIMESTAMP,
    INFO_MAINTENANCE_END,
    INFO_MAINTENANCE_START,
    INFO_RECONNECT,
    INFO_TEXTS,
    ORDER_ERROR_TEXTS,
    Action,
    Close,
    Order,
    Send,
    SessionUsageError,
)
from .bitfinex_protocol import EVENT_DUMPS as _EVENT_DUMPS  # noqa: F401 (re-exported: tests/test_order_text.py)
from .bitfinex_protocol import MAX_CID as _MAX_CID
from .bitfinex_protocol import new_order as _new_order
from .bitfinex_protocol import utf8 as _utf8
from .market import MarketEvent, MarketFeed
from .order_text import ORDER_CACHE_SIZE as _ORDER_CACHE_SIZE
from .order_text import OrderShape as _OrderShape
from .order_text import note_parts as _note_parts
from .order_text import number as _number
from .order_text import order_shape as _order_shape

__all__ = [
    "API_VERSION",
    "CLOSE_MESSAGE_TOO_BIG",
    "ERR_AUTH_FAILED",
    "ERR_PARAMS",
    "ERR_RATE_LIMIT",
    "ERR_SUB_DUP",
    "ERR_SUB_FAILED",
    "ERR_SUB_LIMIT",
    "ERR_SUB_UNKNOWN_CHANNEL",
    "ERR_UNKNOWN_EVENT",
    "ERR_UNKNOWN_PAIR",
    "ERR_UNSUB_FAILED",
    "ERR_UNSUB_NOT_SUBSCRIBED",
    "FLAG_DEC_S",
    "FLAG_OB_CHECKSUM",
    "FLAG_SEQ_ALL",
    "FLAG_TIMESTAMP",
    "FLAG_TIME_S",
    "INFO_MAINTENANCE_END",
    "INFO_MAINTENANCE_START",
    "INFO_RECONNECT",
    "INFO_TEXTS",
    "ORDER_ERROR_TEXTS",
    "Action",
    "Close",
    "ExchangeSession",
    "Order",
    "Send",
    "SessionEvents",
    "SessionUsageError",
]

#: order_text.loads's two decoders, for its inline copy in ExchangeSession.on_message
_orjson_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_json_loads = json.loads


# ----------------------------------------------------------------------------- the session


class ExchangeSession(SessionEvents):
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

    # ------------------------------------------------------------------ shell entry points

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

    @staticmethod
    def order_error_text(code: int) -> str:
        """The text of an ERROR notification with this code (what ``order_done(ok=False)`` sends)."""
        return ORDER_ERROR_TEXTS.get(code, f"error: {code}")

    # ------------------------------------------------------------------ framing helpers

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

    # ------------------------------------------------------------------ orders

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
