"""Sweeps: key paths and overrides, sweep-file validation with key paths, grid expansion, resume, executors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import reports.html
from benchmarks.cli import main as cli_main
from benchmarks.sweep import (
    SweepError,
    SweepStore,
    apply_overrides,
    expand,
    grid_size,
    load_sweep,
    make_executor,
    parse_key_path,
    parse_sweep,
    run_sweep,
)
from benchmarks.sweep_report import CSP, _chart, build_table, numeric_value, render_sweep_report, run_problems
from reports.style import strategy_style

TINY = """\
name: tiny
description: two small nodes, a short latency fault on node-b
seed: 1
duration: 3s
warmup: 1s
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

SWEEP = """\
name: tiny-sweep
description: "a tiny sweep <script>alert(1)</script>"
scenarios: [tiny.yaml]
strategies: [round_robin, peak_ewma]
seeds: [1, 2]
parameters:
  faults[0].duration: [0.5s, 1s]
report:
  metrics: [p99_ms, success_rate]
"""


@pytest.fixture()
def tiny_dir(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    return tmp_path


def _sweep_error(tmp_path: Path, text: str) -> str:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(SweepError) as info:
        load_sweep(tmp_path / "bad.yaml")
    return str(info.value)


# -- key paths and overrides --------------------------------------------------------------------------------


def test_parse_key_path() -> None:
    assert parse_key_path("faults[0].duration") == ["faults", 0, "duration"]
    assert parse_key_path("clients.workload[1].rate") == ["clients", "workload", 1, "rate"]
    assert parse_key_path("duration") == ["duration"]
    for bad in ("", "[0].x", "a..b", "a[x]", ".a", "a.b c"):
        with pytest.raises(SweepError, match="key path"):
            parse_key_path(bad)


def test_apply_overrides_sets_values_without_touching_the_original() -> None:
    doc = {"duration": "10s", "clients": {"workload": [{"rate": "1/s"}]}, "faults": [{"at": "1s"}]}
    out = apply_overrides(doc, {"workload[0].rate": "5/s", "faults[0].duration": "2s", "duration": "3s"})
    assert out == {
        "duration": "3s",
        "clients": {"workload": [{"rate": "5/s"}]},
        "faults": [{"at": "1s", "duration": "2s"}],
    }
    assert doc["clients"]["workload"][0]["rate"] == "1/s" and "duration" not in doc["faults"][0]


def test_apply_overrides_names_the_missing_part() -> None:
    doc = {"faults": [{"at": "1s"}], "manager": {"strategy": "x"}}
    with pytest.raises(SweepError, match=r"faults\[3\]\.at: faults has 1 item\(s\), there is no \[3\]"):
        apply_overrides(doc, {"faults[3].at": "2s"})
    with pytest.raises(SweepError, match="has no key 'alerts'"):
        apply_overrides(doc, {"manager.alerts.x": 1})
    with pytest.raises(SweepError, match="is not a list"):
        apply_overrides(doc, {"manager[0]": 1})


# -- validation ---------------------------------------------------------------------------------------------


def test_validation_errors_name_file_and_key_path(tiny_dir: Path) -> None:
    msg = _sweep_error(
        tiny_dir, "scenarios: [tiny.yaml]\nstrategies: [round_robin]\nparameters:\n  faults[0].duration: [2 parsecs]\n"
    )
    assert "bad.yaml" in msg and "faults[0].duration" in msg and "2 parsecs" in msg
    msg = _sweep_error(
        tiny_dir, "scenarios: [tiny.yaml]\nstrategies: [round_robin]\nparameters:\n  faults[4].duration: [1s]\n"
    )
    assert "faults[4].duration" in msg and "there is no [4]" in msg
    msg = _sweep_error(tiny_dir, "scenarios: [tiny.yaml]\nstrategies: [round_robin, fastest]\n")
    assert "strategies[1]" in msg and "fastest" in msg
    msg = _sweep_error(tiny_dir, "scenarios: [tiny.yaml]\nstrategies: [round_robin]\nseedz: 3\n")
    assert "bad.yaml: seedz: unknown key 'seedz'; did you mean 'seeds'?" in msg
    msg = _sweep_error(tiny_dir, "scenarios: [missing.yaml]\nstrategies: [round_robin]\n")
    assert "scenarios[0]" in msg and "missing.yaml" in msg
    msg = _sweep_error(tiny_dir, "scenarios: [tiny.yaml]\nstrategies: [round_robin]\nparameters:\n  duration: []\n")
    assert "parameters.duration" in msg
    msg = _sweep_error(
        tiny_dir, "scenarios: [tiny.yaml]\nstrategies: [round_robin]\nparameters:\n  'not a path': [1]\n"
    )
    assert "not a key path" in msg
    msg = _sweep_error(tiny_dir, "scenarios: [tiny.yaml]\nstrategies: [round_robin]\nseeds: 0\n")
    assert "seeds" in msg
    msg = _sweep_error(
        tiny_dir, "scenarios: [tiny.yaml]\nstrategies: [round_robin]\nmode: live\nset:\n  duration: 2s\n"
    )
    assert "mode: live" in msg
    # a value of the right form that the scenario loader rejects (the fault would end after the run)
    msg = _sweep_error(tiny_dir, "scenarios: [tiny.yaml]\nstrategies: [round_robin]\nset:\n  faults[0].at: 10s\n")
    assert "faults[0].at = '10s'" in msg and "tiny.yaml" in msg


# -- the grid -----------------------------------------------------------------------------------------------


def test_grid_expansion_is_complete_and_keys_are_stable(tiny_dir: Path) -> None:
    sweep = load_sweep(tiny_dir / "sweep.yaml")
    specs = list(expand(sweep))
    assert len(specs) == grid_size(sweep) == 8
    combos = {(s.strategy, s.seed, s.params["faults[0].duration"]) for s in specs}
    assert len(combos) == 8 and len({s.key for s in specs}) == 8
    assert {s.document["faults"][0]["duration"] for s in specs} == {"0.5s", "1s"}
    again = [s.key for s in expand(load_sweep(tiny_dir / "sweep.yaml"))]
    assert again == [s.key for s in specs]


def test_seed_count_derives_seeds_and_all_strategies(tiny_dir: Path) -> None:
    doc = {"scenarios": ["tiny.yaml"], "strategies": "all", "seeds": 3, "base_seed": 7}
    sweep = parse_sweep(doc, "<test>", base_dir=tiny_dir)
    assert len(sweep.seeds) == 3 and len(set(sweep.seeds)) == 3
    assert "peak_ewma" in sweep.strategies and len(sweep.strategies) == 10
    assert parse_sweep(doc, "<test>", base_dir=tiny_dir).seeds == sweep.seeds


def test_numeric_value_reads_units() -> None:
    assert numeric_value("500/s") == 500.0
    assert numeric_value("2s") == 2.0
    assert numeric_value(3) == 3.0
    assert numeric_value("fast") is None


# -- running and resuming -----------------------------------------------------------------------------------


def test_resume_runs_only_missing_runs(tiny_dir: Path) -> None:
    sweep = load_sweep(tiny_dir / "sweep.yaml")
    out = tiny_dir / "out"
    first: list[str] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        o1 = run_sweep(sweep, out, pool, limit=3, on_record=lambda r: first.append(r["key"]))
    assert (o1.executed, o1.skipped, o1.total) == (3, 0, 8) and len(first) == 3
    assert "5 runs of the grid have no result" in render_sweep_report(out).read_text()  # a partial sweep says so
    # simulate a kill in the middle of writing a result: a half-written directory and a torn index line
    partial_key = next(s.key for s in expand(sweep) if s.key not in first)
    (out / "runs" / f"{partial_key}.partial").mkdir()
    (out / "runs" / f"{partial_key}.partial" / "summary.json").write_text("{")
    with (out / "index.jsonl").open("a") as fh:
        fh.write('{"key": "' + partial_key)
    second: list[str] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        o2 = run_sweep(sweep, out, pool, on_record=lambda r: second.append(r["key"]))
    assert (o2.executed, o2.skipped) == (5, 3)
    assert set(second).isdisjoint(first) and set(first) | set(second) == {s.key for s in expand(sweep)}
    assert not list((out / "runs").glob("*.partial"))
    with ThreadPoolExecutor(max_workers=1) as pool:
        o3 = run_sweep(sweep, out, pool)
    assert (o3.executed, o3.skipped, len(o3.records)) == (0, 8, 8)
    records = SweepStore(out).records()
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)
    assert all((out / r["dir"] / "summary.json").is_file() for r in records)
    html = render_sweep_report(out).read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "data:image/png;base64," in html and (out / "sweep-p99_ms.png").stat().st_size > 1000
    assert "All 8 runs complete and ok" in html and "p99 latency (ms) per strategy" in html
    template = (Path(reports.html.TEMPLATE_DIR) / reports.html.TEMPLATE).read_text()
    assert f'content="{CSP}"' in template and f'content="{CSP}"' in html.replace("&#x27;", "'")


