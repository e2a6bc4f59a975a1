"""Streaming statistics: a log-bucketed latency histogram, EWMAs, sliding windows (the trend fits are in
:mod:`wsfinal.trend`, importable from here too).

Everything here is pure: no clock reads, no threads, no I/O. Time is a parameter (``now``, seconds on the event
loop's clock) and each object keeps bounded memory however many samples it is fed. The analytics, the balancer and
the simulator record latencies here on their hot paths, so :meth:`LatencyHistogram.record` does a logarithm, an
integer conversion and a list increment, nothing more.

The histogram's error bound is stated in :mod:`wsfinal.histogram`, where :class:`LatencyHistogram` lives.
"""

from __future__ import annotations

import math

from .exceptions import ConfigurationError
from .histogram import LatencyHistogram  # re-exported: it lived here
from .trend import HoltTrend, TrendFit, linear_trend  # re-exported: they lived here

__all__ = [
    "Ewma",
    "HoltTrend",
    "LatencyHistogram",
    "PeakEwma",
    "SlidingWindowCounter",
    "SlidingWindowHistogram",
    "TrendFit",
    "WindowedQuantile",
    "add_sample_and_count",
    "linear_trend",
]

_log = math.log
_exp = math.exp


class Ewma:
    """Time-weighted exponentially weighted moving average: a sample ``dt`` seconds after the previous one
    weighs ``1 - exp(-dt / tau_s)``. NaN until the first sample. Feed samples in time order (a sample older than
    the last one gets no weight)."""

    __slots__ = ("_inv_tau", "stamp", "tau_s", "value")

    def __init__(self, tau_s: float = 10.0) -> None:
        if not tau_s > 0.0:
            raise ConfigurationError("tau_s", tau_s, "must be > 0")
        self.tau_s = tau_s
        self._inv_tau = 1.0 / tau_s
        self.value = math.nan
        self.stamp = 0.0

    def update(self, sample: float, now: float) -> float:
        """Fold in one sample taken at ``now``; returns the new average."""
        v = self.value
        if v != v:  # NaN: first sample
            self.value = sample
            self.stamp = now
        else:
            dt = now - self.stamp
            if dt > 0.0:
                w = _exp(-dt * self._inv_tau)
                self.value = v * w + sample * (1.0 - w)
                self.stamp = now
        return self.value


class PeakEwma:
    """Finagle's peak-EWMA: jumps to any sample above the current value at once, decays towards lower samples
    with time constant ``tau_s``. Use it as a pessimistic latency estimate for load balancing."""

    __slots__ = ("stamp", "tau_s", "value")

    def __init__(self, tau_s: float = 10.0) -> None:
        if not tau_s > 0.0:
            raise ConfigurationError("tau_s", tau_s, "must be > 0")
        self.tau_s = tau_s
        self.value = math.nan
        self.stamp = 0.0

    def update(self, sample: float, now: float) -> float:
        if self.value != self.value or sample > self.value:
            self.value = sample
        else:
            dt = max(now - self.stamp, 0.0)
            w = math.exp(-dt / self.tau_s)
            self.value = self.value * w + sample * (1.0 - w)
        self.stamp = max(self.stamp, now)
        return self.value


