"""benchmarks.compare and the compare/report commands: seeds, the reroute metric, a tiny comparison end to end."""

from __future__ import annotations

import concurrent.futures as cf
import copy
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.cli import main as cli_main
from benchmarks.compare import (
    METRICS,
    ComparisonResult,
    compare,
    derive_seeds,
    parse_strategies,
    run_metrics,
    time_to_stop_routing,
)
from benchmarks.compare_commands import _seeds_help, format_summary, load_result
from simulator.results import RunResult
from simulator.scenario import Scenario, parse_scenario
from wsfinal.config import LoadBalancingStrategy
from wsfinal.exceptions import ConfigurationError

TINY: dict[str, Any] = {
    "name": "tiny",
    "description": "two nodes, a latency fault on node-b",
    "seed": 3,
    "duration": "4s",
    "warmup": "0.5s",
    "nodes": [
        {
            "id": "node-a",
            "service": {"distribution": "exponential", "mean": "2ms", "workers": 2},
            "api_keys": {"k": "s"},
        },
        {
            "id": "node-b",
            "service": {"distribution": "exponential", "mean": "2ms", "workers": 2},
            "api_keys": {"k": "s"},
        },
    ],
    "clients": {
        "connections": [
            {"type": "trading", "node": "node-a", "count": 1, "api_key": "k"},
            {"type": "trading", "node": "node-b", "count": 1, "api_key": "k"},
        ],
        "workload": [{"type": "trading", "arrival": "poisson", "rate": "100/s"}],
    },
    "manager": {"request_timeout": "1s"},
    "faults": [
        {"kind": "latency", "at": "2s", "duration": "1.5s", "node": "node-b", "direction": "down", "latency": "30ms"}
    ],
}


def tiny() -> Scenario:
    return parse_scenario(TINY, "tiny.yaml")


# --- pure parts ------------------------------------------------------------------------------------------------


def test_seeds_come_from_seed_sequence_spawn() -> None:
    seeds = derive_seeds(7, 4)
    expected = [int(c.generate_state(1)[0]) for c in np.random.SeedSequence(7).spawn(4)]
    assert seeds == expected
    assert len(set(seeds)) == 4
    assert derive_seeds(7, 2) == seeds[:2]  # more seeds extend, never reshuffle, a comparison
    with pytest.raises(ValueError, match="seeds=0"):
        derive_seeds(7, 0)


def test_parse_strategies() -> None:
    assert parse_strategies("all") == [s.value for s in LoadBalancingStrategy]
    assert parse_strategies("round_robin, PEAK_EWMA,round_robin") == ["round_robin", "peak_ewma"]
    with pytest.raises(ConfigurationError, match="nope"):
        parse_strategies("round_robin,nope")


