"""What :mod:`wsfinal.analytics` keeps and reports, and how it ranks strategies (split from that module).

:class:`ConnStats` is what analytics keeps about one connection, updated by :func:`fold_latency` (an answered
request) and :func:`fold_censored` (a timed-out one) on the hot path; :func:`health_latency` is the latency the
health score judges it by.
:class:`PerformanceMetrics` is one aggregation interval of one connection or type; :class:`WindowedLatency` is a
connection's recent latency quantile; :class:`StrategyWindow` keeps per-strategy outcomes over a trailing window
and :func:`rank_strategies` turns its summary into the optimisation insight. All pure; every name is also
importable from :mod:`wsfinal.analytics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from .config import ConnectionType
from .stats import (
    Ewma,
    LatencyHistogram,
    SlidingWindowCounter,
    SlidingWindowHistogram,
    WindowedQuantile,
    add_sample_and_count,
)

__all__ = [
    "HEALTH_LATENCY_RECENT_S",
    "PerformanceMetrics",
    "StrategyWindow",
    "WindowedLatency",
    "health_latency",
    "rank_strategies",
]

_INV_LATENCY_TAU = 1.0 / 10.0
#: The default span (s) of request samples whose median is a connection's health latency (:func:`health_latency`;
#: set per analytics with ``WebSocketAnalytics(health_latency_recent_s=...)``).
HEALTH_LATENCY_RECENT_S = 3.0
_exp = math.exp


class ConnStats:
    """Everything kept about one connection: the open interval and a few smoothed figures.

    The latency EWMA (time constant 10 s) and the recent-latency window are updated inline on the hot path; the
    baseline is the connection's median latency per interval, smoothed with a 10-minute time constant at each
    aggregation. The window and the EWMA take answered requests and timed-out ones (censored, see
    :func:`fold_censored`); the histogram answered ones only. Ping round trips are kept apart (``ping_rtt_ms``).

    ``changes`` counts the changes no other field counts (censored samples, pings): with the interval counters
    (``messages``, ``errors``, ``reconnects``, ``hist.count``) it tells whether anything changed since a health
    score was memoised in ``health_memo`` (see ``WebSocketAnalytics.get_connection_health_score``).
    """

    __slots__ = (
        "baseline",
        "bytes",
        "changes",
        "connection_type",
        "errors",
        "errors_w",
        "health_memo",
        "hist",
        "last_event",
        "lat_ewma",
        "lat_stamp",
        "lat_window",
        "messages",
        "ops_w",
        "ping_rtt_ms",
        "ping_stamp",
        "reconnects",
        "reconnects_w",
    )

    def __init__(
        self,
        connection_type: ConnectionType,
        health_window_s: float,
        reconnect_window_s: float,
        latency_window_s: float,
    ) -> None:
        self.connection_type = connection_type
        self.lat_window = WindowedQuantile(latency_window_s, 10)
        self.hist = LatencyHistogram(0.01)
        self.errors = 0
        self.messages = 0
        self.bytes = 0
        self.reconnects = 0
        self.lat_ewma = math.nan
        self.lat_stamp = 0.0
        self.baseline = Ewma(600.0)
        self.errors_w = SlidingWindowCounter(health_window_s, 12)
        self.ops_w = SlidingWindowCounter(health_window_s, 12)
        self.reconnects_w = SlidingWindowCounter(reconnect_window_s, 10)
        self.last_event = -math.inf
        self.ping_rtt_ms = math.nan
        self.ping_stamp = -math.inf
        self.changes = 0
        self.health_memo: tuple[tuple[Any, ...], float] | None = None


def _fold_ewma(st: ConnStats, latency_ms: float, t: float) -> None:
    e = st.lat_ewma
    if e != e:  # first sample
        st.lat_ewma = latency_ms
        st.lat_stamp = t
    else:
        dt = t - st.lat_stamp
        if dt > 0.0:
            w = _exp(-dt * _INV_LATENCY_TAU)
            st.lat_ewma = e * w + latency_ms * (1.0 - w)
            st.lat_stamp = t


def fold_latency(st: ConnStats, latency_ms: float, t: float) -> None:
    """One latency sample into a connection's histogram, time-weighted EWMA, recent-latency window and operation
    window (the shared part of ``record_latency`` and ``record_answer``)."""
    st.hist.record(latency_ms)  # first: it refuses a negative or NaN latency (ValueError) before anything changes
    # st.lat_window.add(latency_ms, t) and st.ops_w.add(t) in one call (once per request); neither raises
    add_sample_and_count(st.lat_window, st.ops_w, latency_ms, t)
    e = st.lat_ewma  # _fold_ewma, inline: once per request
    if e != e:  # first sample
        st.lat_ewma = latency_ms
        st.lat_stamp = t
    else:
        dt = t - st.lat_stamp
        if dt > 0.0:
            w = _exp(-dt * _INV_LATENCY_TAU)
            st.lat_ewma = e * w + latency_ms * (1.0 - w)
            st.lat_stamp = t
    st.last_event = t


def fold_censored(st: ConnStats, elapsed_ms: float, t: float) -> None:
    """A request that timed out after ``elapsed_ms``: a censored sample (its latency is at least that) into the
    recent-latency window and the EWMA, the signals that route and alert, so that a silent connection reads as
    slow rather than as "no data". Not into the histogram (answered latencies) nor the operation window (the
    timeout counts as an error there)."""
    st.changes += 1  # no interval counter moves: tell the health-score memo
    st.lat_window.add(elapsed_ms, t)
    _fold_ewma(st, elapsed_ms, t)
    st.last_event = t


def health_latency(st: ConnStats, now: float, stale_after_s: float, recent_s: float = HEALTH_LATENCY_RECENT_S) -> float:
    """The latency (ms) the health score judges a connection by at ``now``, from the most recent evidence:

    1. the median of its request samples (answers, and timeouts as censored samples) of the last ``recent_s``
       seconds (``WebSocketAnalytics(health_latency_recent_s=...)``, default :data:`HEALTH_LATENCY_RECENT_S`;
       counted in whole slots of the latency window, ``latency_window_s / 10`` each, at least one, at most the
       whole window), or when there are none of the whole ``latency_window_s``: a
       median of recent samples follows a change within about half that span, both ways (the 10 s time-weighted
       EWMA it used before still held a third of a 40 ms spike 10 s after the spike ended, and, mean-like, read a
       steady connection as slower than its own median baseline);
    2. else, when the last pong came at least ``stale_after_s`` after the last request sample, the ping round
       trip: the rule of :meth:`~wsfinal.records.ConnectionRecord.routing_latency_ms`, so a connection starved
       of requests for being slow is judged by its link once the request evidence is stale (a lower bound: the
       ping has no service time, so it can show a slow link, never a fast exchange);
    3. else the request EWMA: the last evidence there is (NaN when the connection was never measured).
    """
    window = st.lat_window
    median, n = window.quantile(0.5, now, recent_s)
    if n:
        return median
    median, n = window.quantile(0.5, now)
    if n:
        return median
    ewma = st.lat_ewma
    if ewma == ewma and st.ping_stamp - st.lat_stamp >= stale_after_s:
        return st.ping_rtt_ms
    return ewma


@dataclass(frozen=True, slots=True)
class PerformanceMetrics:
    """One aggregation interval of one connection (``connection_id`` set) or one connection type (None).

    Latencies in ms over the interval's samples (NaN when there were none); ``error_rate`` is errors divided by
    errors plus successful operations (latency samples, or messages when no latency was recorded);
    ``message_throughput`` is messages per second (both directions) over ``period_s``.
    """

    time: float
    period_s: float
    connection_type: ConnectionType
    connection_id: str | None
    samples: int
    avg_latency_ms: float
    p50_latency_ms: float
    p95_latency_ms: float
    p99_latency_ms: float
    max_latency_ms: float
    errors: int
    error_rate: float
    messages: int
    message_throughput: float
    bytes: int
    reconnects: int
    connections: int = 1
    active_connections: int = 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in self.__slots__}
        out["connection_type"] = self.connection_type.value
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


class WindowedLatency(NamedTuple):
    """:meth:`WebSocketAnalytics.latency_quantile`'s answer: the ``quantile`` of one connection's latency
    samples (ms) over the last ``window_s`` seconds, and how many samples there were (``value`` NaN when none)."""

    value: float
    samples: int
    quantile: float
    window_s: float


class StrategyWindow:
    """Per-strategy outcomes over the last ``window_s``: success and failure counts and a latency histogram."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._ok: dict[str, SlidingWindowCounter] = {}
        self._failed: dict[str, SlidingWindowCounter] = {}
        self._latency: dict[str, SlidingWindowHistogram] = {}

    def record(self, name: str, ok: bool, latency_ms: float | None, now: float) -> None:
        if name not in self._ok:
            self._ok[name] = SlidingWindowCounter(self.window_s, 30)
            self._failed[name] = SlidingWindowCounter(self.window_s, 30)
            self._latency[name] = SlidingWindowHistogram(self.window_s, 15)
        (self._ok if ok else self._failed)[name].add(now)
        if latency_ms is not None and ok:
            self._latency[name].record(latency_ms, now)

    def summary(self, now: float) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for name in self._ok:
            ok = self._ok[name].total(now)
            failed = self._failed[name].total(now)
            if ok + failed == 0:
                continue
            h = self._latency[name].merged(now)
            p50, p95, p99 = h.percentiles([50, 95, 99])
            out[name] = {
                "requests": ok + failed,
                "succeeded": ok,
                "failed": failed,
                "success_rate": ok / (ok + failed),
                "mean_latency_ms": h.mean,
                "p50_latency_ms": p50,
                "p95_latency_ms": p95,
                "p99_latency_ms": p99,
            }
        return out


