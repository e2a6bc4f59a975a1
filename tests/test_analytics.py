"""Tests of wsfinal.analytics: aggregation, retention, anomalies, health, forecasts, insights, the async shell."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfinal.analytics import PerformanceMetrics, WebSocketAnalytics, WindowedLatency
from wsfinal.analytics_records import HEALTH_LATENCY_RECENT_S
from wsfinal.anomaly import Anomaly, AnomalyType, Severity
from wsfinal.config import ConnectionConfig, ConnectionType, LoadBalancingStrategy
from wsfinal.exceptions import ConfigurationError, UnknownConnectionError, UsageError
from wsfinal.health import health_score
from wsfinal.states import ConnectionState
from wsfinal.store import InMemoryConnectionStore

TR = ConnectionType.TRADING
MD = ConnectionType.MARKET_DATA


def feed_interval(
    a: WebSocketAnalytics,
    t0: float,
    rng: np.random.Generator,
    *,
    conns: tuple[str, ...] = ("c1", "c2"),
    latency: dict[str, float] | None = None,
    messages: int = 60,
    errors: dict[str, int] | None = None,
    reconnects: dict[str, int] | None = None,
    ctype: ConnectionType = TR,
    length: float = 60.0,
) -> float:
    """One analytics interval of traffic on each connection; returns the interval's end."""
    latency = latency or {}
    for cid in conns:
        base = latency.get(cid, 10.0)
        for i in range(30):
            a.record_latency(cid, ctype, float(rng.lognormal(math.log(base), 0.2)), now=t0 + i * 2.0)
        for i in range(messages):
            a.record_message(cid, ctype, "in" if i % 2 else "out", nbytes=100, now=t0 + i * length / messages)
        for i in range((errors or {}).get(cid, 0)):
            a.record_error(cid, ctype, "timeout", now=t0 + i)
        for i in range((reconnects or {}).get(cid, 0)):
            a.record_reconnect(cid, ctype, now=t0 + i)
    return t0 + length


def test_aggregation_matches_numpy_and_counts() -> None:
    a = WebSocketAnalytics(clock=lambda: 0.0)
    rng = np.random.default_rng(1)
    lat = rng.lognormal(2.0, 0.5, 500)
    for i, v in enumerate(lat):
        a.record_latency("c1", TR, float(v), now=i * 0.1)
    for i in range(120):
        a.record_message("c1", "trading", "out", 10, now=i * 0.5)
    for i in range(5):
        a.record_error("c1", TR, now=float(i))
    new = a.update_performance_metrics(60.0)
    conn = [m for m in new if m.connection_id == "c1"]
    typ = [m for m in new if m.connection_id is None]
    assert len(conn) == 1 and len(typ) == 1
    m = conn[0]
    assert m.samples == 500 and m.messages == 120 and m.errors == 5 and m.bytes == 1200
    assert m.avg_latency_ms == pytest.approx(float(lat.mean()))
    for q, got in ((50, m.p50_latency_ms), (95, m.p95_latency_ms), (99, m.p99_latency_ms)):
        assert got == pytest.approx(float(np.percentile(lat, q, method="lower")), rel=0.0101)
    assert m.error_rate == pytest.approx(5 / 505)
    assert m.message_throughput == pytest.approx(120 / 60.0)
    assert typ[0].samples == 500 and typ[0].connection_type is TR
    assert a.get_performance_metrics(TR, hours=1, now=60.0) == typ
    assert a.get_performance_metrics("trading", now=60.0)[0].to_dict()["connection_type"] == "trading"
    # the next interval starts empty
    again = a.update_performance_metrics(120.0)
    assert all(x.samples == 0 and x.messages == 0 and math.isnan(x.avg_latency_ms) for x in again)
    assert again[0].period_s == pytest.approx(60.0)


