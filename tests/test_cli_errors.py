"""The ``wsfinal`` command on bad input, as a user meets it: exit 2 and one line naming what was wrong, never a
traceback (and never a long run before the complaint)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmarks.cli import OPTION_RANGES, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
STEADY = ROOT / "scenarios" / "steady-state.yaml"


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", str(STEADY), "--seed", "-1"], "wsfinal run: error: argument --seed: must be >= 0, got -1"),
        (["compare", str(STEADY), "--base-seed", "-3"], "argument --base-seed: must be >= 0, got -3"),
        (["compare", str(STEADY), "--workers", "0"], "argument --workers: must be >= 1, got 0"),
        (["demo", "--seeds", "0"], "wsfinal demo: error: argument --seeds: must be >= 1, got 0"),
        (["gate", "--workers", "0"], "argument --workers: must be >= 1, got 0"),
        (["sweep", "x.yaml", "--max-runs", "0"], "argument --max-runs: must be >= 1, got 0"),
        (["exchange", str(STEADY), "--port", "70000"], "argument --port: must be between 0 and 65535, got 70000"),
        (["exchange", str(STEADY), "--duration", "-1"], "argument --duration: must be >= 0, got -1"),
        (["exchange", str(STEADY), "--duration", "nan"], "argument --duration: must be a finite number, got nan"),
        (["bench", "strategies", "--sizes", "10", "-5"], "argument --sizes: must be >= 1, got -5"),
        (["bench", "virtual", "--mu", "0"], "argument --mu: must be > 0, got 0"),
        (["scenario", "schema", "--indent", "-1"], "argument --indent: must be >= 0, got -1"),
        (["run", str(STEADY), "--seed", "x"], "argument --seed: invalid int value: 'x'"),  # argparse's own wording
    ],
)
def test_numeric_options_out_of_range_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert _usage_error(capsys, *argv).endswith(message)


def test_in_range_values_parse_to_numbers() -> None:
    args = build_parser().parse_args(["exchange", str(STEADY), "--port", "0", "--duration", "0", "--seed", "0"])
    assert (args.port, args.duration, args.seed) == (0, 0.0, 0)
    args = build_parser().parse_args(["bench", "strategies", "--sizes", "10", "100"])
    assert args.sizes == [10, 100]


def test_every_range_names_an_option_that_exists() -> None:
    # A renamed option would silently lose its check: every name in OPTION_RANGES is a numeric option somewhere.
    seen: set[str] = set()

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif action.dest in OPTION_RANGES:
                assert action.type not in (int, float), action.dest  # wrapped, not the bare converter
                seen.add(action.dest)

    walk(build_parser())
    assert seen == set(OPTION_RANGES)


def test_report_names_a_missing_directory_and_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"wsfinal report: {tmp_path / 'nope'}: no such directory"
    assert main(["report", str(STEADY)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"wsfinal report: {STEADY}: a file; give the run or comparison directory it belongs to"
    assert main(["report", str(tmp_path)]) == 2
    assert "no comparison.json or summary.json" in capsys.readouterr().err


def test_report_on_an_interrupted_comparison_points_at_its_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `compare` interrupted after some runs: OUT/runs/ holds them, but there is no comparison.json yet.
    (tmp_path / "runs" / "round_robin-seed1").mkdir(parents=True)
    (tmp_path / "runs" / "round_robin-seed1" / "summary.json").write_text(json.dumps({"schema_version": 1}))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no comparison.json" in err and "1 run directory" in err and "did `wsfinal compare` stop early?" in err


def test_compare_lists_every_problem_of_a_bad_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = STEADY.read_text().replace("duration: 30s", "duraton: 30s").replace("strategy: round_robin", "strategy: x")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert main(["compare", str(bad), "--seeds", "1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"wsfinal compare: {bad}: duraton: unknown key 'duraton'; did you mean 'duration'?"
    assert any(line.startswith(f"wsfinal compare: {bad}: manager.strategy: 'x' is not one of") for line in lines)
    assert any(line == f"wsfinal compare: {bad}: duration: missing: this key is required" for line in lines)
    assert not (tmp_path / "results").exists()


def test_compare_names_an_unknown_strategy_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(STEADY), "--strategies", "round_robin,peak_ewm"]) == 2
    err = capsys.readouterr().err
    assert "unknown strategy" in err and "did you mean 'peak_ewma'?" in err


def test_compare_with_out_on_a_file_is_refused_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "a-file"
    target.write_text("")
    assert main(["compare", str(STEADY), "--seeds", "1", "--strategies", "round_robin", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wsfinal compare: --out {target}: cannot write there") and "Traceback" not in err


TINY = """\
name: tiny
duration: 2s
nodes:
  - {id: node-a, service: {distribution: constant, value: 1ms}, api_keys: {k: s}}
