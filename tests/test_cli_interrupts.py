"""Ctrl-C on the long-running ``wsfinal`` commands: exit 130 as their help says, no traceback, nothing claiming
the work finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scenarios" / "demo.yaml"


def _interrupt_after(args: list[str], marker: bytes, *, stream: str = "stdout") -> tuple[int, str, str]:
    """Start ``wsfinal ARGS``, send SIGINT once ``marker`` appeared on ``stream``; (exit code, stdout, stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = b""
    try:
        pipe = proc.stdout if stream == "stdout" else proc.stderr
        assert pipe is not None
        deadline = time.monotonic() + 60
        while marker not in seen and time.monotonic() < deadline:
            chunk = os.read(pipe.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        assert marker in seen, seen.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if stream == "stdout":
        out = seen + out
    else:
        err = seen + err
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def test_exchange_ctrl_c_exits_130() -> None:
    code, out, err = _interrupt_after(["exchange", str(DEMO), "--port", "0"], b"-> ws://")
    assert code == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err


def test_exchange_duration_still_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", "exchange", str(DEMO), "--port", "0", "--duration", "0.2"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert b"-> ws://" in done.stdout


def test_demo_ctrl_c_exits_130_without_claiming_it_finished(tmp_path: Path) -> None:
    args = ["demo", "--seeds", "1", "--out", str(tmp_path / "demo")]
    code, out, err = _interrupt_after(args, b"compare:", stream="stderr")
    assert code == 130, err
    assert "wsfinal compare: interrupted" in err
    assert "demo finished" not in out
    assert "Traceback" not in err
