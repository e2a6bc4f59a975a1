"""Benchmarks of health scoring (deselected by default). Run with

    .venv/bin/python -m pytest -m benchmark --benchmark-only -p no:cacheprovider -s tests/test_bench_health.py

A health check scores every connection at a new time; the manager's view (overview, a runner's sample) asks the
same connections again at that time. ``new_time`` is the first, ``check_then_view`` both (the second round is
answered by the memo of WebSocketAnalytics.get_connection_health_score). Compare with
``test_health_score_1000_connections`` in tests/test_bench_stats.py (the same connections, always at one time).
"""

from __future__ import annotations

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from wsfinal.analytics import WebSocketAnalytics
from wsfinal.config import ConnectionType

pytestmark = pytest.mark.benchmark


def _busy_analytics(n_conns: int) -> WebSocketAnalytics:
    a = WebSocketAnalytics(clock=lambda: 0.0)
    rng = np.random.default_rng(np.random.SeedSequence(13))
    tr = ConnectionType.TRADING
    for c in range(n_conns):
        for v in rng.lognormal(2.0, 0.5, 20):
            a.record_latency(f"c{c}", tr, float(v), 1.0)
    return a


def test_health_score_1000_connections_new_time(benchmark: BenchmarkFixture) -> None:
    """Every one of 1,000 connections scored once at a time not asked before (a health check)."""
    a = _busy_analytics(1000)
    ids = [f"c{c}" for c in range(1000)]
    clock = {"t": 2.0}

    def run() -> None:
        clock["t"] += 1e-6  # within the peer cache's second: the peers' values are kept, each own one computed
        t = clock["t"]
        for cid in ids:
            a.get_connection_health_score(cid, t)

    benchmark(run)


def test_health_score_1000_connections_check_then_view(benchmark: BenchmarkFixture) -> None:
    """Every one of 1,000 connections scored twice at a new time (the balancer's check, then the manager's view)."""
    a = _busy_analytics(1000)
    ids = [f"c{c}" for c in range(1000)]
    clock = {"t": 2.0}

    def run() -> None:
        clock["t"] += 1e-6
        t = clock["t"]
        for cid in ids:
            a.get_connection_health_score(cid, t)
        for cid in ids:
            a.get_connection_health_score(cid, t)

    benchmark(run)