class SlidingWindowCounter:
    """Counts events over the last ``window_s`` seconds in ``buckets`` time slots (a ring buffer).

    ``add(now, n)`` is O(1) amortised; ``total(now)`` and ``rate(now)`` are O(buckets). Resolution is one slot
    (``window_s / buckets`` seconds): the window is the slot holding ``now`` and the ``buckets - 1`` slots before
    it, so it reaches back between ``window_s - slot`` and ``window_s`` seconds. Events stamped earlier
    than the newest slot minus the window are ignored; memory is ``buckets`` numbers.
    """

    __slots__ = ("_counts", "_cur", "_head", "_hi", "_inv_slot", "_lo", "_nb", "_slot_s", "first", "window_s")

    def __init__(self, window_s: float = 60.0, buckets: int = 60) -> None:
        if not window_s > 0.0:
            raise ConfigurationError("window_s", window_s, "must be > 0")
        if buckets < 1:
            raise ConfigurationError("buckets", buckets, "must be >= 1")
        self.window_s = window_s
        self._nb = buckets
        self._slot_s = window_s / buckets
        self._inv_slot = 1.0 / self._slot_s
        self._counts: list[float] = [0.0] * buckets
        self._head: int | None = None  # absolute slot number of the newest slot
        self.first: float | None = None
        # add()'s fast path: now * _inv_slot in [_lo, _hi) is the head slot, whose counter is _counts[_cur]
        self._lo = self._hi = math.inf
        self._cur = 0

    def _set_head(self, slot: int) -> None:
        self._head = slot
        self._cur = slot % self._nb
        # [slot, slot + 1) as floats: exact below 2**53; a negative head takes the slow path (it sets `first`)
        self._lo, self._hi = (float(slot), float(slot + 1)) if 0 <= slot < 2**53 else (math.inf, math.inf)

    def _advance(self, now: float) -> int:
        slot = math.floor(now * self._inv_slot)
        head = self._head
        if head is None:
            self._set_head(slot)
        elif slot > head:
            gap = slot - head
            if gap >= self._nb:
                self._counts[:] = [0.0] * self._nb
            else:
                for s in range(head + 1, slot + 1):
                    self._counts[s % self._nb] = 0.0
            self._set_head(slot)
        return slot

    def add(self, now: float, n: float = 1.0) -> None:
        """Count ``n`` events at time ``now``."""
        # Fast path, once per request (the analytics' operation window): an event in the head slot, found by two
        # float comparisons rather than int() and the slot's index, both kept by _set_head. Same as the slow path
        # below for such an event (which leaves `first` alone when the head is >= 0, as it is then).
        x = now * self._inv_slot
        if self._lo <= x < self._hi:
            self._counts[self._cur] += n
            return
        slot = self._advance(now)
        assert self._head is not None
        if slot <= self._head - self._nb:
            return  # older than the window
        self._counts[slot % self._nb] += n
        if self.first is None or now < self.first:
            self.first = now

    def total(self, now: float) -> float:
        """Events in the window ending at ``now``."""
        if self._head is None:
            return 0.0
        self._advance(now)
        return sum(self._counts)

    def rate(self, now: float) -> float:
        """Events per second over the window; while the counter is younger than the window, over its age
        (at least one slot), so a fresh counter is not under-reported."""
        if self._head is None or self.first is None:
            return 0.0
        span = min(self.window_s, max(now - self.first, self._slot_s))
        return self.total(now) / span


class SlidingWindowHistogram:
    """Latency histogram over the last ``window_s`` seconds: one :class:`LatencyHistogram` per time slot,
    merged on query. Memory is ``slots`` histograms."""

    __slots__ = ("_alpha", "_head", "_hists", "_nb", "_slot_s", "window_s")

    def __init__(self, window_s: float = 900.0, slots: int = 15, alpha: float = 0.01) -> None:
        if not window_s > 0.0:
            raise ConfigurationError("window_s", window_s, "must be > 0")
        if slots < 1:
            raise ConfigurationError("slots", slots, "must be >= 1")
        self.window_s = window_s
        self._nb = slots
        self._slot_s = window_s / slots
        self._alpha = alpha
        self._hists: list[LatencyHistogram | None] = [None] * slots
        self._head: int | None = None

    def _advance(self, now: float) -> int:
        slot = math.floor(now / self._slot_s)
        if self._head is None:
            self._head = slot
        elif slot > self._head:
            for s in range(self._head + 1, min(slot, self._head + self._nb) + 1):
                h = self._hists[s % self._nb]
                if h is not None:
                    h.clear()
            self._head = slot
        return slot

    def record(self, value: float, now: float) -> None:
        slot = self._advance(now)
        assert self._head is not None
        if slot <= self._head - self._nb:
            return
        h = self._hists[slot % self._nb]
        if h is None:
            h = self._hists[slot % self._nb] = LatencyHistogram(self._alpha)
        h.record(value)

    def merged(self, now: float) -> LatencyHistogram:
        """One histogram of every sample still in the window at ``now``."""
        out = LatencyHistogram(self._alpha)
        if self._head is None:
            return out
        self._advance(now)
        for h in self._hists:
            if h is not None and h.count:
                out.merge(h)
        return out


