"""Alert evaluation cost: 1,000 connections x 10 per-connection rules per tick (10,000 series).

Run: .venv/bin/python -m pytest -m benchmark --benchmark-only tests/test_bench_alerts.py
The baseline (`test_bench_baseline_read_and_compare`) reads the same 10 values per connection from the store and
compares them with thresholds, with no state: the ratio to it is the cost of the rule machinery.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from wsfinal.alerts import AlertRule, AlertType, RouteConfig, WebSocketAlertManager
from wsfinal.config import ConnectionConfig, ConnectionType
from wsfinal.states import ConnectionState
from wsfinal.store import InMemoryConnectionStore

pytestmark = pytest.mark.benchmark

N_CONN = 1000

RULES = [
    AlertRule("connection_failure", AlertType.CONNECTION_FAILURE, "connection_failed", ">=", 1, for_s=10),
    AlertRule("high_latency", AlertType.HIGH_LATENCY, "latency_ms", ">", 500, for_s=30),
    AlertRule("latency_critical", AlertType.HIGH_LATENCY, "latency_ms", ">", 2000, for_s=10, severity="critical"),
    AlertRule("peak_latency", AlertType.HIGH_LATENCY, "peak_latency_ms", ">", 1000, for_s=30),
    AlertRule("high_error_rate", AlertType.HIGH_ERROR_RATE, "error_rate", ">", 0.05, for_s=30,
              params={"window_s": 60.0, "min_requests": 20}),
    AlertRule("error_rate_critical", AlertType.HIGH_ERROR_RATE, "error_rate", ">", 0.5, for_s=10,
              params={"window_s": 30.0, "min_requests": 20}, severity="critical"),
    AlertRule("frequent_reconnects", AlertType.FREQUENT_RECONNECTS, "reconnects", ">=", 5,
              params={"window_s": 300.0}),
    AlertRule("reconnect_storm", AlertType.FREQUENT_RECONNECTS, "reconnects", ">=", 3,
              params={"window_s": 30.0}, severity="high"),
    AlertRule("low_health", AlertType.SYSTEM_HEALTH, "health_score", "<", 50, for_s=30),
    AlertRule("very_low_health", AlertType.SYSTEM_HEALTH, "health_score", "<", 20, for_s=10, severity="critical"),
]  # fmt: skip


def build(firing_share: float) -> tuple[WebSocketAlertManager, InMemoryConnectionStore, list[float]]:
    t = [0.0]
    store = InMemoryConnectionStore(clock=lambda: t[0])
    for i in range(N_CONN):
        cfg = ConnectionConfig(url=f"ws://127.0.0.1:{9000 + i % 10}/ws/2", connection_type=ConnectionType.TRADING)
        cid = f"conn-{i}"
        store.register(cid, cfg, cluster_node=f"node-{i % 10}", now=0.0)
        store.set_state(cid, ConnectionState.CONNECTING, now=0.0)
        store.set_state(cid, ConnectionState.CONNECTED, now=0.0)
        slow = i < firing_share * N_CONN
        for _ in range(30):
            store.request_finished(cid, ok=True, latency_ms=1500.0 if slow else 5.0, now=0.0)
        if slow:
            store.get(cid).health_score = 10.0  # type: ignore[union-attr]
    route = RouteConfig(group_wait_s=0, group_interval_s=10, repeat_interval_s=3600)
    m = WebSocketAlertManager(store=store, rules=RULES, channels=[], route=route)
    return m, store, t


def tick_fn(m: WebSocketAlertManager, t: list[float]) -> Any:
    def tick() -> None:
        t[0] += 1.0
        m.check_alerts(t[0])

    return tick


def test_bench_check_alerts_1000_connections_x_10_rules(benchmark: Any) -> None:
    m, _, t = build(0.0)
    for _ in range(5):  # warm the windows
        tick_fn(m, t)()
    benchmark(tick_fn(m, t))
    assert sum(len(s) for s in m._series.values()) == N_CONN * 10


def test_bench_check_alerts_with_20_percent_firing(benchmark: Any) -> None:
    m, _, t = build(0.2)
    for _ in range(40):  # past for_s: high_latency, low_health and very_low_health fire for 200 connections
        tick_fn(m, t)()
    benchmark(tick_fn(m, t))
    assert len(m.get_active_alerts()) == 600


def test_bench_baseline_read_and_compare(benchmark: Any) -> None:
    """No rule machinery: read 10 values per connection and compare them with thresholds."""
    _, store, _ = build(0.0)

    def baseline() -> int:
        hits = 0
        for r in store.all():
            failing = r.state is ConnectionState.FAILED
            lat = r.latency_ewma_ms
            total = r.requests_ok + r.requests_failed
            rate = r.requests_failed / total if total else math.nan
            values = (failing, lat > 500, lat > 2000, r.peak_ewma_ms > 1000, rate > 0.05, rate > 0.5,
                      r.reconnects >= 5, r.reconnects >= 3, r.health_score < 50, r.health_score < 20)  # fmt: skip
            hits += sum(values)
        return hits

    assert benchmark(baseline) == 0