def test_sweep_report_lists_failed_runs_and_missing_ones(tmp_path: Path) -> None:
    (tmp_path / "runs" / "k1").mkdir(parents=True)
    (tmp_path / "runs" / "k1" / "summary.json").write_text(json.dumps({"error": "node-a: exchange crashed"}))
    base = {"scenario_name": "tiny", "seed": 1, "params": {"rate": "5/s"}}
    records = [
        {**base, "key": "k1", "strategy": "peak_ewma", "status": "failed", "dir": "runs/k1"},
        {**base, "key": "k2", "strategy": "round_robin", "status": "ok", "dir": "runs/k2"},
    ]
    lines = run_problems({"keys": ["k1", "k2", "k3"]}, records, tmp_path)
    assert lines[0] == "run failed: tiny, peak_ewma, seed 1, rate = 5/s (runs/k1): node-a: exchange crashed"
    assert lines[1].startswith("1 run of the grid has no result") and len(lines) == 2
    assert run_problems({"keys": ["k2"]}, records[1:], tmp_path) == []


def test_sweep_charts_use_each_strategy_s_fixed_style() -> None:
    records = [
        {"key": f"{s}{seed}", "scenario_name": "tiny", "strategy": s, "seed": seed, "params": {"rate": r},
         "metrics": {"p99_ms": 10.0 * seed + len(s)}}
        for s in ("random", "peak_ewma") for seed in (1, 2) for r in ("1/s", "2/s")
    ]  # fmt: skip
    table = build_table({"parameters": {"rate": ["1/s", "2/s"]}, "report": {"x": "rate"}}, records)
    fig = _chart(table, "p99_ms")
    [ax] = [a for a in fig.axes if a.get_visible()]
    for line in ax.get_lines():
        style = strategy_style(str(line.get_label()))
        assert (line.get_color(), line.get_linestyle()) == (style["color"], style["linestyle"])
    assert fig.get_suptitle().startswith("p99 latency (ms) per strategy against rate")