def test_type_records_merge_connections_and_retention_bounds_history() -> None:
    a = WebSocketAnalytics(retention_s=600.0, connection_retention_s=300.0)
    rng = np.random.default_rng(2)
    t = 0.0
    for _ in range(30):
        t = feed_interval(a, t, rng, latency={"c1": 10.0, "c2": 40.0})
        a.update_performance_metrics(t)
    typ = a.get_performance_metrics(TR, hours=24, now=t)
    assert len(typ) == 11  # 600 s of 60 s records, both ends included
    last = typ[-1]
    assert last.samples == 60 and last.connections == 2
    assert 10.0 < last.p50_latency_ms < 40.0
    assert len(a.get_connection_metrics("c1", hours=1, now=t)) == 6
    assert a.get_performance_metrics(MD, now=t) == []


def test_latency_spike_error_burst_and_reconnect_storm_are_detected() -> None:
    a = WebSocketAnalytics()
    seen: list[Anomaly] = []
    a.add_anomaly_listener(seen.append)
    a.add_anomaly_listener(lambda _: 1 / 0)  # a broken listener must not stop detection
    rng = np.random.default_rng(3)
    t = 0.0
    for _ in range(20):
        t = feed_interval(a, t, rng)
        a.update_performance_metrics(t)
        assert a.detect_anomalies(t) == []
    t = feed_interval(a, t, rng, latency={"c1": 250.0}, errors={"c2": 20}, reconnects={"c1": 8})
    a.update_performance_metrics(t)
    found = a.detect_anomalies(t)
    kinds = {(x.anomaly_type, x.connection_id) for x in found}
    assert (AnomalyType.LATENCY_SPIKE, "c1") in kinds
    assert (AnomalyType.ERROR_BURST, "c2") in kinds
    assert (AnomalyType.RECONNECT_STORM, "c1") in kinds
    assert (AnomalyType.LATENCY_SPIKE, "c2") not in kinds
    spike = next(x for x in found if x.anomaly_type is AnomalyType.LATENCY_SPIKE and x.connection_id == "c1")
    assert spike.severity is Severity.CRITICAL
    assert spike.description.startswith("Latency spike: p95 latency on connection c1 rose to")
    assert seen == found
    high = a.get_anomalies("high", hours=1, now=t)
    assert spike in high and all(x.severity.rank >= Severity.HIGH.rank for x in high)
    assert set(a.get_anomalies("low", now=t)) >= set(high) >= set(a.get_anomalies("critical", now=t))
    assert a.get_anomalies(None, hours=1, now=t + 7200) == []
    with pytest.raises(ConfigurationError, match="severity"):
        a.get_anomalies("urgent", now=t)


def test_throughput_drop_at_type_level() -> None:
    a = WebSocketAnalytics()
    rng = np.random.default_rng(4)
    t = 0.0
    for _ in range(15):
        t = feed_interval(a, t, rng, messages=600, ctype=MD)
        a.update_performance_metrics(t)
        a.detect_anomalies(t)
    t = feed_interval(a, t, rng, messages=60, ctype=MD)
    a.update_performance_metrics(t)
    drops = [x for x in a.detect_anomalies(t) if x.anomaly_type is AnomalyType.THROUGHPUT_DROP]
    assert drops and drops[0].connection_id is None and drops[0].connection_type == "market_data"
    assert "fell to 2.00 msg/s" in drops[0].description


def _store_with(clock: list[float], *ids: str, heartbeat: float = 10.0) -> InMemoryConnectionStore:
    store = InMemoryConnectionStore(clock=lambda: clock[0])
    for cid in ids:
        cfg = ConnectionConfig(
            url=f"ws://127.0.0.1:9001/{cid}", connection_type=TR, heartbeat_interval_seconds=heartbeat
        )
        store.register(cid, cfg)
        store.set_state(cid, ConnectionState.CONNECTING)
        store.set_state(cid, ConnectionState.CONNECTED)
    return store


