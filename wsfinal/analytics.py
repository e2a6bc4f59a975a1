"""WebSocketAnalytics: streaming per-connection statistics, periodic aggregation, anomalies, health, forecasts.

Connections (or the manager) call the ``record_*`` methods on their hot path: each is O(1) and only updates
in-memory counters, a histogram and EWMAs. Periodically the shell calls ``_update_performance_metrics()`` (which
closes the current interval into :class:`PerformanceMetrics` records per connection and per connection type, kept
for ``retention_s``) and ``_detect_anomalies()`` (which feeds those records to the detectors of
:mod:`wsfinal.anomaly` through :mod:`wsfinal.analytics_anomalies`). The record types and the strategy ranking
live in :mod:`wsfinal.analytics_records` and are importable from here too. Every method has a pure synchronous
twin taking ``now``; the async ones only read the clock. The health score is :mod:`wsfinal.health`'s formula.
Call everything from one thread (the event loop's).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .analytics_anomalies import AnomalyMonitor
from .analytics_records import (
    HEALTH_LATENCY_RECENT_S,
    ConnStats,
    PerformanceMetrics,
    StrategyWindow,
    WindowedLatency,
    fold_censored,
    fold_latency,
    health_latency,
    rank_strategies,
)
from .anomaly import Anomaly, Prediction, Severity, forecast
from .config import ConnectionType, LoadBalancingStrategy
from .exceptions import ConfigurationError, UnknownConnectionError, UsageError
from .health import HealthInputs, health_score
from .records import DEFAULT_LATENCY_STALE_AFTER_S, ConnectionRecord
from .states import ConnectionState
from .stats import LatencyHistogram

__all__ = [
    "PerformanceMetrics",
    "Prediction",
    "StrategyWindow",
    "WebSocketAnalytics",
    "WindowedLatency",
    "rank_strategies",
]

logger = logging.getLogger("wsfinal.analytics")


class StoreView(Protocol):
    """What analytics reads from a connection store (``InMemoryConnectionStore`` provides it)."""

    def get(self, connection_id: str) -> ConnectionRecord | None: ...
    def all(self) -> list[ConnectionRecord]: ...


def _coerce_type(value: ConnectionType | str, where: str = "connection_type") -> ConnectionType:
    if isinstance(value, ConnectionType):
        return value
    try:
        return ConnectionType(str(value).lower())
    except ValueError:
        choices = ", ".join(t.value for t in ConnectionType)
        raise ConfigurationError(where, value, f"expected a ConnectionType ({choices})") from None


class WebSocketAnalytics:
    """Streaming analytics for the manager's connections. ``store`` is optional (state and staleness come
    from it when given); ``clock`` defaults to the running event loop's ``time()``.

    Knobs: ``connection_retention_s`` keeps per-connection records for less time than per-type ones, and at
    most ``max_connection_records`` each (per-type: ``max_records``), so memory stays bounded by connections x
    ``max_connection_records`` records whatever the interval; ``latency_threshold_ms`` and
    ``throughput_capacity`` (msg/s, per type or one number for all) are what forecasts warn about;
    ``stale_after_s`` is used for connections whose config does not give a heartbeat interval;
    ``health_latency_recent_s`` (default 3 s, at most ``latency_window_s``) is the span of recent request samples
    whose median is a connection's health latency (docs/analytics.md, *Which latency*).
    """

    def __init__(
        self,
        store: StoreView | None = None,
        *,
        clock: Callable[[], float] | None = None,
        retention_s: float = 24 * 3600,
        connection_retention_s: float = 3600.0,
        max_records: int = 10_000,
        max_connection_records: int = 720,
        max_anomalies: int = 10_000,
        detector_warmup: int = 10,
        detector_window: int = 60,
        refractory_intervals: int = 5,
        health_window_s: float = 60.0,
        reconnect_window_s: float = 300.0,
        latency_window_s: float = 10.0,
        health_latency_recent_s: float | None = None,
        stale_after_s: float = 90.0,
        latency_threshold_ms: float = 1000.0,
        throughput_capacity: float | dict[ConnectionType, float] | None = None,
        prediction_window_s: float = 1800.0,
        prediction_horizon_s: float = 900.0,
        insight_window_s: float = 900.0,
        insight_min_samples: int = 20,
    ) -> None:
        for name, v in (
            ("retention_s", retention_s),
            ("connection_retention_s", connection_retention_s),
            ("health_window_s", health_window_s),
            ("reconnect_window_s", reconnect_window_s),
            ("latency_window_s", latency_window_s),
            ("stale_after_s", stale_after_s),
            ("prediction_window_s", prediction_window_s),
            ("prediction_horizon_s", prediction_horizon_s),
            ("insight_window_s", insight_window_s),
        ):
            if not (isinstance(v, int | float) and v > 0 and math.isfinite(v)):
                raise ConfigurationError(name, v, "must be a finite number > 0")
        if health_latency_recent_s is None:
            # the default span, at most the whole latency window (what a longer span reads anyway)
            health_latency_recent_s = min(HEALTH_LATENCY_RECENT_S, float(latency_window_s))
        elif not (
            isinstance(health_latency_recent_s, int | float)
            and not isinstance(health_latency_recent_s, bool)
            and 0 < health_latency_recent_s <= latency_window_s
        ):
            raise ConfigurationError(
                "health_latency_recent_s",
                health_latency_recent_s,
                f"must be a number > 0 and <= latency_window_s ({latency_window_s!r}): the span of recent samples "
                "whose median is the health latency is a part of the latency window",
            )
        if detector_window < detector_warmup or detector_warmup < 3:
            raise ConfigurationError("detector_warmup", detector_warmup, "must be >= 3 and <= detector_window")
        self.store = store
        self._clock = clock
        self.retention_s = float(retention_s)
        self.connection_retention_s = float(connection_retention_s)
        self.max_records = max_records
        self.max_connection_records = max_connection_records
        self.health_window_s = float(health_window_s)
        self.reconnect_window_s = float(reconnect_window_s)
        self.latency_window_s = float(latency_window_s)
        #: The span (s) of request samples whose median is a connection's health latency (see
        #: :func:`~wsfinal.analytics_records.health_latency`).
        self.health_latency_recent_s = float(health_latency_recent_s)
        self.stale_after_s = float(stale_after_s)
        self.latency_threshold_ms = latency_threshold_ms
        self.throughput_capacity = throughput_capacity
        self.prediction_window_s = prediction_window_s
        self.prediction_horizon_s = prediction_horizon_s
        self.insight_min_samples = insight_min_samples
        self._conns: dict[str, ConnStats] = {}
        self._type_history: dict[ConnectionType, deque[PerformanceMetrics]] = {}
        self._conn_history: dict[str, deque[PerformanceMetrics]] = {}
        self._pending: list[PerformanceMetrics] = []
        self._monitor = AnomalyMonitor(
            warmup=detector_warmup,
            window=detector_window,
            refractory_intervals=refractory_intervals,
            max_anomalies=max_anomalies,
        )
        self._last_update: float | None = None
        self._first_event: float | None = None
        self._strategies = StrategyWindow(insight_window_s)
        self._interval_s = 60.0
        self.peer_cache_s = 1.0
        self._peer_cache: dict[ConnectionType, tuple[float, list[float], dict[str, float]]] = {}
        #: Aggregations so far: part of the health-score memo's key (an aggregation resets the interval counters
        #: and moves the baselines).
        self._aggregations = 0

    # detector settings, kept on the anomaly monitor
    detector_warmup = property(lambda self: self._monitor.warmup)
    detector_window = property(lambda self: self._monitor.window)
    refractory_intervals = property(
        lambda self: self._monitor.refractory_intervals,
        lambda self, v: setattr(self._monitor, "refractory_intervals", v),
    )

    # -- time -------------------------------------------------------------------------------------------------
    def _now(self, now: float | None = None) -> float:
        """``now`` if given, else the clock's time, else the running loop's (UsageError outside a loop)."""
        if now is not None:
            return now
        if self._clock is not None:
            return self._clock()
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            raise UsageError(
                "WebSocketAnalytics: no running event loop to read the time from; pass now= or clock="
            ) from None

    # -- hot path ---------------------------------------------------------------------------------------------
    def _conn(self, connection_id: str, connection_type: ConnectionType | str, now: float) -> ConnStats:
        st = self._conns.get(connection_id)
        if st is None:
            st = self._conns[connection_id] = ConnStats(
                _coerce_type(connection_type), self.health_window_s, self.reconnect_window_s, self.latency_window_s
            )
            if self._first_event is None:
                self._first_event = now
        return st

    def record_latency(
        self, connection_id: str, connection_type: ConnectionType | str, latency_ms: float, now: float | None = None
    ) -> None:
        """One completed request's latency of ``latency_ms`` (>= 0; ValueError otherwise). Ping round trips go to
        :meth:`record_ping`, timeouts to :meth:`record_timeout`."""
        t = now if now is not None else self._now()
        st = self._conns.get(connection_id) or self._conn(connection_id, connection_type, t)
        fold_latency(st, latency_ms, t)

    def record_answer(
        self,
        connection_id: str,
        connection_type: ConnectionType | str,
        nbytes: int,
        latency_ms: float,
        now: float | None = None,
    ) -> None:
        """A received message of ``nbytes`` that answered a request after ``latency_ms``: the same as
        ``record_message(..., "in", nbytes, now)`` then ``record_latency(..., latency_ms, now)``, in one call (the
        connection makes it once per answered request)."""
        t = now if now is not None else self._now()
        st = self._conns.get(connection_id) or self._conn(connection_id, connection_type, t)
        st.messages += 1
        st.bytes += nbytes
        fold_latency(st, latency_ms, t)

    def record_timeout(
        self, connection_id: str, connection_type: ConnectionType | str, elapsed_ms: float, now: float | None = None
    ) -> None:
        """A request that got no answer within ``elapsed_ms``: a censored latency sample (a lower bound) for the
        latency EWMA and :meth:`latency_quantile`, not for the latency histograms (see ``fold_censored``). The
        timeout is counted as an error by :meth:`record_error` as before."""
        t = self._now(now)
        st = self._conns.get(connection_id) or self._conn(connection_id, connection_type, t)
        fold_censored(st, elapsed_ms, t)

    def record_ping(
        self, connection_id: str, connection_type: ConnectionType | str, rtt_ms: float, now: float | None = None
    ) -> None:
        """An app-level ping's round trip: kept as the connection's ``ping_rtt_ms`` (:meth:`ping_rtt_ms`), apart
        from request latency (pings never enter the histograms, the EWMA or the windowed quantile)."""
        t = self._now(now)
        st = self._conns.get(connection_id) or self._conn(connection_id, connection_type, t)
        st.ping_rtt_ms = rtt_ms
        st.ping_stamp = t
        st.changes += 1  # for the health-score memo

    def ping_rtt_ms(self, connection_id: str) -> float:
        """The connection's last ping round trip (ms); NaN when none was recorded."""
        st = self._conns.get(connection_id)
        return st.ping_rtt_ms if st is not None else math.nan

    def record_message(
        self,
        connection_id: str,
        connection_type: ConnectionType | str,
        direction: str,
        nbytes: int = 0,
        now: float | None = None,
    ) -> None:
        """One message sent (``direction="out"``/``"sent"``) or received (``"in"``/``"received"``)."""
        if direction not in ("in", "out", "sent", "received"):
            raise ConfigurationError("direction", direction, "expected 'in', 'out', 'sent' or 'received'")
        t = now if now is not None else self._now()
        st = self._conns.get(connection_id) or self._conn(connection_id, connection_type, t)
        st.messages += 1
        st.bytes += nbytes
        st.last_event = t

    def record_error(
        self, connection_id: str, connection_type: ConnectionType | str, kind: str = "error", now: float | None = None
    ) -> None:
        """One failed operation (timeout, error reply, lost request...); ``kind`` is kept for logs only."""
        t = self._now(now)
        st = self._conns.get(connection_id) or self._conn(connection_id, connection_type, t)
        st.errors += 1
        st.errors_w.add(t)
        st.last_event = t

    def record_reconnect(
        self, connection_id: str, connection_type: ConnectionType | str, now: float | None = None
    ) -> None:
        t = self._now(now)
        st = self._conns.get(connection_id) or self._conn(connection_id, connection_type, t)
        st.reconnects += 1
        st.reconnects_w.add(t)
        st.last_event = t

    def record_strategy_outcome(
        self, strategy: LoadBalancingStrategy | str, ok: bool, latency_ms: float | None, now: float | None = None
    ) -> None:
        """The outcome of one request routed by ``strategy``: feeds :meth:`get_optimization_insights`."""
        name = strategy.value if isinstance(strategy, LoadBalancingStrategy) else str(strategy)
        self._strategies.record(name, ok, latency_ms, self._now(now))

    def forget_connection(self, connection_id: str) -> None:
        """Drop what is kept about a connection (its history stays until retention removes it)."""
        self._conns.pop(connection_id, None)
        self._monitor.forget(connection_id)

    # -- aggregation ------------------------------------------------------------------------------------------
    def update_performance_metrics(self, now: float) -> list[PerformanceMetrics]:
        """Close the interval ending at ``now``: one record per connection with activity or in the store and
        one per connection type. Returns the new records (also kept, and queued for :meth:`detect_anomalies`)."""
        self._aggregations += 1
        start = self._last_update if self._last_update is not None else self._first_event
        period = max(now - start, 1e-9) if start is not None else 0.0
        if self._last_update is not None and now > self._last_update:
            self._interval_s = now - self._last_update
        self._last_update = now
        records = {r.connection_id: r for r in self.store.all()} if self.store is not None else {}
        per_type: dict[ConnectionType, list[tuple[ConnStats, PerformanceMetrics]]] = {}
        new: list[PerformanceMetrics] = []
        for cid, st in list(self._conns.items()):
            rec = records.get(cid)
            active = st.hist.count + st.errors + st.messages + st.reconnects > 0
            if not active and self.store is not None and rec is None:
                self.forget_connection(cid)  # removed from the store and quiet
                continue
            if not active and self.store is None and now - st.last_event > self.connection_retention_s:
                self.forget_connection(cid)
                continue
            m = self._metrics(now, period, st.connection_type, cid, [st], 1, int(self._is_active(rec)))
            if m.samples:
                st.baseline.update(m.p50_latency_ms, now)
            per_type.setdefault(st.connection_type, []).append((st, m))
            new.append(m)
            history = self._conn_history.get(cid)  # (not setdefault: that makes a deque per connection and interval)
            if history is None:
                history = self._conn_history[cid] = deque(maxlen=self.max_connection_records)
            history.append(m)
        types = set(per_type) | {r.connection_type for r in records.values()}
        for ctype in sorted(types, key=lambda t: t.value):
            group = per_type.get(ctype, [])
            in_store = [r for r in records.values() if r.connection_type is ctype]
            n_conn = len(in_store) if self.store is not None else len(group)
            n_active = sum(1 for r in in_store if self._is_active(r)) if self.store is not None else len(group)
            m = self._metrics(now, period, ctype, None, [s for s, _ in group], n_conn, n_active)
            new.append(m)
            type_history = self._type_history.get(ctype)
            if type_history is None:
                type_history = self._type_history[ctype] = deque(maxlen=self.max_records)
            type_history.append(m)
        for st in self._conns.values():
            st.hist.clear()
            st.errors = st.messages = st.bytes = st.reconnects = 0
        self._prune(now)
        self._pending.extend(new)
        return new

    @staticmethod
    def _is_active(rec: ConnectionRecord | None) -> bool:
        return rec is None or rec.state is ConnectionState.CONNECTED

    def _metrics(
        self,
        now: float,
        period: float,
        ctype: ConnectionType,
        cid: str | None,
        stats: list[ConnStats],
        n_conn: int,
        n_active: int,
    ) -> PerformanceMetrics:
        if len(stats) == 1:  # one connection's record (every connection, every interval): no sums to make
            one = stats[0]
            hist = one.hist
            errors, messages, nbytes, reconnects = one.errors, one.messages, one.bytes, one.reconnects
        else:
            hist = LatencyHistogram(0.01)
            for s in stats:
                if s.hist.count:
                    hist.merge(s.hist)
            errors = sum(s.errors for s in stats)
            messages = sum(s.messages for s in stats)
            nbytes = sum(s.bytes for s in stats)
            reconnects = sum(s.reconnects for s in stats)
        ops = hist.count if hist.count else messages
        p50, p95, p99 = hist.percentiles([50, 95, 99])
        return PerformanceMetrics(
            time=now,
            period_s=period,
            connection_type=ctype,
            connection_id=cid,
            samples=hist.count,
            avg_latency_ms=hist.mean,
            p50_latency_ms=p50,
            p95_latency_ms=p95,
            p99_latency_ms=p99,
            max_latency_ms=hist.max if hist.count else math.nan,
            errors=errors,
            error_rate=errors / (errors + ops) if errors + ops else 0.0,
            messages=messages,
            message_throughput=messages / period if period > 0 else 0.0,
            bytes=nbytes,
            reconnects=reconnects,
            connections=n_conn,
            active_connections=n_active,
        )

    def _prune(self, now: float) -> None:
        for hist in self._type_history.values():
            while hist and hist[0].time < now - self.retention_s:
                hist.popleft()
        for cid in list(self._conn_history):
            h = self._conn_history[cid]
            while h and h[0].time < now - self.connection_retention_s:
                h.popleft()
            if not h:
                del self._conn_history[cid]
        self._monitor.prune(now - self.retention_s)

    async def _update_performance_metrics(self) -> list[PerformanceMetrics]:
        """Periodic aggregation (the seed's name): :meth:`update_performance_metrics` at the clock's now."""
        return self.update_performance_metrics(self._now())

    # -- anomalies (wsfinal.analytics_anomalies) --------------------------------------------------------------
    def add_anomaly_listener(self, callback: Callable[[Anomaly], None]) -> None:
        """Call ``callback(anomaly)`` for each new anomaly (the alert manager subscribes here). A callback that
        raises is logged and does not stop detection."""
        self._monitor.listeners.append(callback)

    def detect_anomalies(self, now: float) -> list[Anomaly]:
        """Feed the records made since the last call to the detectors; check staleness and forecasts.

        Returns the new anomalies (also kept for ``retention_s`` and passed to the listeners)."""
        pending, self._pending = self._pending, []
        found = self._monitor.feed_records(pending, self._interval_s)
        if self.store is not None:
            found += self._monitor.check_stale(self.store.all(), self._stale_after, self._last_activity, now)
        found += self._monitor.check_predictions(self.get_predictions(now), self.prediction_horizon_s, now)
        self._monitor.publish(found)
        return found

    async def _detect_anomalies(self) -> list[Anomaly]:
        """Periodic detection (the seed's name): :meth:`detect_anomalies` at the clock's now."""
        return self.detect_anomalies(self._now())

    def _stale_after(self, rec: ConnectionRecord) -> float:
        """The store's own limit when it has one (``stale_after(record)``), else 3 x the heartbeat interval."""
        limit = getattr(self.store, "stale_after", None)
        if callable(limit):
            return float(limit(rec))
        if rec.config is not None:
            return 3.0 * rec.config.heartbeat_interval_seconds
        return self.stale_after_s

    def get_anomalies(
        self, severity: Severity | str | None = "high", hours: float = 1.0, now: float | None = None
    ) -> list[Anomaly]:
        """Anomalies of the last ``hours`` whose severity is AT LEAST ``severity`` (None: all), oldest first."""
        return self._monitor.get(severity, self._now(now) - hours * 3600.0)

    # -- queries ----------------------------------------------------------------------------------------------
    def get_performance_metrics(
        self, connection_type: ConnectionType | str | None = None, hours: float = 24.0, now: float | None = None
    ) -> list[PerformanceMetrics]:
        """Per-type records of the last ``hours`` (all types when None), oldest first."""
        t = self._now(now)
        since = t - hours * 3600.0
        types = list(self._type_history) if connection_type is None else [_coerce_type(connection_type)]
        out = [m for ct in types for m in self._type_history.get(ct, ()) if m.time >= since]
        out.sort(key=lambda m: m.time)
        return out

    def get_connection_metrics(
        self, connection_id: str, hours: float = 1.0, now: float | None = None
    ) -> list[PerformanceMetrics]:
        """Per-connection records of the last ``hours`` (kept for ``connection_retention_s``)."""
        since = self._now(now) - hours * 3600.0
        return [m for m in self._conn_history.get(connection_id, ()) if m.time >= since]

    def _last_activity(self, rec: ConnectionRecord | None, st: ConnStats | None = None) -> float:
        if st is None and rec is not None:
            st = self._conns.get(rec.connection_id)
        a = rec.last_activity if rec is not None else -math.inf
        b = st.last_event if st is not None else -math.inf
        return max(a, b)

    def health_inputs(self, connection_id: str, now: float | None = None) -> HealthInputs:
        """The inputs of the health formula for one connection (UnknownConnectionError if neither the store
        nor the analytics knows it)."""
        t = self._now(now)
        rec = self.store.get(connection_id) if self.store is not None else None
        st = self._conns.get(connection_id)
        if rec is None and st is None:
            raise UnknownConnectionError(connection_id)
        ctype = rec.connection_type if rec is not None else st.connection_type  # type: ignore[union-attr]
        peer = self._peer_median(ctype, connection_id, t)
        if st is not None:
            cached = self._peer_cache[ctype]
            own = cached[2].get(connection_id) if cached[0] == t else None  # computed at this very time already
            latency = (
                own
                if own is not None
                else health_latency(st, t, self._latency_stale_after(rec), self.health_latency_recent_s)
            )
        else:
            assert rec is not None
            latency = rec.routing_latency_ms()  # the same rule, from the store's record alone
        baseline = st.baseline.value if st is not None else math.nan
        if st is not None:
            errors = st.errors_w.total(t)
            ops = st.ops_w.total(t)
            error_rate = errors / (errors + ops) if errors + ops else 0.0
            reconnects = int(st.reconnects_w.total(t))
        else:
            assert rec is not None
            done = rec.requests_ok + rec.requests_failed
            error_rate = rec.requests_failed / done if done else 0.0
            reconnects = 0
        last = self._last_activity(rec, st)
        return HealthInputs(
            latency_ms=latency,
            baseline_latency_ms=baseline,
            peer_latency_ms=peer,
            error_rate=error_rate,
            staleness_s=max(0.0, t - last) if math.isfinite(last) else 0.0,
            stale_after_s=self._stale_after(rec) if rec is not None else self.stale_after_s,
            reconnects=reconnects,
            state=rec.state if rec is not None else ConnectionState.CONNECTED,
        )

    def _latency_stale_after(self, rec: ConnectionRecord | None) -> float:
        """How long a request sample stays the health latency's evidence against a newer pong: the record's
        ``latency_stale_after_s`` (``ConnectionConfig.latency_stale_after_seconds``), else the default."""
        return rec.latency_stale_after_s if rec is not None else DEFAULT_LATENCY_STALE_AFTER_S

    def _peer_median(self, ctype: ConnectionType, connection_id: str, now: float) -> float | None:
        """Median health latency (:func:`health_latency`) of the other connections of ``ctype``. The values are
        cached for ``peer_cache_s``, so scoring every connection of a type costs O(n log n) per refresh, not
        O(n^2); the connection's own cached value (one occurrence) is left out."""
        cached = self._peer_cache.get(ctype)
        if cached is None or abs(now - cached[0]) > self.peer_cache_s:
            store = self.store
            by_id: dict[str, float] = {}
            for cid, s in self._conns.items():
                if s.connection_type is ctype:
                    rec = store.get(cid) if store is not None else None
                    v = health_latency(s, now, self._latency_stale_after(rec), self.health_latency_recent_s)
                    if v == v:
                        by_id[cid] = v
            cached = self._peer_cache[ctype] = (now, sorted(by_id.values()), by_id)
        values, by_id = cached[1], cached[2]
        skip = -1
        own = by_id.get(connection_id)
        if own is not None:  # exclude this connection's own value (one occurrence)
            skip = bisect.bisect_left(values, own)
        n = len(values) - (1 if skip >= 0 else 0)
        if n <= 0:
            return None

        def at(j: int) -> float:
            return values[j + 1] if 0 <= skip <= j else values[j]

        return at(n // 2) if n % 2 else 0.5 * (at(n // 2 - 1) + at(n // 2))

    def latency_quantile(
        self, connection_id: str, quantile: float = 0.9, window_s: float | None = None, now: float | None = None
    ) -> WindowedLatency:
        """The ``quantile`` (0-1) of the connection's latency samples (answered requests, and timed-out ones as
        censored samples: their time to the timeout, a lower bound; never pings; ms) of the last
        ``window_s`` seconds (default and at most ``latency_window_s``; resolution a tenth of it), within 2 %.

        ``samples`` says how many there were: compare it with a minimum before trusting the value (one sample is
        its own p90). An unknown or forgotten connection, or one without samples in the window, gives NaN and 0.
        """
        t = self._now(now)
        window = self.latency_window_s if window_s is None else min(float(window_s), self.latency_window_s)
        st = self._conns.get(connection_id)
        if st is None:
            return WindowedLatency(math.nan, 0, quantile, window)
        value, n = st.lat_window.quantile(quantile, t, window)
        return WindowedLatency(value, n, quantile, window)

    def get_connection_health_score(self, connection_id: str, now: float | None = None) -> float:
        """0-100 by the formula of :mod:`wsfinal.health` (100 = healthy).

        Memoised per connection: asked again at the same time with nothing changed (the balancer's health check
        and the manager's overview or a runner's sample at the same tick), it returns the score it computed, not
        a recomputation (the same number: every input is in :meth:`_health_memo_key`)."""
        t = self._now(now)
        st = self._conns.get(connection_id)
        if st is None:  # known to the store only (or unknown: UnknownConnectionError): no memo
            return health_score(self.health_inputs(connection_id, t))
        memo = st.health_memo
        if memo is not None and memo[0][0] == t and memo[0] == self._health_memo_key(st, connection_id, t):
            return memo[1]
        score = health_score(self.health_inputs(connection_id, t))
        # the key is taken after the inputs: they may have refreshed the peer cache it holds
        st.health_memo = (self._health_memo_key(st, connection_id, t), score)
        return score

    def _health_memo_key(self, st: ConnStats, connection_id: str, now: float) -> tuple[Any, ...]:
        """Everything :meth:`health_inputs` reads for a connection with ``st`` at ``now``, or a counter that moves
        when it changes: the connection's counters (``ConnStats.changes`` counts what they do not), the
        aggregations (baseline, counters reset), the store's record (identity, state, last activity, the limits
        read from it) and the peer-latency cache in use (at one ``now`` a cache once used is kept: it is replaced
        only when older than ``peer_cache_s``, which is in the key too)."""
        rec = self.store.get(connection_id) if self.store is not None else None
        ctype = rec.connection_type if rec is not None else st.connection_type
        return (
            now,
            st.hist.count,
            st.errors,
            st.reconnects,
            st.changes,
            st.last_event,
            self._aggregations,
            rec,
            self.stale_after_s
            if rec is None
            else (rec.state, rec.last_activity, self._stale_after(rec), rec.latency_stale_after_s),
            ctype,
            self._peer_cache.get(ctype),
            self.peer_cache_s,
            self.health_latency_recent_s,
        )

    def health_scorer(self, record: ConnectionRecord, now: float) -> float:
        """``balancer.health_scorer``: the score of a store record at ``now``."""
        return self.get_connection_health_score(record.connection_id, now)

    # -- predictions and insights -----------------------------------------------------------------------------
    def _capacity(self, ctype: ConnectionType) -> float | None:
        cap = self.throughput_capacity
        if isinstance(cap, dict):
            return cap.get(ctype)
        return cap

    def get_predictions(self, now: float | None = None) -> list[Prediction]:
        """Least-squares trend of each type's p95 latency and message throughput over the last
        ``prediction_window_s``; ``warning`` is set when the line reaches its threshold (``latency_threshold_ms``,
        ``throughput_capacity``) within ``prediction_horizon_s`` while it is still below it."""
        t = self._now(now)
        out: list[Prediction] = []
        for ctype, hist in self._type_history.items():
            recent = [m for m in hist if m.time >= t - self.prediction_window_s]
            lat = [(m.time, m.p95_latency_ms) for m in recent if m.samples]
            thr = [(m.time, m.message_throughput) for m in recent if m.period_s > 0]
            for metric, series, threshold, unit in (
                ("p95 latency", lat, self.latency_threshold_ms, "ms"),
                ("message throughput", thr, self._capacity(ctype), "msg/s"),
            ):
                p = forecast(metric, ctype, series, threshold, unit, t, self.prediction_horizon_s)
                if p is not None:
                    out.append(p)
        return out

    def get_optimization_insights(self, now: float | None = None) -> dict[str, Any]:
        """Which strategy served best over the recent window, with the numbers (see :func:`rank_strategies`)."""
        t = self._now(now)
        return rank_strategies(self._strategies.summary(t), self.insight_min_samples, self._strategies.window_s)

    # -- shell ------------------------------------------------------------------------------------------------
    async def run(self, interval_s: float = 60.0) -> None:
        """Aggregate and detect every ``interval_s`` until cancelled; a failing round is logged, not fatal."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._update_performance_metrics()
                await self._detect_anomalies()
            except Exception:
                logger.exception("analytics round failed")

    def connections(self) -> Iterable[str]:
        return list(self._conns)