def test_results_are_identical_whatever_the_executor(tiny_dir: Path) -> None:
    sweep = load_sweep(tiny_dir / "sweep.yaml")
    sweep.strategies, sweep.seeds = ["peak_ewma"], [3]
    with ThreadPoolExecutor(max_workers=1) as pool:
        a = run_sweep(sweep, tiny_dir / "a", pool)
    with make_executor(workers=2) as pool:
        b = run_sweep(sweep, tiny_dir / "b", pool)
    by_key = lambda o: {r["key"]: {k: v for k, v in r["metrics"].items() if k != "wall_time_s"} for r in o.records}  # noqa: E731
    assert by_key(a) == by_key(b) and len(by_key(a)) == 2


def test_cli_sweep_resumes_and_reports(tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tiny_dir / "cli-out"
    args = ["sweep", str(tiny_dir / "sweep.yaml"), "--out", str(out), "--workers", "1", "--quiet"]
    assert cli_main([*args, "--max-runs", "2", "--no-report"]) == 0
    assert "2 runs executed, 0 already complete" in capsys.readouterr().out
    assert cli_main(args) == 0
    text = capsys.readouterr().out
    assert "6 runs executed, 2 already complete" in text and "8 of 8 complete" in text
    assert (out / "sweep-report.html").is_file()
    assert len((out / "index.jsonl").read_text().splitlines()) == 8
    sweep_json = json.loads((out / "sweep.json").read_text())
    assert len(sweep_json["keys"]) == 8
    (tiny_dir / "bad.yaml").write_text("scenarios: [tiny.yaml]\nstrategies: [nope]\n")
    assert cli_main(["sweep", str(tiny_dir / "bad.yaml")]) == 2
    assert "strategies[0]" in capsys.readouterr().err


def test_scheduler_without_distributed_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with (
        pytest.raises(SweepError, match=r"pip install 'wsfinal\[dask\]'"),
        make_executor(scheduler="tcp://127.0.0.1:1"),
    ):
        pass


def test_sweep_on_a_local_dask_cluster(tiny_dir: Path) -> None:
    """Runs on a local Dask cluster when ``distributed`` is installed (the ``dask`` extra); without it, the
    scheduler option must fail with the install hint instead."""
    sweep = load_sweep(tiny_dir / "sweep.yaml")
    sweep.strategies, sweep.seeds = ["round_robin"], [5]
    try:
        import distributed
    except ImportError:
        with pytest.raises(SweepError, match="distributed"), make_executor(scheduler="tcp://127.0.0.1:1"):
            pass
        return
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            protocol="tcp://",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        make_executor(scheduler=cluster.scheduler_address) as executor,
    ):
        outcome = run_sweep(sweep, tiny_dir / "dask", executor)
    assert (outcome.executed, outcome.total, len(outcome.records)) == (2, 2, 2)
    assert all(r["status"] == "ok" for r in outcome.records)