class WindowedQuantile:
    """Quantiles of the samples of the last ``window_s`` seconds (Prometheus' ``histogram_quantile`` over a
    ``rate(...[window])``), in bounded memory and O(1) amortised work per sample.

    ``slots`` time slots (the window is the slot holding ``now`` and the ``slots - 1`` before it, so it reaches
    back between ``window_s - slot`` and ``window_s`` seconds, as :class:`SlidingWindowCounter`), each a sparse
    log-bucketed histogram (bucket -> count, DDSketch buckets of relative error ``alpha``), plus running totals
    over the whole window once a query asked for the whole window: ``add`` then updates two dict entries (one
    before: a connection nobody asks about pays no totals); a slot leaving the window is subtracted once.
    ``quantile(q, now)`` sorts the occupied buckets (a few dozen) and returns the representative of the bucket
    holding the sample of rank ``floor(q * (n - 1))`` (numpy ``method="lower"``): within relative error
    ``alpha`` of that sample; values at or below ``lowest`` count as 0. Memory: the occupied buckets of each slot.
    """

    __slots__ = ("_cur", "_head", "_hi", "_inv_lg", "_inv_lowest", "_inv_slot", "_lg", "_lo", "_nb", "_slots",
                 "_totals", "alpha", "lowest", "window_s")  # fmt: skip

    def __init__(self, window_s: float = 10.0, slots: int = 10, alpha: float = 0.02, lowest: float = 1e-3) -> None:
        if not (isinstance(window_s, int | float) and 0.0 < window_s < math.inf):
            raise ConfigurationError("window_s", window_s, "must be a finite number > 0")
        if not (isinstance(slots, int) and slots >= 1):
            raise ConfigurationError("slots", slots, "must be an integer >= 1")
        if not 0.0 < alpha < 1.0:
            raise ConfigurationError("alpha", alpha, "must be in (0, 1)")
        if not lowest > 0.0:
            raise ConfigurationError("lowest", lowest, "must be > 0")
        self.window_s = float(window_s)
        self.alpha = alpha
        self.lowest = lowest
        self._inv_lowest = 1.0 / lowest
        self._nb = slots
        self._inv_slot = slots / self.window_s
        self._lg = _log((1.0 + alpha) / (1.0 - alpha))
        self._inv_lg = 1.0 / self._lg
        self._slots: list[dict[int, int]] = [{} for _ in range(slots)]
        # Running totals over the window: None until a whole-window query builds them from the slots (the sum of
        # _slots); add() and _expire() keep them from then on. Every request adds a sample, quantiles are asked
        # for rarely (alert rules) or never (the bench set-up), so that add costs one dict update, not two.
        self._totals: dict[int, int] | None = None
        self._head: int | None = None  # absolute number of the newest slot
        self._cur = self._slots[0]  # its histogram
        self._lo = self._hi = math.inf  # add()'s fast path: now * _inv_slot in [_lo, _hi) is the head slot

    def _expire(self, slot: int) -> None:
        """Make ``slot`` (newer than the head) the head: subtract the slots leaving the window from the totals."""
        head = self._head
        if head is None or slot - head >= self._nb:
            for d in self._slots:
                d.clear()
            if self._totals is not None:
                self._totals.clear()
        else:
            totals = self._totals
            for s in range(head + 1, slot + 1):
                d = self._slots[s % self._nb]
                if totals is not None:
                    for key, c in d.items():
                        left = totals[key] - c
                        if left:
                            totals[key] = left
                        else:
                            del totals[key]
                d.clear()
        self._head = slot
        self._cur = self._slots[slot % self._nb]
        # floor(x) == slot exactly when slot <= x < slot + 1 (as floats: exact for |slot| < 2**53)
        self._lo, self._hi = (float(slot), float(slot + 1)) if -(2**53) < slot < 2**53 else (math.inf, math.inf)

    def add(self, value: float, now: float) -> None:
        """One sample at ``now``. A sample older than the window is ignored; times may go back within it."""
        # Once per request: a sample in the head slot is found by two float comparisons (no int() call).
        x = now * self._inv_slot
        if self._lo <= x < self._hi:
            d = self._cur
        else:
            slot = int(x) if now >= 0.0 else math.floor(x)
            head = self._head
            if head is None or slot > head:
                self._expire(slot)
                d = self._cur
            elif slot <= head - self._nb:
                return
            else:
                d = self._slots[slot % self._nb]
        key = int(_log(value * self._inv_lowest) * self._inv_lg) if value > self.lowest else -1
        d[key] = d.get(key, 0) + 1
        totals = self._totals
        if totals is not None:
            totals[key] = totals.get(key, 0) + 1

    def count(self, now: float, window_s: float | None = None) -> int:
        """Samples in the window ending at ``now`` (the last ``window_s`` seconds, at most the full window)."""
        return sum(self._counts(now, window_s).values())

    def _counts(self, now: float, window_s: float | None) -> dict[int, int]:
        if self._head is None:
            return {}
        slot = math.floor(now * self._inv_slot)
        if slot > self._head:
            self._expire(slot)
        assert self._head is not None
        m = self._nb if window_s is None else min(self._nb, max(1, math.ceil(window_s * self._inv_slot - 1e-9)))
        if m >= self._nb:
            if self._totals is None:
                self._totals = self._sum_slots(self._nb)
            return self._totals
        return self._sum_slots(m)

    def _sum_slots(self, m: int) -> dict[int, int]:
        """Bucket counts of the newest ``m`` slots (the head and the ``m - 1`` before it)."""
        assert self._head is not None
        merged: dict[int, int] = {}
        for s in range(self._head - m + 1, self._head + 1):
            for key, c in self._slots[s % self._nb].items():
                merged[key] = merged.get(key, 0) + c
        return merged

    def quantile(self, q: float, now: float, window_s: float | None = None) -> tuple[float, int]:
        """``(estimate, samples)``: the ``q``-quantile (0 <= q <= 1) of the samples of the last ``window_s``
        seconds (default and at most: the full window) ending at ``now``, and how many there are; NaN when none.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"WindowedQuantile.quantile: q must be in [0, 1], got {q!r}")
        counts = self._counts(now, window_s)
        n = sum(counts.values())
        if n == 0:
            return math.nan, 0
        rank = math.floor(q * (n - 1))
        seen = 0
        for key in sorted(counts):
            seen += counts[key]
            if seen > rank:
                if key < 0:
                    return 0.0, n
                # the bucket [lowest*g^k, lowest*g^(k+1)) answers 2*lowest*g^(k+1)/(g+1): within alpha of all of it
                return self.lowest * _exp((key + 1) * self._lg) * (1.0 - self.alpha), n
        raise AssertionError("counts do not add up")  # pragma: no cover


def add_sample_and_count(window: WindowedQuantile, counter: SlidingWindowCounter, value: float, now: float) -> None:
    """``window.add(value, now)`` then ``counter.add(now)``, in one call: analytics does both once per answered
    request (its recent-latency window and its operation window). The common case of each, ``now`` in its head
    slot, is done here as their ``add`` does it; any other case goes through their ``add`` (a property test
    checks both ways leave the same state)."""
    if window._lo <= now * window._inv_slot < window._hi:
        key = int(_log(value * window._inv_lowest) * window._inv_lg) if value > window.lowest else -1
        d = window._cur
        d[key] = d.get(key, 0) + 1
        totals = window._totals
        if totals is not None:
            totals[key] = totals.get(key, 0) + 1
    else:
        window.add(value, now)
    if counter._lo <= now * counter._inv_slot < counter._hi:
        counter._counts[counter._cur] += 1.0
    else:
        counter.add(now)
