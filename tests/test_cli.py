"""benchmarks.cli: the ``wsfinal`` entry point as a newcomer reads it (order, one-line purposes, exit codes)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from benchmarks.cli import build_parser, main

#: The order a user meets the commands in.
ORDER = ["demo", "run", "report", "compare", "sweep", "gate", "digest", "bench", "scenario", "exchange"]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_help_lists_every_command_once_in_the_order_a_user_meets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    parser = build_parser()
    assert list(_commands(parser)) == ORDER
    text = parser.format_help()
    positions = [text.index(f"\n    {name} ") for name in ORDER]
    assert positions == sorted(positions)
    for name in ORDER:  # one line each: the purpose fits beside the name
        [line] = [ln for ln in text.splitlines() if ln.startswith(f"    {name} ")]
        assert len(line.split(maxsplit=1)) == 2


def test_every_command_states_its_exit_codes_the_same_way() -> None:
    for name, sub in _commands(build_parser()).items():
        description = sub.description or ""
        assert "Exit codes: 0 " in description, name
        assert "2 bad arguments" in description, name  # argparse itself exits 2 on a bad command line
        assert "``" not in description, name  # prose, not a module docstring's reST


def test_bench_help_names_every_benchmark() -> None:
    bench = _commands(build_parser())["bench"]
    whats = list(_commands(bench))
    assert whats == ["strategies", "manager", "virtual", "instructions"]
    for what in whats:
        assert what in (bench.description or "")


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "a typical path" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["compare"])  # a missing argument: argparse's exit 2, as every command documents
    assert exc.value.code == 2


def test_a_closed_pipe_ends_quietly() -> None:
    # `wsfinal scenario schema | head`: the reader stops early; the command must not print a traceback.
    cmd = [sys.executable, "-m", "benchmarks.cli", "scenario", "schema", "--indent", "40"]  # > 1 MB of output
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(100)
        proc.stdout.close()
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 141
    assert b"Traceback" not in err
