"""Tests of the scenario loader: defaults, every validation rule with its key path, YAML handling, the bundled
scenarios, the CLI, and a hypothesis fuzz of the loader (valid Scenario or ScenarioError, nothing else)."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from benchmarks.cli import main as cli_main
from simulator.scenario import (
    ALERT_NAMES,
    FAULT_KINDS,
    INSTANT_FAULT_KINDS,
    METRIC_NAMES,
    Scenario,
    ScenarioError,
    load_scenario,
    loads_scenario,
    parse_scenario,
)
from simulator.scenario_schema import SCHEMA, format_path
from wsfinal.alerts import resolve_rules
from wsfinal.config import ConnectionConfig, ConnectionType, LoadBalancingStrategy
from wsfinal.exceptions import WsFinalError

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = sorted((ROOT / "scenarios").glob("*.yaml"))

BASE = """
name: test
duration: 30s
nodes:
  - id: node-a
    service: {distribution: exponential, mean: 2ms, workers: 2}
    api_keys: {key-1: secret-1}
    symbols: [tBTCUSD, tETHUSD]
  - id: node-b
    service: {distribution: constant, value: 1ms}
clients:
  connections:
    - {type: trading, node: node-a, count: 2, api_key: key-1}
    - {type: market_data, node: node-b}
  workload:
    - {type: trading, rate: 100/s}
