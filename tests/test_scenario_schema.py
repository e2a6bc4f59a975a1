"""The declared scenario schema (simulator.scenario_schema) and the problems it finds: structural errors with their
key paths and wording, path formatting, and the order in which problems are reported."""

from __future__ import annotations

import pytest
from _scenario_helpers import DELETE, Mutation, assert_problem, base, problems_of, put
from jsonschema import Draft202012Validator

from simulator.scenario import ALERT_NAMES, FAULT_KINDS, METRIC_NAMES
from simulator.scenario_schema import SCHEMA, format_path
from wsfinal.config import LoadBalancingStrategy


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_names_match_enums() -> None:
    assert set(METRIC_NAMES) and len(ALERT_NAMES) == 10
    props = SCHEMA["properties"]
    assert set(props["manager"]["properties"]["strategy"]["enum"]) == {s.value for s in LoadBalancingStrategy}
    assert props["faults"]["items"]["properties"]["kind"]["enum"] == list(FAULT_KINDS)


def test_format_path() -> None:
    assert format_path(["faults", 2, "latency"]) == "faults[2].latency"
    assert format_path([]) == ""
    assert format_path(["nodes", 0, "api_keys", "a.b"]) == 'nodes[0].api_keys["a.b"]'
    assert format_path(["x y"]) == '["x y"]'


def test_odd_keys_quoted_in_paths() -> None:
    d = base()
    d["nodes"][0]["api_keys"] = {"my.key": 5}
    assert_problem(d, 'nodes[0].api_keys["my.key"]', "must be a string, got an integer (5)")


# --- structural errors with their key paths -------------------------------------------------------------------------

