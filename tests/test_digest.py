"""``wsfinal digest``: equal runs pass, a changed baseline entry fails naming the scenario and part, bad input
exits 2, --update rewrites only what was named, the pool changes nothing, and the committed baseline holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.cli import main as cli_main
from benchmarks.digest import (
    DEFAULT_BASELINE,
    EXCLUDED_SUMMARY_KEYS,
    QUEUEING,
    bundled_specs,
    canonical,
    diff_entry,
    flatten,
    records_digest,
    stable_summary,
)

TINY = """\
name: {name}
description: two small nodes, a latency fault on node-b
seed: {seed}
duration: 2s
warmup: 0.5s
nodes:
  - id: node-a
    service: {{distribution: exponential, mean: 2ms, workers: 1}}
    api_keys: {{k: s}}
  - id: node-b
    service: {{distribution: exponential, mean: 2ms, workers: 1}}
    api_keys: {{k: s}}
clients:
  connections:
    - {{type: trading, node: node-a, count: 1, api_key: k}}
    - {{type: trading, node: node-b, count: 1, api_key: k}}
  workload:
    - {{type: trading, arrival: poisson, rate: 80/s}}
manager:
  strategy: round_robin
  request_timeout: 1s
faults:
  - {{kind: latency, at: 1s, duration: 0.5s, node: node-b, latency: 20ms}}
"""

#: The fastest bundled runs (about 2 to 3 s each): checked against the committed baseline in the default suite.
FAST_BUNDLED = ("queueing", "demo", "half-open")


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two tiny scenario files and the path of a baseline recorded for both."""
    a = tmp_path / "tiny-a.yaml"
    b = tmp_path / "tiny-b.yaml"
    a.write_text(TINY.format(name="tiny-a", seed=1))
    b.write_text(TINY.format(name="tiny-b", seed=2))
    baseline = tmp_path / "baseline.json"
    assert cli_main(["digest", str(a), str(b), "--baseline", str(baseline), "--update", "--jobs", "1"]) == 0
    return a, b, baseline


