"""Tests of the scenario loader (simulator.scenario): defaults, conversions, errors and their types, YAML handling,
the bundled scenarios, and a hypothesis fuzz of the loader (valid Scenario or ScenarioError, nothing else).

Structural errors (the schema) are tested in test_scenario_schema.py, semantic ones in test_scenario_build.py, the
``wsfinal scenario`` commands in test_scenario_commands.py."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml
from _scenario_helpers import BASE, BUNDLED, ROOT, base
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.scenario import (
    FAULT_KINDS,
    INSTANT_FAULT_KINDS,
    Scenario,
    ScenarioError,
    load_scenario,
    loads_scenario,
    parse_scenario,
)
from wsfinal.alerts import resolve_rules
from wsfinal.config import ConnectionConfig, ConnectionType, LoadBalancingStrategy
from wsfinal.exceptions import WsFinalError

# --- defaults and conversions ---------------------------------------------------------------------------------------


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


# --- errors ---------------------------------------------------------------------------------------------------------


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


# --- documents that are not valid YAML data -------------------------------------------------------------------------


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


# --- bundled scenarios ----------------------------------------------------------------------------------------------


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


# --- fuzzing --------------------------------------------------------------------------------------------------------

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