def test_health_score_uses_baseline_peers_errors_state_and_staleness() -> None:
    clock = [0.0]
    store = _store_with(clock, "c1", "c2", "c3", "idle")
    a = WebSocketAnalytics(store, clock=lambda: clock[0])
    rng = np.random.default_rng(5)
    t = 0.0
    for _ in range(10):
        t = feed_interval(a, t, rng, conns=("c1", "c2", "c3"))
        a.update_performance_metrics(t)
    clock[0] = t
    store.touch("idle")
    healthy = a.get_connection_health_score("c1")
    assert healthy > 95.0
    # c2 turns slow: worse than its own baseline and than its peers
    for i in range(20):
        a.record_latency("c2", TR, 200.0, now=t + i)
    for i in range(10):
        a.record_error("c3", TR, now=t + i)
    clock[0] = t + 20
    store.touch("idle")
    assert a.get_connection_health_score("c2") < healthy - 20
    assert a.get_connection_health_score("c3") < healthy - 10
    # an idle connection is fine at first, worse when it is quiet beyond its heartbeat limit
    assert a.get_connection_health_score("idle") == 100.0
    assert a.get_connection_health_score("idle", now=t + 20 + 29) < 100.0
    # state
    store.set_state("c1", ConnectionState.FAILED)
    assert a.get_connection_health_score("c1") == 0.0
    rec = store.get("c2")
    assert rec is not None and a.health_scorer(rec, clock[0]) == a.get_connection_health_score("c2")
    with pytest.raises(UnknownConnectionError):
        a.get_connection_health_score("nope")


def test_stale_connection_is_reported_once_per_episode() -> None:
    clock = [0.0]
    store = _store_with(clock, "c1")
    a = WebSocketAnalytics(store, clock=lambda: clock[0])
    a.record_message("c1", TR, "in", now=0.0)
    assert a.detect_anomalies(10.0) == []
    first = a.detect_anomalies(31.0)  # heartbeat 10 s x 3
    assert [x.anomaly_type for x in first] == [AnomalyType.STALE_CONNECTION]
    assert "half-open" in first[0].description
    assert a.detect_anomalies(40.0) == []
    a.record_message("c1", TR, "in", now=41.0)
    assert a.detect_anomalies(42.0) == []
    assert len(a.detect_anomalies(80.0)) == 1


def test_capacity_warning_before_the_latency_threshold_is_crossed() -> None:
    a = WebSocketAnalytics(latency_threshold_ms=200.0, prediction_horizon_s=900.0)
    t = 0.0
    warned_at = None
    for k in range(40):
        level = 50.0 + 5.0 * k  # +5 ms per minute: crosses 200 ms at k = 30
        for i in range(30):
            a.record_latency("c1", TR, level, now=t + i)
        t += 60.0
        a.update_performance_metrics(t)
        found = a.detect_anomalies(t)
        warn = [x for x in found if x.anomaly_type is AnomalyType.CAPACITY_WARNING]
        if warn and warned_at is None:
            warned_at = k
            assert "reaches the 200 ms limit" in warn[0].description
    assert warned_at is not None and warned_at < 30
    preds = a.get_predictions(now=t)
    assert any(p.metric == "p95 latency" and p.slope_per_s > 0 for p in preds)


def test_optimization_insights_name_the_best_strategy_with_numbers() -> None:
    a = WebSocketAnalytics(insight_window_s=600.0, insight_min_samples=20)
    rng = np.random.default_rng(6)
    for i in range(300):
        now = i * 1.0
        a.record_strategy_outcome(LoadBalancingStrategy.ROUND_ROBIN, rng.random() > 0.05, 30.0, now=now)
        a.record_strategy_outcome(LoadBalancingStrategy.LEAST_LATENCY, True, 12.0, now=now)
        a.record_strategy_outcome("peak_ewma", True, 15.0, now=now)
        if i < 5:
            a.record_strategy_outcome("random", True, 1.0, now=now)  # too few samples to rank
    ins = a.get_optimization_insights(now=300.0)
    assert ins["best_strategy"] == "least_latency"
    assert ins["ranking"] == ["least_latency", "peak_ewma", "round_robin"]
    ll = ins["strategies"]["least_latency"]
    assert ll["requests"] == 300 and ll["success_rate"] == 1.0 and ll["p95_latency_ms"] == pytest.approx(12.0, rel=0.01)
    assert ins["strategies"]["round_robin"]["success_rate"] < 1.0
    assert "least_latency served best" in ins["reason"]
    # outside the window, nothing is left
    assert a.get_optimization_insights(now=5000.0)["best_strategy"] is None


