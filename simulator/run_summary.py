"""A run's summary and its terminal table: what :func:`simulator.runner.run` writes as ``summary.json`` and
``wsfinal run`` prints. Plain data built from the run's state after the run; nothing here drives the run."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.expectations import evaluate_expectations
from simulator.results import (
    SCHEMA_VERSION,
    RequestTable,
    RunResult,
    check_accounting,
    machine_info,
    percent_text,
    software_versions,
    summarize_requests,
)
from simulator.scenario import Scenario
from wsfinal.manager import WebSocketIntegrationManager

if TYPE_CHECKING:
    from simulator.runner import RunOptions, _Run


def collect_manager_events(manager: WebSocketIntegrationManager, state: _Run) -> None:
    """Append the manager's connection events, alert transitions and balancer ejections to the run's event log."""
    for e in manager.events:
        state.event(e.kind, f"connection:{e.connection_id}", state.rel(e.time), **_plain(e.detail))
    if manager.alert_manager is not None:
        for a in manager.alert_manager.events:
            if a.kind == "delivery":
                continue
            state.event(a.kind, f"alert:{a.rule}", state.rel(a.time), labels=dict(a.labels), **_plain(dict(a.detail)))
    if manager.load_balancer is not None:
        for when, cid, until, reason in manager.load_balancer.ejection_log:
            state.event("ejection", f"connection:{cid}", state.rel(when), until=state.rel(until), reason=reason)


def _plain(detail: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in detail.items():
        if isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        elif hasattr(v, "value"):
            out[k] = v.value
        elif isinstance(v, list | tuple):
            out[k] = [x if isinstance(x, str | int | float | bool) or x is None else str(x) for x in v]
        elif isinstance(v, dict):
            out[k] = _plain(v)
        else:
            out[k] = str(v)
    return out


def scenario_block(scenario: Scenario) -> dict[str, Any]:
    """The ``scenario`` part of a summary (and of a comparison): name, description, source, timing, nodes,
    faults and workload, as plain data."""
    return {
        "name": scenario.name,
        "description": scenario.description,
        "source": scenario.source,
        "duration_s": scenario.duration_s,
        "warmup_s": scenario.warmup_s,
        "nodes": [n.id for n in scenario.nodes],
        "faults": [
            {"kind": f.kind, "at_s": f.at_s, "duration_s": f.duration_s, "node": f.node} for f in scenario.faults
        ],
        "workload": [
            {"type": w.connection_type.value, "arrival": w.arrival, "rate_per_s": w.rate_per_s}
            for w in scenario.workload
        ],
    }


def build_summary(
    scenario: Scenario,
    opts: RunOptions,
    state: _Run,
    table: RequestTable,
    manager: WebSocketIntegrationManager | None,
    status: str,
    error: str | None,
    simulated: float,
) -> dict[str, Any]:
    """The run's summary (schema :data:`~simulator.results.SCHEMA_VERSION`, documented in docs/results.md), with
    the scenario's ``expect`` assertions evaluated against it."""
    requests = summarize_requests(table, scenario.warmup_s)
    all_outcomes = {k: int(v) for k, v in zip(*np.unique(table.columns["outcome"], return_counts=True), strict=True)}
    total_outcomes = sum(all_outcomes.values())
    reconnects: dict[str, int] = {}
    received: dict[str, int] = {}
    if manager is not None:
        for c in manager.connections():
            metrics = c.metrics
            reconnects[c.connection_id] = int(metrics.reconnects)
            received[c.connection_id] = int(metrics.messages_received)
    failures: dict[str, int] = {}
    for e in state.events:
        if e["kind"] == "gave_up":
            cid = e["source"].split(":", 1)[1]
            failures[cid] = failures.get(cid, 0) + 1
    alerts = [
        {"time": e["time"], "rule": e["source"].split(":", 1)[1], "labels": e["detail"].get("labels", {})}
        for e in state.events
        if e["kind"] == "alert_firing"
    ]
    balancer: dict[str, Any] = {}
    if manager is not None and manager.load_balancer is not None:
        lb = manager.load_balancer
        balancer = {
            "strategies": {k.value: v for k, v in lb.get_strategy_performance().items()},
            "ejections": len(lb.ejection_log),
            "panic_selections": {k.value: v for k, v in lb.panic_selections.items()},
        }
    summary: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "error": error,
        "scenario": scenario_block(scenario),
        "strategy": opts.strategy.value,
        "seed": opts.seed,
        "mode": opts.mode,
        "closed_loop": any(w.arrival == "closed_loop" for w in scenario.workload),
        "versions": software_versions(),
        "machine": machine_info(),
        "simulated_s": round(simulated, 9),
        "requests": requests,
        "accounting": {
            "submitted": state.submitted,
            "recorded": len(table),
            "ok": check_accounting({str(k): v for k, v in all_outcomes.items()}, state.submitted)
            and len(table) == total_outcomes,
        },
        "reconnects": {"total": sum(reconnects.values()), "by_connection": reconnects},
        "connection_failures": failures,
        "messages_received": received,
        "alerts_fired": alerts,
        "balancer": balancer,
    }
    summary["expect"] = evaluate_expectations(scenario, summary, state.events, opts.strategy)
    return summary


def describe(result: RunResult) -> str:
    """A short table of a run's summary for the terminal."""
    s = result.summary
    lines = [
        f"scenario {s['scenario']['name']}  strategy {s['strategy']}  seed {s['seed']}  mode {s['mode']}"
        + ("  (closed loop)" if s.get("closed_loop") else ""),
        f"status {s['status']}" + (f": {s['error']}" if s.get("error") else ""),
        f"{'scope':<22}{'requests':>10}{'success':>9}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}",
    ]

    def row(name: str, block: dict[str, Any]) -> str:
        lat = block["latency"]
        rate = block["success_rate"]
        fmt = lambda v: f"{v:9.2f}" if isinstance(v, int | float) else f"{'-':>9}"  # noqa: E731
        return (
            f"{name:<22}{block['submitted']:>10}{percent_text(rate * 100 if rate is not None else math.nan):>8}%"
            + "".join(fmt(lat[k]) for k in ("p50_ms", "p99_ms", "mean_ms"))
        )

    lines.append(row("all", s["requests"]["all"]))
    for name, block in sorted(s["requests"]["by_node"].items()):  # the order of `wsfinal report` (a saved summary)
        lines.append(row(f"node {name}", block))
    outcomes = s["requests"]["all"]["outcomes"]
    lines.append("outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.items() if v))
    lines.append(f"reconnects {s['reconnects']['total']}, alerts fired {len(s['alerts_fired'])}")
    for e in s.get("expect", []):
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[e["passed"]]
        lines.append(
            f"expect[{e['index']}] {mark} {e['description']}"
            + (f" (actual {actual_text(e['actual'])})" if "actual" in e else "")
        )
    return "\n".join(lines)


def actual_text(value: Any) -> str:
    """An ``expect`` result's measured value for the terminal: a float to 6 significant digits (``43.1004``, not
    ``43.10035057610844``; summary.json keeps full precision); anything else as it is."""
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.6g}"
    return str(value)


__all__ = ["actual_text", "build_summary", "collect_manager_events", "describe", "scenario_block"]
