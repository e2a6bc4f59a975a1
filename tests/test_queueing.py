"""The full manager in virtual time against queueing theory.

n exchange nodes, one worker each with exponential service (rate mu), one connection per node, Poisson
arrivals at total rate lambda, no network delay: each node is a single-server queue and the request latency is
its sojourn time.

- RANDOM splits a Poisson stream into n independent Poisson streams of rate lambda/n, so each node is an M/M/1
  queue and the mean sojourn time is 1 / (mu - lambda/n) (Kleinrock, Queueing Systems Vol. 1, 1975, eq. 3.26).
- ROUND_ROBIN sends every n-th arrival to the same node, so a node sees Erlang-n interarrival times (rate lambda
  per phase): an E_n/M/1 queue. For G/M/1 the sojourn time is exponential with rate mu(1 - sigma), sigma being
  the root in (0, 1) of sigma = A*(mu(1 - sigma)), A* the Laplace-Stieltjes transform of the interarrival time
  (Kleinrock Vol. 1, section 6.4, eq. 6.30); for Erlang-n, A*(s) = (lambda / (lambda + s))^n.

Each configuration pools three seeds; the long variants (utilisation 0.8) are marked slow.
"""

import numpy as np
import pytest
from scipy.optimize import brentq

from simulator.runner import run
from simulator.scenario import parse_scenario

MU = 1000.0  # per second: 1 ms mean service


def mm1_sojourn_ms(lam_node: float, mu: float = MU) -> float:
    return 1000.0 / (mu - lam_node)


def en_m1_sojourn_ms(n: int, lam_total: float, mu: float = MU) -> float:
    sigma = brentq(lambda s: s - (lam_total / (lam_total + mu * (1.0 - s))) ** n, 1e-12, 1 - 1e-12)
    return 1000.0 / (mu * (1.0 - sigma))


def queueing_scenario(n: int, rho: float, duration_s: float, warmup_s: float = 5.0):
    nodes = [
        {
            "id": f"n{i}",
            "service": {"distribution": "exponential", "mean": f"{1000 / MU:g}ms", "workers": 1},
            "queue_limit": 100_000,
            "api_keys": {"k": "s"},
            "heartbeat_interval": "3600s",
        }
        for i in range(n)
    ]
    connections = [
        {"type": "trading", "node": f"n{i}", "count": 1, "api_key": "k", "heartbeat_interval": "3600s"}
        for i in range(n)
    ]
    return parse_scenario(
        {
            "name": f"queueing-n{n}-rho{rho}",
            "duration": f"{duration_s}s",
            "warmup": f"{warmup_s}s",
            "nodes": nodes,
            "clients": {
                "connections": connections,
                "workload": [{"type": "trading", "arrival": "poisson", "rate": f"{rho * MU * n}/s"}],
            },
            "manager": {"request_timeout": "60s", "enable_alerts": False},
        }
    )


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
    measured = pooled_mean_ms(queueing_scenario(n, rho, duration), strategy)
    if strategy == "random":
        theory = mm1_sojourn_ms(rho * MU)
    else:
        theory = en_m1_sojourn_ms(n, rho * MU * n)
    assert measured == pytest.approx(theory, rel=0.03), (measured, theory)


def test_closed_forms():
    assert mm1_sojourn_ms(500.0) == pytest.approx(2.0)
    # E_1/M/1 is M/M/1; more regular arrivals (larger n) mean shorter queues.
    assert en_m1_sojourn_ms(1, 500.0) == pytest.approx(2.0)
    assert en_m1_sojourn_ms(4, 2000.0) < en_m1_sojourn_ms(2, 1000.0) < 2.0
