"""Scenario runs end to end in virtual time: determinism, accounting, failures, the `wsfinal run` command."""

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.cli import main as cli
from simulator.results import OUTCOMES, RunResult
from simulator.runner import describe, run
from simulator.scenario import parse_scenario

TINY = {
    "name": "tiny",
    "description": "two nodes, one latency fault, one close: a fast end-to-end check",
    "seed": 5,
    "duration": "4s",
    "warmup": "0.5s",
    "nodes": [
        {"id": "a", "service": {"distribution": "exponential", "mean": "2ms", "workers": 2}, "api_keys": {"k": "s"}},
        {"id": "b", "service": {"distribution": "exponential", "mean": "2ms", "workers": 2}, "api_keys": {"k": "s"}},
    ],
    "clients": {
        "connections": [
            {"type": "trading", "node": "a", "count": 2, "api_key": "k", "reconnect_delay": "100ms"},
            {"type": "trading", "node": "b", "count": 2, "api_key": "k", "reconnect_delay": "100ms"},
            {"type": "market_data", "node": "a", "subscriptions": [{"channel": "book", "symbol": "tBTCUSD"}]},
        ],
        "workload": [{"type": "trading", "arrival": "poisson", "rate": "300/s"}],
    },
    "manager": {"strategy": "peak_ewma", "request_timeout": "1s"},
    "faults": [
        {"kind": "latency", "at": "1s", "duration": "1s", "node": "b", "latency": "30ms"},
        {"kind": "close", "at": "2.5s", "node": "a", "connection": 0, "code": 1012},
    ],
    "expect": [{"metric": "success_rate", "op": ">=", "value": 0.9}],
}


def tiny():
    return parse_scenario(TINY, source="<tiny>")


def test_run_accounts_for_every_request_and_reports():
    result = run(tiny())
    s = result.summary
    assert s["status"] == "ok" and s["mode"] == "virtual" and s["strategy"] == "peak_ewma"
    assert s["accounting"]["ok"] and s["accounting"]["submitted"] == len(result.requests) > 800
    outcomes = s["requests"]["all"]["outcomes"]
    assert set(outcomes) == set(OUTCOMES)
    assert s["reconnects"]["total"] >= 1  # the close fault forced one
    assert {e["kind"] for e in result.events} >= {"fault_start", "fault_end", "state_changed"}
    assert s["expect"][0]["passed"] is True
    assert result.series["health"].shape[1] == 5
    lat = s["requests"]["by_node"]["b"]["latency"]
    assert lat["p99_ms"] > 30  # the latency fault on b shows in its tail
    assert "tiny" in describe(result) and "PASS" in describe(result)


