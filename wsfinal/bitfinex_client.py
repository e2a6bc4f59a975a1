"""The client side of the Bitfinex WebSocket API v2, as pure functions and small state objects.

No sockets and no clock: :func:`parse` turns one decoded frame into a typed event; :class:`SequenceTracker`
checks SEQ_ALL sequence numbers; :class:`OrderBook` keeps a book channel and computes its checksum;
:class:`SubscriptionTable` remembers what the caller subscribed to, maps channel ids to subscriptions and says
what to send again after a reconnect. :mod:`wsfinal.connection` feeds them and acts on what they say.

Frames handled (``CHAN`` is a channel id, ``SEQ`` appears only with the SEQ_ALL flag)::

    {"event": "info", "version": 2, "platform": {"status": 1}}    connection opened
    {"event": "info", "code": 20051 | 20060 | 20061, "msg": ...}   reconnect / maintenance start / end
    {"event": "subscribed", "channel": ..., "chanId": CHAN, ...}   {"event": "unsubscribed", "chanId": CHAN}
    {"event": "error", "code": ..., "msg": ...}                   {"event": "conf", "status": "OK", ...}
    {"event": "auth", "status": "OK" | "FAILED", ...}              {"event": "pong", "cid": ..., "ts": ...}
    [CHAN, "hb", SEQ?]        [CHAN, "cs", CHECKSUM, SEQ?]       [CHAN, DATA, SEQ?]
    [0, "n", [MTS, "on-req", null, null, ORDER, CODE, "SUCCESS" | "ERROR", TEXT], SEQ?, AUTH_SEQ?]
"""

from __future__ import annotations

import hashlib
import hmac
import math
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from .exceptions import ProtocolViolation

INFO_RECONNECT = 20051
INFO_MAINTENANCE_START = 20060
INFO_MAINTENANCE_END = 20061
#: conf flags
FLAG_SEQ_ALL = 65536
FLAG_CHECKSUM = 131072
#: Number of levels per side that the book checksum covers.
CHECKSUM_DEPTH = 25


# --- events ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Info:
    code: int | None
    message: str = ""
    version: int | None = None
    platform_status: int | None = None


@dataclass(frozen=True, slots=True)
class Subscribed:
    chan_id: int
    channel: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    chan_id: int


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    code: int | None
    message: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Auth:
    ok: bool
    code: int | None
    message: str


@dataclass(frozen=True, slots=True)
class Pong:
    cid: int | None


