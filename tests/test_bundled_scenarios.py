"""Every bundled scenario runs in virtual time with its own strategy and meets its `expect` assertions.

Slow (each scenario simulates 30-60 s); CI runs this module as part of its bounded slow subset.
"""

from pathlib import Path

import pytest

from simulator.runner import run
from simulator.scenario import load_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[1] / "scenarios").glob("*.yaml"))


def test_there_are_at_least_eight_scenarios():
    assert len(SCENARIOS) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_expectations_hold_in_virtual_time(path):
    result = run(load_scenario(path), mode="virtual")
    s = result.summary
    assert s["status"] == "ok", s["error"]
    assert s["accounting"]["ok"]
    failed = [e for e in s["expect"] if e["passed"] is False]
    assert not failed, failed
