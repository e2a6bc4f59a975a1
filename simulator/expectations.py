"""Evaluate a scenario's ``expect`` assertions against a finished run's summary and event log.

Pure: takes the scenario, the summary being built and the events; returns one dict per assertion with
``index``, ``kind``, ``description``, ``passed`` (``True``/``False``, or ``None`` when the assertion does not apply
to this run, e.g. it names another strategy) and ``actual`` (the measured value, or the alert's delay).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

from wsfinal.alerts import DEFAULT_RULES
from wsfinal.config import LoadBalancingStrategy

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}

_LATENCY_KEYS = {
    "p50_ms": "p50_ms",
    "p90_ms": "p90_ms",
    "p95_ms": "p95_ms",
    "p99_ms": "p99_ms",
    "p999_ms": "p99_9_ms",
    "mean_ms": "mean_ms",
    "max_ms": "max_ms",
}

RULE_TYPES: dict[str, str] = {rule.name: rule.alert_type.value for rule in DEFAULT_RULES}


def metric_value(metric: str, block: dict[str, Any], summary: dict[str, Any], node: str | None) -> float | None:
    """The value of ``metric`` from a requests block (overall, per type or per node) and the summary."""
    outcomes = block["outcomes"]
    submitted = block["submitted"]
    if metric in _LATENCY_KEYS:
        v = block["latency"][_LATENCY_KEYS[metric]]
        return None if v is None else float(v)
    if metric == "success_rate":
        return block["success_rate"]
    if metric == "error_rate":
        return None if not submitted else 1.0 - outcomes["acknowledged"] / submitted
    if metric == "timeout_rate":
        return None if not submitted else outcomes["timed_out"] / submitted
    if metric == "throughput":
        span = summary["scenario"]["duration_s"] - summary["scenario"]["warmup_s"]
        return outcomes["acknowledged"] / span if span > 0 else None
    if metric == "requests":
        return float(submitted)
    if metric == "completed":
        return float(outcomes["acknowledged"])
    if metric == "rejected":
        return float(outcomes["rejected"])
    if metric == "timeouts":
        return float(outcomes["timed_out"])
    if metric == "reconnects":
        by_conn = summary["reconnects"]["by_connection"]
        return float(sum(v for cid, v in by_conn.items() if node is None or cid.startswith(f"{node}/")))
    if metric == "connection_failures":
        failures = summary.get("connection_failures", {})
        return float(sum(v for cid, v in failures.items() if node is None or cid.startswith(f"{node}/")))
    if metric == "messages_received":
        received = summary.get("messages_received", {})
        return float(sum(v for cid, v in received.items() if node is None or cid.startswith(f"{node}/")))
    raise ValueError(f"unknown metric {metric!r}")


def _alert_matches(event: dict[str, Any], alert: str, node: str | None) -> bool:
    rule = event["source"].split(":", 1)[1]
    if alert not in (rule, RULE_TYPES.get(rule)):
        return False
    if node is None:
        return True
    labels = event["detail"].get("labels", {})
    return labels.get("node") == node or str(labels.get("connection_id", "")).startswith(f"{node}/")


def evaluate_expectations(
    scenario: Any, summary: dict[str, Any], events: Sequence[dict[str, Any]], strategy: LoadBalancingStrategy
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    faults = {f.index: f for f in scenario.faults}
    for e in scenario.expect:
        entry: dict[str, Any] = {"index": e.index, "kind": e.kind}
        if e.kind == "metric":
            where = "".join(
                f" [{k} {v}]"
                for k, v in (("type", e.connection_type and e.connection_type.value), ("node", e.node))
                if v
            )
            entry["description"] = f"{e.metric} {e.op} {e.value:g}{where}"
            if e.strategy is not None and e.strategy is not strategy:
                entry["passed"] = None
                results.append(entry)
                continue
            requests = summary["requests"]
            if e.node is not None:
                block = requests["by_node"].get(e.node)
            elif e.connection_type is not None:
                block = requests["by_type"].get(e.connection_type.value)
            else:
                block = requests["all"]
            empty = {"outcomes": dict.fromkeys(("acknowledged", "rejected", "timed_out"), 0), "submitted": 0}
            value = metric_value(e.metric, block or {**empty, "success_rate": None, "latency": {}}, summary, e.node)
            entry["actual"] = value
            entry["passed"] = value is not None and not math.isnan(value) and OPS[e.op](value, float(e.value))
        else:
            fired = sorted(
                ev["time"] for ev in events if ev["kind"] == "alert_firing" and _alert_matches(ev, e.alert, e.node)
            )
            scope = f" on {e.node}" if e.node else ""
            if e.never:
                entry["description"] = f"alert {e.alert}{scope} never fires"
                entry["passed"] = not fired
                entry["actual"] = fired[0] if fired else None
            else:
                fault = faults.get(e.after_fault) if e.after_fault is not None else None
                start = fault.at_s if fault is not None else 0.0
                after = f" of fault {e.after_fault} ({fault.kind})" if fault is not None else " of the start"
                entry["description"] = f"alert {e.alert}{scope} fires within {e.within_s:g}s{after}"
                delays = [t - start for t in fired if t >= start]
                entry["actual"] = round(delays[0], 6) if delays else None
                entry["passed"] = bool(delays) and delays[0] <= float(e.within_s)
        results.append(entry)
    return results
