"""Pure tests of the service model: distributions, FCFS completion times, the bounded queue, the fault hooks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.service import (
    NAB_LATENCY_CSV,
    ServiceDistribution,
    ServiceModel,
    distribution_from_params,
    mmc_mean_wait,
)
from wsfinal.exceptions import ConfigurationError


def model(dist: ServiceDistribution, workers: int = 1, queue_limit: int = 10_000, seed: int = 1) -> ServiceModel:
    return ServiceModel(dist, workers=workers, queue_limit=queue_limit, rng=np.random.default_rng(seed))


def mean_latency(rate: float, *, workers: int, mean_s: float, n: int = 20_000, seed: int = 3) -> float:
    svc = model(ServiceDistribution.exponential(mean_s), workers=workers, seed=seed)
    arrivals = np.cumsum(np.random.default_rng(seed + 100).exponential(1 / rate, n))
    total = 0.0
    for t in arrivals:
        done = svc.submit(float(t))
        assert done is not None
        total += done - t
    return total / n


def test_constant_single_worker_queues_in_order() -> None:
    svc = model(ServiceDistribution.constant(1.0))
    assert [svc.submit(0.0), svc.submit(0.0), svc.submit(0.5), svc.submit(10.0)] == [1.0, 2.0, 3.0, 11.0]


def test_workers_serve_in_parallel() -> None:
    svc = model(ServiceDistribution.constant(1.0), workers=3)
    assert [svc.submit(0.0) for _ in range(4)] == [1.0, 1.0, 1.0, 2.0]


def test_full_queue_rejects_then_recovers() -> None:
    svc = model(ServiceDistribution.constant(1.0), workers=1, queue_limit=2)
    assert svc.submit(0.0) == 1.0  # in service
    assert svc.submit(0.0) == 2.0  # waiting 1
    assert svc.submit(0.0) == 3.0  # waiting 2
    assert svc.submit(0.0) is None  # queue full
    assert svc.rejected == 1
    assert svc.queue_length(0.0) == 2
    assert svc.queue_length(1.5) == 1
    assert svc.submit(1.5) == 4.0
    assert svc.in_system(2.5) == 2


def test_zero_queue_limit_only_admits_when_a_worker_is_free() -> None:
    svc = model(ServiceDistribution.constant(1.0), workers=2, queue_limit=0)
    assert svc.submit(0) == 1.0 and svc.submit(0) == 1.0
    assert svc.submit(0.5) is None
    assert svc.submit(1.0) == 2.0


def test_latency_grows_with_arrival_rate_like_mmc() -> None:
    mean_s, workers = 0.002, 4  # capacity 2000/s
    rates = [200.0, 1000.0, 1600.0, 1850.0]
    measured = [mean_latency(r, workers=workers, mean_s=mean_s) for r in rates]
    assert measured == sorted(measured)
    assert measured[-1] > 3 * measured[0]
    for rate, got in zip(rates, measured):
        expected = mmc_mean_wait(rate, mean_s, workers)
        assert got == pytest.approx(expected, rel=0.3), (rate, got, expected)


def test_mmc_formula_reduces_to_mm1() -> None:
    assert mmc_mean_wait(50, 0.01, 1) == pytest.approx(0.01 / (1 - 0.5))
    assert mmc_mean_wait(100, 0.01, 1) == math.inf


def test_same_seed_same_completion_times() -> None:
    arrivals = np.cumsum(np.random.default_rng(9).exponential(0.001, 500))

    def run(seed: int) -> list[float | None]:
        svc = model(ServiceDistribution.lognormal(0.001, 0.8), workers=2, queue_limit=5, seed=seed)
        return [svc.submit(float(t)) for t in arrivals]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_latency_factor_multiplies_service_time() -> None:
    svc = model(ServiceDistribution.constant(0.01))
    svc.latency_factor = 20.0
    assert svc.submit(0.0) == pytest.approx(0.2)
    svc.latency_factor = 1.0
    assert svc.submit(1.0) == pytest.approx(1.01)


def test_capacity_drop_and_restore() -> None:
    svc = model(ServiceDistribution.constant(1.0), workers=4)
    svc.set_workers(1, 0.0)
    assert svc.workers == 1
    assert [svc.submit(0.0) for _ in range(3)] == [1.0, 2.0, 3.0]
    svc.set_workers(4, 3.0)
    assert [svc.submit(3.0) for _ in range(4)] == [4.0] * 4
    with pytest.raises(ConfigurationError):
        svc.set_workers(0, 4.0)


def test_capacity_drop_keeps_busy_workers_jobs() -> None:
    svc = model(ServiceDistribution.constant(1.0), workers=2)
    assert svc.submit(0.0) == 1.0 and svc.submit(0.5) == 1.5
    svc.set_workers(1, 0.6)  # the worker busy until 1.5 retires after its job
    assert svc.submit(0.6) == 2.0


def test_empirical_from_nab_csv() -> None:
    dist = ServiceDistribution.from_csv(NAB_LATENCY_CSV, "value", unit="ms", scale=0.1)
    draws = dist.draw(np.random.default_rng(0), 5000)
    assert 0.001 < dist.mean_s < 0.02
    assert abs(draws.mean() - dist.mean_s) < 0.1 * dist.mean_s
    assert set(np.round(draws, 12)) <= set(np.round(dist.draw(np.random.default_rng(1), 100_000), 12))


def test_distribution_from_params() -> None:
    assert distribution_from_params("constant", {"value": 0.5}).mean_s == 0.5
    assert distribution_from_params("exponential", {"mean": 0.002}).mean_s == 0.002
    assert distribution_from_params("lognormal", {"median": 0.001, "sigma": 0.0}).mean_s == pytest.approx(0.001)
    dist = distribution_from_params(
        "empirical", {"csv": NAB_LATENCY_CSV.name, "unit": "ms"}, base_dir=NAB_LATENCY_CSV.parent
    )
    assert dist.kind == "empirical"


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("exponential", {}, "service.mean"),
        ("exponential", {"mean": -1}, "service.mean"),
        ("weibull", {}, "service.distribution"),
        ("empirical", {"csv": "/nonexistent.csv"}, "service.csv"),
        ("empirical", {"csv": str(NAB_LATENCY_CSV), "column": "nope"}, "service.column"),
        ("empirical", {"csv": str(NAB_LATENCY_CSV), "unit": "hours"}, "service.unit"),
    ],
)
def test_bad_parameters_name_the_field(kind: str, params: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        distribution_from_params(kind, params)  # type: ignore[arg-type]
    assert info.value.field == field


def test_bad_model_arguments() -> None:
    with pytest.raises(ConfigurationError):
        model(ServiceDistribution.constant(1), workers=0)
    with pytest.raises(ConfigurationError):
        ServiceModel(ServiceDistribution.constant(1), workers=1, queue_limit=-1, rng=np.random.default_rng())


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(0, 0.01), min_size=1, max_size=80),
    workers=st.integers(1, 4),
    limit=st.integers(0, 5),
)
def test_invariants(gaps: list[float], workers: int, limit: int) -> None:
    svc = model(ServiceDistribution.exponential(0.003), workers=workers, queue_limit=limit)
    t = 0.0
    done: list[float] = []
    for g in gaps:
        t += g
        waiting_before = svc.queue_length(t)
        end = svc.submit(t)
        if end is None:
            assert waiting_before >= limit
        else:
            assert end >= t
            done.append(end)
        assert svc.queue_length(t) <= limit
        assert svc.in_system(t) <= workers + limit
    assert svc.accepted + svc.rejected == len(gaps)
    assert svc.accepted == len(done)


@settings(max_examples=40, deadline=None)
@given(
    gaps=st.lists(st.floats(0, 0.01), min_size=1, max_size=120),
    workers=st.integers(1, 3),
    limit=st.integers(0, 30),
    ask_every=st.integers(1, 50),
)
def test_in_system_counts_the_accepted_requests_not_yet_done(
    gaps: list[float], workers: int, limit: int, ask_every: int
) -> None:
    # completion times are a plain list pruned now and then (by submit, past a threshold; by in_system itself):
    # the count is always that of the accepted requests whose completion is later than now
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("simulator.service._PRUNE_MIN", 4)  # prune often
        svc = model(ServiceDistribution.exponential(0.003), workers=workers, queue_limit=limit)
        t = 0.0
        done: list[float] = []
        for i, g in enumerate(gaps):
            t += g
            end = svc.submit(t)
            if end is not None:
                done.append(end)
            if i % ask_every == 0:
                assert svc.in_system(t) == sum(1 for d in done if d > t)
        assert svc.in_system(t) == sum(1 for d in done if d > t)
        assert len(svc._completions) <= max(4, 2 * (workers + limit + 1)) + 1


def test_from_csv_reads_a_file_with_a_byte_order_mark(tmp_path) -> None:
    path = tmp_path / "latencies.csv"
    path.write_bytes("\ufeffvalue\n2.0\n4.0\n".encode())  # as spreadsheets write UTF-8
    dist = ServiceDistribution.from_csv(path, "value", unit="ms")
    assert dist.mean_s == pytest.approx(0.003)  # both samples: the first row is data, not a header