STRUCTURAL = [
    ("missing name", put("name", DELETE), "name", "missing: this key is required"),
    ("unknown top key", put("nodse", []), "nodse", "did you mean 'nodes'?"),
    ("unknown key no hint", put("zzzzzz", 1), "zzzzzz", "allowed keys: name, description"),
    ("duration no unit", put("duration", 30), "duration", "30 has no unit"),
    ("duration bad unit", put("duration", "30 seconds"), "duration", "unknown time unit 'seconds'"),
    ("duration negative", put("duration", "-3s"), "duration", "must not be negative"),
    ("seed negative", put("seed", -1), "seed", "must be >= 0, got -1"),
    ("seed type", put("seed", "abc"), "seed", "must be an integer, got a string ('abc')"),
    ("nodes empty", put("nodes", []), "nodes", "must have at least 1 item(s)"),
    ("node typo", put("nodes[0].queue_limt", 5), "nodes[0].queue_limt", "did you mean 'queue_limit'?"),
    ("port range", put("nodes[0].port", 70000), "nodes[0].port", "must be <= 65535"),
    ("bad distribution", put("nodes[0].service.distribution", "exponentail"), "nodes[0].service.distribution",
     "did you mean 'exponential'?"),
    ("param of other distribution", put("nodes[0].service.median", "1ms"), "nodes[0].service.median",
     "unknown key 'median' for distribution 'exponential'; did you mean 'mean'?"),
    ("missing mean", put("nodes[0].service.mean", DELETE), "nodes[0].service.mean",
     "required for distribution 'exponential'"),
    ("workers zero", put("nodes[0].service.workers", 0), "nodes[0].service.workers", "must be >= 1"),
    ("network typo", put("nodes[0].network", {"latnecy": "1ms"}), "nodes[0].network.latnecy",
     "did you mean 'latency'?"),
    ("symbols bad", put("nodes[0].symbols", ["BTCUSD"]), "nodes[0].symbols[0]", "'BTCUSD' is not a valid value"),
    ("symbols dup", put("nodes[0].symbols", ["tBTCUSD", "tBTCUSD"]), "nodes[0].symbols", "must not repeat"),
    ("type typo", put("clients.connections[0].type", "tradng"), "clients.connections[0].type",
     "did you mean 'trading'?"),
    ("count zero", put("clients.connections[0].count", 0), "clients.connections[0].count", "must be >= 1"),
    ("no connections", put("clients.connections", []), "clients.connections", "at least 1"),
    ("book param on ticker", put("clients.connections[1].subscriptions", [{"channel": "ticker", "symbol": "tBTCUSD",
     "len": 25}]), "clients.connections[1].subscriptions[0].len", "unknown key 'len' for channel 'ticker'"),
    ("book len", put("clients.connections[1].subscriptions", [{"channel": "book", "symbol": "tBTCUSD", "len": 10}]),
     "clients.connections[1].subscriptions[0].len", "10 is not one of: 1, 25, 100, 250"),
    ("arrival typo", put("clients.workload[0].arrival", "poison"), "clients.workload[0].arrival",
     "did you mean 'poisson'?"),
    ("poisson with on", put("clients.workload[0].on", "1s"), "clients.workload[0].on",
     "unknown key 'on' for arrival 'poisson'"),
    ("rate no unit", put("clients.workload[0].rate", 100), "clients.workload[0].rate", "100 has no unit"),
    ("rate bad", put("clients.workload[0].rate", "100 per s"), "clients.workload[0].rate", "has no time unit"),
    ("bursty missing off", put("clients.workload[0]", {"type": "trading", "arrival": "bursty", "rate": "1/s",
     "on": "1s"}), "clients.workload[0].off", "required for arrival 'bursty'"),
    ("strategy typo", put("manager.strategy", "least_latancy"), "manager.strategy", "did you mean 'least_latency'?"),
    ("manager typo", put("manager.request_timout", "1s"), "manager.request_timout", "did you mean 'request_timeout'"),
    ("bool type", put("manager.enable_alerts", "yes"), "manager.enable_alerts", "must be true or false"),
    ("rule name typo", put("manager.alert_rules", {"high_latncy": {}}), "manager.alert_rules.high_latncy",
     "did you mean 'high_latency'?"),
    ("rule key typo", put("manager.alert_rules", {"high_latency": {"fro": "1s"}}),
     "manager.alert_rules.high_latency.fro", "did you mean 'for'?"),
    ("rule metric", put("manager.alert_rules", {"high_latency": {"metric": "peak_latncy_ms"}}),
     "manager.alert_rules.high_latency.metric", "did you mean 'peak_latency_ms'?"),
    ("rule threshold", put("manager.alert_rules", {"high_latency": {"threshold": "fast"}}),
     "manager.alert_rules.high_latency.threshold", "cannot read 'fast' as a duration"),
    ("fault kind typo", put("faults", [{"kind": "latncy", "at": "1s"}]), "faults[0].kind", "did you mean 'latency'?"),
    ("fault missing at", put("faults", [{"kind": "reset"}]), "faults[0].at", "missing: this key is required"),
    ("fault param typo", put("faults", [{}, {}, {"kind": "latency", "at": "1s", "latncy": "1ms"}]),
     "faults[2].latncy", "did you mean 'latency'?"),
    ("fault param missing", put("faults", [{"kind": "latency", "at": "1s"}]), "faults[0].latency",
     "required for kind 'latency'"),
    ("fault param of other kind", put("faults", [{"kind": "loss", "at": "1s", "rate": 0.1, "gap": 2}]),
     "faults[0].gap", "unknown key 'gap' for kind 'loss'"),
    ("fault latency no unit", put("faults", [{"kind": "latency", "at": "1s", "latency": 40}]), "faults[0].latency",
     "40 has no unit"),
    ("probability range", put("faults", [{"kind": "reset", "at": "1s", "probability": 1.5}]),
     "faults[0].probability", "must be <= 1"),
    ("direction", put("faults", [{"kind": "reset", "at": "1s", "direction": "sideways"}]), "faults[0].direction",
     "is not one of: up, down, both"),
    ("close code", put("faults", [{"kind": "close", "at": "1s", "code": 4000}]), "faults[0].code",
     "4000 is not one of: 1000, 1001"),
    ("loss rate range", put("faults", [{"kind": "loss", "at": "1s", "rate": 2}]), "faults[0].rate", "must be <= 1"),
    ("bandwidth unit", put("faults", [{"kind": "bandwidth", "at": "1s", "rate": "64KB"}]), "faults[0].rate",
     "has no time unit"),
    ("factor zero", put("faults", [{"kind": "latency_factor", "at": "1s", "factor": 0}]), "faults[0].factor",
     "must be > 0"),
    ("expect neither", put("expect", [{"op": ">="}]), "expect[0]", "needs 'metric'"),
    ("expect both", put("expect", [{"metric": "success_rate", "op": ">=", "value": 1, "alert": "high_latency"}]),
     "expect[0].alert", "either 'metric' or 'alert', not both"),
    ("expect metric typo", put("expect", [{"metric": "p99", "op": ">=", "value": 1}]), "expect[0].metric",
     "did you mean"),
    ("expect op", put("expect", [{"metric": "p99_ms", "op": "=>", "value": 1}]), "expect[0].op", "is not one of"),
    ("expect alert typo", put("expect", [{"alert": "high_latncy", "within": "1s"}]), "expect[0].alert",
     "did you mean 'high_latency'?"),
    ("expect alert unknown key", put("expect", [{"alert": "high_latency", "witin": "1s"}]), "expect[0].witin",
     "did you mean 'within'?"),
    ("document empty name", put("name", ""), "name", "must not be empty"),
    ("float where int", put("nodes[0].queue_limit", 1.5), "nodes[0].queue_limit", "must be an integer"),
    ("null value", put("nodes[0].host", None), "nodes[0].host", "got null"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "path", "fragment"), [c[1:] for c in STRUCTURAL], ids=[c[0] for c in STRUCTURAL])
def test_structural_errors(mutate: Mutation, path: str, fragment: str) -> None:
    d = base()
    mutate(d)
    assert_problem(d, path, fragment)


def test_all_problems_reported_in_document_order() -> None:
    d = base()
    d["nodse"] = 1
    d["nodes"][1]["service"]["valeu"] = "1ms"
    d["clients"]["workload"][0]["rate"] = "fast"
    d["faults"] = [{"kind": "latency", "at": "1s"}]
    paths = [p for p, _ in problems_of(d)]
    assert paths == ["nodes[1].service.valeu", "clients.workload[0].rate", "nodse", "faults[0].latency"]