def test_async_shell_reads_the_loop_clock() -> None:
    async def main() -> tuple[list[PerformanceMetrics], list[Anomaly]]:
        a = WebSocketAnalytics()
        a.record_latency("c1", TR, 5.0)
        a.record_message("c1", TR, "out")
        return await a._update_performance_metrics(), await a._detect_anomalies()

    metrics, anomalies = asyncio.run(main())
    assert {m.connection_id for m in metrics} == {"c1", None} and anomalies == []
    with pytest.raises(UsageError, match="now= or clock="):
        WebSocketAnalytics().record_latency("c1", TR, 5.0)


def test_bad_input_is_named() -> None:
    a = WebSocketAnalytics(clock=lambda: 0.0)
    with pytest.raises(ConfigurationError, match="direction"):
        a.record_message("c1", TR, "sideways")
    with pytest.raises(ConfigurationError, match="connection_type"):
        a.record_latency("c9", "carrier_pigeon", 1.0)
    with pytest.raises(ValueError, match="-3"):
        a.record_latency("c1", TR, -3.0)
    with pytest.raises(ConfigurationError, match="retention_s"):
        WebSocketAnalytics(retention_s=0)


def test_removed_connections_are_forgotten() -> None:
    clock = [0.0]
    store = _store_with(clock, "c1", "c2")
    a = WebSocketAnalytics(store, clock=lambda: clock[0])
    a.record_latency("c1", TR, 5.0, now=1.0)
    a.record_latency("c2", TR, 5.0, now=1.0)
    a.update_performance_metrics(60.0)
    store.remove("c2")
    out = a.update_performance_metrics(120.0)
    assert {m.connection_id for m in out} == {"c1", None}
    typ = next(m for m in out if m.connection_id is None)
    assert typ.connections == 1 and typ.active_connections == 1
    assert list(a.connections()) == ["c1"]


def test_health_inputs_peer_median_excludes_the_connection_itself() -> None:
    a = WebSocketAnalytics(clock=lambda: 10.0)
    for cid, lat in (("c1", 10.0), ("c2", 20.0), ("c3", 30.0), ("c4", 50.0)):
        a.record_latency(cid, TR, lat, now=1.0)
    # the health latency is a windowed median, within 2 % of the samples
    assert a.health_inputs("c1").peer_latency_ms == pytest.approx(30.0, rel=0.02)  # median of 20, 30, 50
    assert a.health_inputs("c4").peer_latency_ms == pytest.approx(20.0, rel=0.02)  # median of 10, 20, 30
    a.record_latency("m1", MD, 5.0, now=1.0)
    assert a.health_inputs("m1").peer_latency_ms is None  # no peer of its type
    c1 = a.health_inputs("c1")
    assert c1.latency_ms == pytest.approx(10.0, rel=0.02) and c1.state is ConnectionState.CONNECTED


def test_sustained_shift_is_reported_once_per_refractory_period_not_every_interval() -> None:
    a = WebSocketAnalytics(refractory_intervals=5)
    rng = np.random.default_rng(8)
    t = 0.0
    per_round: list[list[Anomaly]] = []
    for k in range(60):
        t = feed_interval(a, t, rng, conns=("c1",), latency={"c1": 10.0 if k < 20 else 30.0})
        a.update_performance_metrics(t)
        per_round.append([x for x in a.detect_anomalies(t) if x.connection_id == "c1"])
    assert per_round[20], "the shift is reported in the interval it happens"
    assert not any(per_round[:20])
    assert all(len(r) <= 1 for r in per_round)  # one anomaly per series per round
    assert 3 <= sum(len(r) for r in per_round[20:]) <= 40 // 5 + 1


