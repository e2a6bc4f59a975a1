"""Live and virtual mode agree (slow: live runs take real time).

The scenario injects millisecond latencies (service 10-25 ms, network 5 ms each way) at a rate the live client
keeps up with on this machine, so loopback overhead is small against what is measured. Per strategy: median
latency within 10 %, success rate within one percentage point, and where two strategies' p99s differ by more
than 20 % in virtual time, live ranks them the same way.
"""

import itertools

import pytest

from simulator.runner import run
from simulator.scenario import load_scenario

pytestmark = pytest.mark.slow

SCENARIO = """
name: agreement
description: Millisecond-scale latencies at a modest rate, one slow node, for live/virtual agreement.
seed: 3
duration: 20s
warmup: 3s
nodes:
  - id: fast
    service: {distribution: exponential, mean: 10ms, workers: 8}
    network: {latency: 5ms, jitter: 0.2ms}
    api_keys: {k: s}
  - id: slow
    service: {distribution: exponential, mean: 25ms, workers: 8}
    network: {latency: 5ms, jitter: 0.2ms}
    api_keys: {k: s}
clients:
  connections:
    - {type: trading, node: fast, count: 2, api_key: k}
    - {type: trading, node: slow, count: 2, api_key: k}
  workload:
    - {type: trading, arrival: poisson, rate: 120/s}
manager:
  strategy: round_robin
  request_timeout: 2s
"""

STRATEGIES = ("round_robin", "least_latency", "peak_ewma")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("agreement") / "agreement.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    out = {}
    for strategy in STRATEGIES:
        for mode in ("virtual", "live"):
            result = run(scenario, strategy=strategy, mode=mode)
            assert result.summary["status"] == "ok", result.summary["error"]
            out[strategy, mode] = result.summary["requests"]["all"]
    return out


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_median_and_success_agree(results, strategy):
    virtual, live = results[strategy, "virtual"], results[strategy, "live"]
    assert live["latency"]["p50_ms"] == pytest.approx(virtual["latency"]["p50_ms"], rel=0.10)
    assert abs(live["success_rate"] - virtual["success_rate"]) <= 0.01


def test_strategies_rank_the_same_by_p99(results):
    for a, b in itertools.combinations(STRATEGIES, 2):
        va, vb = (results[s, "virtual"]["latency"]["p99_ms"] for s in (a, b))
        if max(va, vb) > 1.2 * min(va, vb):
            la, lb = (results[s, "live"]["latency"]["p99_ms"] for s in (a, b))
            assert (va < vb) == (la < lb), (a, b, va, vb, la, lb)
