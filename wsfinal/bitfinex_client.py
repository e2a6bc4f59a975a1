"""The client side of the Bitfinex WebSocket API v2, as pure functions and small state objects.

No sockets and no clock: :func:`parse` turns one decoded frame into a typed event; :class:`SequenceTracker`
checks SEQ_ALL sequence numbers; :class:`OrderBook` keeps a book channel and computes its checksum;
:class:`SubscriptionTable` remembers what the caller subscribed to, maps channel ids to subscriptions and says
what to send again after a reconnect; :class:`ClientProtocol` feeds them every frame and returns actions.
:mod:`wsfinal.connection` feeds it and acts on what it says. The events and the parser live in
:mod:`wsfinal.bitfinex_frames`, books and subscriptions in :mod:`wsfinal.bitfinex_books`; every name is
importable from here.

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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .bitfinex_books import OrderBook, Subscription, SubscriptionTable, checksum_of, subscription_key
from .bitfinex_frames import (
    CHECKSUM_DEPTH,
    FLAG_CHECKSUM,
    FLAG_SEQ_ALL,
    INFO_MAINTENANCE_END,
    INFO_MAINTENANCE_START,
    INFO_RECONNECT,
    Auth,
    ChannelData,
    Checksum,
    Conf,
    ErrorEvent,
    Event,
    Heartbeat,
    Info,
    OrderNotification,
    OtherEvent,
    Pong,
    Subscribed,
    Unsubscribed,
    _loads,
    auth_message,
    conf_message,
    decode,
    order_frame,
    parse,
)
from .exceptions import ProtocolViolation

#: The names of :mod:`wsfinal.bitfinex_frames` and :mod:`wsfinal.bitfinex_books` stay importable from here.
__all__ = [
    "CHECKSUM_DEPTH",
    "FLAG_CHECKSUM",
    "FLAG_SEQ_ALL",
    "INFO_MAINTENANCE_END",
    "INFO_MAINTENANCE_START",
    "INFO_RECONNECT",
    "Action",
    "Answer",
    "Auth",
    "AuthAnswer",
    "ChannelData",
    "Checksum",
    "ClientProtocol",
    "Conf",
    "Deliver",
    "ErrorEvent",
    "Event",
    "Heartbeat",
    "Info",
    "Notice",
    "OrderBook",
    "OrderNotification",
    "OtherEvent",
    "Pong",
    "Problem",
    "ReconnectRequested",
    "SendFrame",
    "SequenceTracker",
    "Subscribed",
    "Subscription",
    "SubscriptionTable",
    "Unsubscribed",
    "auth_message",
    "checksum_of",
    "conf_message",
    "decode",
    "order_frame",
    "parse",
    "subscription_key",
]

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
        if type(msg) is list and len(msg) > 2 and type(msg[0]) is int and msg[0] == 0:
            # A channel-0 frame [0, TYPE, DATA, SEQ?, AUTH_SEQ?], read here exactly as handle() reads what parse()
            # makes of it, without that event and their calls (the two frames of every request come this way; the
            # former _channel_zero method, inline: two calls less per request). A property test keeps it in step
            # with the general path. It takes
            # - [0, "n", [MTS, "...-req", null, null, ORDER, CODE, STATUS, TEXT?], SEQ?]: the answer to a request
            #   (what handle() does with an OrderNotification);
            # - any other TYPE but hb/cs (order updates on/ou/oc, trades te, snapshots, other notifications), with
            #   the expected sequence number if any: ChannelData for no subscription.
            # Anything else goes on to the general path below: a subscription on channel 0, or a data frame whose
            # sequence number is out of order (the general path reports it and refreshes the books).
            kind = msg[1]
            payload = msg[2]
            answer = False
            if kind == "n" and type(payload) is list:
                fields = len(payload)
                request_type = payload[1] if fields >= 7 else None
                answer = type(request_type) is str and request_type.endswith("-req")
            if answer or (type(kind) is str and kind != "hb" and kind != "cs" and 0 not in self.subscriptions._by_chan):
                out: list[Action] = []
                seq = msg[3] if len(msg) > 3 else None
                in_order = True
                if type(seq) is not int:
                    seq = None
                elif self.sequence_checks:
                    sequence = self.sequence
                    last = sequence.last
                    if last is None or seq == last + 1:
                        sequence.last = seq  # SequenceTracker.check's "ok" case, inline
                    elif not answer:
                        in_order = False  # nothing changed yet: the general path takes it
                    elif sequence.check(seq) == "stale":  # a duplicate: the request already has its answer
                        return [Problem("sequence_stale", f"seq {seq} on channel 0", emit=False)]
                    else:
                        out.append(Problem("sequence_gap", f"seq {seq} on channel 0", emit=False))
                if not answer:
                    if in_order:
                        return [Deliver(None, ChannelData(0, payload, seq, kind))] if deliver else out
                else:
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
                    ok = payload[6] == "SUCCESS"
                    out.append(_new_answer(Answer, (cid, ok, code if type(code) is int else None, text)))
                    return out
        try:
            event = parse(msg)
        except ProtocolViolation as exc:
            return [Problem("malformed", str(exc))]
        actions = self.handle(event, now)
        if not deliver:
            actions = [action for action in actions if type(action) is not Deliver]
        return actions

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
