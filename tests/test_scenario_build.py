"""Semantic checks of a scenario (simulator.scenario_build): what the schema cannot say, with key paths, and the
empirical service-time CSV files a scenario names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from _scenario_helpers import DELETE, Mutation, assert_problem, base, put

from simulator.scenario import load_scenario, parse_scenario

# --- semantic errors ------------------------------------------------------------------------------------------------

SEMANTIC = [
    ("zero duration", put("duration", "0s"), "duration", "must be longer than 0"),
    ("warmup too long", put("warmup", "30s"), "warmup", "must be shorter than the run (30s)"),
    ("duplicate node", put("nodes[1].id", "node-a"), "nodes[1].id", "duplicate node id 'node-a' (also nodes[0])"),
    ("duplicate port", lambda d: (put("nodes[0].port", 9000)(d), put("nodes[1].port", 9000)(d)), "nodes[1].port",
     "port 9000 on 127.0.0.1 is also used by nodes[0]"),
    ("zero mean", put("nodes[0].service.mean", "0ms"), "nodes[0].service.mean", "must be longer than 0"),
    ("zero heartbeat", put("nodes[0].heartbeat_interval", "0s"), "nodes[0].heartbeat_interval", "longer than 0"),
    ("zero latency_stale_after", put("clients.connections[0].latency_stale_after", "0s"),
     "clients.connections[0].latency_stale_after", "must be longer than 0, got '0s'"),
    ("latency_stale_after without unit", put("clients.connections[1].latency_stale_after", 10),
     "clients.connections[1].latency_stale_after", "10 has no unit"),
    ("unknown node", put("clients.connections[0].node", "nod-a"), "clients.connections[0].node",
     "unknown node 'nod-a'; did you mean 'node-a'? (known: node-a, node-b)"),
    ("unknown api key", put("clients.connections[0].api_key", "key-2"), "clients.connections[0].api_key",
     "node 'node-a' has no api key 'key-2'; did you mean 'key-1'?"),
    ("trading without key", put("clients.connections[0].api_key", DELETE), "clients.connections[0].api_key",
     "trading connections send the order workload (clients.workload[0]) and must authenticate"),
    ("unknown symbol", put("clients.connections[1].subscriptions", [{"channel": "ticker", "symbol": "tETHUSD"}]),
     "clients.connections[1].subscriptions[0].symbol", "unknown symbol on node 'node-b': 'tETHUSD'"),
    ("too many connections", put("manager.max_connections", 2), "clients.connections",
     "3 connections in all, more than manager.max_connections (2)"),
    ("workload without carriers", put("clients.workload", [{"type": "system", "rate": "1/s"}]),
     "clients.workload[0].type", "no connections of type 'system'"),
    ("zero rate", put("clients.workload[0].rate", "0/s"), "clients.workload[0].rate", "must be more than 0"),
    ("stop after end", put("clients.workload[0].stop", "31s"), "clients.workload[0].stop", "after the end of the run"),
    ("start after stop", put("clients.workload[0].start", "30s"), "clients.workload[0].start", "must start before"),
    ("workload symbol", put("clients.workload[0].symbol", "tXRPUSD"), "clients.workload[0].symbol",
     "unknown symbol on node 'node-a': 'tXRPUSD'"),
    ("schedule order", put("clients.workload[0]", {"type": "trading", "arrival": "schedule", "schedule": [
     {"at": "5s", "rate": "1/s"}, {"at": "2s", "rate": "1/s"}]}), "clients.workload[0].schedule[1].at",
     "increasing time order"),
    ("schedule all zero", put("clients.workload[0]", {"type": "trading", "arrival": "schedule", "schedule": [
     {"at": "0s", "rate": "0/s"}]}), "clients.workload[0].schedule", "nothing would be sent"),
    ("bursty zero on", put("clients.workload[0]", {"type": "trading", "arrival": "bursty", "rate": "1/s",
     "on": "0s", "off": "1s"}), "clients.workload[0].on", "longer than 0"),
    ("zero interval", put("manager.health_check_interval", "0ms"), "manager.health_check_interval", "longer than 0"),
    ("fault at end", put("faults", [{"kind": "reset", "at": "30s"}]), "faults[0].at",
     "'30s' is at or after the end of the run (30s)"),
    ("fault past end", put("faults", [{"kind": "node_down", "at": "25s", "duration": "10s"}]), "faults[0].duration",
     "the fault would end at 35s, after the end of the run (30s)"),
    ("zero fault duration", put("faults", [{"kind": "node_down", "at": "5s", "duration": "0s"}]),
     "faults[0].duration", "longer than 0"),
    ("instant with duration", put("faults", [{"kind": "reset", "at": "5s", "duration": "1s"}]),
     "faults[0].duration", "a 'reset' fault happens once at 'at' and takes no duration"),
    ("fault unknown node", put("faults", [{"kind": "reset", "at": "5s", "node": "node-c"}]), "faults[0].node",
     "unknown node 'node-c'"),
    ("connection without node", put("faults", [{"kind": "reset", "at": "5s", "connection": 0}]),
     "faults[0].connection", "needs 'node'"),
    ("connection out of range", put("faults", [{"kind": "reset", "at": "5s", "node": "node-a", "connection": 2}]),
     "faults[0].connection", "index 2 out of range: node 'node-a' has 2 client connection(s) (0..1)"),
    ("capacity drop not a drop", put("faults", [{"kind": "capacity_drop", "at": "5s", "node": "node-a",
     "workers": 2}]), "faults[0].workers", "fewer than node 'node-a''s 2 worker(s)"),
    ("capacity drop all nodes", put("faults", [{"kind": "capacity_drop", "at": "5s", "workers": 1}]),
     "faults[0].workers", "node 'node-b''s 1 worker(s)"),
    ("slicer variation", put("faults", [{"kind": "slicer", "at": "5s", "average_size": 100, "size_variation": 100}]),
     "faults[0].size_variation", "smaller than average_size"),
    ("slicer zero", put("faults", [{"kind": "slicer", "at": "5s", "average_size": 0}]), "faults[0].average_size",
     "must be more than 0"),
    ("limit zero", put("faults", [{"kind": "limit_data", "at": "5s", "bytes": "0KB"}]), "faults[0].bytes",
     "more than 0"),
    ("latency zero", put("faults", [{"kind": "latency", "at": "5s", "latency": "0ms"}]), "faults[0].latency",
     "longer than 0"),
    ("window zero", put("faults", [{"kind": "connect_rate_limit", "at": "5s", "max_connects": 1, "window": "0s"}]),
     "faults[0].window", "longer than 0"),
    ("bandwidth zero", put("faults", [{"kind": "bandwidth", "at": "5s", "rate": "0KB/s"}]), "faults[0].rate",
     "more than 0"),
    ("after_fault range", put("expect", [{"alert": "high_latency", "within": "5s", "after_fault": 0}]),
     "expect[0].after_fault", "no fault 0: the scenario has 0 fault(s)"),
    ("alert without within", put("expect", [{"alert": "high_latency"}]), "expect[0].within",
     "needs 'within' (or 'never: true')"),
    ("never with within", put("expect", [{"alert": "high_latency", "never": True, "within": "1s"}]),
     "expect[0].within", "cannot be combined with never: true"),
    ("expect unknown node", put("expect", [{"metric": "p50_ms", "op": "<", "value": 5, "node": "node-z"}]),
     "expect[0].node", "unknown node 'node-z'"),
    ("share out of range", put("expect", [{"metric": "success_rate", "op": ">=", "value": 99}]), "expect[0].value",
     "success_rate is a share between 0 and 1, got 99"),
    ("negative count", put("expect", [{"metric": "reconnects", "op": "<", "value": -1}]), "expect[0].value",
     "never negative"),
    ("duration for count", put("expect", [{"metric": "reconnects", "op": "<", "value": "5s"}]), "expect[0].value",
     "must be a number for reconnects"),
    ("overflowing duration", put("duration", "1e306h"), "duration", "too large"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "path", "fragment"), [c[1:] for c in SEMANTIC], ids=[c[0] for c in SEMANTIC])
def test_semantic_errors(mutate: Mutation, path: str, fragment: str) -> None:
    d = base()
    mutate(d)
    assert_problem(d, path, fragment)


# --- empirical service CSV ------------------------------------------------------------------------------------------


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