def _digest(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(["digest", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _edit(baseline: Path, name: str, **changes: Any) -> None:
    doc = json.loads(baseline.read_text())
    doc["runs"][name].update(changes)
    baseline.write_text(json.dumps(doc))


def test_unchanged_runs_equal_the_baseline(tiny: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b, baseline = tiny
    code, out, _ = _digest(capsys, str(a), str(b), "--baseline", str(baseline), "--jobs", "1")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("tiny-a") and lines[0].endswith("same")
    assert lines[1].startswith("tiny-b") and lines[1].endswith("same")
    assert "all 2 runs equal" in out


def test_a_changed_entry_fails_naming_scenario_and_part(
    tiny: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, baseline = tiny
    doc = json.loads(baseline.read_text())
    values = dict(doc["runs"]["tiny-b"]["summary_values"])
    old_p50 = values["requests.all.latency.p50_ms"]
    values["requests.all.latency.p50_ms"] = 123.5
    values["accounting.recorded"] += 1
    _edit(baseline, "tiny-a", records="0" * 64)
    _edit(baseline, "tiny-b", summary="1" * 64, accounting="2" * 64, summary_values=values)
    code, out, _ = _digest(capsys, str(a), str(b), "--baseline", str(baseline), "--jobs", "1")
    assert code == 1
    assert out.splitlines()[0].endswith("DIFFERS") and out.splitlines()[1].endswith("DIFFERS")
    assert "tiny-a: records: digest 0000000000000000 ->" in out
    assert "tiny-a: summary" not in out and "tiny-a: accounting" not in out
    assert "tiny-b: accounting: digest 2222222222222222 ->" in out
    recorded = values["accounting.recorded"]
    assert f"recorded {recorded} -> {recorded - 1}" in out
    assert "tiny-b: summary: digest 1111111111111111 ->" in out
    assert f"requests.all.latency.p50_ms: baseline 123.5, now {json.dumps(old_p50)}" in out
    assert "tiny-b: records" not in out


def test_json_output_carries_the_verdicts(tiny: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b, baseline = tiny
    _edit(baseline, "tiny-b", status="failed")
    code, out, _ = _digest(capsys, str(a), str(b), "--baseline", str(baseline), "--jobs", "1", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["equal"] is False
    assert doc["runs"]["tiny-a"]["equal"] is True
    assert doc["runs"]["tiny-b"]["diff"] == ["tiny-b: status: baseline 'failed', now 'ok'"]


def test_usage_errors_exit_2_naming_the_file(tiny: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, _, baseline = tiny
    code, _, err = _digest(capsys, "no-such-scenario", "--baseline", str(baseline))
    assert code == 2 and "unknown scenario 'no-such-scenario'" in err and "demo" in err
    missing = baseline.with_name("missing.json")
    code, _, err = _digest(capsys, str(a), "--baseline", str(missing))
    assert code == 2 and f"baseline {missing}: cannot read it" in err
    broken = baseline.with_name("broken.json")
    broken.write_text("{not json")
    code, _, err = _digest(capsys, str(a), "--baseline", str(broken))
    assert code == 2 and f"baseline {broken}: not JSON" in err
    bad_yaml = a.with_name("bad.yaml")
    bad_yaml.write_text("name: bad\nnodes: 3\n")
    code, _, err = _digest(capsys, str(bad_yaml), "--baseline", str(baseline))
    assert code == 2 and f"scenario file {bad_yaml}" in err
    code, _, err = _digest(capsys, str(a), "--baseline", str(baseline), "--jobs", "0")
    assert code == 2 and "--jobs 0" in err


def test_update_rewrites_only_the_named_runs(tiny: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b, baseline = tiny
    recorded = json.loads(baseline.read_text())["runs"]
    _edit(baseline, "tiny-a", records="0" * 64)
    _edit(baseline, "tiny-b", records="0" * 64)
    code, out, _ = _digest(capsys, str(a), "--baseline", str(baseline), "--update", "--jobs", "1")
    assert code == 0 and "1 of 2 runs recorded" in out
    runs = json.loads(baseline.read_text())["runs"]
    assert runs["tiny-a"] == recorded["tiny-a"]
    assert runs["tiny-b"]["records"] == "0" * 64
    code, _, _ = _digest(capsys, str(a), "--baseline", str(baseline), "--jobs", "1")
    assert code == 0
    code, out, _ = _digest(capsys, str(a), str(b), "--baseline", str(baseline), "--jobs", "1")
    assert code == 1 and "tiny-b: records" in out and "tiny-a:" not in out


def test_jobs_do_not_change_the_digests(tiny: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b, baseline = tiny
    runs = {}
    for jobs in ("1", "2"):
        code, out, _ = _digest(capsys, str(a), str(b), "--baseline", str(baseline), "--jobs", jobs, "--json")
        assert code == 0
        runs[jobs] = json.loads(out)["runs"]
    assert runs["1"] == runs["2"]
    assert runs["1"]["tiny-a"]["records"] != runs["1"]["tiny-b"]["records"]


def test_the_fastest_bundled_runs_equal_the_committed_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _digest(capsys, *FAST_BUNDLED, "--jobs", "2")
    assert code == 0, f"results changed against {DEFAULT_BASELINE} (docs/digest.md):\n{out}"


@pytest.mark.slow
def test_every_bundled_run_equals_the_committed_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _digest(capsys, "--jobs", "2")
    assert code == 0, f"results changed against {DEFAULT_BASELINE} (docs/digest.md):\n{out}"
    assert len(out.splitlines()) == len(bundled_specs()) + 1


def test_the_committed_baseline_covers_every_bundled_run() -> None:
    runs = json.loads(DEFAULT_BASELINE.read_text())["runs"]
    assert sorted(runs) == sorted(s.name for s in bundled_specs())
    assert QUEUEING in runs and set(FAST_BUNDLED) <= set(runs)


# -- the pure parts ---------------------------------------------------------------------------------------------


def test_stable_summary_drops_only_the_machine_dependent_keys() -> None:
    summary = {
        "status": "ok",
        "versions": {"python": "3.11.9"},
        "machine": {"cpus": 2},
        "scenario": {"name": "x", "source": "/somewhere/x.yaml"},
        "requests": {"n": np.int64(3), "mean": np.float64(0.5), "ok": np.bool_(True)},
    }
    stable = stable_summary(summary)
    assert stable == {"status": "ok", "scenario": {"name": "x"}, "requests": {"n": 3, "mean": 0.5, "ok": True}}
    assert "versions" in summary and "source" in summary["scenario"]
    assert EXCLUDED_SUMMARY_KEYS == ("versions", "machine", "scenario.source")


def test_records_digest_sees_every_byte_and_name() -> None:
    cols = {"intended": np.arange(5, dtype=np.float64), "outcome": np.zeros(5, dtype=np.int8)}
    base = records_digest(cols, ["c0"], ["n0"], ["trading"])
    assert base == records_digest(dict(reversed(cols.items())), ["c0"], ["n0"], ["trading"])
    changed = {**cols, "outcome": cols["outcome"].copy()}
    changed["outcome"][3] = 1
    assert records_digest(changed, ["c0"], ["n0"], ["trading"]) != base
    assert records_digest(cols, ["c1"], ["n0"], ["trading"]) != base


JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text("ab", max_size=3)
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("abc", min_size=1, max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text("xyz", min_size=1, max_size=2), JSON, max_size=3), st.data())
def test_flatten_shows_every_changed_leaf(summary: dict[str, Any], data: st.DataObject) -> None:
    flat = flatten(summary)
    entry = {"status": "ok", "rows": 1, "records": "r", "accounting": "a", "summary": canonical(summary)}
    same = {**entry, "summary_values": flat}
    assert diff_entry("s", same, same) == []
    if not flat:
        return
    key = data.draw(st.sampled_from(sorted(flat)))
    other = dict(flat)
    other[key] = "changed" if other[key] != "changed" else "other"
    lines = diff_entry("s", {**entry, "summary": "new", "summary_values": other}, same)
    assert lines[0].startswith("s: summary: digest")
    assert lines[1].strip().startswith(f"{key}: baseline {json.dumps(flat[key])}, now ")
