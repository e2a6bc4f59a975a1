"""The CI gate: passes on an unchanged tree, fails on a planted regression, writes the step summary."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from benchmarks.cli import main as cli_main
from benchmarks.gate import (
    Suite,
    SuiteEntry,
    Tolerance,
    compare,
    load_baseline,
    load_suite,
    markdown,
    run_suite,
    table,
)
from benchmarks.sweep import SweepError
from wsfinal import strategies
from wsfinal.records import ConnectionRecord

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
name: tiny
description: two small nodes, a latency fault on node-b
seed: 1
duration: 3s
warmup: 0.5s
nodes:
  - id: node-a
    service: {distribution: exponential, mean: 2ms, workers: 1}
    api_keys: {k: s}
  - id: node-b
    service: {distribution: exponential, mean: 2ms, workers: 1}
    api_keys: {k: s}
clients:
  connections:
    - {type: trading, node: node-a, count: 1, api_key: k}
    - {type: trading, node: node-b, count: 1, api_key: k}
  workload:
    - {type: trading, arrival: poisson, rate: 100/s}
manager:
  strategy: round_robin
  request_timeout: 1s
faults:
  - {kind: latency, at: 1s, duration: 1s, node: node-b, latency: 20ms}
"""

SUITE = """\
name: tiny-gate
seed: 3
strategies: [round_robin, peak_ewma]
scenarios:
  - path: tiny.yaml
    set:
      clients.workload[0].rate: 150/s
metrics:
  success_rate: {worse: lower, absolute: 0.002}
  p50_ms: {worse: higher, relative: 0.05, absolute: 0.1}
  p99_ms: {worse: higher, relative: 0.10, absolute: 0.5}
  mean_ms: {worse: higher, relative: 0.05, absolute: 0.1}
"""


@pytest.fixture()
def suite_dir(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "suite.yaml").write_text(SUITE)
    return tmp_path


def _gate(d: Path, *extra: str) -> int:
    args = ["gate", "--suite", str(d / "suite.yaml"), "--baseline", str(d / "baseline.json"), "--workers", "1"]
    return cli_main([*args, *extra])