def test_record_answer_is_record_message_in_then_record_latency() -> None:
    rng = np.random.default_rng(4)
    one, two = WebSocketAnalytics(clock=lambda: 0.0), WebSocketAnalytics(clock=lambda: 0.0)
    t = 0.0
    for _ in range(300):
        t += float(rng.exponential(0.05))
        size, latency = int(rng.integers(50, 500)), float(rng.lognormal(2.0, 0.7))
        cid = f"c{int(rng.integers(0, 3))}"
        one.record_answer(cid, TR, size, latency, now=t)
        two.record_message(cid, TR, "in", size, now=t)
        two.record_latency(cid, TR, latency, now=t)
        if rng.random() < 0.1:
            for a in (one, two):
                a.record_error(cid, TR, now=t)
    assert one.update_performance_metrics(t + 1.0) == two.update_performance_metrics(t + 1.0)
    for cid in ("c0", "c1", "c2"):
        assert one.get_connection_health_score(cid, now=t + 1.0) == two.get_connection_health_score(cid, now=t + 1.0)
        a, b = one._conns[cid], two._conns[cid]
        assert (a.messages, a.bytes, a.lat_ewma, a.lat_stamp, a.last_event) == (
            b.messages,
            b.bytes,
            b.lat_ewma,
            b.lat_stamp,
            b.last_event,
        )


def test_latency_quantile_over_the_recent_window_sees_a_starved_connections_few_slow_answers() -> None:
    """The case the smoothed latency misses: a connection is busy and fast, then (slow, and starved by a
    latency-aware strategy) answers only a burst of slow requests. Its EWMA barely moves: the first answer of the
    burst carries the weight of the idle gap before it, the rest, milliseconds apart, almost none. Its p90 over
    the last 10 s shows the burst once the fast samples have left the window."""
    store = InMemoryConnectionStore(clock=lambda: 0.0)
    store.register("c1", ConnectionConfig(url="ws://127.0.0.1:9001/ws/2", connection_type=TR))
    a = WebSocketAnalytics(clock=lambda: 0.0)
    for i in range(2000):  # 200/s of 3 ms answers for 10 s
        t = i * 0.005
        a.record_latency("c1", TR, 3.0, now=t)
        store.request_finished("c1", ok=True, latency_ms=3.0, now=t)
    for i, x in enumerate([9.0, 17.0, 24.0, 34.0, 40.0, 49.0, 57.0]):  # one slow burst after a 3 s gap
        a.record_latency("c1", TR, x, now=13.0 + 0.009 * i)
        store.request_finished("c1", ok=True, latency_ms=x, now=13.0 + 0.009 * i)
    assert store.get("c1").latency_ewma_ms < 6.0  # smoothed: the burst is invisible
    early = a.latency_quantile("c1", 0.9, now=13.1)
    assert early.samples > 1000 and early.value == pytest.approx(3.0, rel=0.02)
    assert a.latency_quantile("c1", 0.5, window_s=1.0, now=13.5).samples == 7  # a shorter window is honoured
    late = a.latency_quantile("c1", 0.9, now=21.0)
    assert late == WindowedLatency(pytest.approx(49.0, rel=0.02), 7, 0.9, 10.0)  # type: ignore[arg-type]
    # a longer window is capped at latency_window_s; unknown connections have no data
    assert a.latency_quantile("c1", 0.5, window_s=60.0, now=21.0).window_s == 10.0
    gone = a.latency_quantile("nope", 0.9, now=21.0)
    assert math.isnan(gone.value) and gone.samples == 0
    with pytest.raises(ConfigurationError, match="latency_window_s"):
        WebSocketAnalytics(latency_window_s=0)


