"""Queueing-theory yardsticks: a scenario that is a bank of single-server queues, and its closed forms.

n exchange nodes, one worker each with exponential service (rate ``mu``), one connection per node, Poisson
arrivals at total rate ``lambda``, no network delay: each node is a single-server FCFS queue and the request
latency is its sojourn time.

- RANDOM splits a Poisson stream into n independent Poisson streams of rate lambda/n: each node is M/M/1, with
  mean sojourn time 1 / (mu - lambda/n) (Kleinrock, Queueing Systems Vol. 1, 1975, eq. 3.26).
- ROUND_ROBIN sends every n-th arrival to the same node: Erlang-n interarrival times (rate lambda per phase), an
  E_n/M/1 queue. For G/M/1 the sojourn time is exponential with rate mu(1 - sigma), sigma the root in (0, 1) of
  sigma = A*(mu(1 - sigma)), A* the Laplace-Stieltjes transform of the interarrival time (Kleinrock Vol. 1,
  section 6.4, eq. 6.30); for Erlang-n, A*(s) = (lambda / (lambda + s))^n.
"""

from __future__ import annotations

from scipy.optimize import brentq

from simulator.scenario import Scenario, parse_scenario


def mm1_sojourn_ms(lam_node: float, mu: float) -> float:
    """Mean sojourn time (ms) of an M/M/1 queue with arrival rate ``lam_node`` and service rate ``mu`` (1/s)."""
    if lam_node >= mu:
        raise ValueError(f"unstable queue: lambda={lam_node} >= mu={mu}")
    return 1000.0 / (mu - lam_node)


def en_m1_sojourn_ms(n: int, lam_total: float, mu: float) -> float:
    """Mean sojourn time (ms) at one of n round-robin-fed single-server queues (E_n/M/1)."""
    sigma = brentq(lambda s: s - (lam_total / (lam_total + mu * (1.0 - s))) ** n, 1e-12, 1 - 1e-12)
    return 1000.0 / (mu * (1.0 - sigma))


def queueing_scenario(n: int, rho: float, duration_s: float, *, mu: float = 1000.0, warmup_s: float = 5.0) -> Scenario:
    """n single-worker nodes at utilisation ``rho`` (Poisson arrivals at rho * mu * n per second)."""
    nodes = [
        {
            "id": f"n{i}",
            "service": {"distribution": "exponential", "mean": f"{1000.0 / mu:g}ms", "workers": 1},
            "queue_limit": 1_000_000,
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
            "name": f"queueing-n{n}-rho{rho:g}",
            "description": f"{n} M/M/1 queues at utilisation {rho:g} (service rate {mu:g}/s each)",
            "duration": f"{duration_s:g}s",
            "warmup": f"{warmup_s:g}s",
            "nodes": nodes,
            "clients": {
                "connections": connections,
                "workload": [{"type": "trading", "arrival": "poisson", "rate": f"{rho * mu * n:g}/s"}],
            },
            "manager": {"request_timeout": "3600s", "enable_alerts": False, "max_connections": max(1000, n)},
        },
        source="<queueing>",
    )