def test_a_sweep_killed_mid_way_resumes_where_it_stopped(tiny_dir: Path) -> None:
    """Ctrl-C (SIGINT) to a running ``wsfinal sweep``: it stops with 130, and the next call runs only the rest."""
    out = tiny_dir / "killed"
    cmd = [sys.executable, "-m", "benchmarks.cli", "sweep", str(tiny_dir / "sweep.yaml"), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--workers", "1", "--quiet", "--no-report"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        index = out / "index.jsonl"
        while not (index.exists() and index.read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    done_before = {r["key"] for r in SweepStore(out).records()}
    assert 1 <= len(done_before) < 8
    again: list[str] = []
    sweep = load_sweep(tiny_dir / "sweep.yaml")
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcome = run_sweep(sweep, out, pool, on_record=lambda r: again.append(r["key"]))
    assert (outcome.skipped, outcome.executed) == (len(done_before), 8 - len(done_before))
    assert set(again).isdisjoint(done_before) and len(outcome.records) == 8


def test_a_run_that_raises_is_reported_and_retried(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.sweep as sweep_module

    real = sweep_module.execute

    def flaky(document: dict[str, object], source: str, base_dir: str, strategy: str, seed: int, mode: str):  # type: ignore[no-untyped-def]
        if strategy == "peak_ewma":
            raise RuntimeError("worker lost")
        return real(document, source, base_dir, strategy, seed, mode)

    sweep = load_sweep(tiny_dir / "sweep.yaml")
    monkeypatch.setattr(sweep_module, "execute", flaky)
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = run_sweep(sweep, tiny_dir / "out", pool)
    assert first.executed == 4 and len(first.failed) == 4
    assert all(reason == "RuntimeError: worker lost" for _, reason in first.failed)
    monkeypatch.setattr(sweep_module, "execute", real)
    with ThreadPoolExecutor(max_workers=2) as pool:
        second = run_sweep(sweep, tiny_dir / "out", pool)
    assert (second.skipped, second.executed, second.failed, len(second.records)) == (4, 4, [], 8)