def test_split_modules_keep_every_import_path() -> None:
    import wsfinal.analytics as analytics
    import wsfinal.analytics_anomalies as anomalies
    import wsfinal.analytics_records as records

    for name in ("PerformanceMetrics", "StrategyWindow", "WindowedLatency", "rank_strategies"):
        assert getattr(analytics, name) is getattr(records, name)
    a = WebSocketAnalytics(clock=lambda: 0.0, detector_warmup=4, detector_window=8, refractory_intervals=2)
    assert isinstance(a._monitor, anomalies.AnomalyMonitor)
    assert (a.detector_warmup, a.detector_window, a.refractory_intervals) == (4, 8, 2)
    a.refractory_intervals = 7  # still settable, and reaches the detectors
    assert a._monitor.refractory_intervals == 7


def test_timeouts_are_censored_samples_for_the_window_and_ewma_and_pings_are_kept_apart() -> None:
    a = WebSocketAnalytics(clock=lambda: 0.0)
    for i in range(10):
        a.record_latency("c1", TR, 4.0, now=i * 0.1)
    # a blackholed connection: no answers, only timeouts (counted as errors too, as before)
    for i in range(5):
        a.record_error("c2", TR, "timed_out", now=2.0 + i * 0.1)
        a.record_timeout("c2", TR, 2000.0, now=2.0 + i * 0.1)
    for i in range(3):
        a.record_timeout("c1", TR, 2000.0, now=2.0 + i * 0.1)
    for i in range(50):  # pings: many and fast, and never part of the request-latency signals
        a.record_ping("c1", TR, 0.2, now=2.0 + i * 0.01)
        a.record_ping("c2", TR, 0.2, now=2.0 + i * 0.01)
    blackholed = a.latency_quantile("c2", 0.9, now=3.0)
    assert blackholed.samples == 5 and blackholed.value == pytest.approx(2000.0, rel=0.02)  # not "no data"
    assert a.latency_quantile("c1", 0.5, now=3.0) == WindowedLatency(pytest.approx(4.0, rel=0.02), 13, 0.5, 10.0)  # type: ignore[arg-type]
    assert a.latency_quantile("c1", 0.9, now=3.0).value == pytest.approx(2000.0, rel=0.02)
    assert a.health_inputs("c2", now=3.0).latency_ms == pytest.approx(2000.0, rel=0.02)
    assert a.ping_rtt_ms("c1") == 0.2 and math.isnan(a.ping_rtt_ms("nope"))
    by_id = {m.connection_id: m for m in a.update_performance_metrics(60.0)}
    # the histograms hold answered latencies only: c1's ten 4 ms answers, nothing for c2
    assert by_id["c1"].samples == 10 and by_id["c1"].max_latency_ms == pytest.approx(4.0, rel=0.02)
    assert by_id["c2"].samples == 0 and by_id["c2"].errors == 5


# -- health after a latency spike (the lag of the 10 s EWMA) ---------------------------------------------------------


def _spike_run(
    *, starve_after_spike: bool, spike: tuple[float, float] = (15.0, 25.0), until: float = 70.0
) -> tuple[WebSocketAnalytics, dict[float, tuple[float, float]]]:
    """Three connections at 100 requests/s each, ~3 ms, in virtual time (``now`` passed in); c2's requests take
    40 ms more during ``spike``. With ``starve_after_spike`` c2 gets no request after the spike (as
    ``LEAST_LATENCY`` leaves a connection that became slow) and only app-level pings every 30 s, 1 ms.
    Aggregation every second, as the manager does. Returns the analytics and, per second, c2's score with the
    health latency and the score it would have with the old input (the request EWMA)."""
    a = WebSocketAnalytics(clock=lambda: 0.0)
    rng = np.random.default_rng(11)
    scores: dict[float, tuple[float, float]] = {}
    step = 0.01
    for k in range(int(until / step)):
        t = round(k * step, 9)
        for cid in ("c1", "c2", "c3"):
            slow = cid == "c2" and spike[0] <= t < spike[1]
            if cid == "c2" and starve_after_spike and t >= spike[1]:
                continue
            a.record_latency(cid, TR, float(rng.lognormal(math.log(3.0), 0.3)) + (40.0 if slow else 0.0), now=t)
        if starve_after_spike and k % 3000 == 1500:  # a heartbeat ping every 30 s
            a.record_ping("c2", TR, 1.0, now=t)
        if k % 100 == 99:
            now = t + step
            a.update_performance_metrics(now)
            inputs = a.health_inputs("c2", now=now)
            old = dataclasses.replace(inputs, latency_ms=a._conns["c2"].lat_ewma)
            scores[round(now, 6)] = (health_score(inputs), health_score(old))
    return a, scores