@dataclass(frozen=True, slots=True)
class Conf:
    ok: bool
    flags: int | None


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event object this client does not act on."""

    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    chan_id: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class Checksum:
    chan_id: int
    value: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class ChannelData:
    chan_id: int
    payload: Any
    seq: int | None
    #: The message type for channel 0 (``"n"``, ``"os"``, ``"te"``...) or for trades (``"te"``/``"tu"``).
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class OrderNotification:
    """An ``n`` notification about a request (``on-req``, ``oc-req``...) of ours, matched by ``cid``."""

    request_type: str
    cid: int | None
    ok: bool
    code: int | None
    text: str
    seq: int | None


Event = (
    Info
    | Subscribed
    | Unsubscribed
    | ErrorEvent
    | Auth
    | Pong
    | Conf
    | OtherEvent
    | Heartbeat
    | Checksum
    | ChannelData
    | OrderNotification
)


# --- parsing -----------------------------------------------------------------------------------------------


#: The frame decoder: orjson, a strict RFC 8259 parser several times quicker than ``json.loads`` on exchange frames
#: (docs/request_path.md). Values are ``json.loads``'s for every RFC 8259 document within 64-bit integers; it refuses
#: what json accepts beyond the RFC (``NaN``, ``Infinity``, numbers that overflow a double, unpaired surrogates), and
#: reads an integer beyond 64 bits as a float. Bitfinex sends none of these. Errors are
#: :class:`orjson.JSONDecodeError`, a ``ValueError``; invalid UTF-8 is one too.
_loads: Callable[[str | bytes], Any] = orjson.loads


def decode(data: str | bytes) -> Any:
    """JSON-decode one frame. Raises :class:`ProtocolViolation` if it is not valid UTF-8 JSON."""
    try:
        return _loads(data)
    except ValueError as exc:
        raise ProtocolViolation(f"undecodable frame ({len(data)} bytes): {exc}") from None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seq(msg: list[Any], index: int) -> int | None:
    return _int_or_none(msg[index]) if len(msg) > index else None


def parse(msg: Any) -> Event:
    """Classify one decoded frame. Raises :class:`ProtocolViolation` for frames of neither known shape."""
    if isinstance(msg, dict):
        return _parse_event(msg)
    if isinstance(msg, list) and msg and _int_or_none(msg[0]) is not None and len(msg) >= 2:
        return _parse_channel(msg)
    raise ProtocolViolation(f"frame is neither an event object nor a channel array: {str(msg)[:80]!r}")


def _parse_event(msg: dict[str, Any]) -> Event:
    kind = msg.get("event")
    if kind == "info":
        platform = msg.get("platform")
        status = _int_or_none(platform.get("status")) if isinstance(platform, dict) else None
        return Info(_int_or_none(msg.get("code")), str(msg.get("msg", "")), _int_or_none(msg.get("version")), status)
    if kind == "subscribed":
        chan_id = _int_or_none(msg.get("chanId"))
        if chan_id is None:
            raise ProtocolViolation(f"subscribed event without an integer chanId: {msg!r}")
        return Subscribed(chan_id, str(msg.get("channel", "")), msg)
    if kind == "unsubscribed":
        chan_id = _int_or_none(msg.get("chanId"))
        if chan_id is None:
            raise ProtocolViolation(f"unsubscribed event without an integer chanId: {msg!r}")
        return Unsubscribed(chan_id)
    if kind == "error":
        return ErrorEvent(_int_or_none(msg.get("code")), str(msg.get("msg", "")), msg)
    if kind == "auth":
        ok = msg.get("status") == "OK"
        return Auth(ok, _int_or_none(msg.get("code")), str(msg.get("msg", "")))
    if kind == "pong":
        return Pong(_int_or_none(msg.get("cid")))
    if kind == "conf":
        return Conf(msg.get("status") == "OK", _int_or_none(msg.get("flags")))
    return OtherEvent(msg)


def _parse_channel(msg: list[Any]) -> Event:
    chan_id: int = msg[0]
    second = msg[1]
    if second == "hb":
        return Heartbeat(chan_id, _seq(msg, 2))
    if second == "cs":
        value = _int_or_none(msg[2]) if len(msg) > 2 else None
        if value is None:
            raise ProtocolViolation(f"checksum frame without an integer checksum: {str(msg)[:80]!r}")
        return Checksum(chan_id, value, _seq(msg, 3))
    if isinstance(second, str):
        payload = msg[2] if len(msg) > 2 else None
        if chan_id == 0 and second == "n":
            note = _parse_notification(payload, _seq(msg, 3))
            if note is not None:
                return note
        # channel 0 carries [0, TYPE, DATA, SEQ, AUTH_SEQ]; public typed frames [CHAN, TYPE, DATA, SEQ]
        return ChannelData(chan_id, payload, _seq(msg, 3), second)
    return ChannelData(chan_id, second, _seq(msg, 2))


def _parse_notification(payload: Any, seq: int | None) -> OrderNotification | None:
    # [MTS, TYPE, MESSAGE_ID, null, NOTIFY_INFO, CODE, STATUS, TEXT]
    if not isinstance(payload, list) or len(payload) < 7 or not isinstance(payload[1], str):
        return None
    request_type = payload[1]
    if not request_type.endswith("-req"):
        return None
    info = payload[4]
    cid = None
    if isinstance(info, list) and len(info) > 2:
        cid = _int_or_none(info[2])  # order array: [ID, GID, CID, SYMBOL, ...]
    elif isinstance(info, dict):
        cid = _int_or_none(info.get("cid"))
    status = payload[6]
    text = payload[7] if len(payload) > 7 and isinstance(payload[7], str) else ""
    return OrderNotification(request_type, cid, status == "SUCCESS", _int_or_none(payload[5]), text, seq)


# --- messages the client sends -------------------------------------------------------------------------------


def order_frame(order: Mapping[str, Any], cid: int) -> list[Any]:
    """The ``[0, "on", null, {...}]`` order input with ``cid`` set."""
    body = dict(order)
    body["cid"] = cid
    return [0, "on", None, body]


def auth_message(api_key: str, api_secret: str, nonce: int) -> dict[str, Any]:
    """The ``auth`` event: HMAC-SHA384 over ``"AUTH" + nonce`` with the secret, hex-encoded."""
    payload = f"AUTH{nonce}"
    sig = hmac.new(api_secret.encode(), payload.encode(), hashlib.sha384).hexdigest()
    return {"event": "auth", "apiKey": api_key, "authSig": sig, "authPayload": payload, "authNonce": nonce}


def conf_message(*, seq_all: bool, checksum: bool) -> dict[str, Any]:
    return {"event": "conf", "flags": (FLAG_SEQ_ALL if seq_all else 0) | (FLAG_CHECKSUM if checksum else 0)}


# --- sequence numbers ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class SequenceTracker:
    """SEQ_ALL public sequence numbers of one connection: each frame must carry ``last + 1``.

    :meth:`check` returns ``"ok"``, ``"gap"`` (numbers were skipped: frames were lost; the caller resubscribes
    the channel), or ``"stale"`` (a number at or below the last one: a duplicate or a late reordered frame; the
    caller drops the frame). Call :meth:`reset` on every new connection.
    """

    last: int | None = None
    gaps: int = 0
    stale: int = 0

    def check(self, seq: int) -> str:
        last = self.last
        if last is None or seq == last + 1:
            self.last = seq
            return "ok"
        if seq <= last:
            self.stale += 1
            return "stale"
        self.gaps += 1
        self.last = seq
        return "gap"

    def reset(self) -> None:
        self.last = None


# --- order book and checksum ---------------------------------------------------------------------------------


def _num(value: Any) -> str:
    """A number as JavaScript's ``Number#toString`` prints it, which is what the exchange's checksum uses.

    Python's ``repr`` is the same shortest round-trip text except that it keeps ``.0`` on integral floats
    and switches to exponent notation below 1e-4 (JavaScript only below 1e-6).
    """
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        text = repr(value)
        if "e" in text and 1e-6 <= abs(value) < 1e21:
            text = format(Decimal(text), "f")
        return text
    return str(value)


def checksum_of(bids: Iterable[tuple[Any, Any]], asks: Iterable[tuple[Any, Any]]) -> int:
    """Bitfinex book checksum: signed CRC32 of the top 25 levels, interleaved ``bid:amount:ask:amount``.

    ``bids`` best first (highest price), ``asks`` best first (lowest price); each item is ``(price_or_id,
    amount)`` with ask amounts negative, as sent.
    """
    b = list(bids)[:CHECKSUM_DEPTH]
    a = list(asks)[:CHECKSUM_DEPTH]
    parts: list[str] = []
    for i in range(CHECKSUM_DEPTH):
        if i < len(b):
            parts += (_num(b[i][0]), _num(b[i][1]))
        if i < len(a):
            parts += (_num(a[i][0]), _num(a[i][1]))
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


@dataclass(slots=True)
class OrderBook:
    """One book channel's state. ``raw`` books (prec ``R0``) key levels by order id instead of price.

    Feed :meth:`apply` every data payload (snapshot or update) and compare :meth:`checksum` with each ``cs``
    frame. Raises :class:`ProtocolViolation` on a malformed level.
    """

    raw: bool = False
    #: key (price, or order id for raw books) -> (price, price or order id, amount)
    bids: dict[Any, tuple[Any, Any, Any]] = field(default_factory=dict)
    asks: dict[Any, tuple[Any, Any, Any]] = field(default_factory=dict)

    def apply(self, payload: Any) -> None:
        if not isinstance(payload, list):
            raise ProtocolViolation(f"book payload is not a list: {str(payload)[:80]!r}")
        if payload and isinstance(payload[0], list):
            self.bids.clear()
            self.asks.clear()
            for level in payload:
                self._level(level)
        elif payload:
            self._level(payload)

    def _level(self, level: Any) -> None:
        if not isinstance(level, list) or len(level) != 3:
            raise ProtocolViolation(f"book level must be a 3-item list, got {str(level)[:80]!r}")
        if self.raw:
            order_id, price, amount = level
            remove = price == 0
            key, entry = order_id, (price, order_id, amount)
        else:
            price, count, amount = level
            remove = count == 0
            key, entry = price, (price, price, amount)
        if not isinstance(amount, int | float) or not isinstance(price, int | float):
            raise ProtocolViolation(f"book level price/amount is not a number: {level!r}")
        if remove:
            # amount 1 / -1 says which side to delete from
            (self.bids if amount > 0 else self.asks).pop(key, None)
            return
        if amount > 0:
            self.bids[key] = entry
            self.asks.pop(key, None)
        else:
            self.asks[key] = entry
            self.bids.pop(key, None)

    def sorted_levels(self) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
        """``(price or id, amount)`` pairs, bids best (highest price) first and asks best (lowest) first.

        Raw books break price ties by order id.
        """
        bids = sorted(self.bids.values(), key=lambda e: (-e[0], e[1]))
        asks = sorted(self.asks.values(), key=lambda e: (e[0], e[1]))
        return [(e[1], e[2]) for e in bids], [(e[1], e[2]) for e in asks]

    def checksum(self) -> int:
        bids, asks = self.sorted_levels()
        return checksum_of(bids, asks)

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()


# --- subscriptions -------------------------------------------------------------------------------------------

#: Keys of a subscribe request that identify a subscription, with Bitfinex's defaults.
_IDENTITY_DEFAULTS = {"prec": "P0", "freq": "F0", "len": "25"}


def subscription_key(channel: str, params: Mapping[str, Any]) -> tuple[Any, ...]:
    """A hashable identity: channel, symbol or key, and for books prec/freq/len (defaults filled in)."""
    symbol = params.get("symbol") or params.get("key") or params.get("pair") or ""
    if channel == "book":
        extra = tuple(str(params.get(k, d)) for k, d in _IDENTITY_DEFAULTS.items())
        return (channel, str(symbol), *extra)
    return (channel, str(symbol))


@dataclass(slots=True)
class Subscription:
    key: tuple[Any, ...]
    request: dict[str, Any]
    chan_id: int | None = None
    book: OrderBook | None = None
    pending: bool = False
    #: When the last subscribe request for it was sent (loop time), for :meth:`SubscriptionTable.overdue`.
    requested_at: float = 0.0


class SubscriptionTable:
    """What the caller subscribed to, which channel id each subscription has now, and what to resend.

    Call :meth:`add` when the caller subscribes (send the returned request), :meth:`confirmed` on a
    ``subscribed`` event, :meth:`requests_for_reconnect` after every new connection (send them all),
    :meth:`resubscribe` to refresh one channel (send the returned frames in order).
    """

    def __init__(self) -> None:
        self._subs: dict[tuple[Any, ...], Subscription] = {}
        self._by_chan: dict[int, Subscription] = {}

    def add(self, channel: str, params: Mapping[str, Any], now: float = 0.0) -> tuple[Subscription, dict[str, Any]]:
        key = subscription_key(channel, params)
        request = {"event": "subscribe", "channel": channel, **params}
        sub = self._subs.get(key)
        if sub is None:
            book = OrderBook(raw=str(params.get("prec", "P0")).upper().startswith("R")) if channel == "book" else None
            sub = Subscription(key, request, book=book)
            self._subs[key] = sub
        sub.pending = True
        sub.requested_at = now
        return sub, request

    def remove(self, channel: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Forget a subscription; returns the unsubscribe request to send if it had a channel id."""
        sub = self._subs.pop(subscription_key(channel, params), None)
        if sub is None or sub.chan_id is None:
            return None
        self._by_chan.pop(sub.chan_id, None)
        return {"event": "unsubscribe", "chanId": sub.chan_id}

    def confirmed(self, event: Subscribed) -> Subscription | None:
        """Attach the channel id of a ``subscribed`` event to its subscription; None if it matches none."""
        key = subscription_key(event.channel, event.fields)
        sub = self._subs.get(key)
        if sub is None:
            # the exchange may echo fewer fields (e.g. no freq): fall back to the one pending of that channel/symbol
            for candidate in self._subs.values():
                if candidate.pending and candidate.key[:2] == key[:2]:
                    sub = candidate
                    break
        if sub is None:
            return None
        if sub.chan_id is not None:
            self._by_chan.pop(sub.chan_id, None)
        sub.chan_id = event.chan_id
        sub.pending = False
        if sub.book is not None:
            sub.book.clear()
        self._by_chan[event.chan_id] = sub
        return sub

    def by_chan(self, chan_id: int) -> Subscription | None:
        return self._by_chan.get(chan_id)

    def connection_lost(self) -> None:
        """Channel ids die with the connection; the subscriptions are kept for the next one."""
        self._by_chan.clear()
        for sub in self._subs.values():
            sub.chan_id = None
            sub.pending = False
            if sub.book is not None:
                sub.book.clear()

    def requests_for_reconnect(self, now: float = 0.0) -> list[dict[str, Any]]:
        """Every remembered subscription's subscribe request, each marked pending."""
        for sub in self._subs.values():
            sub.pending = True
            sub.requested_at = now
        return [dict(sub.request) for sub in self._subs.values()]

    def resubscribe(self, sub: Subscription, now: float = 0.0) -> list[dict[str, Any]]:
        """Frames that refresh one channel: unsubscribe (if it has an id) then subscribe again."""
        frames: list[dict[str, Any]] = []
        if sub.chan_id is not None:
            frames.append({"event": "unsubscribe", "chanId": sub.chan_id})
            self._by_chan.pop(sub.chan_id, None)
            sub.chan_id = None
        if sub.book is not None:
            sub.book.clear()
        sub.pending = True
        sub.requested_at = now
        frames.append(dict(sub.request))
        return frames

    def overdue(self, now: float, timeout: float) -> list[Subscription]:
        """Subscriptions requested ``timeout`` or more ago and still not confirmed (the request was lost)."""
        return [s for s in self._subs.values() if s.pending and now - s.requested_at >= timeout]

    def __len__(self) -> int:
        return len(self._subs)

    def __iter__(self) -> Any:
        return iter(list(self._subs.values()))

    @property
    def active(self) -> int:
        """Subscriptions that currently have a channel id."""
        return len(self._by_chan)