def _routing(drop_at: float | None, *, share_after: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Requests every 10 ms over 20 s alternating node 0/1; after ``drop_at`` node 1 gets ``share_after``."""
    t = np.arange(0, 20, 0.01)
    node = (np.arange(t.size) % 2).astype(np.int32)
    if drop_at is not None:
        after = t >= drop_at
        k = np.flatnonzero(after)
        keep = round(share_after * 10)
        node[k] = np.where(np.arange(k.size) % 10 < keep, 1, 0)
    return t, node


def test_time_to_stop_routing_finds_the_drop() -> None:
    t, node = _routing(12.35)
    got = time_to_stop_routing(t, node, 1, 10.0, 18.0)
    # First 1 s window on the 0.1 s grid whose share of node 1 is < 25% (half of its 50%): less than half the
    # window may lie before the drop at 12.35, so it starts at 11.9 and ends at 12.9: 2.9 s after the fault.
    assert got == pytest.approx(2.9)


def test_time_to_stop_routing_none_when_share_stays() -> None:
    t, node = _routing(12.0, share_after=0.4)  # 40% of 50%-share: above the 25% threshold
    assert time_to_stop_routing(t, node, 1, 10.0, 18.0) is None
    t, node = _routing(None)
    assert time_to_stop_routing(t, node, 1, 10.0, 18.0) is None
    # No pre-fault share, or no requests routed at all: undefined.
    assert time_to_stop_routing(t, np.zeros_like(node), 1, 10.0, 18.0) is None
    assert time_to_stop_routing(t, np.full_like(node, -1), 1, 10.0, 18.0) is None


# --- end to end --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> tuple[ComparisonResult, cf.ProcessPoolExecutor]:
    out = tmp_path_factory.mktemp("cmp")
    with cf.ProcessPoolExecutor(max_workers=2) as pool:
        result = compare(tiny(), "round_robin,peak_ewma", 2, "virtual", 2, out, executor=pool)
        # A handed-in executor belongs to the caller: compare() must not have shut it down.
        assert pool.submit(int, "5").result() == 5
    return result, pool


def test_compare_writes_json_csv_and_run_dirs(comparison: tuple[ComparisonResult, Any]) -> None:
    result, _ = comparison
    data = json.loads((result.out / "comparison.json").read_text())
    assert data["seeds"] == derive_seeds(3, 2) and data["base_seed"] == 3
    assert "SeedSequence(3).spawn(2)" in data["seed_derivation"]
    assert data["strategies_order"] == ["round_robin", "peak_ewma"]
    assert len(data["runs"]) == 4
    for r in data["runs"]:
        assert (result.out / r["dir"] / "summary.json").exists()
        assert r["status"] == "ok"
    with (result.out / "comparison.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {row["strategy"] for row in rows} == {"round_robin", "peak_ewma"}
    for name in data["strategies_order"]:
        block = data["strategies"][name]
        assert set(block["metrics"]) == set(METRICS)
        assert block["metrics"]["p99_ms"]["n"] == 2
        iv = block["metrics"]["p99_ms"]
        assert iv["low"] <= iv["estimate"] <= iv["high"]
        assert sum(block["outcomes"].values()) == block["submitted"] > 0
    assert data["rankings"]["p99_ms"]["notes"]  # 2 seeds: the report must say nothing can be significant


def test_run_metrics_match_the_saved_runs(comparison: tuple[ComparisonResult, Any]) -> None:
    result, _ = comparison
    for r in result.runs:
        again = run_metrics(RunResult.load(result.run_dir(r)))
        assert {k: again[k] for k in METRICS} == {k: r[k] for k in METRICS}


def test_strategies_differ_on_the_faulty_node(comparison: tuple[ComparisonResult, Any]) -> None:
    data = comparison[0].data["strategies"]
    # peak_ewma moves traffic off the slow node; round_robin keeps sending it half.
    assert data["peak_ewma"]["rerouted_runs"] == 2
    assert data["round_robin"]["rerouted_runs"] == 0
    assert data["peak_ewma"]["metrics"]["p99_ms"]["estimate"] < data["round_robin"]["metrics"]["p99_ms"]["estimate"]


def test_format_summary_shows_intervals_and_the_power_note(comparison: tuple[ComparisonResult, Any]) -> None:
    text = format_summary(comparison[0].data)
    assert "peak_ewma" in text and "round_robin" in text
    assert "[" in text and "note: with 2 seeds" in text


def test_cli_compare_then_report_rebuilds_without_rerunning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario_file = tmp_path / "tiny.yaml"
    scenario_file.write_text(json.dumps(TINY))  # JSON is YAML
    out = tmp_path / "out"
    code = cli_main(["compare", str(scenario_file), "--strategies", "round_robin,least_connections", "--seeds", "2",
                     "--workers", "1", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "least_connections" in printed and str(out / "report.html") in printed
    saved = json.loads((out / "comparison.json").read_text())
    report = out / "report.html"
    report.unlink()
    for png in out.glob("*.png"):
        png.unlink()
    runs_before = sorted(p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json"))
    assert cli_main(["report", str(out)]) == 0
    assert report.exists() and len(list(out.glob("*.png"))) == 7
    assert sorted(p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json")) == runs_before
    assert load_result(out).data["strategies"] == saved["strategies"]  # same statistics, recomputed
    run_dir = out / saved["runs"][0]["dir"]
    capsys.readouterr()
    assert cli_main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").exists()
    printed = capsys.readouterr().out  # one run: its plain summary, no comparison talk
    assert "status ok" in printed and f"seed {saved['runs'][0]['seed']}" in printed
    assert "bootstrap" not in printed and "significant" not in printed


def test_cli_compare_reports_failed_expectations_and_check_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(json.dumps(TINY))
    doc["expect"] = [
        {"metric": "p99_ms", "op": "<=", "value": "1us"},  # cannot hold
        {"metric": "success_rate", "op": ">=", "value": 0.5},
    ]
    scenario_file = tmp_path / "tiny.yaml"
    scenario_file.write_text(json.dumps(doc))
    args = ["compare", str(scenario_file), "--strategies", "round_robin,peak_ewma", "--seeds", "1",
            "--workers", "1", "--out", str(tmp_path / "out"), "--quiet"]  # fmt: skip
    assert cli_main(args) == 0  # reported, but only --check makes it an error (as `wsfinal run`)
    printed = capsys.readouterr().out
    assert "FAILED expect: 2 of 4 checks passed" in printed
    assert "expect[0] p99_ms <= 0.001" in printed and "\n    round_robin in 1 of 1 seed (actual" in printed
    assert "expect[1]" not in printed.split("FAILED expect")[1]  # only the failed one is listed
    assert cli_main(["report", str(tmp_path / "out")]) == 0
    assert "FAILED expect: 2 of 4 checks passed" in capsys.readouterr().out
    assert cli_main([*args, "--check"]) == 3


def test_format_summary_never_rounds_a_failure_to_100_percent(comparison: tuple[ComparisonResult, Any]) -> None:
    data = copy.deepcopy(comparison[0].data)
    for block in data["strategies"].values():
        block["metrics"]["success_rate"] = {"estimate": 0.99997, "low": None, "high": None, "n": 1}
    text = format_summary(data)
    assert "99.997" in text and "100.00" not in text


def test_format_summary_of_one_strategy_compares_nothing(comparison: tuple[ComparisonResult, Any]) -> None:
    data = copy.deepcopy(comparison[0].data)
    data["strategies_order"] = ["peak_ewma"]
    text = format_summary(data)
    assert "peak_ewma" in text and "round_robin" not in text
    assert "nothing to compare" in text and "significant" not in text and "note:" not in text


def test_seeds_help_follows_the_power_bound() -> None:
    text = " ".join(_seeds_help().split())
    assert "4 seeds for 2 strategies" in text and "7 for 8-10" in text  # docs/reports.md: 7 for all 10


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario_file = tmp_path / "tiny.yaml"
    scenario_file.write_text(json.dumps(TINY))
    assert cli_main(["compare", str(scenario_file), "--strategies", "bogus", "--out", str(tmp_path)]) == 2
    assert "bogus" in capsys.readouterr().err
    assert cli_main(["compare", str(tmp_path / "missing.yaml")]) == 2
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "not a comparison or run directory" in capsys.readouterr().err
    (tmp_path / "comparison.json").write_text("{broken")
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "comparison.json" in capsys.readouterr().err


def test_format_summary_lists_the_strongest_significant_pairs_and_counts_the_rest(
    comparison: tuple[ComparisonResult, Any],
) -> None:
    from benchmarks.compare_commands import SIGNIFICANT_PER_METRIC

    data = copy.deepcopy(comparison[0].data)
    n = SIGNIFICANT_PER_METRIC + 3
    ranking = data["rankings"]["p99_ms"]
    ranking["tests"] = [
        {"metric": "p99_ms", "a": f"s{i}", "b": "round_robin", "better": f"s{i}", "significant": True,
         "p": 0.001 * (n - i), "p_adjusted": 0.002 * (n - i)}
        for i in range(n)
    ]  # fmt: skip
    text = format_summary(data)
    listed = [line for line in text.splitlines() if line.startswith("  p99_ms: s")]
    assert len(listed) == SIGNIFICANT_PER_METRIC
    assert listed[0].startswith(f"  p99_ms: s{n - 1} better")  # the smallest adjusted p first
    assert "p99_ms: ... and 3 more significant pairs" in text
