"""Benchmarks of the streaming statistics (deselected by default). Run with

    .venv/bin/python -m pytest -m benchmark --benchmark-only -p no:cacheprovider -s tests/test_bench_stats.py

Each timing test records the same 10,000 seeded samples; divide the median by 10,000 for the cost per sample.
``bare_list_append`` is the baseline measured in the same run (the cheapest thing Python can do per sample).
"""

from __future__ import annotations

import sys
from array import array

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from wsfinal.analytics import WebSocketAnalytics
from wsfinal.config import ConnectionType
from wsfinal.stats import Ewma, LatencyHistogram, SlidingWindowCounter

pytestmark = pytest.mark.benchmark

N = 10_000
VALUES = [float(v) for v in np.random.default_rng(np.random.SeedSequence(11)).lognormal(2.0, 1.0, N)]
TIMES = [i * 0.001 for i in range(N)]


def test_bare_list_append(benchmark: BenchmarkFixture) -> None:
    def run() -> None:
        out: list[float] = []
        append = out.append
        for v in VALUES:
            append(v)

    benchmark(run)


def test_histogram_record(benchmark: BenchmarkFixture) -> None:
    h = LatencyHistogram()
    record = h.record

    def run() -> None:
        for v in VALUES:
            record(v)

    benchmark(run)
    assert h.count >= N


def test_ewma_update(benchmark: BenchmarkFixture) -> None:
    e = Ewma(10.0)
    update = e.update

    def run() -> None:
        for v, t in zip(VALUES, TIMES):
            update(v, t)

    benchmark(run)


def test_sliding_window_counter_add(benchmark: BenchmarkFixture) -> None:
    c = SlidingWindowCounter(60.0, 60)
    add = c.add

    def run() -> None:
        for t in TIMES:
            add(t)

    benchmark(run)


def test_analytics_record_latency(benchmark: BenchmarkFixture) -> None:
    """The whole hot path a connection pays per request: histogram, two EWMAs, a window counter."""
    a = WebSocketAnalytics(clock=lambda: 0.0)
    record = a.record_latency
    tr = ConnectionType.TRADING

    def run() -> None:
        for v, t in zip(VALUES, TIMES):
            record("c1", tr, v, t)

    benchmark(run)


def _histogram_bytes(h: LatencyHistogram) -> int:
    """Deep size: the object, its bucket list and every int object the list refers to beyond the small-int cache."""
    return sys.getsizeof(h) + sys.getsizeof(h._counts) + sum(sys.getsizeof(c) for c in h._counts if c > 256)


def test_memory_after_ten_million_samples(benchmark: BenchmarkFixture) -> None:
    rng = np.random.default_rng(np.random.SeedSequence(12))
    sizes: dict[int, int] = {}

    def run() -> None:
        h = LatencyHistogram()
        done = 0
        for target in (1_000, 1_000_000, 10_000_000):
            while done < target:
                n = min(1_000_000, target - done)
                h.record_many(rng.lognormal(2.0, 1.5, n))
                done += n
            sizes[target] = _histogram_bytes(h)
        assert h.count == 10_000_000

    benchmark.pedantic(run, rounds=1, iterations=1)
    baseline = sys.getsizeof(array("d", bytes(8 * 1_000_000)))  # keeping 1 M raw samples as C doubles
    benchmark.extra_info.update({f"bytes_after_{k}": v for k, v in sizes.items()})
    benchmark.extra_info["baseline_array_1M_bytes"] = baseline
    print(f"\nhistogram bytes after 1e3/1e6/1e7 samples: {sizes}; raw array('d') of 1e6 samples: {baseline}")
    assert sizes[10_000_000] < 100_000 and sizes[10_000_000] <= 2 * sizes[1_000_000]


def _busy_analytics(n_conns: int) -> WebSocketAnalytics:
    a = WebSocketAnalytics(clock=lambda: 0.0)
    rng = np.random.default_rng(np.random.SeedSequence(13))
    tr = ConnectionType.TRADING
    for c in range(n_conns):
        for v in rng.lognormal(2.0, 0.5, 20):
            a.record_latency(f"c{c}", tr, float(v), 1.0)
    return a


def test_aggregate_and_detect_1000_connections(benchmark: BenchmarkFixture) -> None:
    """One analytics round for 1,000 connections with 20 samples each: aggregation, then detection."""
    state = {"t": 60.0}

    def setup() -> tuple[tuple[WebSocketAnalytics], dict[str, object]]:
        return (_busy_analytics(1000),), {}

    def run(a: WebSocketAnalytics) -> None:
        a.update_performance_metrics(state["t"])
        a.detect_anomalies(state["t"])

    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)


def test_health_score_1000_connections(benchmark: BenchmarkFixture) -> None:
    """Scoring every one of 1,000 connections once (what a health check or an alert tick does)."""
    a = _busy_analytics(1000)
    ids = [f"c{c}" for c in range(1000)]

    def run() -> None:
        for cid in ids:
            a.get_connection_health_score(cid, 2.0)

    benchmark(run)
