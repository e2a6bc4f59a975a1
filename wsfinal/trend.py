"""Trend fits for forecasts: an ordinary least-squares line with R^2, and Holt's linear smoothing.

Pure, no clock: times are passed in (seconds). :func:`wsfinal.anomaly.forecast` uses :func:`linear_trend`. Every
name is also importable from :mod:`wsfinal.stats`, where they used to live.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .exceptions import ConfigurationError

__all__ = ["HoltTrend", "TrendFit", "linear_trend"]


@dataclass(frozen=True, slots=True)
class TrendFit:
    """Least-squares line ``value = level + slope * (t - t_ref)``, fitted at ``t_ref`` (the last time)."""

    level: float
    slope: float
    t_ref: float
    r2: float
    n: int

    def at(self, t: float) -> float:
        return self.level + self.slope * (t - self.t_ref)

    def time_to(self, threshold: float) -> float | None:
        """Seconds after ``t_ref`` until the line equals ``threshold``; None if it never does from here."""
        gap = threshold - self.level
        if gap == 0.0:
            return 0.0
        if self.slope == 0.0 or (gap > 0.0) != (self.slope > 0.0):
            return None
        return gap / self.slope


def linear_trend(times: Sequence[float], values: Sequence[float]) -> TrendFit | None:
    """Ordinary least squares over paired samples; None with fewer than 3 points or no time spread."""
    n = len(times)
    if n != len(values):
        raise ValueError(f"linear_trend: {n} times but {len(values)} values")
    if n < 3:
        return None
    mt = math.fsum(times) / n
    mv = math.fsum(values) / n
    sxx = math.fsum((t - mt) ** 2 for t in times)
    if sxx <= 0.0:
        return None
    sxy = math.fsum((t - mt) * (v - mv) for t, v in zip(times, values))
    syy = math.fsum((v - mv) ** 2 for v in values)
    slope = sxy / sxx
    t_ref = times[-1]
    level = mv + slope * (t_ref - mt)
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0.0 else 1.0
    return TrendFit(level=level, slope=slope, t_ref=t_ref, r2=r2, n=n)


class HoltTrend:
    """Holt's linear exponential smoothing (level + trend), for irregular sample times.

    ``alpha`` smooths the level, ``beta`` the trend (per-second slope). ``forecast(t)`` extrapolates the line.
    """

    __slots__ = ("alpha", "beta", "level", "n", "slope", "stamp")

    def __init__(self, alpha: float = 0.3, beta: float = 0.1) -> None:
        for name, v in (("alpha", alpha), ("beta", beta)):
            if not 0.0 < v <= 1.0:
                raise ConfigurationError(name, v, "must be in (0, 1]")
        self.alpha = alpha
        self.beta = beta
        self.level = math.nan
        self.slope = 0.0
        self.stamp = 0.0
        self.n = 0

    def update(self, value: float, now: float) -> None:
        if self.n == 0:
            self.level = value
        else:
            dt = now - self.stamp
            if dt <= 0.0:
                self.level = self.level + self.alpha * (value - self.level)
                return
            predicted = self.level + self.slope * dt
            new_level = self.alpha * value + (1.0 - self.alpha) * predicted
            self.slope = self.beta * (new_level - self.level) / dt + (1.0 - self.beta) * self.slope
            self.level = new_level
        self.stamp = now
        self.n += 1

    def forecast(self, t: float) -> float:
        return self.level + self.slope * (t - self.stamp)