clients:
  connections: [{type: trading, node: node-a, api_key: k}]
  workload: [{type: trading, arrival: constant, rate: 20/s}]
"""


def test_report_on_a_run_with_a_missing_file_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(TINY)
    assert main(["run", str(scenario), "--quiet", "--out", str(tmp_path)]) == 0
    run_dir = tmp_path / "tiny-round_robin-seed0-virtual"
    capsys.readouterr()
    (run_dir / "requests.npz").unlink()
    assert main(["report", str(run_dir)]) == 2
    assert capsys.readouterr().err.strip() == f"wsfinal report: {run_dir / 'requests.npz'}: No such file or directory"


def test_report_on_a_sweep_directory_points_at_the_sweep_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sweep.json").write_text("{}")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "a sweep directory; its report is sweep-report.html" in err and "compare" not in err


def test_compare_interrupted_says_what_finished_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import benchmarks.compare_commands as commands
    from benchmarks.compare import derive_seeds

    seeds = derive_seeds(1, 2)  # steady-state's seed

    def interrupted(*args: object, **kwargs: object) -> None:
        done = tmp_path / "runs" / f"round_robin-seed{seeds[0]}"
        done.mkdir(parents=True)
        (done / "summary.json").write_text("{}")
        (tmp_path / "runs" / "stale-seed1").mkdir()  # a run of an earlier command: not counted
        (tmp_path / "runs" / "stale-seed1" / "summary.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "compare", interrupted)
    argv = ["compare", str(STEADY), "--strategies", "round_robin,peak_ewma", "--seeds", "2", "--out", str(tmp_path)]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"interrupted; 1 of 4 runs finished in {tmp_path / 'runs'} (each has its own summary" in err
    assert "no comparison was written: run the command again" in err


def test_sweep_names_an_unreachable_scheduler_and_an_unwritable_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import contextlib
    from collections.abc import Iterator

    import benchmarks.sweep_commands as commands

    example = str(ROOT / "sweeps" / "example.yaml")
    target = tmp_path / "a-file"
    target.write_text("")
    assert main(["sweep", example, "--out", str(target / "sweep"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"wsfinal sweep: --out {target / 'sweep'}: " in err and "Not a directory" in err

    @contextlib.contextmanager
    def unreachable(workers: int, scheduler: str | None) -> Iterator[None]:
        raise OSError(f"Timed out trying to connect to {scheduler} after 30 s")
        yield

    monkeypatch.setattr(commands, "make_executor", unreachable)
    argv = ["sweep", example, "--out", str(tmp_path / "s"), "--scheduler", "tcp://127.0.0.1:1", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "wsfinal sweep: --scheduler tcp://127.0.0.1:1: Timed out trying to connect" in err


@pytest.mark.parametrize("passed", [True, False])
def test_gate_verdict_survives_an_unwritable_step_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], passed: bool
) -> None:
    from types import SimpleNamespace

    import benchmarks.gate_commands as commands

    monkeypatch.setattr(commands, "run_suite", lambda suite, executor: {})
    monkeypatch.setattr(commands, "compare", lambda suite, current, baseline: SimpleNamespace(passed=passed))
    monkeypatch.setattr(commands, "table", lambda report: "the table")
    monkeypatch.setattr(commands, "markdown", lambda report, suite: "the markdown\n")
    target = tmp_path / "a-file"
    target.write_text("")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target / "summary.md"))
    assert main(["gate", "--workers", "1"]) == (0 if passed else 1)  # the gate's verdict, not a crash's 1
    err = capsys.readouterr().err
    assert f"warning: GITHUB_STEP_SUMMARY={target / 'summary.md'}: cannot append (Not a directory)" in err
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    assert main(["gate", "--workers", "1"]) == (0 if passed else 1)
    assert (tmp_path / "summary.md").read_text() == "the markdown\n"
