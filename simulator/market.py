"""The market behind a fake exchange node: a seeded price process driving tickers, trades and order books.

One :class:`MarketFeed` per node, shared by all of that node's sessions. Every ``update_interval_s`` it moves
each symbol's price (a geometric random walk), draws trades and changes book levels, and emits one
:class:`MarketEvent` per symbol. An event carries the payload *text* of every message it causes, keyed by
channel (``ticker:tBTCUSD``, ``trades:tBTCUSD``, ``book:tBTCUSD:P0:F0:25``), serialised once for the whole
node: a session only wraps it as ``[chanId,<payload>]`` (plus sequence number / timestamp when its flags ask
for them), and sessions with the same channel id and flags share the wrapped frames too (``MarketEvent.frames``).

Book views are computed only for keys some session holds (:meth:`MarketFeed.retain` /
:meth:`MarketFeed.release`, which :class:`simulator.bitfinex.ExchangeSession` calls itself); the random
stream never depends on them, so the same seed gives the same market whatever is subscribed. Each step records
the raw levels it touched, and P0 F0 views update from those alone (see :meth:`BookView.refresh`). The initial
books are drawn on first use, not in the constructor (same generator order, same stream).

How a shell drives it::

    feed = MarketFeed(symbols, numpy.random.default_rng(seed_seq), start_time=loop.time())
    # at feed.next_time(): events = feed.advance(loop.time()); then session.on_market(events, now) for
    # every session, before feeding those sessions any further client message.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsfinal.exceptions import ConfigurationError

from .book import (
    AMOUNT_EXP,
    FREQUENCIES,
    LENGTHS,
    MIN_AMOUNT_UNITS,
    PRECISIONS,
    BookView,
    RawBook,
    decimal_text,
    format_decimal,
)

#: Starting prices of well-known symbols; any other symbol starts at DEFAULT_PRICE unless given.
DEFAULT_PRICES: dict[str, float] = {"tBTCUSD": 30000.0, "tETHUSD": 2000.0, "tLTCUSD": 70.0, "tXRPUSD": 0.5}
DEFAULT_PRICE = 100.0
#: Raw book levels live within this many grid steps of the mid price, on each side.
BOOK_SPAN = 400
#: F1 books are re-sent (as a snapshot) at most this often.
F1_INTERVAL_S = 2.0
#: Trades kept for the snapshot a new ``trades`` subscriber receives (newest first).
TRADES_SNAPSHOT = 30
#: Ticker and trade channels carry no precision; their keys are channel:symbol.
CHANNELS = ("ticker", "trades", "book")


class _Pool:
    """Draws from one distribution, taken from the generator in blocks (one numpy call per block, not per draw).

    The generator is consumed in the same order for the same sequence of steps, so streams stay reproducible.
    """

    __slots__ = ("_draw", "_it")

    def __init__(self, draw: Callable[[int], np.ndarray]) -> None:
        self._draw = draw
        self._it: Iterator[Any] = iter(())

    def take(self) -> Any:
        for value in self._it:  # the next value of the current block, if any
            return value
        self._it = iter(self._draw(_POOL_BLOCK).tolist())
        return next(self._it)


_POOL_BLOCK = 1024


def channel_key(channel: str, symbol: str, prec: str = "P0", freq: str = "F0", length: int = 25) -> str:
    """The node-wide key of a channel; book keys include precision, frequency and length."""
    if channel == "book":
        return f"book:{symbol}:{prec}:{freq}:{length}"
    return f"{channel}:{symbol}"


@dataclass(frozen=True, slots=True)
class MarketEvent:
    """What happened to one symbol at one step.

    ``payloads[key]`` holds, in order, the text of each message on channel ``key`` without its leading
    ``[chanId,`` and trailing ``]``. ``checksums[key]`` is the book checksum after those messages (book keys
    only). ``seq`` numbers the feed's events (1, 2, ...): a session ignores events with ``seq`` at or below the
    feed's :attr:`MarketFeed.last_seq` at the time it subscribed, whose effect its snapshot already holds.
    """

    seq: int
    time: float
    symbol: str
    payloads: Mapping[str, tuple[str, ...]]
    checksums: Mapping[str, int]
    #: Scratch space for the sessions receiving this event: frames made for one client, keyed by what they depend
    #: on, are reused for every other client with the same channel id and flags (see ExchangeSession.on_market).
    frames: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


class _SymbolState:
    __slots__ = (
        "dirty_asks",
        "dirty_bids",
        "f1_sent",
        "high",
        "last_idx",
        "log_price",
        "low",
        "mid",
        "name",
        "open_idx",
        "raw",
        "refs",
        "tick",
        "trades",
        "views",
        "volume",
    )

    def __init__(self, name: str, price: float) -> None:
        self.name = name
        exp = math.floor(math.log10(price)) - 4  # P0 = five significant figures, as on Bitfinex
        self.raw = RawBook(exp)
        self.tick = 10.0**exp
        self.log_price = math.log(price)
        self.open_idx = self.last_idx = self.high = self.low = round(price / self.tick)
        self.mid = self.open_idx  # every bid is below it, every ask above it, between steps
        self.raw.mid = self.mid
        self.volume = 0  # amount units traded since start
        self.trades: deque[str] = deque(maxlen=TRADES_SNAPSHOT)
        self.views: dict[str, BookView] = {}
        self.refs: dict[str, int] = {}
        self.f1_sent: dict[str, float] = {}
        # raw indices changed during the current step: P0 views refresh from these, not from the whole book
        self.dirty_bids: set[int] = set()
        self.dirty_asks: set[int] = set()


class MarketFeed:
    """Seeded market data for one node; the same ``rng`` seed gives the same event stream.

    ``rng`` must be a fresh ``numpy.random.Generator`` owned by this feed (derive it with
    ``SeedSequence.spawn``). ``start_time`` is the clock value of the first step minus one interval (the
    shell passes ``loop.time()``); ``epoch_s`` turns clock values into the millisecond timestamps (MTS) of
    messages. If :meth:`advance` is called more than ``max_catchup_steps`` intervals late (a stalled live
    loop), the missed steps beyond that are skipped rather than emitted as a burst.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        rng: np.random.Generator,
        *,
        update_interval_s: float = 0.1,
        start_time: float = 0.0,
        epoch_s: float = 1_700_000_000.0,
        initial_prices: Mapping[str, float] | None = None,
        volatility_per_s: float = 0.0005,
        trade_rate_per_s: float = 3.0,
        level_changes_per_step: int = 4,
        max_catchup_steps: int = 1000,
    ) -> None:
        if isinstance(symbols, str) or not symbols:
            raise ConfigurationError("symbols", symbols, "need a non-empty list of symbols like 'tBTCUSD'")
        if not update_interval_s > 0:
            raise ConfigurationError("update_interval_s", update_interval_s, "must be > 0")
        prices = dict(DEFAULT_PRICES)
        prices.update(initial_prices or {})
        self._symbols: dict[str, _SymbolState] = {}
        for i, sym in enumerate(symbols):
            if not isinstance(sym, str) or len(sym) < 2 or sym[0] != "t" or not sym[1:].replace(":", "").isalnum():
                raise ConfigurationError(f"symbols[{i}]", sym, "a trading symbol is 't' + pair, e.g. 'tBTCUSD'")
            if sym in self._symbols:
                raise ConfigurationError(f"symbols[{i}]", sym, "duplicate symbol")
            price = prices.get(sym, DEFAULT_PRICE)
            if not (isinstance(price, int | float) and 1e-2 <= price < 1e12):
                raise ConfigurationError(f"initial_prices[{sym!r}]", price, "must be in [0.01, 1e12)")
            self._symbols[sym] = _SymbolState(sym, float(price))
        self._rng = rng
        self.update_interval_s = float(update_interval_s)
        self.epoch_s = float(epoch_s)
        self._start = float(start_time)
        self._steps = 0  # steps taken or skipped; step k happens at start + k * interval
        self._next = self._start + self.update_interval_s
        self._sigma_step = volatility_per_s * math.sqrt(self.update_interval_s)
        self._trades_per_step = trade_rate_per_s * self.update_interval_s
        self._changes = int(level_changes_per_step)
        lam = self._trades_per_step
        self._uniform = _Pool(lambda n: rng.random(n))
        self._normal = _Pool(lambda n: rng.standard_normal(n))
        self._poisson = _Pool(lambda n: rng.poisson(lam, n))
        self._geometric = _Pool(lambda n: np.minimum(rng.geometric(0.08, n), BOOK_SPAN))
        self._level_size = _Pool(lambda n: rng.integers(MIN_AMOUNT_UNITS, 10000, n))
        self._trade_size = _Pool(lambda n: rng.integers(MIN_AMOUNT_UNITS, 5000, n))
        self._max_catchup = int(max_catchup_steps)
        self._seq = 0
        self._trade_id = 1_400_000_000
        # next_order_id() hands out node-wide unique order ids, deterministic (they depend only on call order):
        # the exchange asks one per order, so it is a C-level counter's __next__ rather than a Python method
        # (a frame per order for an increment).
        self._order_ids = itertools.count(120_000_000_001)
        self.next_order_id: Callable[[], int] = self._order_ids.__next__
        self._filled = False  # the initial books are drawn on first use (see _ensure_filled)

    def _ensure_filled(self) -> None:
        """Draw the initial books and trade histories, once, before anything reads or steps the market.

        Deferred from the constructor so that a feed nobody subscribes to costs nothing; the generator is
        consumed in the same order either way (books first, in symbol order, then the steps), so the stream
        for a seed does not depend on when this runs.
        """
        if not self._filled:
            self._filled = True
            for state in self._symbols.values():
                self._fill_initial(state)

    # ----------------------------------------------------------------- queries

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._symbols)

    @property
    def last_seq(self) -> int:
        """Sequence number of the last event emitted (0 before the first)."""
        return self._seq

    def retained_keys(self) -> dict[str, int]:
        """Channel keys currently held by sessions, with their holder counts (for tests and monitoring)."""
        return {key: n for state in self._symbols.values() for key, n in state.refs.items()}

    def has_symbol(self, symbol: str) -> bool:
        return symbol in self._symbols

    def next_time(self) -> float:
        """Clock time of the next market step: call :meth:`advance` then."""
        return self._next

    def mts(self, now: float) -> int:
        """Milliseconds since the Unix epoch for clock value ``now`` (Bitfinex MTS)."""
        return round((self.epoch_s + now) * 1000.0)

    @property
    def _order_id(self) -> int:
        """The last order id handed out by :attr:`next_order_id` (for tests; ``count`` shows its next value only in
        its repr)."""
        return int(repr(self._order_ids)[6:-1]) - 1

    # ----------------------------------------------------------------- subscriptions

    def retain(self, key: str) -> None:
        """Start (or keep) computing channel ``key``; sessions call this on subscribe. Unknown keys are ignored."""
        parsed = _parse_key(key)
        if parsed is None or parsed[1] not in self._symbols:
            return
        self._ensure_filled()
        state = self._symbols[parsed[1]]
        state.refs[key] = state.refs.get(key, 0) + 1
        if parsed[0] == "book" and key not in state.views:
            _, _, prec, freq, length = parsed
            state.views[key] = BookView(state.raw, prec, length)
            if freq == "F1":
                state.f1_sent[key] = -math.inf

    def release(self, key: str) -> None:
        """Undo one :meth:`retain`; when nobody holds a book key any more its view is dropped."""
        parsed = _parse_key(key)
        if parsed is None or parsed[1] not in self._symbols:
            return
        state = self._symbols[parsed[1]]
        left = state.refs.get(key, 0) - 1
        if left > 0:
            state.refs[key] = left
            return
        state.refs.pop(key, None)
        state.views.pop(key, None)
        state.f1_sent.pop(key, None)

    def snapshot(self, key: str) -> tuple[str, int | None]:
        """(payload text, checksum or None) of the current state of channel ``key``, for a new subscriber.

        Ticker: the ticker array; trades: the last trades, newest first; book: all levels of the view
        (bids then asks) and its checksum. Raises KeyError for a key whose symbol is unknown.
        """
        parsed = _parse_key(key)
        if parsed is None:
            raise KeyError(key)
        state = self._symbols[parsed[1]]
        self._ensure_filled()
        if parsed[0] == "ticker":
            return self._ticker_text(state), None
        if parsed[0] == "trades":
            return "[" + ",".join(reversed(state.trades)) + "]", None
        view = state.views.get(key)
        if view is None:
            view = BookView(state.raw, parsed[2], parsed[4])
        return view.snapshot_text(), view.checksum

    # ----------------------------------------------------------------- stepping

    def advance(self, now: float) -> list[MarketEvent]:
        """All events due up to ``now``, in time order (one per symbol per step). Then call next_time()."""
        events: list[MarketEvent] = []
        if now < self._next:
            return events
        self._ensure_filled()
        interval = self.update_interval_s
        last_due = math.floor((now - self._start) / interval + 1e-9)
        if last_due - self._steps > self._max_catchup:
            self._steps = last_due - self._max_catchup
        while self._steps < last_due:
            self._steps += 1
            t = self._start + self._steps * interval
            for state in self._symbols.values():
                events.append(self._step(state, t))
        self._next = self._start + (self._steps + 1) * interval
        return events

    def _step(self, state: _SymbolState, t: float) -> MarketEvent:
        raw = state.raw
        mts = self.mts(t)
        payloads: dict[str, tuple[str, ...]] = {}
        # trades first, against the book as it stood
        trade_msgs: list[str] = []
        for _ in range(self._poisson.take()):
            buy = self._uniform.take() < 0.5
            units = self._trade_size.take()
            side = raw.asks if buy else raw.bids
            best = _best_level(side, state.mid, 1 if buy else -1)
            if best is None:
                continue
            (state.dirty_asks if buy else state.dirty_bids).add(best)
            level = side[best]
            level[1] -= units
            if level[1] < MIN_AMOUNT_UNITS:
                units += level[1]
                del side[best]
            self._trade_id += 1
            state.volume += units
            state.last_idx = best
            body = (
                f"[{self._trade_id},{mts},{decimal_text(units if buy else -units, AMOUNT_EXP)},"
                f"{decimal_text(best, raw.price_exp)}]"
            )
            state.trades.append(body)
            trade_msgs.append('"te",' + body)
            trade_msgs.append('"tu",' + body)
        if trade_msgs:
            payloads[f"trades:{state.name}"] = tuple(trade_msgs)
        # price move and book maintenance
        state.log_price += self._sigma_step * self._normal.take()
        mid = round(math.exp(state.log_price) / state.tick)
        self._move_book(state, mid)
        if not trade_msgs:
            state.last_idx = mid
        if state.last_idx > state.high:
            state.high = state.last_idx
        elif state.last_idx < state.low:
            state.low = state.last_idx
        payloads[f"ticker:{state.name}"] = (self._ticker_text(state),)
        checksums: dict[str, int] = {}
        if state.views:
            changed = (state.dirty_bids, state.dirty_asks)
            any_change = bool(state.dirty_bids or state.dirty_asks)
            for key, view in state.views.items():
                last_f1 = state.f1_sent.get(key)
                if last_f1 is None:  # F0: every change, as level updates
                    if not any_change:
                        continue
                    updates = view.refresh(raw, changed)
                    if updates:
                        payloads[key] = tuple(updates)
                        checksums[key] = view.checksum
                elif t - last_f1 >= F1_INTERVAL_S - 1e-9:  # F1: a fresh snapshot at most every 2 s
                    view.refresh(raw)
                    state.f1_sent[key] = t
                    payloads[key] = (view.snapshot_text(),)
                    checksums[key] = view.checksum
        state.dirty_bids.clear()
        state.dirty_asks.clear()
        self._seq += 1
        return MarketEvent(self._seq, t, state.name, payloads, checksums)

    def _fill_initial(self, state: _SymbolState) -> None:
        rng = self._rng
        mid = state.open_idx
        present = rng.random((2, BOOK_SPAN)) < 0.7
        counts = rng.integers(1, 8, size=(2, BOOK_SPAN))
        units = rng.integers(MIN_AMOUNT_UNITS, 10000, size=(2, BOOK_SPAN))
        for off in range(BOOK_SPAN):
            if present[0, off] or off < 3:
                state.raw.bids[mid - 1 - off] = [int(counts[0, off]), int(counts[0, off] * units[0, off])]
            if present[1, off] or off < 3:
                state.raw.asks[mid + 1 + off] = [int(counts[1, off]), int(counts[1, off] * units[1, off])]
        # a trade history, one trade a second before the start, so the first trades snapshot is not empty
        sides = rng.random(TRADES_SNAPSHOT) < 0.5
        sizes = rng.integers(MIN_AMOUNT_UNITS, 5000, size=TRADES_SNAPSHOT)
        drift = rng.integers(-3, 4, size=TRADES_SNAPSHOT)
        for i in range(TRADES_SNAPSHOT):
            self._trade_id += 1
            signed = int(sizes[i]) if sides[i] else -int(sizes[i])
            mts = self.mts(self._start - (TRADES_SNAPSHOT - i))
            state.trades.append(
                f"[{self._trade_id},{mts},{format_decimal(signed, AMOUNT_EXP)},"
                f"{format_decimal(mid + int(drift[i]), state.raw.price_exp)}]"
            )

    def _move_book(self, state: _SymbolState, mid: int) -> None:
        bids, asks = state.raw.bids, state.raw.asks
        dirty_bids, dirty_asks = state.dirty_bids, state.dirty_asks
        # the price moved through these levels: they were traded away (all bids were below the old mid)
        for idx in range(mid, state.mid):
            if bids.pop(idx, None) is not None:
                dirty_bids.add(idx)
        for idx in range(state.mid + 1, mid + 1):
            if asks.pop(idx, None) is not None:
                dirty_asks.add(idx)
        state.mid = state.raw.mid = mid
        uniform, sizes = self._uniform.take, self._level_size.take
        # liquidity returns near the top
        for off in range(1, 4):
            draw = uniform()
            if mid - off not in bids and draw < 0.8:
                count = 1 + int(draw * 6)
                bids[mid - off] = [count, count * sizes()]
                dirty_bids.add(mid - off)
            draw = uniform()
            if mid + off not in asks and draw < 0.8:
                count = 1 + int(draw * 6)
                asks[mid + off] = [count, count * sizes()]
                dirty_asks.add(mid + off)
        # random level changes, mostly near the top of the book
        n = self._changes
        geometric = self._geometric.take
        for j in range(2 * n):
            offset = geometric()
            if j < n:
                side, idx, dirty = bids, mid - offset, dirty_bids
            else:
                side, idx, dirty = asks, mid + offset, dirty_asks
            a = uniform()
            level = side.get(idx)
            dirty.add(idx)
            if level is None:
                count = 1 + int(a * 6)
                side[idx] = [count, count * sizes()]
            elif a < 0.3:
                del side[idx]
            else:
                level[0] = max(1, level[0] + (1 if a > 0.65 else -1))
                level[1] = max(MIN_AMOUNT_UNITS, level[1] + int((a - 0.65) * 8000))
        # the book only reaches about BOOK_SPAN steps from the mid (trimmed now and then: it scans every level)
        if self._steps % 16 == 0:
            for idx in [i for i in bids if i < mid - BOOK_SPAN]:
                del bids[idx]
                dirty_bids.add(idx)
            for idx in [i for i in asks if i > mid + BOOK_SPAN]:
                del asks[idx]
                dirty_asks.add(idx)

    def _ticker_text(self, state: _SymbolState) -> str:
        """[BID, BID_SIZE, ASK, ASK_SIZE, DAILY_CHANGE, DAILY_CHANGE_RELATIVE, LAST_PRICE, VOLUME, HIGH, LOW]."""
        exp = state.raw.price_exp
        bid = _best_level(state.raw.bids, state.mid, -1)
        ask = _best_level(state.raw.asks, state.mid, 1)
        change = state.last_idx - state.open_idx
        rel = round(change * 10000 / state.open_idx)  # in 1e-4
        text = decimal_text
        fields = [
            text(bid, exp) if bid is not None else "null",
            text(state.raw.bids[bid][1], AMOUNT_EXP) if bid is not None else "null",
            text(ask, exp) if ask is not None else "null",
            text(state.raw.asks[ask][1], AMOUNT_EXP) if ask is not None else "null",
            text(change, exp),
            text(rel, -4),
            text(state.last_idx, exp),
            format_decimal(state.volume + 10_000_000, AMOUNT_EXP),  # grows: not worth remembering
            text(state.high, exp),
            text(state.low, exp),
        ]
        return "[" + ",".join(fields) + "]"


def _best_level(side: dict[int, list[int]], mid: int, direction: int) -> int | None:
    """Best bid (direction -1) or ask (+1): the first level from the mid outwards. Usually a step or two."""
    idx = mid + direction
    for _ in range(64):
        if idx in side:
            return idx
        idx += direction
    if not side:
        return None
    return max(side) if direction < 0 else min(side)


def _parse_key(key: str) -> tuple[str, str, str, str, int] | None:
    """(channel, symbol, prec, freq, length) of a key made by :func:`channel_key`, or None."""
    parts = key.split(":")
    # symbols may contain ':' (tTESTBTC:TESTUSD); book keys end with three fixed fields
    if parts[0] == "book" and len(parts) >= 5:
        prec, freq, length_text = parts[-3], parts[-2], parts[-1]
        if prec in PRECISIONS and freq in FREQUENCIES and length_text.isdigit() and int(length_text) in LENGTHS:
            return "book", ":".join(parts[1:-3]), prec, freq, int(length_text)
        return None
    if parts[0] in ("ticker", "trades") and len(parts) >= 2:
        return parts[0], ":".join(parts[1:]), "P0", "F0", 25
    return None
