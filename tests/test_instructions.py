"""``wsfinal bench instructions``: callgrind output parsing, the difference method and ratio arithmetic on given
numbers, argument and baseline errors (exit 2), the missing-valgrind message, the gate's exit codes, child runs
through a stand-in valgrind, and (slow) one real run under valgrind. No test asserts speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import instructions as ins
from benchmarks.cli import main as cli_main

CALLGRIND = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  python -m benchmarks.instructions simpy 100 0.5 100.0 0.5 1
part: 1

positions: line
events: Ir
summary: 3998356524

ob=(1) /usr/bin/python3.11
fl=(1) ???
fn=(1) 0x0000000000020290
0 3

totals: 3998356524
"""

#: Instructions per request of each model in the made-up counts below.
PER_REQUEST = {"simpy": 20_000.0, "chain": 10_000.0, "floor": 16_000.0, "manager": 80_000.0}
ENV = {"python": "3.11.2", "implementation": "CPython", "machine": "x86_64", "valgrind": "valgrind-3.19.0",
       "hash_seed": "0"}  # fmt: skip


def counts_for(per_request: dict[str, float], short: float = 0.5, long: float = 1.5) -> dict[str, Any]:
    """Made-up runs: 4e9 instructions of set-up, then ``per_request`` for each of 2,400 and 7,400 requests."""
    return {
        m: (
            ins.Count(m, short, int(4e9 + ipr * 2_400), 2_400),
            ins.Count(m, long, int(4e9 + ipr * 7_400), 7_400),
        )
        for m, ipr in per_request.items()
    }


# -- parsing ------------------------------------------------------------------------------------------------------


def test_callgrind_totals_are_read_from_the_totals_line() -> None:
    assert ins.parse_callgrind_totals(CALLGRIND) == 3_998_356_524
    assert ins.parse_callgrind_totals(CALLGRIND.replace("totals: 3998356524", "totals: 17")) == 17


def test_an_older_file_with_only_a_summary_line_is_read() -> None:
    assert ins.parse_callgrind_totals(CALLGRIND.replace("totals: 3998356524\n", "")) == 3_998_356_524


def test_a_file_without_totals_or_counting_other_events_is_refused() -> None:
    with pytest.raises(ValueError, match="no totals"):
        ins.parse_callgrind_totals(CALLGRIND.replace("totals: 3998356524\n", "").replace("summary: 3998356524", ""))
    with pytest.raises(ValueError, match="events: Dr"):
        ins.parse_callgrind_totals(CALLGRIND.replace("events: Ir", "events: Dr Ir"))
    with pytest.raises(ValueError, match="events: none"):
        ins.parse_callgrind_totals("")


def test_valgrinds_collected_line_and_the_childs_request_line() -> None:
    stderr = "==1== Events    : Ir\n==1== Collected : 123\n==1==\n==1== Collected : 4567\n==1== I refs: 4,567\n"
    assert ins.parse_collected(stderr) == 4567
    assert ins.parse_collected("no count here") is None
    assert ins.parse_requests(f"noise\n{ins.REQUESTS_TAG} 12\n{ins.REQUESTS_TAG} 2401\n") == 2401
    with pytest.raises(ValueError, match="printed no"):
        ins.parse_requests("requests 12\n")