# --- the client protocol: frames in, actions out -------------------------------------------------------------


class Answer(NamedTuple):
    """Request ``cid`` was answered: acknowledged (``ok``) or rejected with ``code``/``text``.

    A named tuple, not a frozen dataclass like the other actions: one is made per request, and a named tuple is
    built (with ``tuple.__new__``) in a fraction of the time. Compare it with other answers only (as any tuple, it
    equals a plain tuple of the same values).
    """

    cid: int
    ok: bool
    code: int | None
    text: str


#: ``Answer`` from a tuple of its four fields, without the generated ``__new__``'s Python frame.
_new_answer: Callable[[type[Answer], tuple[Any, ...]], Answer] = tuple.__new__


@dataclass(frozen=True, slots=True)
class SendFrame:
    """Send this message (a resubscription)."""

    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Problem:
    """Count an error of ``kind``; ``emit`` says whether it deserves an ``error`` event of its own."""

    kind: str
    message: str
    emit: bool = True


@dataclass(frozen=True, slots=True)
class Notice:
    """Tell listeners: an event of ``kind`` with ``detail``."""

    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReconnectRequested:
    """The exchange asked for a reconnect (info 20051): close this channel and open a new one."""

    reason: str


@dataclass(frozen=True, slots=True)
class AuthAnswer:
    auth: Auth


