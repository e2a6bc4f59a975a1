"""Alerting wired into the manager, against the fake exchange in virtual time: the bundled latency-spike
scenario raises a high-latency alert for the spiking node's connections within the scenario's bound, and
resolves it after the spike."""

import dataclasses
from pathlib import Path

from simulator.runner import run
from simulator.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "latency-spike.yaml"


def test_latency_spike_alert_fires_on_the_right_node_and_resolves():
    scenario = load_scenario(SCENARIO)
    [fault] = [f for f in scenario.faults if f.kind == "latency"]
    # Shorter than the bundled run, still long enough for the alert to clear after the spike.
    scenario = dataclasses.replace(
        scenario, duration_s=fault.end_s + 12.0, expect=tuple(e for e in scenario.expect if e.kind == "alert")
    )
    result = run(scenario, mode="virtual")
    assert result.summary["status"] == "ok"
    events = result.events
    firing = [e for e in events if e["kind"] == "alert_firing" and e["source"] == "alert:high_latency"]
    assert firing, "high_latency never fired"
    bound = next(e.within_s for e in scenario.expect if e.alert == "high_latency")
    assert firing[0]["time"] - fault.at_s <= bound
    for e in firing:
        assert e["detail"]["labels"]["connection_id"].startswith(f"{fault.node}/"), e
        assert e["time"] >= fault.at_s
    resolved = {
        e["detail"]["labels"]["connection_id"]
        for e in events
        if e["kind"] == "alert_resolved" and e["source"] == "alert:high_latency" and e["time"] > fault.end_s
    }
    assert {e["detail"]["labels"]["connection_id"] for e in firing} <= resolved
    assert all(e["passed"] for e in result.summary["expect"])
