"""Anomaly detection over the analytics' interval records (the detection half of :mod:`wsfinal.analytics`).

:class:`AnomalyMonitor` keeps one set of detectors (:mod:`wsfinal.anomaly`) per series: the p95 latency, error
rate and reconnects of each connection and connection type, and each type's message throughput. It turns a
connection that says it is CONNECTED but stays silent into a ``stale_connection`` anomaly and a forecast warning
into a ``capacity_warning`` one, each once per episode, keeps what it found and tells the listeners. Pure:
everything takes ``now``. :class:`~wsfinal.analytics.WebSocketAnalytics` owns one and feeds it the records of
each aggregation (``detect_anomalies``); use it through that class.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .analytics_records import PerformanceMetrics
from .anomaly import Anomaly, AnomalyType, Cusum, Detector, EwmaControlChart, Prediction, RobustZScore, Severity
from .config import ConnectionType
from .records import ConnectionRecord
from .states import ConnectionState

__all__ = ["AnomalyMonitor"]

logger = logging.getLogger("wsfinal.analytics")

_SeriesKey = tuple[str, str]  # (subject id: connection id or "type:<value>", metric)


class AnomalyMonitor:
    """Detectors per series, episodes, the anomaly log (at most ``max_anomalies``) and its listeners.

    ``warmup`` and ``window`` size the detectors; a series reports again after ``refractory_intervals``
    aggregation intervals (the interval is passed to :meth:`feed_records`, so it follows the actual one)."""

    def __init__(self, *, warmup: int, window: int, refractory_intervals: int, max_anomalies: int) -> None:
        self.warmup = warmup
        self.window = window
        self.refractory_intervals = refractory_intervals
        self.anomalies: deque[Anomaly] = deque(maxlen=max_anomalies)
        self.listeners: list[Callable[[Anomaly], None]] = []
        self._detectors: dict[_SeriesKey, list[Detector]] = {}
        self._open_episodes: set[tuple[str, str]] = set()

    def forget(self, connection_id: str) -> None:
        """Drop a connection's detectors and its open stale episode."""
        self._open_episodes.discard((connection_id, "stale"))
        for key in [k for k in self._detectors if k[0] == connection_id]:
            del self._detectors[key]

    def _make_detectors(self, subject: str, metric: str, cid: str | None, ctype: ConnectionType) -> list[Detector]:
        common: dict[str, Any] = {
            "connection_id": cid,
            "connection_type": ctype.value,
            "subject": subject,
            "warmup": self.warmup,
        }
        w = self.window
        if metric == "latency":
            lat = dict(common, metric="p95 latency", unit="ms", min_abs_delta=1.0, min_rel_delta=0.5)
            return [
                RobustZScore(up=AnomalyType.LATENCY_SPIKE, window=w, **lat),
                EwmaControlChart(up=AnomalyType.PERFORMANCE_DEGRADATION, **dict(lat, min_rel_delta=0.2)),
                Cusum(up=AnomalyType.LEVEL_SHIFT, **dict(lat, min_rel_delta=0.2)),
            ]
        if metric == "error_rate":
            return [
                RobustZScore(
                    up=AnomalyType.ERROR_BURST,
                    window=w,
                    min_scale=0.005,
                    min_abs_delta=0.02,
                    metric="error rate",
                    **dict(common, warmup=3),
                )
            ]
        if metric == "reconnects":
            return [
                RobustZScore(
                    up=AnomalyType.RECONNECT_STORM,
                    window=w,
                    min_scale=0.5,
                    min_abs_delta=3.0,
                    metric="reconnects per interval",
                    **dict(common, warmup=3),
                )
            ]
        if metric == "throughput":
            thr = dict(common, metric="message throughput", unit="msg/s", min_rel_delta=0.5)
            return [
                RobustZScore(up=None, down=AnomalyType.THROUGHPUT_DROP, window=w, **thr),
                Cusum(up=None, down=AnomalyType.THROUGHPUT_DROP, **dict(thr, min_rel_delta=0.3)),
            ]
        raise ValueError(metric)  # pragma: no cover - internal

    def _feed(self, m: PerformanceMetrics, metric: str, value: float, interval_s: float) -> list[Anomaly]:
        subject_id = m.connection_id if m.connection_id is not None else f"type:{m.connection_type.value}"
        key = (subject_id, metric)
        dets = self._detectors.get(key)
        if dets is None:
            subject = (
                f"connection {m.connection_id}"
                if m.connection_id is not None
                else f"{m.connection_type.value} connections"
            )
            dets = self._detectors[key] = self._make_detectors(subject, metric, m.connection_id, m.connection_type)
        best: Anomaly | None = None
        refractory = self.refractory_intervals * interval_s  # follows the actual aggregation interval
        for d in dets:
            d.refractory_s = refractory  # every detector sees every value; the series reports at most one per round
            a = d.update(value, m.time)
            if a is not None and (best is None or a.severity.rank > best.severity.rank):
                best = a
        return [best] if best is not None else []

    def feed_records(self, records: Iterable[PerformanceMetrics], interval_s: float) -> list[Anomaly]:
        """Feed each record's series to their detectors; returns what they found (not yet published)."""
        found: list[Anomaly] = []
        for m in records:
            if m.samples:
                found += self._feed(m, "latency", m.p95_latency_ms, interval_s)
            if m.samples or m.messages or m.errors:
                found += self._feed(m, "error_rate", m.error_rate, interval_s)
            found += self._feed(m, "reconnects", float(m.reconnects), interval_s)
            if m.connection_id is None and m.period_s > 0:
                found += self._feed(m, "throughput", m.message_throughput, interval_s)
        return found

    def _episode(self, key: tuple[str, str], active: bool) -> bool:
        """True when an episode starts (active now, not before); closes it when inactive."""
        if active and key not in self._open_episodes:
            self._open_episodes.add(key)
            return True
        if not active:
            self._open_episodes.discard(key)
        return False

    def check_stale(
        self,
        records: list[ConnectionRecord],
        limit_of: Callable[[ConnectionRecord], float],
        last_activity_of: Callable[[ConnectionRecord], float],
        now: float,
    ) -> list[Anomaly]:
        """A ``stale_connection`` anomaly for each record CONNECTED but silent beyond ``limit_of(record)`` (once
        per episode); episodes of connections no longer in ``records`` are closed."""
        out = []
        for rec in records:
            limit = limit_of(rec)
            silent = now - last_activity_of(rec)
            is_stale = rec.state is ConnectionState.CONNECTED and silent > limit
            if self._episode((rec.connection_id, "stale"), is_stale):
                out.append(
                    Anomaly(
                        anomaly_type=AnomalyType.STALE_CONNECTION,
                        severity=Severity.HIGH if silent > 2 * limit else Severity.MEDIUM,
                        description=(
                            f"Connection {rec.connection_id} says it is connected but nothing has arrived for "
                            f"{silent:.0f} s (limit {limit:.0f} s): it may be half-open."
                        ),
                        time=now,
                        value=silent,
                        expected=limit,
                        score=silent / limit,
                        method="threshold",
                        metric="seconds since last activity",
                        connection_id=rec.connection_id,
                        connection_type=rec.connection_type.value,
                    )
                )
        ids = {rec.connection_id for rec in records}
        self._open_episodes = {k for k in self._open_episodes if k[1] != "stale" or k[0] in ids}
        return out

    def check_predictions(self, predictions: Iterable[Prediction], horizon_s: float, now: float) -> list[Anomaly]:
        """A ``capacity_warning`` anomaly when a forecast starts warning (once per episode): high when the limit
        is less than a third of ``horizon_s`` away."""
        out = []
        for p in predictions:
            key = (f"type:{p.connection_type.value if p.connection_type else '*'}", f"forecast:{p.metric}")
            if self._episode(key, p.warning):
                out.append(
                    Anomaly(
                        anomaly_type=AnomalyType.CAPACITY_WARNING,
                        severity=Severity.HIGH if (p.eta_s or 0.0) < horizon_s / 3 else Severity.MEDIUM,
                        description=p.description,
                        time=now,
                        value=p.current,
                        expected=p.threshold if p.threshold is not None else math.nan,
                        score=p.eta_s if p.eta_s is not None else math.nan,
                        method="linear_trend",
                        metric=p.metric,
                        connection_type=p.connection_type.value if p.connection_type else None,
                        details={"eta_s": p.eta_s, "slope_per_s": p.slope_per_s, "r2": p.r2},
                    )
                )
        return out

    def publish(self, found: list[Anomaly]) -> None:
        """Keep ``found`` and pass each to the listeners (a listener that raises is logged, the others run)."""
        for a in found:
            self.anomalies.append(a)
            for cb in self.listeners:
                try:
                    cb(a)
                except Exception:
                    logger.exception("anomaly listener %r failed", cb)

    def get(self, severity: Severity | str | None, since: float) -> list[Anomaly]:
        """Anomalies from ``since`` on whose severity is AT LEAST ``severity`` (None: all), oldest first."""
        floor = Severity.parse(severity).rank if severity is not None else -1
        return [a for a in self.anomalies if a.time >= since and a.severity.rank >= floor]

    def prune(self, before: float) -> None:
        """Drop anomalies older than ``before``."""
        anomalies = self.anomalies
        while anomalies and anomalies[0].time < before:
            anomalies.popleft()
