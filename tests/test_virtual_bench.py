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


def test_wire_floor_and_callback_chain_simulate_the_same_mm1_bank() -> None:
    """Both yardsticks are the M/M/1 bank: mean latency matches 1 / (mu - lambda_node), and the JSON work changes
    nothing but speed (same random draws, same requests, same latencies)."""
    from benchmarks.virtual_bench import wire_floor_rate
    from simulator.queueing import mm1_sojourn_ms

    _, n_wire, mean_wire = wire_floor_rate(10, 0.5, 100.0, 60.0, seed=4)
    _, n_chain, mean_chain = wire_floor_rate(10, 0.5, 100.0, 60.0, seed=4, wire=False)
    assert n_wire == n_chain and mean_wire == mean_chain
    assert 0.9 * 30_000 < n_wire < 1.1 * 30_000  # lambda = 500/s for 60 s
    assert mean_wire == pytest.approx(mm1_sojourn_ms(50.0, 100.0), rel=0.1)
    _, _, other_seed = wire_floor_rate(10, 0.5, 100.0, 60.0, seed=5)
    assert other_seed != mean_wire


def test_the_floor_answers_are_the_exchange_frames() -> None:
    """The floor's answer texts are the frames the fake exchange sends for an accepted order."""
    import json

    from benchmarks.virtual_bench import answer_texts

    note, new = answer_texts(120_000_000_007, 7, 1_700_000_000_190, 25)
    n = json.loads(note)
    assert n[:2] == [0, "n"] and n[3:] == [25, 25]
    assert n[1] == "n" and n[2][1] == "on-req" and n[2][6] == "SUCCESS"
    order = n[2][4]
    assert len(order) == 32 and order[0] == 120_000_000_007 and order[2] == 7 and order[13] == "ACTIVE"
    assert json.loads(new) == [0, "on", order, 26, 26]


def test_the_command_prints_every_yardstick(capsys) -> None:
    parser = argparse.ArgumentParser()
    register_virtual(parser.add_subparsers())
    assert main(parser.parse_args(["virtual", "--nodes", "4", "--duration", "1"])) == 0
    out = capsys.readouterr().out
    for label in ("SimPy model", "callback chain", "wire floor", "full manager", "ratio manager/SimPy",
                  "ratio chain/SimPy", "ratio floor/SimPy", "ratio manager/floor"):  # fmt: skip
        assert label in out, label


def test_the_profile_splits_time_by_layer() -> None:
    from benchmarks.virtual_bench import OTHER, layer_of, profile

    assert layer_of("/x/wsfinal/traffic.py").startswith("client library")
    assert layer_of("/x/simulator/node.py").startswith("exchange")
    assert layer_of("/x/simulator/node_connection.py").startswith("exchange")
    assert layer_of("/x/simulator/memory.py").startswith("transport")
    assert layer_of("/x/simulator/fault_link.py").startswith("transport")  # the faults engine, split in three
    assert layer_of("/usr/lib/python3.11/asyncio/events.py").startswith("virtual loop")
    assert layer_of("~").startswith("builtins")
    assert layer_of("/x/simulator/scenario_schema.py") == OTHER
    text = profile(4, 0.5, 100.0, 1.0, top=3)
    head = text.splitlines()
    assert head[0].startswith("Profile of ") and head[1].split()[0] == "layer"
    table = head[2 : next(i for i, line in enumerate(head) if line.startswith("all ")) + 1]  # the layer table only
    rows = {line[:58].strip(): line[58:].split() for line in table}
    shares = [float(v[0].rstrip("%")) for k, v in rows.items() if k and k != "all" and v]
    assert abs(sum(shares) - 100.0) < 1.0  # the layers cover all the time
    assert float(rows["client library (wsfinal/)"][1]) > 1  # the manager ran: Python calls per request
