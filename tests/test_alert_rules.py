"""The pure alert rule state machine, matchers, silences, inhibition and the rule inputs (no event loop)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfinal.alert_config import check_metric_params
from wsfinal.alert_rules import (
    TRANSITIONS,
    AlertState,
    InhibitRule,
    Matcher,
    MetricSources,
    Observation,
    RuleSeries,
    SeriesState,
    Silence,
    condition_of,
    parse_matchers,
    step,
)
from wsfinal.analytics import WebSocketAnalytics
from wsfinal.config import ConnectionType
from wsfinal.exceptions import ConfigurationError
from wsfinal.states import ConnectionState

A = AlertState


def feed(rs: RuleSeries, seq: list[tuple[bool, float]]) -> list[tuple[AlertState, float]]:
    out = []
    for cond, t in seq:
        tr = rs.feed(cond, t)
        if tr is not None:
            out.append((tr.new, t))
    return out


def test_for_zero_fires_on_first_true_evaluation() -> None:
    rs = RuleSeries(for_s=0)
    assert feed(rs, [(False, 0), (True, 1)]) == [(A.FIRING, 1)]
    assert rs.state.fired_at == 1 and rs.state.active_at == 1


def test_pending_then_firing_exactly_when_for_has_elapsed() -> None:
    rs = RuleSeries(for_s=10)
    got = feed(rs, [(True, 0), (True, 5), (True, 9.999), (True, 10), (True, 11)])
    assert got == [(A.PENDING, 0), (A.FIRING, 10)]
    assert rs.state.active_at == 0 and rs.state.fired_at == 10


def test_a_false_evaluation_while_pending_restarts_the_for_clock() -> None:
    rs = RuleSeries(for_s=10)
    got = feed(rs, [(True, 0), (True, 8), (False, 9), (True, 12), (True, 21), (True, 22)])
    assert got == [(A.PENDING, 0), (A.INACTIVE, 9), (A.PENDING, 12), (A.FIRING, 22)]


def test_resolved_then_inactive_and_a_new_episode() -> None:
    rs = RuleSeries(for_s=0)
    got = feed(rs, [(True, 0), (False, 1), (False, 2), (True, 3)])
    assert got == [(A.FIRING, 0), (A.RESOLVED, 1), (A.INACTIVE, 2), (A.FIRING, 3)]
    rs2 = RuleSeries(for_s=5)
    assert feed(rs2, [(True, 0), (True, 5), (False, 6), (True, 7), (True, 12)]) == [
        (A.PENDING, 0),
        (A.FIRING, 5),
        (A.RESOLVED, 6),
        (A.PENDING, 7),
        (A.FIRING, 12),
    ]


def test_keep_firing_for_holds_then_resolves_and_a_true_resets_it() -> None:
    rs = RuleSeries(for_s=0, keep_firing_for_s=10)
    got = feed(rs, [(True, 0), (False, 1), (False, 10.9), (True, 11), (False, 12), (False, 21.5), (False, 22)])
    # false since 1: kept until 11; true at 11 clears it; false since 12: kept while < 22
    assert got == [(A.FIRING, 0), (A.RESOLVED, 22)]
    assert rs.state.resolved_at == 22


def test_keep_firing_does_not_apply_to_pending() -> None:
    rs = RuleSeries(for_s=10, keep_firing_for_s=100)
    assert feed(rs, [(True, 0), (False, 1)]) == [(A.PENDING, 0), (A.INACTIVE, 1)]


def test_old_evaluations_are_ignored() -> None:
    rs = RuleSeries(for_s=0)
    rs.feed(True, 10)
    assert rs.feed(False, 5) is None
    assert rs.state.state is A.FIRING


def test_transition_table_is_complete_for_reachable_inputs() -> None:
    for state in AlertState:
        for obs in (Observation.TRUE_WAITING, Observation.TRUE_HELD, Observation.FALSE):
            assert (state, obs) in TRANSITIONS
    kept = [k for k in TRANSITIONS if k[1] is Observation.FALSE_KEPT]
    assert kept == [(A.FIRING, Observation.FALSE_KEPT)]


@settings(max_examples=200, deadline=None)
@given(
    for_s=st.sampled_from([0.0, 1.0, 5.0, 12.5]),
    keep_s=st.sampled_from([0.0, 3.0, 10.0]),
    seq=st.lists(st.tuples(st.booleans(), st.floats(0.0, 6.0)), max_size=60),
)
def test_property_firing_needs_for_of_true_and_resolve_needs_keep_of_false(
    for_s: float, keep_s: float, seq: list[tuple[bool, float]]
) -> None:
    rs = RuleSeries(for_s=for_s, keep_firing_for_s=keep_s)
    t = 0.0
    true_since: float | None = None
    false_since: float | None = None
    for cond, dt in seq:
        t += dt
        before = rs.state.state
        tr = rs.feed(cond, t)
        if cond:
            true_since = t if true_since is None else true_since
            false_since = None
        else:
            true_since = None
            false_since = t if false_since is None else false_since
        if tr is not None and tr.new is A.FIRING:
            assert cond and true_since is not None and t - true_since >= for_s
        if tr is not None and tr.new is A.RESOLVED:
            assert before is A.FIRING and not cond and false_since is not None and t - false_since >= keep_s
        if rs.state.state is A.FIRING and not cond:
            assert false_since is not None and t - false_since < keep_s
        if rs.state.state is A.PENDING:
            assert cond and true_since is not None and t - true_since < for_s


def test_step_reports_value_and_series_bookkeeping() -> None:
    s = SeriesState()
    tr = step(s, True, 3.0, for_s=0, value=42.0)
    assert tr is not None and tr.value == 42.0 and s.value == 42.0 and s.last_eval == 3.0


def test_condition_of_treats_nan_and_none_as_no_data() -> None:
    assert condition_of(5.0, ">", 1) and not condition_of(math.nan, ">", 1) and not condition_of(None, "<", 1)
    assert condition_of(True, ">", 100) and not condition_of(False, "<", 100)
    assert condition_of(0.5, "<=", 0.5) and condition_of(1, "!=", 2) and condition_of(2, "==", 2)


# --- matchers, silences, inhibition ----------------------------------------------------------------------------


def test_matchers_ops_anchoring_and_parsing() -> None:
    labels = {"node": "node-a", "alertname": "high_latency"}
    assert Matcher("node", "=", "node-a").matches(labels)
    assert Matcher("node", "!=", "node-b").matches(labels)
    assert Matcher("node", "=~", "node-.*").matches(labels)
    assert not Matcher("node", "=~", "node").matches(labels)  # fully anchored
    assert Matcher("node", "!~", "x.*").matches(labels)
    assert Matcher("missing", "=", "").matches(labels)
    assert Matcher.parse('node=~"node-[ab]"') == Matcher("node", "=~", "node-[ab]")
    assert Matcher.parse("node!=x") == Matcher("node", "!=", "x")
    assert parse_matchers({"a": "1"}) == (Matcher("a", "=", "1"),)
    assert parse_matchers([("a", "1"), ("b", "!=", "2"), 'c="3"'])[2] == Matcher("c", "=", "3")


def test_bad_matchers_name_what_is_wrong() -> None:
    with pytest.raises(ConfigurationError, match="bad regex"):
        Matcher("node", "=~", "(")
    with pytest.raises(ConfigurationError, match="op must be"):
        Matcher("node", "~", "x")
    with pytest.raises(ConfigurationError, match="matchers\\[1\\]"):
        parse_matchers(["a=1", 7])
    with pytest.raises(ConfigurationError, match="expected"):
        Matcher.parse("nothing here")


def test_silence_window_and_inhibit_equal_labels() -> None:
    s = Silence("s1", (Matcher("node", "=", "a"),), starts_at=10, ends_at=20)
    assert not s.mutes({"node": "a"}, 9.9) and s.mutes({"node": "a"}, 10) and not s.mutes({"node": "a"}, 20)
    assert not s.mutes({"node": "b"}, 15)
    rule = InhibitRule((Matcher("t", "=", "down"),), (Matcher("t", "=", "fail"),), ("node",))
    assert rule.inhibits({"t": "down", "node": "a"}, {"t": "fail", "node": "a"})
    assert not rule.inhibits({"t": "down", "node": "a"}, {"t": "fail", "node": "b"})
    assert not rule.inhibits({"t": "down", "node": "a"}, {"t": "other", "node": "a"})
    assert not rule.inhibits({"t": "down", "node": "a"}, {"t": "fail"})


# --- rule inputs ------------------------------------------------------------------------------------------------


@dataclass
class FakeRecord:
    connection_id: str
    state: ConnectionState = ConnectionState.CONNECTED
    connection_type: str = "trading"
    cluster_node: str | None = "node-a"
    endpoint: str = "127.0.0.1:9001"
    requests_ok: int = 0
    requests_failed: int = 0
    reconnects: int = 0
    latency_ewma_ms: float = math.nan
    health_score: float = 100.0

    def peak_ewma_at(self, now: float) -> float:
        return self.latency_ewma_ms


@dataclass
class FakeStore:
    records: list[FakeRecord] = field(default_factory=list)

    def all(self) -> list[FakeRecord]:
        return self.records


def test_error_rate_and_reconnects_are_windowed_deltas() -> None:
    rec = FakeRecord("c1")
    src = MetricSources(FakeStore([rec]))
    src.max_window_s = 100
    for t in range(0, 61, 10):
        rec.requests_ok += 90
        rec.requests_failed += 10 if t >= 30 else 0
        src.tick(float(t))
    (_, labels, rate, extra) = src.samples("error_rate", {"window_s": 20, "min_requests": 10}, 60.0)[0]
    assert labels["node"] == "node-a" and labels["connection_id"] == "c1"
    assert rate == pytest.approx(20 / 200) and extra["requests"] == 200
    # not enough requests in the window: no data
    assert math.isnan(src.samples("error_rate", {"window_s": 20, "min_requests": 1000}, 60.0)[0][2])
    rec.reconnects = 3
    src.tick(70.0)
    assert src.samples("reconnects", {"window_s": 5}, 70.0)[0][2] == 3
    # a removed connection's history is dropped
    src.store.records.clear()
    src.tick(80.0)
    assert src.samples("reconnects", {}, 80.0) == [] and not src._history


def test_connection_failed_skips_closed_and_flags_failing_states() -> None:
    recs = [
        FakeRecord("ok"),
        FakeRecord("failed", state=ConnectionState.FAILED),
        FakeRecord("recon", state=ConnectionState.RECONNECTING),
        FakeRecord("closed", state=ConnectionState.CLOSED),
    ]
    src = MetricSources(FakeStore(recs))
    src.tick(0.0)
    got = {labels["connection_id"]: v for _, labels, v, _ in src.samples("connection_failed", {}, 0.0)}
    assert got == {"ok": 0.0, "failed": 1.0, "recon": 1.0}


def test_latency_quantile_reads_analytics_window_with_a_minimum_sample_count() -> None:
    recs = [FakeRecord("busy", latency_ewma_ms=4.0), FakeRecord("starved", latency_ewma_ms=4.0), FakeRecord("idle")]
    analytics = WebSocketAnalytics(clock=lambda: 0.0)
    for i in range(200):  # busy: fast, with one 900 ms outlier
        analytics.record_latency("busy", ConnectionType.TRADING, 900.0 if i == 100 else 5.0, now=10.0 + i * 0.01)
    for i, x in enumerate([30.0, 40.0, 50.0, 60.0, 70.0]):  # starved: five slow answers
        analytics.record_latency("starved", ConnectionType.TRADING, x, now=11.0 + i * 0.01)
    analytics.record_latency("idle", ConnectionType.TRADING, 800.0, now=11.5)  # one slow ping
    src = MetricSources(FakeStore(recs), analytics=analytics)
    src.tick(12.0)
    params = {"quantile": 0.9, "window_s": 10.0, "min_samples": 5}
    got = {
        labels["connection_id"]: (v, extra) for _, labels, v, extra in src.samples("latency_quantile_ms", params, 12.0)
    }
    assert got["busy"][0] == pytest.approx(5.0, rel=0.02)  # one outlier does not move the p90
    assert got["starved"][0] == pytest.approx(60.0, rel=0.02)
    assert math.isnan(got["idle"][0]) and got["idle"][1]["samples"] == 1  # below min_samples: no data
    assert got["starved"][1]["stat"] == "p90 of 5 samples over the last 10s"
    # without analytics the series falls back to the record's latency EWMA
    plain = MetricSources(FakeStore(recs))
    plain.tick(12.0)
    assert [v for *_, v, _ in plain.samples("latency_quantile_ms", params, 12.0)][:2] == [4.0, 4.0]


@pytest.mark.parametrize(
    ("params", "key"),
    [({"quantile": 1.5}, "quantile"), ({"min_samples": 0}, "min_samples"), ({"window_s": -1}, "window_s")],
)
def test_latency_quantile_params_are_checked(params: dict[str, float], key: str) -> None:
    with pytest.raises(ConfigurationError, match=f"rules.x.params.{key}"):
        check_metric_params("latency_quantile_ms", params, "rules.x.params")
    check_metric_params("latency_ms", params, "rules.x.params")  # other metrics ignore them


def test_latency_ratio_against_a_slow_baseline() -> None:
    recs = [FakeRecord("a", latency_ewma_ms=10.0), FakeRecord("b", latency_ewma_ms=10.0)]
    src = MetricSources(FakeStore(recs))
    src.tick(0.0)
    assert src.samples("latency_ratio", {"baseline_tau_s": 600}, 0.0)[0][2] == pytest.approx(1.0)
    for r in recs:
        r.latency_ewma_ms = 50.0
    src.tick(10.0)
    ratio = src.samples("latency_ratio", {"baseline_tau_s": 600}, 10.0)[0][2]
    assert 4.0 < ratio < 5.0


def test_system_health_and_capacity_are_single_series() -> None:
    recs = [FakeRecord("a", health_score=40.0), FakeRecord("b", health_score=80.0)]
    src = MetricSources(FakeStore(recs))
    src.tick(0.0)
    assert src.samples("system_health", {}, 0.0)[0][2] == pytest.approx(60.0)
    assert src.samples("capacity_ratio", {"max_connections": 4}, 0.0)[0][2] == pytest.approx(0.5)
    assert src.samples("node_down", {}, 0.0) == []  # this store has no list_nodes


class FakeAnalytics:
    def __init__(self, anomalies: list[object]) -> None:
        self.anomalies = anomalies
        self.calls: list[tuple[str, float]] = []

    def get_anomalies(self, severity: str = "high", hours: float = 1) -> list[object]:
        self.calls.append((severity, hours))
        return self.anomalies

    def get_connection_health_score(self, connection_id: str) -> float:
        return 10.0


@dataclass
class FakeAnomaly:
    anomaly_type: str
    description: str
    time: float
    connection_id: str | None = None
    connection_type: str | None = None


def test_anomalies_grouped_by_type_and_subject_capacity_apart() -> None:
    an = FakeAnalytics(
        [
            FakeAnomaly("latency_spike", "latency 10x", 95.0, connection_id="c1"),
            FakeAnomaly("latency_spike", "latency 12x", 99.0, connection_id="c1"),
            FakeAnomaly("error_burst", "errors", 50.0, connection_type="trading"),  # outside the window
            FakeAnomaly("capacity_warning", "load will cross 90% in 5 min", 99.0),
        ]
    )
    src = MetricSources(FakeStore([FakeRecord("c1")]), analytics=an)
    src.tick(100.0)
    got = src.samples("anomalies", {"window_s": 30, "min_severity": "medium"}, 100.0)
    assert [(s[1], s[2], s[3]["description"]) for s in got] == [
        ({"anomaly_type": "latency_spike", "subject": "c1"}, 2.0, "latency 12x")
    ]
    assert an.calls[-1] == ("medium", 30 / 3600)
    cap = src.samples("capacity_anomalies", {"window_s": 30}, 100.0)
    assert cap[0][1] == {"anomaly_type": "capacity_warning", "subject": "system"}
    # analytics' health score wins over the record's
    assert src.samples("health_score", {}, 100.0)[0][2] == 10.0


class FakeBalancer:
    def __init__(self) -> None:
        self.panic_selections: dict[str, int] = {"trading": 0}
        self.perf = {"least_latency": {"selections": 50.0, "requests": 50.0, "success_rate": 0.5}}

    def get_strategy_performance(self) -> dict[str, dict[str, float]]:
        return self.perf


def test_balancer_success_rate_and_panic_deltas() -> None:
    bal = FakeBalancer()
    src = MetricSources(balancer=bal)
    src.tick(0.0)
    bal.panic_selections["trading"] = 7
    src.tick(10.0)
    assert src.samples("balancer_success_rate", {"min_selections": 20}, 10.0)[0][1:3] == (
        {"strategy": "least_latency"},
        0.5,
    )
    assert math.isnan(src.samples("balancer_success_rate", {"min_selections": 100}, 10.0)[0][2])
    assert src.samples("balancer_panics", {"window_s": 60}, 10.0)[0][2] == 7