"""


def base() -> dict[str, Any]:
    return yaml.safe_load(BASE)


def problems_of(doc: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc, "test.yaml", **kwargs)
    err = info.value
    assert (err.path, err.reason) == err.problems[0]
    assert str(err) == (f"test.yaml: {err.path}: {err.reason}" if err.path else f"test.yaml: {err.reason}")
    return list(err.problems)


def assert_problem(doc: Any, path: str, fragment: str, **kwargs: Any) -> None:
    problems = problems_of(doc, **kwargs)
    matches = [reason for p, reason in problems if p == path]
    assert matches, f"no problem at {path!r}; got {problems}"
    assert any(fragment in reason for reason in matches), f"{fragment!r} not in {matches}"


# --- defaults and conversions ----------------------------------------------------------------------------------


def test_defaults_filled_in() -> None:
    s = parse_scenario(base())
    assert (s.seed, s.warmup_s, s.description, s.source) == (0, 0.0, "", "<string>")
    a, b = s.nodes
    assert (a.host, a.port, a.queue_limit, a.heartbeat_interval_s) == ("127.0.0.1", 0, 1000, 15.0)
    assert (a.network_latency_s, a.network_jitter_s, a.max_subscriptions, a.max_frame_bytes) == (0, 0, 25, 1 << 20)
    assert b.service.workers == 1 and b.service.params == {"value": 0.001}
    assert b.symbols == ("tBTCUSD",) and b.api_keys == {}
    m = s.manager
    assert m.strategy is LoadBalancingStrategy.ROUND_ROBIN
    assert (m.health_check_interval_s, m.analytics_interval_s, m.alert_check_interval_s) == (1.0, 1.0, 1.0)
    assert m.request_timeout_s == 5.0
    w = s.workload[0]
    assert (w.arrival, w.rate_per_s, w.start_s, w.stop_s) == ("poisson", 100.0, 0.0, 30.0)
    assert w.connection_type is ConnectionType.TRADING
    assert s.connections[0].connection_type is ConnectionType.TRADING and s.connections[1].count == 1
    assert s.faults == () and s.expect == ()


def test_latency_stale_after_is_a_connection_group_key() -> None:
    d = base()
    d["clients"]["connections"][0]["latency_stale_after"] = "2.5s"
    s = parse_scenario(d)
    assert s.connections[0].latency_stale_after_s == 2.5
    assert s.connections[1].latency_stale_after_s == 10.0  # the ConnectionConfig default
    assert s.connections[1].latency_stale_after_s == ConnectionConfig.latency_stale_after_seconds


def test_units_converted_everywhere() -> None:
    d = base()
    d.update(warmup="1.5s", seed=9)
    d["nodes"][0].update(network={"latency": "500us", "jitter": "0.1ms"}, heartbeat_interval="2m")
    d["nodes"][0]["max_frame_size"] = "64KB"
    d["faults"] = [
        {"kind": "latency", "at": "10s", "duration": "5s", "node": "node-a", "latency": "40ms", "jitter": "5ms"},
        {"kind": "bandwidth", "at": "1s", "duration": "1s", "rate": "64KB/s", "direction": "down"},
        {"kind": "slicer", "at": "1s", "average_size": "1KB", "size_variation": 100, "delay": "1ms"},
        {"kind": "reset", "at": "20s", "node": "node-a", "connection": 1, "probability": 0.5},
        {"kind": "close", "at": "20s"},
    ]
    s = parse_scenario(d)
    assert (s.seed, s.warmup_s) == (9, 1.5)
    a = s.nodes[0]
    assert a.network_latency_s == pytest.approx(0.0005) and a.network_jitter_s == pytest.approx(0.0001)
    assert a.heartbeat_interval_s == 120.0 and a.max_frame_bytes == 65536
    lat, bw, sl, reset, close = s.faults
    assert lat.params == {"latency": 0.04, "jitter": 0.005, "distribution": "normal"}
    assert (lat.at_s, lat.duration_s, lat.end_s, lat.direction) == (10.0, 5.0, 15.0, "both")
    assert bw.params == {"rate": 65536.0} and bw.direction == "down" and bw.node is None
    assert sl.params == {"average_size": 1024, "size_variation": 100, "delay": 0.001}
    assert sl.duration_s == 29.0  # omitted duration: to the end of the run
    assert (reset.duration_s, reset.connection, reset.probability, reset.end_s) == (None, 1, 0.5, 20.0)
    assert close.params == {"code": 1001, "reason": ""}
    assert [f.index for f in s.faults] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_fault_kind_loads(kind: str) -> None:
    params: dict[str, Any] = {
        "latency": {"latency": "10ms"},
        "latency_factor": {"factor": 2.5},
        "bandwidth": {"rate": "1MB/s"},
        "slow_close": {"delay": "1s"},
        "timeout": {"timeout": "0s"},
        "slicer": {"average_size": 64},
        "limit_data": {"bytes": "10KB"},
        "close": {"code": 1013, "reason": "try again later"},
        "loss": {"rate": 0.1},
        "duplicate": {"rate": 0.1},
        "reorder": {"rate": 0.1, "gap": 2},
        "error_reply": {"code": 10001, "rate": 0.3},
        "malformed": {"rate": 0.1},
        "oversized": {"size": "2MB"},
        "binary": {},
        "connect_rate_limit": {"max_connects": 2, "window": "1s"},
        "capacity_drop": {"workers": 1},
    }.get(kind, {})
    d = base()
    d["faults"] = [{"kind": kind, "at": "5s", "node": "node-a", **params}]
    (fault,) = parse_scenario(d).faults
    assert fault.kind == kind and fault.node == "node-a"
    assert (fault.duration_s is None) == (kind in INSTANT_FAULT_KINDS)
    assert set(params) <= set(fault.params)


def test_fault_param_values() -> None:
    d = base()
    d["faults"] = [
        {"kind": "reorder", "at": "1s", "rate": 0.2},
        {"kind": "error_reply", "at": "1s", "code": 10305},
        {"kind": "timeout", "at": "1s", "timeout": "0s"},
        {"kind": "connect_rate_limit", "at": "1s", "max_connects": 3, "window": "500ms"},
        {"kind": "capacity_drop", "at": "1s", "node": "node-a", "workers": 0},
    ]
    reorder, err, timeout, crl, drop = parse_scenario(d).faults
    assert reorder.params == {"rate": 0.2, "gap": 1}
    assert err.params == {"code": 10305, "rate": 1.0}
    assert timeout.params == {"timeout": 0.0}
    assert crl.params == {"max_connects": 3, "window": 0.5}
    assert drop.params == {"workers": 0}


def test_workload_arrivals() -> None:
    d = base()
    d["clients"]["workload"] = [
        {"type": "trading", "arrival": "constant", "rate": "30/m", "start": "2s", "stop": "20s", "symbol": "tETHUSD"},
        {"type": "trading", "arrival": "bursty", "rate": "1000/s", "on": "1s", "off": "500ms"},
        {
            "type": "trading",
            "arrival": "schedule",
            "schedule": [{"at": "0s", "rate": "10/s"}, {"at": "5s", "rate": "0/s"}],
        },
        {"type": "trading", "arrival": "closed_loop", "concurrency": 4, "think": "5ms"},
        {"type": "market_data", "rate": "1/s"},
    ]
    const, bursty, sched, closed, md = parse_scenario(d).workload
    assert (const.rate_per_s, const.start_s, const.stop_s, const.symbol) == (0.5, 2.0, 20.0, "tETHUSD")
    assert (bursty.rate_per_s, bursty.on_s, bursty.off_s) == (1000.0, 1.0, 0.5)
    assert sched.schedule == ((0.0, 10.0), (5.0, 0.0)) and sched.rate_per_s is None
    assert (closed.concurrency, closed.think_s, closed.rate_per_s) == (4, 0.005, None)
    assert md.connection_type is ConnectionType.MARKET_DATA


def test_service_distributions_and_subscriptions() -> None:
    d = base()
    d["nodes"][1]["service"] = {"distribution": "lognormal", "median": "1.5ms", "sigma": 0.5, "workers": 3}
    d["clients"]["connections"][1]["subscriptions"] = [
        {"channel": "book", "symbol": "tBTCUSD"},
        {"channel": "book", "symbol": "tBTCUSD", "prec": "P2", "len": 100, "freq": "F1"},
        {"channel": "ticker", "symbol": "tBTCUSD"},
    ]
    s = parse_scenario(d)
    assert s.nodes[1].service.params == {"median": 0.0015, "sigma": 0.5}
    book, book2, ticker = s.connections[1].subscriptions
    assert (book.prec, book.length, book.freq) == ("P0", 25, "F0")
    assert (book2.prec, book2.length, book2.freq) == ("P2", 100, "F1")
    assert (ticker.prec, ticker.length, ticker.freq) == (None, None, None)


def test_expectations_parsed() -> None:
    d = base()
    d["faults"] = [{"kind": "node_down", "at": "5s", "duration": "2s", "node": "node-a"}]
    d["expect"] = [
        {"metric": "success_rate", "op": ">=", "value": 0.99, "strategy": "least_latency"},
        {"metric": "p99_ms", "op": "<", "value": "1.5s", "connection_type": "trading", "node": "node-a"},
        {"alert": "cluster_node_down", "within": "5s", "after_fault": 0, "node": "node-a"},
        {"alert": "high_latency", "never": True},
        {"alert": "high_error_rate", "within": "20s"},
    ]
    m1, m2, a1, a2, a3 = parse_scenario(d).expect
    assert (m1.kind, m1.metric, m1.op, m1.value, m1.strategy) == (
        "metric", "success_rate", ">=", 0.99, LoadBalancingStrategy.LEAST_LATENCY
    )  # fmt: skip
    assert (m2.value, m2.connection_type, m2.node) == (1500.0, ConnectionType.TRADING, "node-a")
    assert (a1.kind, a1.alert, a1.within_s, a1.after_fault, a1.never) == ("alert", "cluster_node_down", 5.0, 0, False)
    assert (a2.never, a2.within_s) == (True, None)
    assert (a3.after_fault, a3.within_s, a3.index) == (None, 20.0, 4)


def test_alert_rules() -> None:
    d = base()
    d["manager"] = {
        "alert_rules": {
            "high_latency": {"threshold": "20ms", "for": "2s", "keep_firing_for": "1m", "metric": "peak_latency_ms"},
            "high_error_rate": {"threshold": 0.1, "params": {"window_s": "10s", "min_requests": 5, "x": "low"}},
            "system_health": {"enabled": False},
        }
    }
    m = parse_scenario(d).manager
    assert m.alert_rules == {
        "high_latency": {"metric": "peak_latency_ms", "threshold": 20.0, "for_s": 2.0, "keep_firing_for_s": 60.0},
        "high_error_rate": {"threshold": 0.1, "params": {"window_s": 10.0, "min_requests": 5, "x": "low"}},
        "system_health": {"enabled": False},
    }
    assert m.thresholds == {"high_latency": 20.0, "high_error_rate": 0.1}
    rules = {r.name: r for r in resolve_rules(m.alert_rules)}  # the form wsfinal.alerts takes
    assert (rules["high_latency"].threshold, rules["high_latency"].for_s) == (20.0, 2.0)
    assert (rules["high_latency"].metric, rules["high_error_rate"].metric) == ("peak_latency_ms", "error_rate")
    assert "system_health" not in rules and rules["high_error_rate"].params["window_s"] == 10.0


def test_scenario_helpers() -> None:
    s = parse_scenario(base())
    assert s.node("node-b").service.distribution == "constant"
    with pytest.raises(KeyError):
        s.node("nope")
    assert [i for _, i in s.connections_on("node-a")] == [0, 1]
    assert s.connections_on("node-b")[0][0].connection_type is ConnectionType.MARKET_DATA


def test_names_match_enums() -> None:
    assert set(METRIC_NAMES) and len(ALERT_NAMES) == 10
    props = SCHEMA["properties"]
    assert set(props["manager"]["properties"]["strategy"]["enum"]) == {s.value for s in LoadBalancingStrategy}
    assert props["faults"]["items"]["properties"]["kind"]["enum"] == list(FAULT_KINDS)


# --- structural errors with their key paths ---------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        target: Any = d
        parts = path.replace("[", ".").replace("]", "").split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
        last = parts[-1]
        if value is _DELETE:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


_DELETE = object()

STRUCTURAL = [
    ("missing name", _set("name", _DELETE), "name", "missing: this key is required"),
    ("unknown top key", _set("nodse", []), "nodse", "did you mean 'nodes'?"),
    ("unknown key no hint", _set("zzzzzz", 1), "zzzzzz", "allowed keys: name, description"),
    ("duration no unit", _set("duration", 30), "duration", "30 has no unit"),
    ("duration bad unit", _set("duration", "30 seconds"), "duration", "unknown time unit 'seconds'"),
    ("duration negative", _set("duration", "-3s"), "duration", "must not be negative"),
    ("seed negative", _set("seed", -1), "seed", "must be >= 0, got -1"),
    ("seed type", _set("seed", "abc"), "seed", "must be an integer, got a string ('abc')"),
    ("nodes empty", _set("nodes", []), "nodes", "must have at least 1 item(s)"),
    ("node typo", _set("nodes[0].queue_limt", 5), "nodes[0].queue_limt", "did you mean 'queue_limit'?"),
    ("port range", _set("nodes[0].port", 70000), "nodes[0].port", "must be <= 65535"),
    ("bad distribution", _set("nodes[0].service.distribution", "exponentail"), "nodes[0].service.distribution",
     "did you mean 'exponential'?"),
    ("param of other distribution", _set("nodes[0].service.median", "1ms"), "nodes[0].service.median",
     "unknown key 'median' for distribution 'exponential'; did you mean 'mean'?"),
    ("missing mean", _set("nodes[0].service.mean", _DELETE), "nodes[0].service.mean",
     "required for distribution 'exponential'"),
    ("workers zero", _set("nodes[0].service.workers", 0), "nodes[0].service.workers", "must be >= 1"),
    ("network typo", _set("nodes[0].network", {"latnecy": "1ms"}), "nodes[0].network.latnecy",
     "did you mean 'latency'?"),
    ("symbols bad", _set("nodes[0].symbols", ["BTCUSD"]), "nodes[0].symbols[0]", "'BTCUSD' is not a valid value"),
    ("symbols dup", _set("nodes[0].symbols", ["tBTCUSD", "tBTCUSD"]), "nodes[0].symbols", "must not repeat"),
    ("type typo", _set("clients.connections[0].type", "tradng"), "clients.connections[0].type",
     "did you mean 'trading'?"),
    ("count zero", _set("clients.connections[0].count", 0), "clients.connections[0].count", "must be >= 1"),
    ("no connections", _set("clients.connections", []), "clients.connections", "at least 1"),
    ("book param on ticker", _set("clients.connections[1].subscriptions", [{"channel": "ticker", "symbol": "tBTCUSD",
     "len": 25}]), "clients.connections[1].subscriptions[0].len", "unknown key 'len' for channel 'ticker'"),
    ("book len", _set("clients.connections[1].subscriptions", [{"channel": "book", "symbol": "tBTCUSD", "len": 10}]),
     "clients.connections[1].subscriptions[0].len", "10 is not one of: 1, 25, 100, 250"),
    ("arrival typo", _set("clients.workload[0].arrival", "poison"), "clients.workload[0].arrival",
     "did you mean 'poisson'?"),
    ("poisson with on", _set("clients.workload[0].on", "1s"), "clients.workload[0].on",
     "unknown key 'on' for arrival 'poisson'"),
    ("rate no unit", _set("clients.workload[0].rate", 100), "clients.workload[0].rate", "100 has no unit"),
    ("rate bad", _set("clients.workload[0].rate", "100 per s"), "clients.workload[0].rate", "has no time unit"),
    ("bursty missing off", _set("clients.workload[0]", {"type": "trading", "arrival": "bursty", "rate": "1/s",
     "on": "1s"}), "clients.workload[0].off", "required for arrival 'bursty'"),
    ("strategy typo", _set("manager.strategy", "least_latancy"), "manager.strategy", "did you mean 'least_latency'?"),
    ("manager typo", _set("manager.request_timout", "1s"), "manager.request_timout", "did you mean 'request_timeout'"),
    ("bool type", _set("manager.enable_alerts", "yes"), "manager.enable_alerts", "must be true or false"),
    ("rule name typo", _set("manager.alert_rules", {"high_latncy": {}}), "manager.alert_rules.high_latncy",
     "did you mean 'high_latency'?"),
    ("rule key typo", _set("manager.alert_rules", {"high_latency": {"fro": "1s"}}),
     "manager.alert_rules.high_latency.fro", "did you mean 'for'?"),
    ("rule metric", _set("manager.alert_rules", {"high_latency": {"metric": "peak_latncy_ms"}}),
     "manager.alert_rules.high_latency.metric", "did you mean 'peak_latency_ms'?"),
    ("rule threshold", _set("manager.alert_rules", {"high_latency": {"threshold": "fast"}}),
     "manager.alert_rules.high_latency.threshold", "cannot read 'fast' as a duration"),
    ("fault kind typo", _set("faults", [{"kind": "latncy", "at": "1s"}]), "faults[0].kind", "did you mean 'latency'?"),
    ("fault missing at", _set("faults", [{"kind": "reset"}]), "faults[0].at", "missing: this key is required"),
    ("fault param typo", _set("faults", [{}, {}, {"kind": "latency", "at": "1s", "latncy": "1ms"}]),
     "faults[2].latncy", "did you mean 'latency'?"),
    ("fault param missing", _set("faults", [{"kind": "latency", "at": "1s"}]), "faults[0].latency",
     "required for kind 'latency'"),
    ("fault param of other kind", _set("faults", [{"kind": "loss", "at": "1s", "rate": 0.1, "gap": 2}]),
     "faults[0].gap", "unknown key 'gap' for kind 'loss'"),
    ("fault latency no unit", _set("faults", [{"kind": "latency", "at": "1s", "latency": 40}]), "faults[0].latency",
     "40 has no unit"),
    ("probability range", _set("faults", [{"kind": "reset", "at": "1s", "probability": 1.5}]),
     "faults[0].probability", "must be <= 1"),
    ("direction", _set("faults", [{"kind": "reset", "at": "1s", "direction": "sideways"}]), "faults[0].direction",
     "is not one of: up, down, both"),
    ("close code", _set("faults", [{"kind": "close", "at": "1s", "code": 4000}]), "faults[0].code",
     "4000 is not one of: 1000, 1001"),
    ("loss rate range", _set("faults", [{"kind": "loss", "at": "1s", "rate": 2}]), "faults[0].rate", "must be <= 1"),
    ("bandwidth unit", _set("faults", [{"kind": "bandwidth", "at": "1s", "rate": "64KB"}]), "faults[0].rate",
     "has no time unit"),
    ("factor zero", _set("faults", [{"kind": "latency_factor", "at": "1s", "factor": 0}]), "faults[0].factor",
     "must be > 0"),
    ("expect neither", _set("expect", [{"op": ">="}]), "expect[0]", "needs 'metric'"),
    ("expect both", _set("expect", [{"metric": "success_rate", "op": ">=", "value": 1, "alert": "high_latency"}]),
     "expect[0].alert", "either 'metric' or 'alert', not both"),
    ("expect metric typo", _set("expect", [{"metric": "p99", "op": ">=", "value": 1}]), "expect[0].metric",
     "did you mean"),
    ("expect op", _set("expect", [{"metric": "p99_ms", "op": "=>", "value": 1}]), "expect[0].op", "is not one of"),
    ("expect alert typo", _set("expect", [{"alert": "high_latncy", "within": "1s"}]), "expect[0].alert",
     "did you mean 'high_latency'?"),
    ("expect alert unknown key", _set("expect", [{"alert": "high_latency", "witin": "1s"}]), "expect[0].witin",
     "did you mean 'within'?"),
    ("document empty name", _set("name", ""), "name", "must not be empty"),
    ("float where int", _set("nodes[0].queue_limit", 1.5), "nodes[0].queue_limit", "must be an integer"),
    ("null value", _set("nodes[0].host", None), "nodes[0].host", "got null"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "path", "fragment"), [c[1:] for c in STRUCTURAL], ids=[c[0] for c in STRUCTURAL])
def test_structural_errors(mutate: Mutation, path: str, fragment: str) -> None:
    d = base()
    mutate(d)
    assert_problem(d, path, fragment)


# --- semantic errors --------------------------------------------------------------------------------------------

SEMANTIC = [
    ("zero duration", _set("duration", "0s"), "duration", "must be longer than 0"),
    ("warmup too long", _set("warmup", "30s"), "warmup", "must be shorter than the run (30s)"),
    ("duplicate node", _set("nodes[1].id", "node-a"), "nodes[1].id", "duplicate node id 'node-a' (also nodes[0])"),
    ("duplicate port", lambda d: (_set("nodes[0].port", 9000)(d), _set("nodes[1].port", 9000)(d)), "nodes[1].port",
     "port 9000 on 127.0.0.1 is also used by nodes[0]"),
    ("zero mean", _set("nodes[0].service.mean", "0ms"), "nodes[0].service.mean", "must be longer than 0"),
    ("zero heartbeat", _set("nodes[0].heartbeat_interval", "0s"), "nodes[0].heartbeat_interval", "longer than 0"),
    ("zero latency_stale_after", _set("clients.connections[0].latency_stale_after", "0s"),
     "clients.connections[0].latency_stale_after", "must be longer than 0, got '0s'"),
    ("latency_stale_after without unit", _set("clients.connections[1].latency_stale_after", 10),
     "clients.connections[1].latency_stale_after", "10 has no unit"),
    ("unknown node", _set("clients.connections[0].node", "nod-a"), "clients.connections[0].node",
     "unknown node 'nod-a'; did you mean 'node-a'? (known: node-a, node-b)"),
    ("unknown api key", _set("clients.connections[0].api_key", "key-2"), "clients.connections[0].api_key",
     "node 'node-a' has no api key 'key-2'; did you mean 'key-1'?"),
    ("trading without key", _set("clients.connections[0].api_key", _DELETE), "clients.connections[0].api_key",
     "trading connections send the order workload (clients.workload[0]) and must authenticate"),
    ("unknown symbol", _set("clients.connections[1].subscriptions", [{"channel": "ticker", "symbol": "tETHUSD"}]),
     "clients.connections[1].subscriptions[0].symbol", "unknown symbol on node 'node-b': 'tETHUSD'"),
    ("too many connections", _set("manager.max_connections", 2), "clients.connections",
     "3 connections in all, more than manager.max_connections (2)"),
    ("workload without carriers", _set("clients.workload", [{"type": "system", "rate": "1/s"}]),
     "clients.workload[0].type", "no connections of type 'system'"),
    ("zero rate", _set("clients.workload[0].rate", "0/s"), "clients.workload[0].rate", "must be more than 0"),
    ("stop after end", _set("clients.workload[0].stop", "31s"), "clients.workload[0].stop", "after the end of the run"),
    ("start after stop", _set("clients.workload[0].start", "30s"), "clients.workload[0].start", "must start before"),
    ("workload symbol", _set("clients.workload[0].symbol", "tXRPUSD"), "clients.workload[0].symbol",
     "unknown symbol on node 'node-a': 'tXRPUSD'"),
    ("schedule order", _set("clients.workload[0]", {"type": "trading", "arrival": "schedule", "schedule": [
     {"at": "5s", "rate": "1/s"}, {"at": "2s", "rate": "1/s"}]}), "clients.workload[0].schedule[1].at",
     "increasing time order"),
    ("schedule all zero", _set("clients.workload[0]", {"type": "trading", "arrival": "schedule", "schedule": [
     {"at": "0s", "rate": "0/s"}]}), "clients.workload[0].schedule", "nothing would be sent"),
    ("bursty zero on", _set("clients.workload[0]", {"type": "trading", "arrival": "bursty", "rate": "1/s",
     "on": "0s", "off": "1s"}), "clients.workload[0].on", "longer than 0"),
    ("zero interval", _set("manager.health_check_interval", "0ms"), "manager.health_check_interval", "longer than 0"),
    ("fault at end", _set("faults", [{"kind": "reset", "at": "30s"}]), "faults[0].at",
     "'30s' is at or after the end of the run (30s)"),
    ("fault past end", _set("faults", [{"kind": "node_down", "at": "25s", "duration": "10s"}]), "faults[0].duration",
     "the fault would end at 35s, after the end of the run (30s)"),
    ("zero fault duration", _set("faults", [{"kind": "node_down", "at": "5s", "duration": "0s"}]),
     "faults[0].duration", "longer than 0"),
    ("instant with duration", _set("faults", [{"kind": "reset", "at": "5s", "duration": "1s"}]),
     "faults[0].duration", "a 'reset' fault happens once at 'at' and takes no duration"),
    ("fault unknown node", _set("faults", [{"kind": "reset", "at": "5s", "node": "node-c"}]), "faults[0].node",
     "unknown node 'node-c'"),
    ("connection without node", _set("faults", [{"kind": "reset", "at": "5s", "connection": 0}]),
     "faults[0].connection", "needs 'node'"),
    ("connection out of range", _set("faults", [{"kind": "reset", "at": "5s", "node": "node-a", "connection": 2}]),
     "faults[0].connection", "index 2 out of range: node 'node-a' has 2 client connection(s) (0..1)"),
    ("capacity drop not a drop", _set("faults", [{"kind": "capacity_drop", "at": "5s", "node": "node-a",
     "workers": 2}]), "faults[0].workers", "fewer than node 'node-a''s 2 worker(s)"),
    ("capacity drop all nodes", _set("faults", [{"kind": "capacity_drop", "at": "5s", "workers": 1}]),
     "faults[0].workers", "node 'node-b''s 1 worker(s)"),
    ("slicer variation", _set("faults", [{"kind": "slicer", "at": "5s", "average_size": 100, "size_variation": 100}]),
     "faults[0].size_variation", "smaller than average_size"),
    ("slicer zero", _set("faults", [{"kind": "slicer", "at": "5s", "average_size": 0}]), "faults[0].average_size",
     "must be more than 0"),
    ("limit zero", _set("faults", [{"kind": "limit_data", "at": "5s", "bytes": "0KB"}]), "faults[0].bytes",
     "more than 0"),
    ("latency zero", _set("faults", [{"kind": "latency", "at": "5s", "latency": "0ms"}]), "faults[0].latency",
     "longer than 0"),
    ("window zero", _set("faults", [{"kind": "connect_rate_limit", "at": "5s", "max_connects": 1, "window": "0s"}]),
     "faults[0].window", "longer than 0"),
    ("bandwidth zero", _set("faults", [{"kind": "bandwidth", "at": "5s", "rate": "0KB/s"}]), "faults[0].rate",
     "more than 0"),
    ("after_fault range", _set("expect", [{"alert": "high_latency", "within": "5s", "after_fault": 0}]),
     "expect[0].after_fault", "no fault 0: the scenario has 0 fault(s)"),
    ("alert without within", _set("expect", [{"alert": "high_latency"}]), "expect[0].within",
     "needs 'within' (or 'never: true')"),
    ("never with within", _set("expect", [{"alert": "high_latency", "never": True, "within": "1s"}]),
     "expect[0].within", "cannot be combined with never: true"),
    ("expect unknown node", _set("expect", [{"metric": "p50_ms", "op": "<", "value": 5, "node": "node-z"}]),
     "expect[0].node", "unknown node 'node-z'"),
    ("share out of range", _set("expect", [{"metric": "success_rate", "op": ">=", "value": 99}]), "expect[0].value",
     "success_rate is a share between 0 and 1, got 99"),
    ("negative count", _set("expect", [{"metric": "reconnects", "op": "<", "value": -1}]), "expect[0].value",
     "never negative"),
    ("duration for count", _set("expect", [{"metric": "reconnects", "op": "<", "value": "5s"}]), "expect[0].value",
     "must be a number for reconnects"),
    ("overflowing duration", _set("duration", "1e306h"), "duration", "too large"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "path", "fragment"), [c[1:] for c in SEMANTIC], ids=[c[0] for c in SEMANTIC])
def test_semantic_errors(mutate: Mutation, path: str, fragment: str) -> None:
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


def test_error_lines_and_types(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BASE.replace("rate: 100/s", "rate: 100/s, rat: 5"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(f)
    err = info.value
    assert isinstance(err, WsFinalError) and isinstance(err, ValueError)
    assert (err.source, err.path) == (str(f), "clients.workload[0].rat")
    assert str(err) == f"{f}: clients.workload[0].rat: unknown key 'rat' for arrival 'poisson'; did you mean 'rate'?"
    assert err.lines() == [str(err)]
    copy_ = pickle.loads(pickle.dumps(err))
    assert (str(copy_), copy_.problems) == (str(err), err.problems)


# --- documents that are not valid YAML data ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the document is empty"),
        ("- a\n- b\n", "must be a mapping (name, duration, nodes, ...), got a list"),
        ("name: [unclosed\n", "YAML syntax error at line 2, column 1"),
        ("name: a\nname: b\n", "found duplicate key 'name'"),
        ("!!python/object:os.system {}\n", "YAML syntax error"),
        ("a: 1\n---\nb: 2\n", "YAML syntax error"),
        ("1: x\n", "key 1 must be a string"),
        ("name: .nan\n", "name: must be a finite number"),
        ("seed: 1" + "0" * 400 + "\n", "seed: the integer is too large"),
        ("[" * 5000, "nested too deeply"),
    ],
)
def test_bad_yaml(text: str, fragment: str) -> None:
    with pytest.raises(ScenarioError) as info:
        loads_scenario(text, "x.yaml")
    assert fragment in str(info.value)


def test_yaml_12_booleans_and_dates_stay_strings() -> None:
    text = BASE.replace("rate: 100/s}", "arrival: bursty, rate: 100/s, on: 1s, off: 2s}")
    (w,) = loads_scenario(text).workload
    assert (w.on_s, w.off_s) == (1.0, 2.0)
    s = loads_scenario(BASE.replace("name: test", "name: 2024-01-01"))
    assert s.name == "2024-01-01"
    with pytest.raises(ScenarioError, match=r"manager.enable_alerts: must be true or false, got a string \('yes'\)"):
        loads_scenario(BASE + "manager: {enable_alerts: yes}\n")


def test_alias_bomb_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    with pytest.raises(ScenarioError, match="too large"):
        loads_scenario("\n".join(lines))


def test_self_referencing_document_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    d = base()
    d["nodes"] = loop
    with pytest.raises(ScenarioError, match="nested too deeply"):
        parse_scenario(d)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.yaml")
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"name: \xff\xfe")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(binary)


# --- empirical service CSV ----------------------------------------------------------------------------------------


def _empirical(tmp_path: Path, csv_text: str, **service: Any) -> dict[str, Any]:
    (tmp_path / "lat.csv").write_text(csv_text)
    d = base()
    d["nodes"][0]["service"] = {"distribution": "empirical", "csv": "lat.csv", **service}
    return d


def test_empirical_csv_relative_to_file(tmp_path: Path) -> None:
    d = _empirical(tmp_path, "timestamp,value\nt1,2.0\nt2,4\n\n", scale=0.5)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(d))
    service = load_scenario(f).nodes[0].service
    assert service.samples == pytest.approx((0.001, 0.002))
    assert service.params == {"csv": str(tmp_path / "lat.csv"), "column": "value", "unit": "ms", "scale": 0.5}


def test_empirical_column_index_and_unit(tmp_path: Path) -> None:
    d = _empirical(tmp_path, "1500,x\n2500,y\n", column=0, unit="us")
    assert parse_scenario(d, base_dir=tmp_path).nodes[0].service.samples == pytest.approx((0.0015, 0.0025))
    d = _empirical(tmp_path, "lat\n3\n", column=0, unit="s")  # a header row is skipped
    assert parse_scenario(d, base_dir=tmp_path).nodes[0].service.samples == (3.0,)


def test_empirical_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    # A BOM once glued itself to the first cell: the header 'value' was not found, and with a column index the
    # first sample was taken for a header row and silently dropped.
    (tmp_path / "named.csv").write_bytes(b"\xef\xbb\xbfvalue\n3\n")
    (tmp_path / "indexed.csv").write_bytes(b"\xef\xbb\xbf1500\n2500\n")
    d = base()
    d["nodes"][0]["service"] = {"distribution": "empirical", "csv": "named.csv", "unit": "s"}
    assert parse_scenario(d, base_dir=tmp_path).nodes[0].service.samples == (3.0,)
    d["nodes"][0]["service"] = {"distribution": "empirical", "csv": "indexed.csv", "column": 0, "unit": "us"}
    assert parse_scenario(d, base_dir=tmp_path).nodes[0].service.samples == pytest.approx((0.0015, 0.0025))


@pytest.mark.parametrize(
    ("csv_text", "service", "path", "fragment"),
    [
        ("value\n1\n", {"csv": "nope.csv"}, "nodes[0].service.csv", "is not a file"),
        ("value\n1\n", {"csv": "."}, "nodes[0].service.csv", "is not a file"),
        ("value\n1\n", {"csv": "a\0b"}, "nodes[0].service.csv", "is not a file"),
        ("value\n1e308\n", {"scale": 1e6}, "nodes[0].service.csv", "'1e308' is not a non-negative number"),
        ("latency\n1\n", {}, "nodes[0].service.column", "no column 'value' in the header"),
        ("value\n1\nabc\n", {}, "nodes[0].service.csv", "line 3: 'abc' is not a non-negative number"),
        ("value\n-1\n", {}, "nodes[0].service.csv", "line 2: '-1' is not a non-negative number"),
        ("value\n", {}, "nodes[0].service.csv", "no samples"),
        ("1,2\n3\n", {"column": 1}, "nodes[0].service.column", "line 2: no column 1"),
    ],
)
def test_empirical_errors(tmp_path: Path, csv_text: str, service: dict[str, Any], path: str, fragment: str) -> None:
    d = _empirical(tmp_path, csv_text, **service)
    assert_problem(d, path, fragment, base_dir=tmp_path)


# --- bundled scenarios ---------------------------------------------------------------------------------------------


def test_at_least_eight_bundled_scenarios() -> None:
    names = {p.stem for p in BUNDLED}
    required = {"steady-state", "latency-spike", "flapping-node", "maintenance-window", "error-burst",
                "thundering-herd", "half-open", "slow-link", "mixed-chaos"}  # fmt: skip
    assert required <= names


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_bundled_scenario_loads(path: Path) -> None:
    s = load_scenario(path)
    assert s.name == path.stem and len(s.description) > 80
    # The demo is short on purpose: `make demo` runs it 70 times in about a minute.
    shortest = 10 if s.name == "demo" else 20
    assert 2 <= len(s.nodes) <= 4 and shortest <= s.duration_s <= 60
    # moderate utilisation: open-loop rate over the nodes' nominal capacity
    capacity = sum(n.service.workers / float(n.service.params.get("mean") or n.service.params.get("median")
                   or n.service.params["value"]) for n in s.nodes)  # fmt: skip
    peak = sum(max([w.rate_per_s or 0.0, *(r for _, r in w.schedule)]) for w in s.workload)
    assert 0.25 <= peak / capacity <= 0.75


def test_thundering_herd_hits_every_node() -> None:
    s = load_scenario(ROOT / "scenarios" / "thundering-herd.yaml")
    kinds = {f.kind: f for f in s.faults}
    assert kinds["close"].node is None and kinds["close"].connection is None
    assert kinds["connect_rate_limit"].params == {"max_connects": 2, "window": 1.0}


# --- schema and CLI ------------------------------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_format_path() -> None:
    assert format_path(["faults", 2, "latency"]) == "faults[2].latency"
    assert format_path([]) == ""
    assert format_path(["nodes", 0, "api_keys", "a.b"]) == 'nodes[0].api_keys["a.b"]'
    assert format_path(["x y"]) == '["x y"]'


def test_odd_keys_quoted_in_paths() -> None:
    d = base()
    d["nodes"][0]["api_keys"] = {"my.key": 5}
    assert_problem(d, 'nodes[0].api_keys["my.key"]', "must be a string, got an integer (5)")


def test_cli_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scenario", "check", *map(str, BUNDLED)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(BUNDLED) and all(line.startswith("OK ") for line in out)


def test_cli_check_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("duration: 30s", "duration: 30").replace("count: 2", "count: 2, nod: x"))
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    assert cli_main(["scenario", "check", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"OK {good}")
    assert lines[1:] == [
        f"{bad}: duration: 30 has no unit; write e.g. '250ms', '2s' or '1.5m'",
        f"{bad}: clients.connections[0].nod: unknown key 'nod'; did you mean 'node'?",
    ]
    assert "1 of 2 file(s) invalid" in captured.err
    assert cli_main(["scenario", "check", "-q", str(good)]) == 0
    assert capsys.readouterr().out == ""


def test_cli_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scenario", "check", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().out


def test_cli_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scenario", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMA


def test_cli_scenario_without_action(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scenario"]) == 2
    assert "check" in capsys.readouterr().err


# --- fuzzing ---------------------------------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**400), 1e308, 2**63, 0, -1, 1]),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["1s", "0s", "250ms", "800/s", "64KB", "1MB/s", "node-a", "trading", "latency", "-1s", "1e400s"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _check(doc: Any) -> None:
    try:
        result = parse_scenario(doc)
    except ScenarioError as err:
        assert err.problems and all(isinstance(p, str) and isinstance(r, str) and r for p, r in err.problems)
        return
    assert isinstance(result, Scenario)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json)
def test_fuzz_random_documents(doc: Any) -> None:
    _check(doc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_random_yaml_text(text: str) -> None:
    try:
        loads_scenario(text)
    except ScenarioError:
        pass


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _empirical_base() -> dict[str, Any]:
    d = base()
    d["nodes"][0]["service"] = {"distribution": "empirical", "csv": "no-such.csv", "column": 0, "unit": "us"}
    return d


_BUNDLED_DOCS = [yaml.safe_load(p.read_text()) for p in BUNDLED] + [_empirical_base()]


@st.composite
def _mutated(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(_BUNDLED_DOCS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = draw(st.sampled_from(["drop", "replace", "unknown_key", "swap_type", "duplicate"]))
        if action == "drop":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(_scalars)
        elif action == "unknown_key" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(_scalars)
        elif action == "swap_type":
            old = parent[key]
            parent[key] = [old] if not isinstance(old, list) else {"x": old}
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_fuzz_mutated_bundled_scenarios(doc: Any) -> None:
    _check(doc)


def test_docs_cover_every_fault_kind_and_bundled_scenario() -> None:
    text = (ROOT / "docs" / "scenarios.md").read_text()
    for kind in FAULT_KINDS:
        assert f"| {kind} " in text or f"{kind}, " in text or f", {kind} |" in text, kind
    for path in BUNDLED:
        assert f"| {path.stem} |" in text, path.stem
