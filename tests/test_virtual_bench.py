"""benchmarks.virtual_bench: the per-scenario speed table (``wsfinal bench virtual --scenarios``). Timing is never
asserted here: only that the table is made from real runs and reads right."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks.virtual_bench import SCENARIO_DIR, format_speeds, main, register_virtual, scenario_speeds

SHORT = """
name: tiny
seed: 3
duration: 2s
warmup: 0s
nodes:
  - id: a
    service: {distribution: exponential, mean: 2ms, workers: 1}
    queue_limit: 100
    symbols: [tBTCUSD]
    api_keys: {k: s}
clients:
  connections:
    - {type: trading, node: a, count: 1, api_key: k}
    - {type: market_data, node: a, subscriptions: [{channel: ticker, symbol: tBTCUSD}]}
  workload:
    - {type: trading, arrival: poisson, rate: 100/s}
"""


def test_scenario_speeds_come_from_real_runs(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(SHORT)
    [row] = scenario_speeds([path])
    assert row["scenario"] == "tiny" and row["status"] == "ok"
    assert row["simulated_s"] == pytest.approx(2.0, abs=0.01)
    assert 100 < row["requests"] < 300
    assert row["simulated_per_wall_s"] == pytest.approx(row["simulated_s"] / row["wall_s"])
    table = format_speeds([row])
    assert table.splitlines()[0].split() == ["scenario", "simulated", "s", "wall", "s", "sim", "s/wall", "s",
                                             "requests", "req/wall", "s"]  # fmt: skip
    assert table.splitlines()[1].startswith("tiny") and "FAILED" not in table
    assert table.splitlines()[-1].startswith("all")


def test_failed_runs_are_marked() -> None:
    row = {"scenario": "x", "status": "failed", "simulated_s": 1.0, "wall_s": 0.5, "simulated_per_wall_s": 2.0,
           "requests": 10, "requests_per_wall_s": 20.0}  # fmt: skip
    assert "FAILED" in format_speeds([row]).splitlines()[1]


def test_the_command_takes_scenario_files_and_skips_simpy_on_request(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(SHORT)
    parser = argparse.ArgumentParser()
    register_virtual(parser.add_subparsers())
    args = parser.parse_args(["virtual", "--scenarios", str(path), "--scenarios-only"])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "SimPy" not in out
    assert parser.parse_args(["virtual", "--scenarios"]).scenarios == []  # bare flag: the bundled scenarios
    assert sorted(SCENARIO_DIR.glob("*.yaml"))
