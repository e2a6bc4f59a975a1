"""The terminal summary of a run (``describe``): the same node order as ``wsfinal report``, rounded actuals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from simulator.results import RunResult
from simulator.run_summary import actual_text, describe
from simulator.runner import run
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo() -> RunResult:
    return run(load_scenario(ROOT / "scenarios" / "demo.yaml"), mode="virtual")


def _nodes(text: str) -> list[str]:
    return re.findall(r"^node (\S+)", text, flags=re.M)


def test_nodes_sorted_like_a_saved_summary(demo: RunResult, tmp_path: Path) -> None:
    by_node = demo.summary["requests"]["by_node"]
    demo.summary["requests"]["by_node"] = dict(reversed(list(by_node.items())))  # as a run may order them
    try:
        printed = _nodes(describe(demo))
    finally:
        demo.summary["requests"]["by_node"] = by_node
    assert len(printed) >= 2
    assert printed == sorted(by_node)
    demo.save(tmp_path / "r")
    assert _nodes(describe(RunResult.load(tmp_path / "r"))) == printed


def test_actuals_printed_with_six_significant_digits(demo: RunResult, tmp_path: Path) -> None:
    expect = demo.summary["expect"]
    assert any(isinstance(e.get("actual"), float) for e in expect)
    text = describe(demo)
    for e in expect:
        if isinstance(e.get("actual"), float):
            assert f"(actual {e['actual']:.6g})" in text
    assert not re.search(r"\(actual -?\d+\.\d{7,}", text)
    demo.save(tmp_path / "r")  # summary.json keeps full precision
    saved = json.loads((tmp_path / "r" / "summary.json").read_text())["expect"]
    assert [e.get("actual") for e in saved] == [e.get("actual") for e in expect]


@pytest.mark.parametrize(
    ("value", "text"),
    [(43.10035057610844, "43.1004"), (0.9992837531335801, "0.999284"), (2.0, "2"), (None, "None"), (True, "True"),
     (12, "12"), (1e-9, "1e-09")],
)  # fmt: skip
def test_actual_text(value: object, text: str) -> None:
    assert actual_text(value) == text
