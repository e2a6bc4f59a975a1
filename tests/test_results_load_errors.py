"""Loading a run directory whose summary.json is not a run summary: a ValueError naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cli import main
from simulator.results import RunResult


@pytest.mark.parametrize(("text", "kind"), [("[1, 2]", "list"), ('"x"', "string"), ("3", "number"),
                                            ("null", "null"), ("true", "boolean")])  # fmt: skip
def test_summary_not_an_object(tmp_path: Path, text: str, kind: str) -> None:
    (tmp_path / "summary.json").write_text(text)
    with pytest.raises(ValueError) as exc:
        RunResult.load(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path / 'summary.json'}: not a run summary (a JSON {kind};")


def test_report_on_such_a_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "summary.json").write_text("[]")
    try:
        code = main(["report", str(tmp_path)])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{tmp_path / 'summary.json'}: not a run summary (a JSON list" in err
