"""The full manager in virtual time against queueing theory (closed forms and sources in simulator/queueing.py).

Each configuration pools three seeds; the long variants (utilisation 0.8) are marked slow.
"""

import numpy as np
import pytest

from simulator.queueing import en_m1_sojourn_ms, mm1_sojourn_ms, queueing_scenario
from simulator.runner import run

MU = 1000.0  # per second: 1 ms mean service


def pooled_mean_ms(scenario, strategy: str, seeds=(1, 2, 3)) -> float:
    sums = counts = 0.0
    for seed in seeds:
        result = run(scenario, strategy=strategy, seed=seed)
        assert result.summary["status"] == "ok"
        table = result.requests
        keep = (table.columns["intended"] >= scenario.warmup_s) & table.outcome_mask("acknowledged")
        assert keep.sum() == result.summary["requests"]["all"]["submitted"]  # nothing lost, nothing refused
        sums += float(np.sum(table.latency_ms[keep]))
        counts += float(keep.sum())
    return sums / counts


@pytest.mark.parametrize(
    ("strategy", "rho", "duration"),
    [
        ("random", 0.5, 25.0),
        ("round_robin", 0.5, 25.0),
        pytest.param("random", 0.8, 120.0, marks=pytest.mark.slow),
        pytest.param("round_robin", 0.8, 120.0, marks=pytest.mark.slow),
    ],
)
def test_mean_latency_matches_queueing_theory(strategy, rho, duration):
    n = 4
    measured = pooled_mean_ms(queueing_scenario(n, rho, duration, mu=MU), strategy)
    random_split = strategy == "random"
    theory = mm1_sojourn_ms(rho * MU, MU) if random_split else en_m1_sojourn_ms(n, rho * MU * n, MU)
    assert measured == pytest.approx(theory, rel=0.03), (measured, theory)


def test_closed_forms():
    assert mm1_sojourn_ms(500.0, MU) == pytest.approx(2.0)
    # E_1/M/1 is M/M/1; more regular arrivals (larger n) mean shorter queues.
    assert en_m1_sojourn_ms(1, 500.0, MU) == pytest.approx(2.0)
    assert en_m1_sojourn_ms(4, 2000.0, MU) < en_m1_sojourn_ms(2, 1000.0, MU) < 2.0
    with pytest.raises(ValueError, match="unstable"):
        mm1_sojourn_ms(MU, MU)
