"""``wsfinal scenario check`` and ``wsfinal scenario schema`` (simulator.scenario_commands)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _scenario_helpers import BASE, BUNDLED

from benchmarks.cli import main as cli_main
from simulator.scenario_schema import SCHEMA


def test_cli_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scenario", "check", *map(str, BUNDLED)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(BUNDLED) and all(line.startswith("OK ") for line in out)


def test_cli_check_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("duration: 30s", "duration: 30").replace("count: 2", "count: 2, nod: x"))
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    assert cli_main(["scenario", "check", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"OK {good}")
    assert lines[1:] == [
        f"{bad}: duration: 30 has no unit; write e.g. '250ms', '2s' or '1.5m'",
        f"{bad}: clients.connections[0].nod: unknown key 'nod'; did you mean 'node'?",
    ]
    assert "1 of 2 file(s) invalid" in captured.err
    assert cli_main(["scenario", "check", "-q", str(good)]) == 0
    assert capsys.readouterr().out == ""


def test_cli_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scenario", "check", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().out


def test_cli_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scenario", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMA


def test_cli_scenario_without_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scenario"]) == 2
    assert "check" in capsys.readouterr().err
