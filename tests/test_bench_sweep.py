"""Sweep throughput: the same 8-run grid on a process pool of 1 and of 2 workers (speed-up = median ratio).

Run with ``.venv/bin/python -m pytest -m benchmark --benchmark-only tests/test_bench_sweep.py``; each round
starts from an empty output directory (nothing to resume) and includes the pool's start-up.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from benchmarks.sweep import load_sweep, make_executor, run_sweep

TINY = """\
name: tiny
seed: 1
duration: 20s
warmup: 1s
nodes:
  - id: node-a
    service: {distribution: exponential, mean: 2ms, workers: 2}
    api_keys: {k: s}
  - id: node-b
    service: {distribution: exponential, mean: 2ms, workers: 2}
    api_keys: {k: s}
clients:
  connections:
    - {type: trading, node: node-a, count: 1, api_key: k}
    - {type: trading, node: node-b, count: 1, api_key: k}
  workload:
    - {type: trading, arrival: poisson, rate: 600/s}
manager:
  strategy: round_robin
  request_timeout: 1s
faults:
  - {kind: latency, at: 5s, duration: 2s, node: node-b, latency: 20ms}
"""

SWEEP = """\
name: bench-sweep
scenarios: [tiny.yaml]
strategies: [round_robin, peak_ewma]
seeds: [1, 2]
parameters:
  faults[0].duration: [2s, 5s]
"""


@pytest.mark.benchmark
@pytest.mark.parametrize("workers", [1, 2])
def test_sweep_wall_time(benchmark, tmp_path: Path, workers: int) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    sweep = load_sweep(tmp_path / "sweep.yaml")
    counter = itertools.count()

    def setup() -> tuple[tuple[Path], dict[str, object]]:
        out = tmp_path / f"out{next(counter)}"
        shutil.rmtree(out, ignore_errors=True)
        return (out,), {}

    def sweep_once(out: Path) -> int:
        with make_executor(workers=workers) as pool:
            outcome = run_sweep(sweep, out, pool)
        return outcome.executed

    executed = benchmark.pedantic(sweep_once, setup=setup, rounds=3, iterations=1)
    assert executed == 8
    benchmark.extra_info["runs"] = 8
    benchmark.extra_info["workers"] = workers
