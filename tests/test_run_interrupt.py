"""Ctrl-C during a run: ``wsfinal run`` writes what it collected, marked failed with the reason, and exits 130;
``run()`` called without ``interruptible`` still lets KeyboardInterrupt through (compare and sweep rely on it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import simulator.runner as runner
from simulator.results import RunResult
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scenarios" / "demo.yaml"
LONG = ROOT / "scenarios" / "mixed-chaos.yaml"


def _sigint_at(monkeypatch: pytest.MonkeyPatch, at_s: float) -> None:
    """Make the next run raise SIGINT in its own process at ``at_s`` seconds of scenario time (deterministic)."""
    start = runner._start_workloads

    def start_then_interrupt(manager: Any, scenario: Any, state: Any) -> None:
        start(manager, scenario, state)
        state.loop.call_at(state.t0 + at_s, signal.raise_signal, signal.SIGINT)

    monkeypatch.setattr(runner, "_start_workloads", start_then_interrupt)


def test_interruptible_run_returns_what_it_collected_marked_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load_scenario(DEMO)
    _sigint_at(monkeypatch, 2.0)
    try:
        result = runner.run(scenario, mode="virtual", interruptible=True)
    except KeyboardInterrupt:
        pytest.fail("the SIGINT escaped an interruptible run")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert result.interrupted
    summary = result.summary
    assert summary["status"] == "failed"
    assert summary["error"].startswith("interrupted by SIGINT (Ctrl-C) at 2.0s of 14s")
    assert 2.0 <= summary["simulated_s"] < scenario.duration_s
    assert summary["accounting"]["ok"] is True
    assert summary["accounting"]["submitted"] == len(result.requests) > 0
    # Nothing recorded after the interruption, beyond the in-flight requests ended by stopping the manager.
    assert float(result.requests.columns["intended"].max()) <= 2.0 + 1e-9


def test_plain_run_lets_keyboard_interrupt_through(monkeypatch: pytest.MonkeyPatch) -> None:
    _sigint_at(monkeypatch, 1.0)
    with pytest.raises(KeyboardInterrupt):
        runner.run(load_scenario(DEMO), mode="virtual")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_uninterrupted_run_is_not_marked() -> None:
    result = runner.run(load_scenario(DEMO), mode="virtual", interruptible=True)
    assert not result.interrupted
    assert result.summary["status"] == "ok"


def test_ctrl_c_during_wsfinal_run_writes_the_result_and_exits_130(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks.cli", "run", str(LONG), "--mode", "virtual", "--out", str(tmp_path)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        seen = b""
        deadline = time.monotonic() + 60
        while b"scenario time" not in seen and time.monotonic() < deadline:  # the progress bar: the run is going
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        assert b"scenario time" in seen, seen.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err.decode(errors="replace")
    assert b"Traceback" not in err
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"].startswith("interrupted by SIGINT")
    assert summary["accounting"]["ok"] is True
    assert b"status failed: interrupted by SIGINT" in out
    assert len(RunResult.load(run_dir).requests) == summary["accounting"]["submitted"]
