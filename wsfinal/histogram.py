"""The log-bucketed latency histogram (:class:`LatencyHistogram`), importable from :mod:`wsfinal.stats` too.

It is pure: no clock reads, no threads, no I/O, bounded memory however many samples it is fed. The analytics and
the simulator record latencies here on their hot paths, so :meth:`LatencyHistogram.record` does a logarithm, an
integer conversion and a list increment, nothing more.

Histogram error bound
---------------------
:class:`LatencyHistogram` is the DDSketch / HdrHistogram idea: bucket ``i`` holds the values in
``[lowest * gamma**(i-1), lowest * gamma**i)`` with ``gamma = (1 + alpha) / (1 - alpha)``, and a percentile is
answered with the bucket's representative ``2 * lowest * gamma**i / (gamma + 1)``. Every value in the bucket
lies within a relative error ``alpha`` of it, so the reported ``q``-th percentile ``p`` satisfies
``|p - x| <= alpha * x``, where ``x`` is the sample of rank ``floor(q / 100 * (n - 1))`` in sorted order
(numpy's ``method="lower"``), for all values in ``[lowest, highest]``. Values below ``lowest`` are counted in a
zero bucket (reported as ``0`` or the exact minimum; absolute error at most ``lowest``), values above ``highest``
in an overflow bucket (reported as the exact maximum seen). Every estimate is clamped to ``[min, max]``.
"""

from __future__ import annotations

import contextlib
import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate
from operator import add
from typing import Any

from .exceptions import ConfigurationError

__all__ = ["LatencyHistogram"]

#: The keys of :meth:`LatencyHistogram.to_dict`, in its order; ``counts`` may be left out when empty.
_DICT_KEYS = ("alpha", "lowest", "highest", "count", "total", "min", "max", "counts")
_REQUIRED_KEYS = ("alpha", "lowest", "highest", "count", "total")

_log = math.log
_exp = math.exp


