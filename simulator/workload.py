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
from typing import Any

import numpy as np

#: Gaps drawn per numpy call.
BLOCK = 4096

OPEN_LOOP_KINDS = ("constant", "poisson", "bursty", "schedule")


class _Exponentials:
    """Standard exponential variates from ``rng``, drawn in blocks; scale them by the mean you need."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: list[float] = []
        self._i = 0

    def next(self) -> float:
        if self._i >= len(self._buf):
            self._buf = self._rng.standard_exponential(BLOCK).tolist()
            self._i = 0
        x = self._buf[self._i]
        self._i += 1
        return x


def _poisson(rate: float, start: float, stop: float, exp: _Exponentials) -> Iterator[float]:
    if rate <= 0:
        return
    t = start
    while True:
        t += exp.next() / rate
        if t >= stop:
            return
        yield t


def arrival_times(spec: Any, rng: np.random.Generator) -> Iterator[float]:
    """Intended send times for ``spec`` (a WorkloadSpec); raises ``ValueError`` for a closed-loop or unknown kind."""
    kind = spec.arrival
    start, stop = float(spec.start_s), float(spec.stop_s)
    exp = _Exponentials(rng)
    if kind == "constant":
        rate = float(spec.rate_per_s)
        if rate <= 0:
            return iter(())
        return (t for t in (start + k / rate for k in range(int((stop - start) * rate) + 1)) if t < stop)
    if kind == "poisson":
        return _poisson(float(spec.rate_per_s), start, stop, exp)
    if kind == "bursty":
        return _bursty(float(spec.rate_per_s), float(spec.on_s), float(spec.off_s), start, stop, exp)
    if kind == "schedule":
        return _scheduled(tuple(spec.schedule), start, stop, exp)
    raise ValueError(f"arrival {kind!r} is not an open-loop process (expected one of {', '.join(OPEN_LOOP_KINDS)})")


def _bursty(rate: float, on: float, off: float, start: float, stop: float, exp: _Exponentials) -> Iterator[float]:
    period = on + off
    window = start
    while window < stop:
        yield from _poisson(rate, window, min(window + on, stop), exp)
        window += period


def _scheduled(
    steps: tuple[tuple[float, float], ...], start: float, stop: float, exp: _Exponentials
) -> Iterator[float]:
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
