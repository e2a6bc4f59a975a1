"""Books and subscriptions of a Bitfinex client: :class:`OrderBook` with its checksum, :class:`SubscriptionTable`.

Part of :mod:`wsfinal.bitfinex_client` (which re-exports every name here): :class:`OrderBook` keeps a book channel
and computes its checksum (:func:`checksum_of`); :class:`SubscriptionTable` remembers what the caller subscribed
to, maps channel ids to subscriptions and says what to send again after a reconnect. Pure: no sockets, no clock.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .bitfinex_frames import CHECKSUM_DEPTH, Subscribed
from .exceptions import ProtocolViolation

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