def test_health_recovers_within_seconds_after_a_latency_spike_where_the_ewma_lagged() -> None:
    _, scores = _spike_run(starve_after_spike=False)
    before = scores[14.0][0]
    assert before > 97.0
    assert scores[18.0][0] <= 65.0  # the spike shows within a few seconds
    # the old input (the 10 s time-weighted EWMA) still held most of the spike long after it ended
    assert scores[30.0][1] < 80.0 and scores[35.0][1] < 85.0
    # the health latency (median of the last 3 s) is back at the pre-spike level within HEALTH_LATENCY_RECENT_S
    for t in (25.0 + HEALTH_LATENCY_RECENT_S + 1.0, 30.0, 35.0, 45.0):
        assert scores[t][0] >= before - 3.0, t


def test_a_starved_connection_is_judged_by_its_ping_once_its_request_samples_are_stale() -> None:
    a, scores = _spike_run(starve_after_spike=True)
    # no request sample after the spike: the last evidence (the window, then the EWMA) says slow ...
    assert all(scores[t][0] <= 70.0 for t in (26.0, 30.0, 40.0, 45.0))
    # ... until a pong arrives latency_stale_after_s (10 s) after the last request sample: of the pings at 15 s
    # and 45 s, the one at 45 s is 20 s after it, and the link answers in 1 ms. The bound is thus
    # latency_stale_after_s + one heartbeat interval after the last request sample.
    assert scores[46.0][0] >= 97.0 and a.health_inputs("c2", now=46.0).latency_ms == 1.0


samples = st.lists(st.floats(0.1, 1e4, allow_nan=False), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(own=samples, peers=samples, extra=st.floats(0.0, 1e4), gap=st.floats(0.0, 30.0))
def test_uniformly_slower_requests_never_raise_the_health_score(
    own: list[float], peers: list[float], extra: float, gap: float
) -> None:
    scores = []
    for delta in (0.0, extra):
        a = WebSocketAnalytics(clock=lambda: 0.0)
        for i, v in enumerate(peers):
            a.record_latency(f"p{i % 3}", TR, v, now=i * 0.25)
        for i, v in enumerate(own):
            a.record_latency("c1", TR, v + delta, now=i * 0.25)
        scores.append(a.get_connection_health_score("c1", now=len(own) * 0.25 + gap))
    assert scores[1] <= scores[0]


@settings(max_examples=100, deadline=None)
@given(spike=samples, level=st.floats(0.5, 100.0), rate=st.integers(1, 20))
def test_the_health_latency_forgets_a_spike_after_the_recent_span(spike: list[float], level: float, rate: int) -> None:
    """Bounded recovery: after HEALTH_LATENCY_RECENT_S seconds of samples at the old level (at least one a
    second), the health latency is what it would be had there been no spike."""
    with_spike, without = WebSocketAnalytics(clock=lambda: 0.0), WebSocketAnalytics(clock=lambda: 0.0)
    for i, v in enumerate(spike):
        with_spike.record_latency("c1", TR, v, now=5.0 + i * 0.1)
    end = 5.0 + len(spike) * 0.1
    for a in (with_spike, without):
        a.record_latency("c1", TR, level, now=1.0)
        for j in range(int((HEALTH_LATENCY_RECENT_S + 1.0) * rate)):
            a.record_latency("c1", TR, level, now=end + j / rate)
    now = end + HEALTH_LATENCY_RECENT_S + 1.0
    assert with_spike.health_inputs("c1", now=now).latency_ms == without.health_inputs("c1", now=now).latency_ms