@dataclass(frozen=True, slots=True)
class Deliver:
    """Channel data for the caller's handlers (``subscription`` None when the channel is not ours)."""

    subscription: Subscription | None
    data: ChannelData


#: A :class:`Pong` (the answer to an app-level ping) is passed on as it is: the connection measures its RTT.
Action = Answer | SendFrame | Problem | Notice | ReconnectRequested | AuthAnswer | Deliver | Pong


class ClientProtocol:
    """The pure client state of one Bitfinex connection: feed it every frame, carry out what it returns.

    Call :meth:`opening_frames` on each new channel (send them), :meth:`receive` for every frame received;
    the returned actions say what to send, which request got its answer, what to count and tell. It never
    raises on bad input: an oversized or undecodable frame becomes a :class:`Problem`.
    """

    def __init__(
        self,
        *,
        max_frame_bytes: int,
        sequence_checks: bool = True,
        checksums: bool = True,
        release_retry_s: float = 5.0,
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.release_retry_s = release_retry_s
        self.sequence_checks = sequence_checks
        self.checksums = checksums
        self.subscriptions = SubscriptionTable()
        self.sequence = SequenceTracker()
        #: True between info 20060 and 20061 (or while the info event says platform status 0).
        self.paused = False
        self.info: Info | None = None
        self.checksums_verified = 0
        #: Channels the exchange streamed to us that we did not know, and that we unsubscribed.
        self.orphans_released = 0
        #: chanId -> when to unsubscribe it again if it still streams
        self._released: dict[int, float] = {}
        self.checksum_mismatches = 0
        self.resubscribes = 0
        #: When the unanswered ``conf`` frame was sent (None once the exchange confirmed it).
        self.conf_sent_at: float | None = None
        self.conf_retries = 0

    def opening_frames(self, now: float = 0.0) -> list[dict[str, Any]]:
        """A new channel: forget sequence numbers and channel ids; the ``conf`` frame to send first (sent again
        by :meth:`overdue_subscriptions` until the exchange confirms it)."""
        self.sequence.reset()
        self.subscriptions.connection_lost()
        self._released.clear()
        self.paused = False
        self.conf_sent_at = None
        if self.sequence_checks or self.checksums:
            self.conf_sent_at = now
            return [conf_message(seq_all=self.sequence_checks, checksum=self.checksums)]
        return []

    def unsubscribe(self, channel: str, params: Mapping[str, Any], now: float = 0.0) -> dict[str, Any] | None:
        """Forget a subscription; the unsubscribe request to send, if its channel is open."""
        frame = self.subscriptions.remove(channel, params)
        if frame is not None:
            self._released[frame["chanId"]] = now + self.release_retry_s
        return frame

    def resubscribe(self, sub: Subscription, reason: str, now: float = 0.0) -> list[Action]:
        if sub.chan_id is not None:
            self._released[sub.chan_id] = now + self.release_retry_s  # its late frames are expected, not orphans
        self.resubscribes += 1
        out: list[Action] = [Notice("resubscribe", {"key": sub.key, "reason": reason})]
        out += [SendFrame(frame) for frame in self.subscriptions.resubscribe(sub, now)]
        return out

    def overdue_subscriptions(self, now: float, timeout: float) -> list[Action]:
        """Subscribe again whatever went unconfirmed for ``timeout`` (a request or its answer was lost); the
        same for the ``conf`` frame (without it, no checksums and no sequence numbers would ever arrive)."""
        out: list[Action] = []
        if self.conf_sent_at is not None and now - self.conf_sent_at >= timeout:
            self.conf_sent_at = now
            self.conf_retries += 1
            out.append(Problem("conf_timeout", "no answer to the conf frame", emit=False))
            out.append(SendFrame(conf_message(seq_all=self.sequence_checks, checksum=self.checksums)))
        for sub in self.subscriptions.overdue(now, timeout):
            out.append(Problem("subscribe_timeout", f"no answer to subscribing {sub.key}", emit=False))
            out += self.resubscribe(sub, "subscribe_timeout", now)
        return out

    def receive(self, data: str | bytes, now: float = 0.0, *, deliver: bool = True) -> list[Action]:
        """The actions for one received frame. ``deliver=False`` (for a caller with no data handlers) leaves out
        the :class:`Deliver` actions, which nobody would read; everything else (sequence checks, books,
        resubscriptions) is the same."""
        size = len(data)
        limit = self.max_frame_bytes
        if size > limit or (size * 4 > limit and isinstance(data, str) and len(data.encode()) > limit):
            return [Problem("oversized", f"frame of {size} characters/bytes over the limit of {limit} bytes")]
        try:
            msg = _loads(data)
        except ValueError as exc:  # orjson.JSONDecodeError, invalid UTF-8 included
            return [Problem("malformed", f"undecodable frame ({size} bytes): {exc}")]
        if type(msg) is list and msg and msg[0] == 0 and type(msg[0]) is int:
            # the frames of the request path, read without the general parser
            actions = self._channel_zero(msg, deliver)
            if actions is not None:
                return actions
        try:
            event = parse(msg)
        except ProtocolViolation as exc:
            return [Problem("malformed", str(exc))]
        actions = self.handle(event, now)
        if not deliver:
            actions = [action for action in actions if type(action) is not Deliver]
        return actions

    def _channel_zero(self, msg: list[Any], deliver: bool) -> list[Action] | None:
        """The actions for a channel-0 frame ``[0, TYPE, DATA, SEQ?, AUTH_SEQ?]`` (``msg``), exactly as
        :meth:`handle` gives them for what :func:`parse` makes of it, without that intermediate event and its
        calls. This is a fast path, kept in step with the general one by a property test; it takes the two frames
        every request brings:

        - ``[0, "n", [MTS, "...-req", null, null, ORDER, CODE, STATUS, TEXT?], SEQ?]``: the answer to a request
          (what :meth:`handle` does with an :class:`OrderNotification`);
        - any other TYPE but ``hb``/``cs`` (order updates ``on``/``ou``/``oc``, trades ``te``, snapshots, other
          notifications), with the expected sequence number if any: :class:`ChannelData` for no subscription.

        ``None``: the general path takes the frame (another shape, a subscription on channel 0, or a data frame
        whose sequence number is out of order: the general path reports it and refreshes the books).
        """
        items = len(msg)
        if items < 3:
            return None
        kind = msg[1]
        payload = msg[2]
        answer = False
        if kind == "n" and type(payload) is list:
            fields = len(payload)
            request_type = payload[1] if fields >= 7 else None
            answer = type(request_type) is str and request_type.endswith("-req")
        if not answer and (type(kind) is not str or kind == "hb" or kind == "cs" or 0 in self.subscriptions._by_chan):
            return None
        out: list[Action] = []
        seq = msg[3] if items > 3 else None
        if type(seq) is not int:
            seq = None
        elif self.sequence_checks:
            sequence = self.sequence
            last = sequence.last
            if last is None or seq == last + 1:
                sequence.last = seq  # SequenceTracker.check's "ok" case, inline
            elif not answer:
                return None  # nothing changed yet: the general path reports it and refreshes the books
            elif sequence.check(seq) == "stale":  # a duplicate: the request already has its answer
                return [Problem("sequence_stale", f"seq {seq} on channel 0", emit=False)]
            else:
                out.append(Problem("sequence_gap", f"seq {seq} on channel 0", emit=False))
        if not answer:
            return [Deliver(None, ChannelData(0, payload, seq, kind))] if deliver else out
        info = payload[4]
        if type(info) is list and len(info) > 2:
            cid = info[2]  # order array: [ID, GID, CID, SYMBOL, ...]
        elif type(info) is dict:
            cid = info.get("cid")
        else:
            return out
        if type(cid) is not int:
            return out
        code = payload[5]
        text = payload[7] if fields > 7 and type(payload[7]) is str else ""
        out.append(_new_answer(Answer, (cid, payload[6] == "SUCCESS", code if type(code) is int else None, text)))
        return out

    def handle(self, event: Event, now: float = 0.0) -> list[Action]:
        """The actions for one parsed event."""
        if isinstance(event, OrderNotification):
            out: list[Action] = []
            if self.sequence_checks and event.seq is not None:
                verdict = self.sequence.check(event.seq)
                if verdict == "stale":  # a duplicate: the request already has its answer
                    return [Problem("sequence_stale", f"seq {event.seq} on channel 0", emit=False)]
                if verdict == "gap":
                    out.append(Problem("sequence_gap", f"seq {event.seq} on channel 0", emit=False))
            if event.cid is not None:
                out.append(Answer(event.cid, event.ok, event.code, event.text))
            return out
        if isinstance(event, ChannelData | Heartbeat | Checksum):
            return self._channel(event, now)
        if isinstance(event, Info):
            return self._info(event, now)
        if isinstance(event, Unsubscribed):
            self._released.pop(event.chan_id, None)
            return []
        if isinstance(event, Conf):
            if event.ok:
                self.conf_sent_at = None
            return []
        if isinstance(event, Subscribed):
            sub = self.subscriptions.confirmed(event)
            key = sub.key if sub is not None else None
            return [Notice("subscribed", {"channel": event.channel, "chan_id": event.chan_id, "key": key})]
        if isinstance(event, Auth):
            return [AuthAnswer(event)]
        if isinstance(event, ErrorEvent):
            return [Problem("exchange_error", f"{event.code}: {event.message}")]
        if isinstance(event, Pong):
            return [event]
        return []

    def _channel(self, event: ChannelData | Heartbeat | Checksum, now: float) -> list[Action]:
        out: list[Action] = []
        if self.sequence_checks and event.seq is not None:
            verdict = self.sequence.check(event.seq)
            if verdict == "stale":
                return [Problem("sequence_stale", f"seq {event.seq} on channel {event.chan_id}", emit=False)]
            if verdict == "gap":
                # Sequence numbers are per connection: the lost frame may have belonged to any channel. Books
                # carry state a lost update corrupts, so every confirmed book is refreshed, plus this channel.
                out.append(Problem("sequence_gap", f"seq {event.seq} on channel {event.chan_id}", emit=False))
                here = self.subscriptions.by_chan(event.chan_id)
                for sub in self.subscriptions:
                    if sub.chan_id is not None and (sub is here or sub.book is not None):
                        out += self.resubscribe(sub, "sequence_gap", now)
                if here is not None:
                    return out
        sub = self.subscriptions.by_chan(event.chan_id)
        if sub is None and event.chan_id != 0 and now >= self._released.get(event.chan_id, -math.inf):
            # A channel the exchange thinks we hold and we do not know (its "subscribed" answer was lost, or a
            # retry was refused as a duplicate, or our unsubscribe was lost): release it, again after
            # ``release_retry_s`` if it keeps streaming, so that our own retries can succeed.
            self._released[event.chan_id] = now + self.release_retry_s
            self.orphans_released += 1
            out.append(SendFrame({"event": "unsubscribe", "chanId": event.chan_id}))
        if isinstance(event, Heartbeat):
            return out
        book = sub.book if sub is not None else None
        if isinstance(event, Checksum):
            if sub is None or book is None or sub.pending:
                return out
            if book.checksum() == event.value:
                self.checksums_verified += 1
            else:
                self.checksum_mismatches += 1
                out.append(Problem("checksum_mismatch", f"channel {event.chan_id}", emit=False))
                out += self.resubscribe(sub, "checksum_mismatch", now)
            return out
        if sub is not None and book is not None:
            try:
                book.apply(event.payload)
            except ProtocolViolation as exc:
                out.append(Problem("malformed", str(exc)))
                return out + self.resubscribe(sub, "malformed_book", now)
        out.append(Deliver(sub, event))
        return out

    def _info(self, info: Info, now: float) -> list[Action]:
        out: list[Action] = [Notice("info", {"code": info.code, "message": info.message})]
        if info.code is None:
            self.info = info
            if info.platform_status == 0:
                out += self._pause(True)
        elif info.code == INFO_RECONNECT:
            out.append(ReconnectRequested("info 20051: reconnect requested"))
        elif info.code == INFO_MAINTENANCE_START:
            out += self._pause(True)
        elif info.code == INFO_MAINTENANCE_END:
            out += self._pause(False)
            for sub in self.subscriptions:
                out += self.resubscribe(sub, "maintenance_end", now)
        return out

    def _pause(self, paused: bool) -> list[Action]:
        if self.paused == paused:
            return []
        self.paused = paused
        return [Notice("maintenance", {"active": paused})]