def test_the_child_prints_the_requests_of_its_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert ins.child_main(["floor", "3", "0.5", "100.0", "0.2", "1"]) == 0
    assert ins.parse_requests(capsys.readouterr().out) > 0
    assert ins.child_main(["nope", "3", "0.5", "100.0", "0.2", "1"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


# -- arithmetic -------------------------------------------------------------------------------------------------


def test_the_difference_method_cancels_set_up() -> None:
    short = ins.Count("manager", 0.5, 4_000_000_000 + 2_500 * 250_000, 2_500)
    long = ins.Count("manager", 1.5, 4_000_000_000 + 7_500 * 250_000, 7_500)
    assert ins.per_request(short, long) == 250_000.0
    assert ins.per_request(ins.Count("x", 1, 1_000, 10), ins.Count("x", 2, 4_000, 16)) == 500.0


def test_no_extra_requests_is_an_error_naming_the_model() -> None:
    short = ins.Count("floor", 0.1, 1_000, 5)
    with pytest.raises(ValueError, match=r"floor: the 0\.2 s run completed 5 requests, the 0\.1 s run 5"):
        ins.per_request(short, ins.Count("floor", 0.2, 2_000, 5))


@given(
    setup=st.integers(0, 10**10),
    cost=st.integers(1, 10**6),
    n_short=st.integers(0, 10**5),
    extra=st.integers(1, 10**5),
)
def test_any_set_up_cancels(setup: int, cost: int, n_short: int, extra: int) -> None:
    short = ins.Count("m", 1.0, setup + cost * n_short, n_short)
    long = ins.Count("m", 3.0, setup + cost * (n_short + extra), n_short + extra)
    assert ins.per_request(short, long) == cost


def test_ratios_are_of_requests_per_instruction() -> None:
    r = ins.ratios(PER_REQUEST)
    assert r == {"manager/simpy": 0.25, "chain/simpy": 2.0, "floor/simpy": 1.25, "manager/floor": 0.2}
    assert ins.ratios({"manager": 8.0, "floor": 4.0}) == {"manager/floor": 0.5}
    assert ins.ratios({"simpy": 1.0}) == {}


def test_growth_and_the_gate_on_given_numbers() -> None:
    base = dict(PER_REQUEST)
    lines, failed = ins.compare(base, base, 2.0)
    assert not failed and len(lines) == 4 and all("+0.00%" in line for line in lines)
    assert ins.growth_percent(102.0, 100.0) == pytest.approx(2.0)
    for manager, max_growth, fails in ((81_600.0, 2.0, False), (81_700.0, 2.0, True), (81_700.0, 2.5, False),
                                       (60_000.0, 0.0, False), (80_001.0, 0.0, True)):  # fmt: skip
        lines, failed = ins.compare({**base, "manager": manager}, base, max_growth)
        assert failed is fails, (manager, max_growth)
        [line] = [line for line in lines if "full manager" in line]
        assert ("FAIL" in line) is fails
    # Only the manager is gated: other models may grow.
    lines, failed = ins.compare({**base, "simpy": 40_000.0}, base, 2.0)
    assert not failed and "+100.00%" in lines[0]


def test_text_output_names_every_figure_and_the_caveat() -> None:
    doc = ins.build_document(ins.Setup(100, 0.5, 100.0, 0.5, 1.5), counts_for(PER_REQUEST), ENV)
    text = ins.format_text(doc)
    assert "100 M/M/1 nodes at utilisation 0.5" in text and "1.5 s minus 0.5 s simulated, PYTHONHASHSEED=0" in text
    lines = [line.split() for line in text.splitlines()]
    assert ["full", "manager", "80,000", "instructions", "per", "request", "(5,000", "requests", "in", "the",
            "difference)"] in lines  # fmt: skip
    assert ["ratio", "manager/SimPy", "0.250", "(goal", "1.0)"] in lines
    assert ["ratio", "chain/SimPy", "2.000", "(the", "virtual", "loop", "itself)"] in lines
    assert lines[8][:3] == ["ratio", "manager/floor", "0.200"]
    assert "instruction counts" in text and "proxy for time" in " ".join(text.split())
    assert doc["schema"] == ins.SCHEMA and doc["format"] == ins.FORMAT
    assert doc["models"]["simpy"]["runs"][1] == {"duration_s": 1.5, "instructions": int(4e9 + 20_000 * 7_400),
                                                 "requests": 7_400}  # fmt: skip


# -- the command: arguments, valgrind, baseline -----------------------------------------------------------------


@pytest.fixture()
def fake_valgrind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in ``valgrind`` alone on PATH: runs the child natively and writes a callgrind file counting 4e9
    instructions of set-up plus the child's requests times the model's :data:`PER_REQUEST`. With FAKE_VALGRIND_FAIL
    set it fails as a crashed child does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "valgrind"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, re, subprocess, sys\n"
        "args = sys.argv[1:]\n"
        "if args == ['--version']:\n"
        "    print('valgrind-fake'); sys.exit(0)\n"
        "if os.environ.get('FAKE_VALGRIND_FAIL'):\n"
        "    sys.stderr.write('==7== Callgrind\\nTraceback (most recent call last):\\n')\n"
        "    sys.stderr.write('RuntimeError: boom\\n==7== end\\n')\n"
        "    sys.exit(1)\n"
        "out = [a.split('=', 1)[1] for a in args if a.startswith('--callgrind-out-file=')][0]\n"
        "cmd = [a for a in args if not a.startswith('--')]\n"
        "proc = subprocess.run(cmd, capture_output=True, text=True)\n"
        "sys.stdout.write(proc.stdout); sys.stderr.write(proc.stderr)\n"
        "n = int(re.search(r'requests (\\d+)', proc.stdout).group(1))\n"
        f"cost = {PER_REQUEST!r}[cmd[3]]\n"
        "total = int(4e9 + cost * n)\n"
        "open(out, 'w').write(f'version: 1\\nevents: Ir\\nsummary: {total}\\ntotals: {total}\\n')\n"
        "sys.exit(proc.returncode)\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return script


@pytest.fixture()
def made_up(fake_valgrind: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """``measure`` replaced by made-up counts (the figures returned, editable by the test), valgrind on PATH."""
    figures = dict(PER_REQUEST)

    def measure(valgrind: str, setup: ins.Setup, models: list[str], jobs: int = 1, progress: bool = True) -> Any:
        assert valgrind == str(fake_valgrind)
        return counts_for({m: figures[m] for m in models}, setup.short_s, setup.long_s)

    monkeypatch.setattr(ins, "measure", measure)
    monkeypatch.setattr(ins, "environment", lambda: dict(ENV))
    return figures


def _bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(["bench", "instructions", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "0"], "--duration 0: need a positive"),
        (["--utilisation", "1"], "--utilisation 1: need 0 < R < 1"),
        (["--utilisation", "-0.2"], "--utilisation -0.2"),
        (["--jobs", "0"], "--jobs 0: need at least one"),
        (["--max-growth", "-1"], "--max-growth -1"),
        (["--baseline", "/nonexistent/base.json"], "baseline /nonexistent/base.json: cannot read it"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _bench(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("wsfinal bench instructions: ") and message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "nan"], "argument --duration: must be a finite number, got nan"),
        (["--nodes", "0"], "argument --nodes: must be >= 1, got 0"),
        (["--mu", "0"], "argument --mu: must be > 0, got 0"),
    ],
)
def test_ranges_checked_by_the_command_line_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The numeric ranges every subcommand shares are checked once by benchmarks/cli.py, before the command."""
    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", "instructions", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--models", "turbo"], ["--nodes", "many"], ["--duration"]):
        with pytest.raises(SystemExit) as exc:
            cli_main(["bench", "instructions", *argv])
        assert exc.value.code == 2
    assert "invalid choice: 'turbo'" in capsys.readouterr().err


def test_help_explains_the_method(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", "instructions", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    needles = ("valgrind --tool=callgrind", "PYTHONHASHSEED=0", "set-up cancel", "higher is faster", "proxy for time",
               "(long - short run instructions) / (long - short run requests)", "--max-growth")  # fmt: skip
    for needle in needles:
        assert needle in text, needle


def test_missing_valgrind_exits_2_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = _bench(capsys, "--models", "simpy")
    assert code == 2 and out == ""
    assert "valgrind not found on PATH" in err and "apt-get install valgrind" in err


def test_missing_valgrind_from_the_installed_command(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", "bench", "instructions"],
        cwd=ins.ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert "apt-get install valgrind" in proc.stderr


def test_update_then_compare_equal_exits_0(
    made_up: dict[str, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base.json"
    code, out, _ = _bench(capsys, "--update", "--baseline", str(base))
    assert code == 0 and f"baseline {base}: recorded simpy, chain, floor, manager" in out
    doc = ins.load_baseline(base)
    assert doc["setup"] == {"nodes": 100, "utilisation": 0.5, "mu": 100.0, "short_s": 0.5, "long_s": 1.5, "seed": 1}
    assert {m: e["instructions_per_request"] for m, e in doc["models"].items()} == PER_REQUEST
    assert doc["ratios"]["manager/simpy"] == 0.25 and "baseline" not in doc
    code, out, _ = _bench(capsys, "--baseline", str(base))
    assert code == 0 and "full manager" in out and "+0.00%  ok (at most +2%)" in out and "FAIL" not in out


def test_the_gate_fails_when_the_manager_grew_too_much(
    made_up: dict[str, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base.json"
    assert _bench(capsys, "--update", "--baseline", str(base))[0] == 0
    made_up["manager"] = 82_000.0  # +2.5%
    made_up["simpy"] = 30_000.0  # +50%, not gated
    code, out, _ = _bench(capsys, "--baseline", str(base))
    assert code == 1
    assert "+2.50%  FAIL" in out and "FAIL: the full manager's instructions per request grew more than 2%" in out
    assert _bench(capsys, "--baseline", str(base), "--max-growth", "3")[0] == 0
    code, out, err = _bench(capsys, "--baseline", str(base), "--json", "--out", str(tmp_path / "o.json"))
    assert code == 1 and "FAIL" in err
    doc = json.loads(out)
    assert doc["baseline"]["failed"] is True and doc["baseline"]["max_growth_percent"] == 2.0
    assert doc["baseline"]["change_percent"]["manager"] == pytest.approx(2.5)
    assert json.loads((tmp_path / "o.json").read_text()) == doc
    made_up["manager"] = 70_000.0  # faster
    assert _bench(capsys, "--baseline", str(base))[0] == 0


def test_unusable_baselines_exit_2(
    made_up: dict[str, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base.json"
    assert _bench(capsys, "--update", "--baseline", str(base))[0] == 0
    good = json.loads(base.read_text())
    cases = [
        ("{not json", "not JSON"),
        (json.dumps({**good, "schema": "other"}), "not a 'wsfinal bench instructions' document"),
        (json.dumps({**good, "format": 99}), "format 99, this wsfinal writes format 1"),
        (json.dumps({**good, "models": {"manager": {"instructions_per_request": -3}}}),
         "models.manager.instructions_per_request: expected a positive number, got -3"),
        (json.dumps({**good, "models": {"simpy": good["models"]["simpy"]}}), "no models.manager entry"),
    ]  # fmt: skip
    bad = tmp_path / "bad.json"
    for text, message in cases:
        bad.write_text(text)
        code, out, err = _bench(capsys, "--baseline", str(bad))
        assert code == 2 and out == "" and f"baseline {bad}" in err and message in err, message
    code, _, err = _bench(capsys, "--baseline", str(base), "--nodes", "50", "--duration", "3")
    assert code == 2 and "another setup: nodes 100 (this run 50), short_s 0.5 (this run 1.0), long_s 1.5" in err
    code, _, err = _bench(capsys, "--baseline", str(base), "--models", "simpy")
    assert code == 2 and "include it in --models" in err


def test_update_of_some_models_keeps_the_others(
    made_up: dict[str, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base.json"
    assert _bench(capsys, "--update", "--baseline", str(base))[0] == 0
    made_up["manager"] = 40_000.0
    assert _bench(capsys, "--update", "--baseline", str(base), "--models", "manager")[0] == 0
    doc = ins.load_baseline(base)
    assert {m: e["instructions_per_request"] for m, e in doc["models"].items()} == {**PER_REQUEST, "manager": 40_000.0}
    assert doc["ratios"]["manager/simpy"] == 0.5
    # Another setup replaces the file.
    assert _bench(capsys, "--update", "--baseline", str(base), "--models", "manager", "--nodes", "7")[0] == 0
    assert list(ins.load_baseline(base)["models"]) == ["manager"]


def test_the_committed_baseline_matches_the_default_setup() -> None:
    doc = ins.load_baseline(ins.DEFAULT_BASELINE)
    assert doc["setup"] == {"nodes": 100, "utilisation": 0.5, "mu": 100.0, "short_s": 0.5, "long_s": 1.5, "seed": 1}
    assert set(doc["models"]) == set(ins.MODELS)
    ins.check_baseline_setup(ins.DEFAULT_BASELINE, doc, ins.Setup(100, 0.5, 100.0, 0.5, 1.5), list(ins.MODELS))


# -- child runs, through a stand-in valgrind --------------------------------------------------------------------


def test_child_runs_are_counted_and_differenced(
    fake_valgrind: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "out.json"
    argv = ("--models", "simpy", "floor", "--nodes", "3", "--duration", "0.6", "--jobs", "2", "--json")
    code, out, err = _bench(capsys, *argv, "--out", str(out_file))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["environment"]["valgrind"] == "valgrind-fake" and doc["environment"]["hash_seed"] == "0"
    for model in ("simpy", "floor"):
        entry = doc["models"][model]
        assert entry["instructions_per_request"] == PER_REQUEST[model]
        short, long = entry["runs"]
        assert (short["duration_s"], long["duration_s"]) == (pytest.approx(0.2), 0.6)
        assert 0 < short["requests"] < long["requests"]
    assert doc["ratios"] == {"floor/simpy": 1.25}
    assert json.loads(out_file.read_text()) == doc
    assert "wire floor: native check run" in err and "[4/4]" in err and "requests (" in err


def test_a_failed_child_exits_1_with_its_stderr_tail(
    fake_valgrind: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_VALGRIND_FAIL", "1")
    code, out, err = _bench(capsys, "--models", "simpy", "--nodes", "2", "--duration", "0.3")
    assert code == 1 and out == ""
    assert "[1/2] SimPy model, 0.1 s simulated under callgrind: exit code 1; its stderr ends:" in err
    assert "RuntimeError: boom" in err and "==7==" not in err


def test_child_environment_and_command() -> None:
    env = ins.child_env()
    assert env["PYTHONHASHSEED"] == "0" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "1"
    argv = ins.child_argv("manager", ins.Setup(100, 0.5, 100.0, 0.5, 1.5), 0.5)
    assert argv == [sys.executable, "-m", "benchmarks.instructions", "manager", "100", "0.5", "100.0", "0.5", "1"]


# -- the real thing --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_real_run_under_valgrind(tmp_path: Path) -> None:
    """Two models at a tiny load under the real callgrind (a few minutes: every run starts the interpreter)."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", "bench", "instructions", "--models", "simpy", "manager",
         "--nodes", "5", "--duration", "0.6", "--jobs", "2", "--json"],
        cwd=ins.ROOT, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["environment"]["valgrind"].startswith("valgrind-")
    for model in ("simpy", "manager"):
        short, long = doc["models"][model]["runs"]
        assert long["instructions"] > short["instructions"] > 10**8
        assert long["requests"] > short["requests"] > 0
        assert doc["models"][model]["instructions_per_request"] > 0
    assert doc["ratios"]["manager/simpy"] > 0
    assert "under callgrind: started" in proc.stderr
