"""Open-loop arrival processes: the intended send times of a scenario's requests.

Pure: each function takes a :class:`~simulator.scenario.WorkloadSpec`-like object and a seeded
``numpy.random.Generator`` and yields intended send times (seconds from the start of the workload clock, in
increasing order, within ``[start_s, stop_s)``). The runner schedules each request at its intended time and
measures latency from it, so a stalled connection cannot hide its delay (no coordinated omission: wrk2's lesson).

- ``constant``: evenly spaced, ``1 / rate`` apart, the first at ``start_s``;
- ``poisson``: exponential gaps with mean ``1 / rate``;
- ``bursty``: Poisson at ``rate`` during ``on_s``, nothing during ``off_s``, repeating, starting with on;
- ``schedule``: Poisson whose rate steps to each ``(at_s, rate)``; no arrivals before the first step.

Piecewise processes restart their exponential clock at each boundary, which is exact for Poisson processes
(memorylessness). Exponential gaps are drawn in blocks of :data:`BLOCK` for speed; the stream is the same for a
given seed whatever the block boundaries.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import Any

import numpy as np

#: Gaps drawn per numpy call.
BLOCK = 4096

OPEN_LOOP_KINDS = ("constant", "poisson", "bursty", "schedule")


class _Exponentials:
    """Standard exponential variates from ``rng``, drawn in blocks; scale them by the mean you need.

    Read with :meth:`rest` (the unused variates of the current block, a new block when none is left) and
    :meth:`consume` (how many of them were used), so a caller can work on many at once.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: np.ndarray = np.empty(0)
        self._i = 0

    def rest(self) -> np.ndarray:
        if self._i >= len(self._buf):
            self._buf = self._rng.standard_exponential(BLOCK)
            self._i = 0
        return self._buf[self._i :]

    def consume(self, k: int) -> None:
        self._i += k


def _poisson(rate: float, start: float, stop: float, exp: _Exponentials) -> Iterator[list[float]]:
    """The arrival times of a Poisson process on ``[start, stop)``, in lists (one per block of variates).

    Each time is the previous plus the next variate / ``rate``, added one after the other as the one-at-a-time
    loop ``t += gap`` does (``np.add.accumulate`` is sequential, unlike ``np.sum``), so the times are the same
    floats; the gap that crosses ``stop`` is used up, as that loop's last draw is.
    """
    if rate <= 0:
        return
    t = start
    while True:
        gaps = exp.rest()
        acc = np.empty(len(gaps) + 1)
        acc[0] = t
        np.divide(gaps, rate, out=acc[1:])
        times = np.add.accumulate(acc)[1:]
        k = int(np.searchsorted(times, stop, side="left"))  # the first time >= stop (times never decrease)
        if k < len(times):
            exp.consume(k + 1)
            if k:
                yield times[:k].tolist()
            return
        exp.consume(len(times))
        t = float(times[-1])
        yield times.tolist()


def arrival_times(spec: Any, rng: np.random.Generator) -> Iterator[float]:
    """Intended send times for ``spec`` (a WorkloadSpec); raises ``ValueError`` for a closed-loop or unknown kind.

    The iterator is C code (``itertools.chain`` over lists made a block at a time): one ``next`` per request
    runs no Python frame.
    """
    kind = spec.arrival
    start, stop = float(spec.start_s), float(spec.stop_s)
    exp = _Exponentials(rng)
    if kind == "constant":
        return chain.from_iterable(_constant(float(spec.rate_per_s), start, stop))
    if kind == "poisson":
        return chain.from_iterable(_poisson(float(spec.rate_per_s), start, stop, exp))
    if kind == "bursty":
        return chain.from_iterable(
            _bursty(float(spec.rate_per_s), float(spec.on_s), float(spec.off_s), start, stop, exp)
        )
    if kind == "schedule":
        return chain.from_iterable(_scheduled(tuple(spec.schedule), start, stop, exp))
    raise ValueError(f"arrival {kind!r} is not an open-loop process (expected one of {', '.join(OPEN_LOOP_KINDS)})")


def _constant(rate: float, start: float, stop: float) -> Iterator[list[float]]:
    """``start + k / rate`` for k = 0, 1, ... while below ``stop``, in lists of up to :data:`BLOCK` (numpy's
    float64 arithmetic on ``k`` gives the same floats as Python's)."""
    if rate <= 0:
        return
    n = int((stop - start) * rate) + 1
    for k in range(0, n, BLOCK):
        times = start + np.arange(k, min(k + BLOCK, n), dtype=np.float64) / rate
        yield times[times < stop].tolist()


def _bursty(rate: float, on: float, off: float, start: float, stop: float, exp: _Exponentials) -> Iterator[list[float]]:
    period = on + off
    window = start
    while window < stop:
        yield from _poisson(rate, window, min(window + on, stop), exp)
        window += period


def _scheduled(
    steps: tuple[tuple[float, float], ...], start: float, stop: float, exp: _Exponentials
) -> Iterator[list[float]]:
    for i, (at, rate) in enumerate(steps):
        seg_start = max(start, float(at))
        seg_stop = min(stop, float(steps[i + 1][0]) if i + 1 < len(steps) else stop)
        if seg_stop > seg_start:
            yield from _poisson(float(rate), seg_start, seg_stop, exp)


def expected_count(spec: Any) -> float:
    """The mean number of arrivals of an open-loop ``spec`` (for progress bars and sanity checks)."""
    start, stop = float(spec.start_s), float(spec.stop_s)
    kind = spec.arrival
    if kind in ("constant", "poisson"):
        return float(spec.rate_per_s) * (stop - start)
    if kind == "bursty":
        period = float(spec.on_s) + float(spec.off_s)
        full, rest = divmod(stop - start, period)
        return float(spec.rate_per_s) * (full * float(spec.on_s) + min(rest, float(spec.on_s)))
    if kind == "schedule":
        total = 0.0
        steps = tuple(spec.schedule)
        for i, (at, rate) in enumerate(steps):
            seg_start = max(start, float(at))
            seg_stop = min(stop, float(steps[i + 1][0]) if i + 1 < len(steps) else stop)
            total += max(0.0, seg_stop - seg_start) * float(rate)
        return total
    return 0.0