def test_same_seed_same_bytes_in_process_and_across_processes(tmp_path):
    a = run(tiny()).save(tmp_path / "a")
    b = run(tiny()).save(tmp_path / "b")
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    code = (
        f"import sys; sys.path.insert(0, {root!r}); from tests.test_runner import tiny; "
        f"from simulator.runner import run; run(tiny()).save({str(tmp_path / 'c')!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    for other in (b, tmp_path / "c"):
        assert (a / "summary.json").read_bytes() == (other / "summary.json").read_bytes()
        assert (a / "events.jsonl").read_bytes() == (other / "events.jsonl").read_bytes()
        with np.load(a / "requests.npz") as x, np.load(other / "requests.npz") as y:
            for name in x.files:
                assert np.array_equal(x[name], y[name]), name


def test_other_seed_other_stream():
    a = run(tiny(), seed=1).requests.columns["intended"]
    b = run(tiny(), seed=2).requests.columns["intended"]
    assert len(a) != len(b) or not np.array_equal(a, b)


def test_a_broken_run_is_reported_failed_with_what_it_collected():
    # Live mode needs the scenario's file for the exchange process: a parsed dict has none.
    result = run(tiny(), mode="live")
    assert result.summary["status"] == "failed"
    assert "live mode needs a scenario loaded from a file" in result.summary["error"]
    assert result.summary["accounting"]["ok"]


def test_closed_loop_is_labelled():
    doc = json.loads(json.dumps(TINY))
    doc["clients"]["workload"] = [{"type": "trading", "arrival": "closed_loop", "concurrency": 4, "think": "5ms"}]
    doc["faults"] = []
    result = run(parse_scenario(doc))
    assert result.summary["closed_loop"] is True and result.summary["accounting"]["ok"]
    assert "closed loop" in describe(result)


def test_run_command_writes_results_and_rejects_bad_files(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    doc = json.loads(json.dumps(TINY))
    doc["duration"] = "3s"
    path.write_text(json.dumps(doc))  # JSON is YAML
    assert cli(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--strategy", "round_robin"]) == 0
    out = capsys.readouterr().out
    assert "strategy round_robin" in out and "result in" in out
    [run_dir] = (tmp_path / "out").iterdir()
    assert run_dir.name == "tiny-round_robin-seed5-virtual"  # OUT/SCENARIO-STRATEGY-seedN-MODE, as --help says
    assert f"wsfinal report {run_dir}" in out  # the next step, with the real path
    loaded = RunResult.load(run_dir)
    assert loaded.summary["strategy"] == "round_robin" and len(loaded.requests) > 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nduration: 2s\nnodes: []\nclientz: {}\n")
    assert cli(["run", str(bad), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_run_check_exits_3_on_a_failed_expectation(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    doc = json.loads(json.dumps(TINY))
    doc["duration"] = "3s"
    doc["expect"] = [{"metric": "p99_ms", "op": "<=", "value": "1us"}]  # cannot hold
    path.write_text(json.dumps(doc))
    args = ["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]
    assert cli(args) == 0  # without --check a failed expectation is reported, not an error
    assert "FAIL" in capsys.readouterr().out
    assert cli([*args, "--check"]) == 3


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="mode='warp'"):
        run(tiny(), mode="warp")


def test_alerts_and_notifications_replay_identically(tmp_path):
    from pathlib import Path

    from simulator.scenario import load_scenario

    demo = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "demo.yaml")
    a = run(demo).save(tmp_path / "a")
    b = run(demo).save(tmp_path / "b")
    events = (a / "events.jsonl").read_text()
    assert '"alert_firing"' in events and '"notification"' in events
    assert events == (b / "events.jsonl").read_text()
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()


def test_the_run_hides_its_set_up_from_the_collector_and_gives_it_back(monkeypatch):
    import gc

    real_freeze, real_unfreeze = gc.freeze, gc.unfreeze
    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: (calls.append("freeze"), real_freeze())[1])
    monkeypatch.setattr(gc, "unfreeze", lambda: (calls.append("unfreeze"), real_unfreeze())[1])
    scenario = parse_scenario({**TINY, "duration": "1s", "faults": []}, source="<tiny>")
    assert gc.get_freeze_count() == 0
    first = run(scenario)
    assert calls == ["freeze", "unfreeze"] and gc.get_freeze_count() == 0
    calls.clear()
    real_freeze()  # a caller that froze objects itself: the run leaves its freeze alone
    try:
        second = run(scenario)
        assert calls == [] and gc.get_freeze_count() > 0
    finally:
        real_unfreeze()
    assert first.summary["accounting"] == second.summary["accounting"]


def test_connection_group_settings_reach_each_connection_config(monkeypatch):
    import simulator.runner as runner_module

    seen = []
    real = runner_module.ManagedConnection

    def spy(config, **kw):
        seen.append((kw["connection_id"], config))
        return real(config, **kw)

    monkeypatch.setattr(runner_module, "ManagedConnection", spy)
    doc = json.loads(json.dumps(TINY))
    doc["duration"], doc["faults"] = "1s", []
    doc["clients"]["connections"][0]["latency_stale_after"] = "2500ms"
    run(parse_scenario(doc, source="<tiny>"))
    stale = {cid: config.latency_stale_after_seconds for cid, config in seen}
    assert stale == {
        "a/trading/0": 2.5,
        "a/trading/1": 2.5,
        "b/trading/0": 10.0,
        "b/trading/1": 10.0,
        "a/market_data/0": 10.0,
    }