def rank_strategies(
    summary: dict[str, dict[str, float]], min_samples: int, window_s: float, tolerance: float = 0.01
) -> dict[str, Any]:
    """Rank strategies: those with at least ``min_samples`` requests, first by success rate (rates within
    ``tolerance`` of the best count as tied), then by lower p95 latency. Returns the numbers and a sentence."""
    eligible = {k: v for k, v in summary.items() if v["requests"] >= min_samples}
    best_rate = max((v["success_rate"] for v in eligible.values()), default=math.nan)

    def key(name: str) -> tuple[bool, float, float]:
        v = eligible[name]
        p95 = v["p95_latency_ms"]
        return (v["success_rate"] < best_rate - tolerance, p95 if not math.isnan(p95) else math.inf, -v["success_rate"])

    ranking = sorted(eligible, key=key)
    best = ranking[0] if ranking else None
    if best is None:
        reason = f"no strategy has {min_samples} requests in the last {window_s:.0f} s yet"
    else:
        b = eligible[best]
        reason = (
            f"{best} served best over the last {window_s:.0f} s: {100 * b['success_rate']:.2f}% of "
            f"{b['requests']:.0f} requests succeeded, p95 latency {b['p95_latency_ms']:.1f} ms"
        )
        if len(ranking) > 1:
            r = eligible[ranking[1]]
            reason += f" (next: {ranking[1]}, {100 * r['success_rate']:.2f}% and p95 {r['p95_latency_ms']:.1f} ms)"
        reason += "."
    return {
        "window_s": window_s,
        "min_samples": min_samples,
        "strategies": summary,
        "ranking": ranking,
        "best_strategy": best,
        "reason": reason,
    }
