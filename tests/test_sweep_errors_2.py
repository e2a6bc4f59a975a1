"""Sweep and gate files on bad input (one line per problem, as scenario files), and Ctrl-C on a sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.gate import load_suite
from benchmarks.sweep import SweepError, load_sweep
from simulator.scenario import ScenarioError, loads_scenario
from simulator.scenario_problems import did_you_mean

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scenarios" / "demo.yaml"


def _sweep_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    with pytest.raises(SweepError) as exc:
        load_sweep(path)
    return str(exc.value)


def test_malformed_sweep_yaml_is_one_line_like_a_scenario_file(tmp_path: Path) -> None:
    text = f"scenarios: [{DEMO}]\nstrategies: [round_robin\n  x: : y\n"
    message = _sweep_error(tmp_path, text)
    assert (
        message == f"{tmp_path / 'sweep.yaml'}: YAML syntax error at line 3, column 4: expected ',' or ']', but got ':'"
    )
    with pytest.raises(ScenarioError) as exc:  # the same wording as a scenario file with the same mistake
        loads_scenario(text, "x.yaml")
    assert str(exc.value) == "x.yaml: YAML syntax error at line 3, column 4: expected ',' or ']', but got ':'"


def test_sweep_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(SweepError, match=r"sweep.yaml: not UTF-8 text \(byte 6\)$"):
        load_sweep(path)


def test_sweep_unknown_top_level_key_gets_a_suggestion(tmp_path: Path) -> None:
    message = _sweep_error(tmp_path, f"scenarios: [{DEMO}]\nstrategys: [round_robin]\n")
    assert "strategys: unknown key 'strategys'; did you mean 'strategies'?" in message
    assert "required property" not in message
    assert "strategies: missing: this key is required" in message


def test_sweep_metric_with_a_letter_o_for_a_zero(tmp_path: Path) -> None:
    message = _sweep_error(tmp_path, f"scenarios: [{DEMO}]\nstrategies: [round_robin]\nreport:\n  metrics: [p5O_ms]\n")
    assert message.endswith("did you mean 'p50_ms'?")


def test_gate_suite_yaml_and_metric_problems(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text("seed: [1\n  x: : y\n")
    with pytest.raises(SweepError) as exc:
        load_suite(path)
    assert str(exc.value) == f"{path}: YAML syntax error at line 2, column 4: expected ',' or ']', but got ':'"
    metrics = "metrics:\n  p5O_ms: {worse: higher, relative: 0.5}\n"
    path.write_text(f"strategies: [round_robin]\nscenarios:\n  - path: {DEMO}\n{metrics}")
    with pytest.raises(SweepError) as exc:
        load_suite(path)
    assert "metrics.p5O_ms: unknown key 'p5O_ms'; expected one of: " in str(exc.value)
    assert str(exc.value).endswith("did you mean 'p50_ms'?")


@pytest.mark.parametrize(
    ("word", "choices", "hint"),
    [
        ("p5O_ms", ["p50_ms", "p95_ms"], "; did you mean 'p50_ms'?"),
        ("P99_MS", ["p50_ms", "p99_ms"], "; did you mean 'p99_ms'?"),
        ("peak-ewma", ["peak_ewma", "random"], "; did you mean 'peak_ewma'?"),
        ("latncy", ["latency", "error_reply"], "; did you mean 'latency'?"),
        ("zzz", ["latency"], ""),
        (3, ["latency"], ""),
    ],
)
def test_did_you_mean(word: object, choices: list[str], hint: str) -> None:
    assert did_you_mean(word, choices) == hint


def test_ctrl_c_on_a_sweep_no_worker_tracebacks(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"scenarios: [{ROOT / 'scenarios' / 'mixed-chaos.yaml'}]\nstrategies: all\nseeds: 2\n")
    cmd = [sys.executable, "-m", "benchmarks.cli", "sweep", str(sweep), "--out", str(tmp_path / "out"),
           "--workers", "2"]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Its own process group, signalled as a whole: what Ctrl-C in a terminal does (the workers get it too).
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    seen = b""
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while b"sweep:" not in seen and time.monotonic() < deadline:  # the progress bar: the pool is running
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        assert b"sweep:" in seen, seen.decode(errors="replace")
        time.sleep(1.0)  # the workers are in their runs
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    text = (seen + err).decode(errors="replace")
    assert proc.returncode == 130, text
    assert "wsfinal sweep: interrupted" in text
    assert "Traceback" not in text
    assert "KeyboardInterrupt" not in text