def test_gate_passes_unchanged_and_fails_on_a_planted_regression(
    suite_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _gate(suite_dir, "--update") == 0
    baseline = json.loads((suite_dir / "baseline.json").read_text())
    assert sorted(baseline["entries"]) == ["tiny/peak_ewma", "tiny/round_robin"]
    capsys.readouterr()

    summary = suite_dir / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert _gate(suite_dir) == 0
    out = capsys.readouterr().out
    assert "gate PASSED: 2 entries, 8 checks" in out and "REGRESSION" not in out
    text = summary.read_text()
    assert text.startswith("## wsfinal gate: tiny-gate") and "**gate PASSED" in text and "| tiny/round_robin |" in text

    # plant a regression: round robin now picks the busiest connection (and so herds onto the slow node)
    def busiest(self: strategies.RoundRobin, now: float, rng: random.Random) -> ConnectionRecord | None:
        members = self.pool.members
        return max(members, key=lambda r: (r.outstanding, r.connection_id)) if members else None

    monkeypatch.setattr(strategies.RoundRobin, "select", busiest)
    assert _gate(suite_dir) == 1
    out = capsys.readouterr().out
    assert "gate FAILED" in out
    regressed = [line for line in out.splitlines() if "REGRESSION" in line]
    assert regressed and all(line.startswith("tiny/round_robin") for line in regressed)
    assert any(" p99_ms " in line or " mean_ms " in line for line in regressed)
    text = summary.read_text()  # appended, as GitHub expects from several steps
    assert text.count("## wsfinal gate: tiny-gate") == 2 and "### Failures" in text and "REGRESSION" in text


def test_gate_flags_missing_and_stale_baseline_entries(suite_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _gate(suite_dir) == 2
    assert "no baseline yet; create it with --update" in capsys.readouterr().err
    assert _gate(suite_dir, "--update") == 0
    # the suite changes (a different rate) without updating the baseline: every entry is stale
    (suite_dir / "suite.yaml").write_text(SUITE.replace("150/s", "120/s"))
    assert _gate(suite_dir) == 1
    out = capsys.readouterr().out
    assert out.count("STALE") == 2 and "--update" in out


def test_invalid_suite_is_reported_with_key_path(suite_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (suite_dir / "suite.yaml").write_text(SUITE.replace("p50_ms: {worse: higher", "p50_ms: {worse: up"))
    assert _gate(suite_dir) == 2
    assert "metrics.p50_ms.worse" in capsys.readouterr().err
    (suite_dir / "suite.yaml").write_text(SUITE.replace("150/s", "fast"))
    with pytest.raises(SweepError, match=r"scenarios\[0\].*clients\.workload\[0\]\.rate"):
        load_suite(suite_dir / "suite.yaml")
    (suite_dir / "suite.yaml").write_text(SUITE.replace("p99_ms:", "p42_ms:"))
    with pytest.raises(SweepError, match="p42_ms"):
        load_suite(suite_dir / "suite.yaml")


def _one_entry_suite(tolerances: dict[str, Tolerance]) -> Suite:
    entry = SuiteEntry("s/rr", "s.yaml", "round_robin", 1, "k", {}, ".")
    return Suite("<test>", "t", 1, [entry], tolerances)


def _current(**metrics: float | None) -> dict[str, dict[str, object]]:
    return {"s/rr": {"status": "ok", "key": "k", "metrics": metrics}}


def test_compare_is_direction_aware() -> None:
    suite = _one_entry_suite(
        {"p99_ms": Tolerance("higher", relative=0.1, absolute=0.5), "success_rate": Tolerance("lower", absolute=0.01)}
    )
    base = {"s/rr": {"key": "k", "metrics": {"p99_ms": 10.0, "success_rate": 0.99}}}

    def statuses(p99: float | None, success: float | None) -> list[str]:
        return [c.status for c in compare(suite, _current(p99_ms=p99, success_rate=success), base).checks]

    assert statuses(10.9, 0.985) == ["ok", "ok"]  # within 10% and within 0.01
    assert statuses(11.2, 0.99) == ["regression", "ok"]  # latency up by 12%
    assert statuses(8.0, 0.99) == ["improved", "ok"]  # latency down: reported, not failed
    assert statuses(10.0, 0.97) == ["ok", "regression"]  # success down
    assert statuses(10.0, 1.0) == ["ok", "ok"]  # success up by less than the tolerance
    assert statuses(None, 0.99) == ["regression", "ok"]  # no latency at all now
    report = compare(suite, _current(p99_ms=8.0, success_rate=0.99), base)
    assert report.passed and "1 improved" in table(report)
    failed = compare(suite, {"s/rr": {"status": "failed", "error": "boom", "key": "k", "metrics": {}}}, base)
    assert not failed.passed and failed.checks[0].status == "failed" and "boom" in markdown(failed, suite)
    assert compare(suite, _current(p99_ms=1.0, success_rate=1.0), {}).checks[0].status == "missing"


def test_bundled_suite_and_baseline_agree() -> None:
    """The committed baseline covers exactly the bundled suite's entries, recorded for the same runs."""
    suite = load_suite(ROOT / "benchmarks" / "suite.yaml")
    baseline = load_baseline(ROOT / "benchmarks" / "baseline.json")
    assert sorted(e.name for e in suite.entries) == sorted(baseline)
    assert len(suite.entries) == 9
    for e in suite.entries:
        assert baseline[e.name]["key"] == e.key, f"{e.name}: stale baseline; run wsfinal gate --update"
        assert set(baseline[e.name]["metrics"]) == set(suite.tolerances)


def test_bundled_gate_passes_on_this_tree_for_one_entry() -> None:
    """The cheapest entry of the real suite, run here, matches the committed baseline (the full gate runs as
    ``wsfinal gate`` in CI). If this fails after an intended change: ``wsfinal gate --update`` and commit."""
    suite = load_suite(ROOT / "benchmarks" / "suite.yaml")
    suite.entries = [e for e in suite.entries if e.name == "steady-state/round_robin"]
    report = compare(suite, run_suite(suite), load_baseline(ROOT / "benchmarks" / "baseline.json"))
    assert report.passed, table(report)
    assert all(c.delta == 0 for c in report.checks), table(report)  # virtual time: exactly the same numbers
