"""More of the ``wsfinal`` command on bad input: checked before the work starts, every problem listed, exit 2."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scenarios" / "demo.yaml"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return int(code or 0), err


def test_run_out_a_file_is_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "results.txt"
    target.write_text("not a directory")
    start = time.perf_counter()
    code, err = _run(capsys, "run", str(DEMO), "--out", str(target), "--quiet")
    assert code == 2
    assert time.perf_counter() - start < 5  # the demo run takes longer: it never started
    assert f"wsfinal run: --out {target}: cannot write there (a file, not a directory" in err
    assert target.read_text() == "not a directory"


def test_run_out_under_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "results.txt"
    target.write_text("x")
    code, err = _run(capsys, "run", str(DEMO), "--out", str(target / "sub"), "--quiet")
    assert code == 2
    assert f"--out {target / 'sub'}: cannot write there" in err


def test_run_lists_every_scenario_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nduration: 10s\nnodes: 3\nfoo: 1\n")
    code, err = _run(capsys, "run", str(bad), "--out", str(tmp_path / "out"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 3, err
    assert all(line.startswith(f"wsfinal run: {bad}: ") for line in lines)
    assert any("nodes: must be a list" in line for line in lines)
    assert any("foo: unknown key 'foo'" in line for line in lines)
    assert any("clients: missing" in line for line in lines)
    assert not (tmp_path / "out").exists()


def test_run_misspelled_strategy_gets_a_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "run", str(DEMO), "--strategy", "peak_ewm", "--out", str(tmp_path))
    assert code == 2
    assert err.strip().endswith("did you mean 'peak_ewma'?")


def test_compare_still_suggests_a_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "compare", str(DEMO), "--strategies", "round_robin,peak_ewm")
    assert code == 2
    assert "did you mean 'peak_ewma'?" in err