class LatencyHistogram:
    """Log-bucketed histogram with relative error ``alpha`` (default 1 %), bounded memory, mergeable.

    ``record(value)`` costs O(1); ``percentile(q)`` walks the occupied bucket range once (no sorting).
    Memory is one list of ``ceil(log(highest / lowest) / log(gamma)) + 2`` counters, whatever the sample count:
    about 1,040 counters for the defaults (1 microsecond to 1,000 seconds, in milliseconds, at 1 %).
    Two histograms merge only when built with the same ``alpha``, ``lowest`` and ``highest``.
    """

    __slots__ = (
        "_counts",
        "_gamma",
        "_inv_log_gamma",
        "_log_gamma",
        "_nbuckets",
        "_offset",
        "_top",
        "alpha",
        "count",
        "highest",
        "lowest",
        "max",
        "min",
        "total",
    )

    def __init__(self, alpha: float = 0.01, *, lowest: float = 1e-3, highest: float = 1e6) -> None:
        if not (0.0 < alpha < 0.5):
            raise ConfigurationError("alpha", alpha, "relative error must be in (0, 0.5)")
        if not (lowest > 0.0 and math.isfinite(lowest)):
            raise ConfigurationError("lowest", lowest, "must be a finite number > 0")
        if not (highest > lowest and math.isfinite(highest)):
            raise ConfigurationError("highest", highest, f"must be finite and > lowest ({lowest})")
        self.alpha = alpha
        self.lowest = lowest
        self.highest = highest
        self._gamma = (1.0 + alpha) / (1.0 - alpha)
        self._log_gamma = math.log(self._gamma)
        self._inv_log_gamma = 1.0 / self._log_gamma
        # Bucket i >= 1 holds [lowest * gamma**(i-1), lowest * gamma**i); index 0 holds [0, lowest].
        # For v > lowest the index is int(log(v) / log(gamma) - offset) with offset = log(lowest)/log(gamma) - 1:
        # the argument is > 1, so int() truncation is floor and the hot path needs no math.floor call.
        self._offset = math.log(lowest) * self._inv_log_gamma - 1.0
        self._top = int(math.log(highest) * self._inv_log_gamma - self._offset) + 1
        self._nbuckets = self._top + 1
        self._counts: list[int] = [0] * self._nbuckets
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    # -- recording (hot path) -------------------------------------------------------------------------------
    def record(self, value: float) -> None:
        """Count one sample (``value >= 0``; a negative or NaN value raises ``ValueError``)."""
        if value > self.lowest:
            i = int(_log(value) * self._inv_log_gamma - self._offset)
            if i > self._top:
                i = self._top
            self._counts[i] += 1
        elif value >= 0.0:
            self._counts[0] += 1
        else:
            raise ValueError(f"LatencyHistogram.record: value must be >= 0, got {value!r}")
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def record_many(self, values: Iterable[float]) -> None:
        """Count every value of an iterable (or a numpy array: vectorised when numpy is given one)."""
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy is a dependency
            np = None  # type: ignore[assignment]
        if np is not None and isinstance(values, np.ndarray):
            arr = np.asarray(values, dtype=float).ravel()
            if arr.size == 0:
                return
            if not np.all(arr >= 0.0):
                bad = arr[~(arr >= 0.0)][0]
                raise ValueError(f"LatencyHistogram.record_many: values must be >= 0, got {bad!r}")
            idx = np.zeros(arr.size, dtype=np.int64)
            pos = arr > self.lowest
            idx[pos] = (np.log(arr[pos]) * self._inv_log_gamma - self._offset).astype(np.int64)
            np.minimum(idx, self._top, out=idx)
            counts = np.bincount(idx, minlength=self._nbuckets)
            for i in np.flatnonzero(counts):
                self._counts[int(i)] += int(counts[i])
            self.count += int(arr.size)
            self.total += float(arr.sum())
            self.min = min(self.min, float(arr.min()))
            self.max = max(self.max, float(arr.max()))
            return
        for v in values:
            self.record(v)

    # -- queries --------------------------------------------------------------------------------------------
    @property
    def mean(self) -> float:
        """Exact mean of the recorded values (NaN when empty)."""
        return self.total / self.count if self.count else math.nan

    def _index(self, value: float) -> int:
        if value > self.lowest:
            return min(int(_log(value) * self._inv_log_gamma - self._offset), self._top)
        return 0

    def _occupied(self) -> range:
        """Bucket indices that can hold counts: from min's bucket to max's, one more each side because
        numpy's log (``record_many``) may round differently from ``math.log`` at a bucket edge."""
        if not self.count:
            return range(0)
        return range(max(self._index(self.min) - 1, 0), min(self._index(self.max) + 1, self._top) + 1)

    def _value_of(self, i: int) -> float:
        if i == 0:
            return 0.0
        return 2.0 * self.lowest * self._gamma**i / (self._gamma + 1.0)

    def percentiles(self, qs: Sequence[float]) -> list[float]:
        """Several percentiles (each ``0 <= q <= 100``) in one pass; NaN for each when empty.

        The estimate for ``q`` is within ``alpha`` (relative) of the sample of rank ``floor(q/100 * (n-1))``.
        """
        for q in qs:
            if not (0.0 <= q <= 100.0):
                raise ValueError(f"percentile must be in [0, 100], got {q!r}")
        if self.count == 0:
            return [math.nan for _ in qs]
        nq = len(qs)
        order = sorted(range(nq), key=qs.__getitem__)
        n1 = self.count - 1
        out = [math.nan] * nq
        if nq == 0:
            return out
        lo, hi = self.min, self.max
        top = self._top
        # Running totals of the occupied buckets in C (accumulate) and each rank's bucket by bisection: the first
        # bucket whose running total exceeds the rank, what a walk bucket by bucket finds (see _percentiles_walk,
        # kept as the reference the tests compare with). Analytics asks this of every connection's histogram at
        # every interval, over a few hundred buckets each: the walk was most of an interval's cost.
        occupied = self._occupied()
        first = occupied.start
        running = list(accumulate(self._counts[first : occupied.stop]))
        size = len(running)
        for j in order:
            b = bisect_right(running, math.floor(qs[j] / 100.0 * n1))
            if b == size:
                break  # counts short of self.count: from_dict refuses that, so only a corrupted object gets here
            i = first + b
            v = self._value_of(i) if i < top else hi
            out[j] = lo if v < lo else hi if v > hi else v
        return out

    def _percentiles_walk(self, qs: Sequence[float]) -> list[float]:
        """:meth:`percentiles` bucket by bucket in Python: the reference the tests hold the fast path to."""
        nq = len(qs)
        if self.count == 0:
            return [math.nan for _ in qs]
        order = sorted(range(nq), key=qs.__getitem__)
        n1 = self.count - 1
        ranks = [math.floor(qs[j] / 100.0 * n1) for j in order]
        out = [math.nan] * nq
        if nq == 0:
            return out
        lo, hi = self.min, self.max
        top = self._top
        counts = self._counts
        k = 0
        target = ranks[0]
        seen = 0
        for i in self._occupied():
            c = counts[i]
            if c:
                seen += c
                while target < seen:
                    v = self._value_of(i) if i < top else hi
                    out[order[k]] = lo if v < lo else hi if v > hi else v
                    k += 1
                    if k == nq:
                        return out
                    target = ranks[k]
        return out

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (``0 <= q <= 100``) within relative error ``alpha``; NaN when empty."""
        return self.percentiles([q])[0]

    def _bucket_range(self, i: int) -> tuple[float, float]:
        if i == 0:
            return (0.0, self.lowest)
        return (self.lowest * self._gamma ** (i - 1), self.lowest * self._gamma**i)

    def buckets(self) -> list[tuple[float, float, int]]:
        """Occupied buckets as ``(low, high, count)``, for plots and reports."""
        return [(*self._bucket_range(i), c) for i, c in enumerate(self._counts) if c]

    # -- combining ------------------------------------------------------------------------------------------
    def compatible(self, other: LatencyHistogram) -> bool:
        return (self.alpha, self.lowest, self.highest) == (other.alpha, other.lowest, other.highest)

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s counts into this histogram (both must share alpha, lowest and highest)."""
        if not self.compatible(other):
            raise ConfigurationError(
                "histogram",
                (other.alpha, other.lowest, other.highest),
                f"cannot merge: expected alpha/lowest/highest {(self.alpha, self.lowest, self.highest)}",
            )
        # Bucket-wise addition over other's occupied range, in C (map over two slices): analytics merges every
        # connection's histogram into its type's at every interval.
        occupied = other._occupied()
        a, b = occupied.start, occupied.stop
        self._counts[a:b] = map(add, self._counts[a:b], other._counts[a:b])
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def copy(self) -> LatencyHistogram:
        h = LatencyHistogram(self.alpha, lowest=self.lowest, highest=self.highest)
        h.merge(self)
        return h

    def clear(self) -> None:
        """Forget every sample, keeping the bucket list (cheap: reuse one histogram per interval).

        Only the occupied range is zeroed (every count lies there, see :meth:`_occupied`), and nothing when the
        histogram is empty: analytics clears every connection's histogram at every interval, most of them idle.
        """
        if self.count:
            occupied = self._occupied()
            self._counts[occupied.start : occupied.stop] = [0] * len(occupied)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def counts_equal(self, other: LatencyHistogram) -> bool:
        """True when both hold exactly the same bucket counts (and configuration)."""
        return self.compatible(other) and self._counts == other._counts

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (sparse counts); :meth:`from_dict` rebuilds it exactly."""
        return {
            "alpha": self.alpha,
            "lowest": self.lowest,
            "highest": self.highest,
            "count": self.count,
            "total": self.total,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "counts": {str(i): c for i, c in enumerate(self._counts) if c},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str = "") -> LatencyHistogram:
        """Rebuild a histogram written by :meth:`to_dict` (after a JSON round trip too), checking that it is whole.

        Refused with :class:`~wsfinal.exceptions.ConfigurationError`, whose ``field`` is the key path (under
        ``path``, the histogram's own key path in a larger document): a missing or unknown key, a value of the wrong
        type, a negative or non-integer bucket count, an unknown bucket index, a ``count`` that is not the sum of
        the bucket counts (the message gives both), ``min``/``max`` that are missing, out of order or outside the
        occupied buckets, and a ``total`` whose mean is not within ``[min, max]``. A caller reading a file puts
        the file name in front of the error.
        """

        def key(name: str) -> str:
            return f"{path}.{name}" if path else name

        def fail(name: str, value: object, reason: str) -> ConfigurationError:
            return ConfigurationError(key(name), value, reason)

        if not isinstance(data, Mapping):
            raise ConfigurationError(path or "histogram", type(data).__name__, "expected a mapping (see to_dict)")
        unknown = sorted(str(k) for k in data if k not in _DICT_KEYS)
        if unknown:
            raise fail(unknown[0], data[unknown[0]], f"unknown key; expected only {', '.join(_DICT_KEYS)}")
        missing = [k for k in _REQUIRED_KEYS if k not in data]
        if missing:
            raise fail(missing[0], None, "missing: this key is required")
        number = {name: _number(data[name], key(name)) for name in ("alpha", "lowest", "highest", "total")}
        try:
            h = cls(number["alpha"], lowest=number["lowest"], highest=number["highest"])
        except ConfigurationError as exc:
            raise fail(exc.field, exc.value, exc.reason) from None
        counts = data.get("counts", {})
        if not isinstance(counts, Mapping):
            raise fail("counts", counts, "expected a mapping of bucket index -> count")
        occupied: list[int] = []
        for index_text, c in counts.items():
            where = f"counts.{index_text}"
            try:
                i = int(index_text)
            except (TypeError, ValueError):
                raise fail(where, c, f"bucket index {index_text!r} is not an integer") from None
            if not 0 <= i < h._nbuckets:
                raise fail(where, c, f"bucket index out of range 0..{h._nbuckets - 1}")
            if h._counts[i]:
                raise fail(where, c, f"bucket {i} is given twice")
            if isinstance(c, bool) or not isinstance(c, int) or c < 0:
                raise fail(where, c, "a bucket count must be an integer >= 0")
            h._counts[i] = c
            if c:
                occupied.append(i)
        count = data["count"]
        expected = sum(h._counts)
        if isinstance(count, bool) or not isinstance(count, int) or count != expected:
            raise fail("count", count, f"expected {expected} (the sum of the bucket counts), got {count!r}")
        h.count = count
        h.total = number["total"]
        lo, hi = data.get("min"), data.get("max")
        if not count:
            for name, v in (("min", lo), ("max", hi)):
                if v is not None:
                    raise fail(name, v, "expected null (no samples), got a value")
            if h.total != 0.0:
                raise fail("total", h.total, "expected 0 (no samples)")
            return h
        h.min = _number(lo, key("min"))
        h.max = _number(hi, key("max"))
        if h.min < 0 or not math.isfinite(h.max) or h.min > h.max:
            raise fail("min", h.min, f"expected 0 <= min <= max (max {h.max!r}), both finite")
        allowed = h._occupied()  # min's bucket to max's, one more each side (record_many rounds its own way)
        for i in (min(occupied), max(occupied)) if occupied else ():
            if i not in allowed:
                low, high = h._bucket_range(i)
                raise fail(
                    f"counts.{i}",
                    h._counts[i],
                    f"bucket {i} holds values in [{low!r}, {high!r}), outside min..max [{h.min!r}, {h.max!r}]",
                )
        for name, v in (("min", h.min), ("max", h.max)):
            near = range(max(h._index(v) - 1, 0), min(h._index(v) + 1, h._top) + 1)
            if not any(h._counts[i] for i in near):
                raise fail(name, v, f"no sample counted in its bucket ({h._index(v)}) or beside it")
        mean = h.total / count
        slack = 1e-6 * max(abs(h.max), 1e-300)  # summation rounding, however many samples
        if not (h.min - slack <= mean <= h.max + slack):
            raise fail("total", h.total, f"the mean total/count = {mean!r} is outside min..max [{h.min!r}, {h.max!r}]")
        return h

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"LatencyHistogram(alpha={self.alpha}, count={self.count}, buckets={self._nbuckets})"


def _number(value: object, field: str) -> float:
    """``value`` as a float when it is a finite number (not a boolean), else a ConfigurationError for ``field``."""
    if not isinstance(value, bool) and isinstance(value, int | float):
        with contextlib.suppress(OverflowError):
            if math.isfinite(value):
                return float(value)
    raise ConfigurationError(field, value, "expected a finite number")
