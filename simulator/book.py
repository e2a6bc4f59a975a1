"""Order books for the fake exchange: the raw price grid, Bitfinex P0-P4 views, diffs and the CRC32 checksum.

Prices and amounts are kept as integers (price index on a per-symbol grid of ``10**price_exp``, amounts in
units of ``10**AMOUNT_EXP``) and turned into text exactly once, by :func:`format_decimal`. The same text goes
into the JSON frames and into the checksum string, and it is the text JavaScript's ``Number#toString`` gives
for the same value (no exponent, no trailing ``.0``), so a client that parses the frame and formats the
numbers back, as Bitfinex's own libraries do, computes the same checksum.

A :class:`BookView` is one subscription shape (precision P0-P4, length 1/25/100/250): it aggregates the raw
book and, step by step, yields the level changes (``[price, count, amount]``, count 0 = delete) that keep a
client's copy equal to the view; :func:`book_checksum` is computed over that view.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence

#: Amounts are integers in units of 10**AMOUNT_EXP (0.0001). Every level holds at least MIN_AMOUNT_UNITS,
#: so no amount prints below 1e-4, where Python's repr would switch to exponent notation and disagree
#: with JavaScript.
AMOUNT_EXP = -4
MIN_AMOUNT_UNITS = 10

PRECISIONS: dict[str, int] = {"P0": 0, "P1": 1, "P2": 2, "P3": 3, "P4": 4}
LENGTHS: tuple[int, ...] = (1, 25, 100, 250)
FREQUENCIES: tuple[str, ...] = ("F0", "F1")
CHECKSUM_DEPTH = 25

# A side of a view: (price bucket, count, amount units) best first. Amounts are positive for both sides;
# asks are negated when printed, as Bitfinex does.
Level = tuple[int, int, int]


_POW10 = tuple(10**i for i in range(32))


def format_decimal(n: int, exp: int) -> str:
    """The shortest decimal text of ``n * 10**exp`` without exponent or trailing zeros (JS-compatible)."""
    if exp >= 0:
        return str(n * (_POW10[exp] if exp < 32 else 10**exp))
    k = -exp
    q, r = divmod(-n if n < 0 else n, _POW10[k] if k < 32 else 10**k)
    text = f"{q}.{r:0{k}d}".rstrip("0") if r else str(q)
    return "-" + text if n < 0 else text


_TEXTS: dict[int, dict[int, str]] = {}  # exp -> n -> format_decimal(n, exp)
_TEXTS_MAX = 1 << 16


def decimal_text(n: int, exp: int) -> str:
    """:func:`format_decimal`, memoised: the stream prints the same prices and amounts over and over."""
    cache = _TEXTS.get(exp)
    if cache is None:
        cache = _TEXTS[exp] = {}
    text = cache.get(n)
    if text is None:
        if len(cache) >= _TEXTS_MAX:  # bounded: forget everything now and then
            cache.clear()
        text = cache[n] = format_decimal(n, exp)
    return text


def signed_crc32(text: str) -> int:
    """CRC32 of the UTF-8 text as a signed 32-bit integer, the form Bitfinex sends in ``cs`` messages."""
    crc = zlib.crc32(text.encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def book_checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
    """Bitfinex's book checksum: top 25 levels interleaved bid, ask; ``price:amount`` joined by ``:``.

    ``bids`` and ``asks`` are (price text, amount text) best first, ask amounts already negative.
    """
    parts: list[str] = []
    for i in range(CHECKSUM_DEPTH):
        if i < len(bids):
            parts.extend(bids[i])
        if i < len(asks):
            parts.extend(asks[i])
    return signed_crc32(":".join(parts))


class RawBook:
    """The finest-grained book of one symbol: price index -> [count, amount units] per side."""

    __slots__ = ("asks", "bids", "mid", "price_exp")

    def __init__(self, price_exp: int) -> None:
        self.price_exp = price_exp
        #: if set, every bid index is below it and every ask index above it (lets views scan, not sort)
        self.mid: int | None = None
        self.bids: dict[int, list[int]] = {}
        self.asks: dict[int, list[int]] = {}

    def best_bid(self) -> int | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> int | None:
        return min(self.asks) if self.asks else None


def aggregate(
    side: dict[int, list[int]], factor: int, *, bids: bool, length: int, mid: int | None = None
) -> list[Level]:
    """Group raw levels into buckets of ``factor`` grid steps; best ``length`` buckets, best first.

    Bids round down and asks round up, so the aggregated best bid stays below the best ask. With ``mid``
    (every bid below it, every ask above it) a short P0 view is found by walking out from the mid.
    """
    if factor == 1 and mid is not None and length <= 100:
        found: list[Level] = []
        step = -1 if bids else 1
        idx = mid + step
        for _ in range(4 * length + 64):
            level = side.get(idx)
            if level is not None:
                found.append((idx, level[0], level[1]))
                if len(found) == length:
                    return found
            idx += step
        if len(found) == len(side):
            return found
    if factor == 1:
        keys = sorted(side, reverse=bids)[:length]
        return [(k, side[k][0], side[k][1]) for k in keys]
    buckets: dict[int, list[int]] = {}
    for idx, (count, amount) in side.items():
        bucket = idx // factor if bids else -(-idx // factor)
        slot = buckets.get(bucket)
        if slot is None:
            buckets[bucket] = [count, amount]
        else:
            slot[0] += count
            slot[1] += amount
    keys = sorted(buckets, reverse=bids)[:length]
    return [(k, buckets[k][0], buckets[k][1]) for k in keys]


# price bucket -> (count, amount units, price text, signed amount text, "price:amount" text): a level as last sent
_Store = dict[int, tuple[int, int, str, str, str]]

#: An incremental refill walks at most this many empty grid steps before it sorts the rest of the side instead.
_WALK_LIMIT = 4096


class BookView:
    """One subscription shape of a symbol's book: precision P0-P4 and length 1/25/100/250.

    Call :meth:`refresh` after each change of the raw book: it returns the level texts that turn the
    previous view into the new one (deletions first, so a client that trims its copy to ``length`` after
    every insert never drops a level it should keep), and updates :attr:`checksum`. Level texts are made
    once, when a level changes, and reused for snapshots and checksums.

    A P0 view can be refreshed incrementally: pass ``changed=(bid indices, ask indices)``, the raw levels
    touched (set, changed or deleted) since this view's previous refresh; the result is the same as a full
    recompute, at a cost that grows with the number of changes rather than with the book.
    """

    __slots__ = (
        "_ask_keys",
        "_ask_store",
        "_bid_keys",
        "_bid_store",
        "_cs_asks",
        "_cs_bids",
        "_fresh",
        "_price_cache",
        "checksum",
        "factor",
        "length",
        "price_exp",
    )

    def __init__(self, book: RawBook, prec: str, length: int) -> None:
        self.factor = 10 ** PRECISIONS[prec]
        self.length = length
        self.price_exp = book.price_exp + PRECISIONS[prec]
        # Sorted best first as ascending keys: -bucket for bids, bucket for asks (so bisect works on both).
        self._bid_keys: list[int] = []
        self._ask_keys: list[int] = []
        self.checksum = 0
        self._bid_store: _Store = {}
        self._ask_store: _Store = {}
        self._cs_bids: list[str] = []
        self._cs_asks: list[str] = []
        self._price_cache: dict[int, str] = {}
        self._fresh = True
        self.refresh(book)

    @property
    def bids(self) -> list[Level]:
        """(bucket, count, amount units) best first."""
        store = self._bid_store
        return [(-k, store[-k][0], store[-k][1]) for k in self._bid_keys]

    @property
    def asks(self) -> list[Level]:
        """(bucket, count, amount units) best first."""
        store = self._ask_store
        return [(k, store[k][0], store[k][1]) for k in self._ask_keys]

    def _price(self, bucket: int) -> str:
        cache = self._price_cache
        text = cache.get(bucket)
        if text is None:
            if len(cache) >= 8192:  # the price wandered far: forget old prices
                cache.clear()
            text = cache[bucket] = format_decimal(bucket, self.price_exp)
        return text

    def snapshot_text(self) -> str:
        """The snapshot payload: bids best first, then asks best first, as Bitfinex sends it."""
        bid_store, ask_store = self._bid_store, self._ask_store
        rows = [f"[{p},{c},{a}]" for c, _, p, a, _ in (bid_store[-k] for k in self._bid_keys)]
        rows.extend(f"[{p},{c},{a}]" for c, _, p, a, _ in (ask_store[k] for k in self._ask_keys))
        return "[" + ",".join(rows) + "]"

    def refresh(self, book: RawBook, changed: tuple[Iterable[int], Iterable[int]] | None = None) -> list[str]:
        """Bring the view up to date with ``book``; return the update payloads (``[price,count,amount]`` texts).

        ``changed``: the raw bid and ask indices touched since this view's last refresh (P0 only; ignored
        for P1-P4 and on the first refresh). Without it the view is recomputed from the whole book.
        """
        deletes: list[str] = []
        changes: list[str] = []
        if changed is not None and self.factor == 1 and not self._fresh:
            self._apply(book.bids, changed[0], self._bid_keys, self._bid_store, True, deletes, changes)
            self._apply(book.asks, changed[1], self._ask_keys, self._ask_store, False, deletes, changes)
        else:
            new_bids = aggregate(book.bids, self.factor, bids=True, length=self.length, mid=book.mid)
            new_asks = aggregate(book.asks, self.factor, bids=False, length=self.length, mid=book.mid)
            self._bid_store = self._update_side(new_bids, self._bid_store, 1, deletes, changes)
            self._ask_store = self._update_side(new_asks, self._ask_store, -1, deletes, changes)
            self._bid_keys = [-b for b, _, _ in new_bids]
            self._ask_keys = [a for a, _, _ in new_asks]
        if deletes or changes or self._fresh:
            self._fresh = False
            self._update_checksum()
        return deletes + changes

    def _update_checksum(self) -> None:
        bid_store, ask_store = self._bid_store, self._ask_store
        cs_bids = [bid_store[-k][4] for k in self._bid_keys[:CHECKSUM_DEPTH]]
        cs_asks = [ask_store[k][4] for k in self._ask_keys[:CHECKSUM_DEPTH]]
        if cs_bids == self._cs_bids and cs_asks == self._cs_asks:
            return  # the change was below the top 25 levels (or the book is empty: crc32 of "" is 0)
        self._cs_bids, self._cs_asks = cs_bids, cs_asks
        n_b, n_a = len(cs_bids), len(cs_asks)
        if n_b == n_a:
            parts = cs_bids + cs_asks
            parts[0::2], parts[1::2] = cs_bids, cs_asks
        else:
            parts = []
            for i in range(max(n_b, n_a)):
                if i < n_b:
                    parts.append(cs_bids[i])
                if i < n_a:
                    parts.append(cs_asks[i])
        self.checksum = signed_crc32(":".join(parts))

    def _update_side(
        self, levels: list[Level], old: _Store, sign: int, deletes: list[str], changes: list[str]
    ) -> _Store:
        new: _Store = {}
        for bucket, count, amount in levels:
            prev = old.get(bucket)
            if prev is not None and prev[0] == count and prev[1] == amount:
                new[bucket] = prev
                continue
            price = self._price(bucket)
            amount_text = decimal_text(amount if sign > 0 else -amount, AMOUNT_EXP)
            new[bucket] = (count, amount, price, amount_text, f"{price}:{amount_text}")
            changes.append(f"[{price},{count},{amount_text}]")
        for bucket in old:
            if bucket not in new:
                deletes.append(f"[{self._price(bucket)},0,{sign}]")
        return new

    def _apply(
        self,
        side: dict[int, list[int]],
        dirty: Iterable[int],
        keys: list[int],
        store: _Store,
        bids: bool,
        deletes: list[str],
        changes: list[str],
    ) -> None:
        """Incremental P0 refresh of one side (see :meth:`refresh`); ``keys`` and ``store`` change in place."""
        length = self.length
        was_full = len(keys) == length  # full: the view holds the best ``length`` levels; else all of them
        worst = keys[-1] if keys else 0
        removed: list[int] = []
        touched: set[int] = set()
        for idx in dirty:
            k = -idx if bids else idx
            level = side.get(idx)
            if idx in store:
                if level is None:
                    del keys[bisect_left(keys, k)]
                    removed.append(k)
                else:
                    touched.add(k)
            elif level is not None and (not was_full or k < worst):
                insort(keys, k)
                touched.add(k)
        if len(keys) > length:  # new levels pushed the worst ones out
            for k in keys[length:]:
                touched.discard(k)
                if (-k if bids else k) in store:
                    removed.append(k)
            del keys[length:]
        elif was_full and len(keys) < length:
            # keys now hold every raw level at or better than the old worst: refill from beyond it
            self._refill(side, keys, worst, bids, touched)
        if not removed and not touched:
            return
        sign = 1 if bids else -1
        if removed:
            removed.sort()
            for k in removed:
                deletes.append(f"[{store.pop(-k if bids else k)[2]},0,{sign}]")
        for k in sorted(touched):
            idx = -k if bids else k
            count, amount = side[idx]
            prev = store.get(idx)
            if prev is not None and prev[0] == count and prev[1] == amount:
                continue
            price = prev[2] if prev is not None else self._price(idx)
            amount_text = decimal_text(amount if bids else -amount, AMOUNT_EXP)
            store[idx] = (count, amount, price, amount_text, f"{price}:{amount_text}")
            changes.append(f"[{price},{count},{amount_text}]")

    def _refill(self, side: dict[int, list[int]], keys: list[int], worst: int, bids: bool, touched: set[int]) -> None:
        remaining = len(side) - len(keys)  # raw levels worse than the old worst
        need = self.length - len(keys)
        k = worst
        for _ in range(_WALK_LIMIT):
            if need == 0 or remaining == 0:
                return
            k += 1
            if (-k if bids else k) in side:
                keys.append(k)
                touched.add(k)
                need -= 1
                remaining -= 1
        if need and remaining:  # a wide gap: sort what is left instead of walking it
            rest = sorted(key for key in ((-i if bids else i) for i in side) if key > k)[:need]
            keys.extend(rest)
            touched.update(rest)


def checksum_of_levels(levels: Iterable[Sequence[float | int]]) -> int:
    """Checksum of a client-side book given as Bitfinex ``[price, count, amount]`` rows (any order).

    For clients and tests: numbers are printed the way they arrived when they came from our JSON text
    (ints stay ints; floats use ``repr``, which equals JavaScript's text for the magnitudes we emit).
    """
    rows = list(levels)
    bids = sorted((row for row in rows if row[2] > 0), key=lambda r: -r[0])
    asks = sorted((row for row in rows if row[2] < 0), key=lambda r: r[0])
    return book_checksum([(repr(b[0]), repr(b[2])) for b in bids], [(repr(a[0]), repr(a[2])) for a in asks])
