"""The alert manager: default rules, routing (grouping, repeat, silences, inhibition), the asyncio shell, and a
hypothesis state machine over random metric streams and clock advances checking the alerting invariants."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from wsfinal.alert_rules import Matcher
from wsfinal.alerts import (
    ALERT_SEVERITIES,
    DEFAULT_RULES,
    AlertEvent,
    AlertRule,
    AlertSeverity,
    AlertType,
    RouteConfig,
    WebSocketAlertManager,
    fingerprint_of,
    resolve_rules,
)
from wsfinal.config import ConnectionConfig, ConnectionType
from wsfinal.exceptions import ConfigurationError
from wsfinal.notifications import NotificationChannel, RecordingNotifier
from wsfinal.states import ConnectionState
from wsfinal.store import InMemoryConnectionStore

FAST = RouteConfig(group_wait_s=0, group_interval_s=1, repeat_interval_s=100)


def manual_rule(name: str, kind: AlertType, **kw: Any) -> AlertRule:
    return AlertRule(name, kind, None, **kw)


# --- rules and their defaults ------------------------------------------------------------------------------------


def test_every_alert_type_has_a_default_rule_and_values_are_lowercase() -> None:
    assert {r.alert_type for r in DEFAULT_RULES} == set(AlertType)
    assert AlertType.HIGH_LATENCY.value == "high_latency"
    assert [s.value for s in ALERT_SEVERITIES] == ["info", "warning", "high", "critical"]


def test_one_severity_enum_under_both_public_names() -> None:
    import wsfinal
    from wsfinal.anomaly import ANOMALY_SEVERITIES, Severity

    assert AlertSeverity is Severity is wsfinal.AlertSeverity is wsfinal.Severity
    # every member either module used to have still exists, with its value and its rank on its own scale
    assert [s.rank for s in ALERT_SEVERITIES] == [0, 1, 2, 3] == [s.rank for s in ANOMALY_SEVERITIES]
    assert [s.value for s in ANOMALY_SEVERITIES] == ["low", "medium", "high", "critical"]
    assert AlertSeverity.WARNING.rank == Severity.MEDIUM.rank and AlertSeverity.INFO.rank == Severity.LOW.rank
    assert AlertSeverity("critical") is Severity.CRITICAL and AlertSeverity.HIGH == "high"
    assert AlertSeverity.parse(" Warning ") is AlertSeverity.WARNING
    # an alert rule takes only the alert levels; summaries count exactly those
    assert AlertRule("r", AlertType.HIGH_LATENCY, None, severity="critical").severity is Severity.CRITICAL
    with pytest.raises(ConfigurationError, match="info, warning, high or critical"):
        AlertRule("r", AlertType.HIGH_LATENCY, None, severity="medium")
    summary = WebSocketAlertManager(channels=[]).get_alert_summary()
    assert list(summary["by_severity"]) == ["info", "warning", "high", "critical"]


def test_rule_definitions_moved_to_alert_config_keep_their_wsfinal_alerts_import_path() -> None:
    import wsfinal.alert_config
    import wsfinal.alerts

    for name in wsfinal.alert_config.__all__:
        if name != "check_metric_params":
            assert getattr(wsfinal.alerts, name) is getattr(wsfinal.alert_config, name), name


def test_overrides_by_name_add_and_remove_rules() -> None:
    rules = {r.name: r for r in resolve_rules(
        {
            "high_latency": {"threshold": 40, "for": 2, "severity": "critical"},
            "high_error_rate": {"params": {"window_s": 10}},
            "system_health": None,
            "capacity_warning": {"enabled": False},
            "slow_peak": {"alert_type": "high_latency", "metric": "peak_latency_ms", "threshold": 80},
        }
    )}  # fmt: skip
    hl = rules["high_latency"]
    assert (hl.threshold, hl.for_s, hl.severity) == (40, 2, AlertSeverity.CRITICAL)
    assert rules["high_error_rate"].params == {"window_s": 10, "min_requests": 20}
    assert "system_health" not in rules and "capacity_warning" not in rules
    assert rules["slow_peak"].alert_type is AlertType.HIGH_LATENCY


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ({"high_latency": {"treshold": 1}}, "rules.high_latency.treshold"),
        ({"high_latency": {"op": "=>"}}, "rules.high_latency.op"),
        ({"high_latency": {"for": -1}}, "rules.high_latency.for_s"),
        ({"high_latency": {"threshold": math.nan}}, "rules.high_latency.threshold"),
        ({"x": {"alert_type": "high_latency", "metric": "nope"}}, "rules.x.metric"),
        ({"x": {"threshold": 1}}, "rules.x"),
        ({"high_latency": {"severity": "urgent"}}, "severity"),
    ],
)
def test_bad_rule_settings_name_the_key(spec: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        resolve_rules(spec)
    assert where in str(err.value)


def test_unknown_rule_in_observe_is_named() -> None:
    m = WebSocketAlertManager(channels=[])
    with pytest.raises(ConfigurationError, match="nope"):
        m.observe("nope", {}, 1.0, 0.0)


# --- against the real store ---------------------------------------------------------------------------------------


def make_store(t: list[float]) -> InMemoryConnectionStore:
    store = InMemoryConnectionStore(clock=lambda: t[0], node_timeout_s=5)
    for cid, node in (("c1", "node-a"), ("c2", "node-a"), ("c3", "node-b")):
        cfg = ConnectionConfig(url=f"ws://127.0.0.1:900{cid[-1]}/ws/2", connection_type=ConnectionType.TRADING)
        store.register(cid, cfg, cluster_node=node)
        store.set_state(cid, ConnectionState.CONNECTING)
        store.set_state(cid, ConnectionState.CONNECTED)
    return store


def test_high_latency_fires_on_the_right_node_after_for_and_resolves() -> None:
    t = [0.0]
    store = make_store(t)
    m = WebSocketAlertManager(store=store, channels=[], route=FAST, rules={"high_latency": {"for": 5, "threshold": 50}})
    notes = []
    for step in range(0, 40):
        t[0] = float(step)
        slow = 10 <= step < 20
        for cid in ("c1", "c2", "c3"):
            latency = 200.0 if slow and cid == "c3" else 5.0
            store.request_finished(cid, ok=True, latency_ms=latency, now=t[0])
        notes += [(t[0], n) for n in m.check_alerts(t[0])]
        if step == 19:
            (alert,) = m.get_active_alerts()
            assert alert.labels["node"] == "node-b" and alert.labels["connection_id"] == "c3"
            assert alert.alert_type is AlertType.HIGH_LATENCY and alert.severity is AlertSeverity.WARNING
            assert "c3" in alert.title and "node-b" in alert.title and "ms" in alert.message
    firing = [(at, n) for at, n in notes if n.status == "firing"]
    resolved = [(at, n) for at, n in notes if n.status == "resolved"]
    assert len(firing) == 1 and len(resolved) == 1
    # the 10 s EWMA crosses 50 ms at 12 s, then must hold for 5 s; it falls below 50 ms again near 30 s
    assert firing[0][0] == 17 and 28 <= resolved[0][0] <= 32
    assert m.get_active_alerts() == []


def test_default_high_latency_watches_the_windowed_p90_so_a_starved_node_fires_and_an_outlier_does_not() -> None:
    """c1 and c2 are fast, with one 900 ms outlier every 3 s on c2 (3 % of its answers). c3 is busy and fast,
    then turns slow and gets a burst of slow answers every 2 s only (as a latency-aware strategy treats it): its
    EWMA stays low; its p90 rises once slow answers are over 10 % of the window's."""
    from wsfinal.analytics import WebSocketAnalytics

    t = [0.0]
    store = make_store(t)
    analytics = WebSocketAnalytics(store, clock=lambda: t[0])
    assert next(r for r in DEFAULT_RULES if r.name == "high_latency").metric == "latency_quantile_ms"
    m = WebSocketAlertManager(
        store=store, analytics=analytics, channels=[], route=FAST, rules={"high_latency": {"for": 2, "threshold": 40}}
    )

    def answer(cid: str, latency: float, at: float) -> None:
        store.request_finished(cid, ok=True, latency_ms=latency, now=at)
        analytics.record_latency(cid, ConnectionType.TRADING, latency, now=at)

    fired: dict[str, float] = {}
    for step in range(400):  # 0.1 s steps, 40 s
        now = step / 10
        t[0] = now
        answer("c1", 5.0, now)
        answer("c2", 900.0 if step % 30 == 0 else 5.0, now)
        if now < 10:
            for i in range(5):
                answer("c3", 5.0, now + 0.02 * i)
        elif step % 20 == 0:
            for i, x in enumerate((30.0, 45.0, 60.0, 70.0, 80.0, 90.0)):
                answer("c3", x, now + 0.01 * i)
        if step % 10 == 0:
            m.check_alerts(now)
            for a in m.get_active_alerts():
                fired.setdefault(a.labels["connection_id"], now)
    assert set(fired) == {"c3"}
    assert 16.0 <= fired["c3"] <= 22.0  # when the window's fast samples have thinned out, then for 2 s
    assert store.get("c3").latency_ewma_ms < 40.0  # the smoothed latency never crossed the threshold
    (alert,) = m.get_active_alerts()
    assert "p90 of" in alert.message and "over the last 10s" in alert.message


def test_latency_quantile_rule_params_are_checked_by_name() -> None:
    with pytest.raises(ConfigurationError, match=r"rules\.high_latency\.params\.quantile"):
        resolve_rules({"high_latency": {"params": {"quantile": 90}}})
    rule = resolve_rules({"high_latency": {"params": {"min_samples": 3}}})
    assert [r.params for r in rule if r.name == "high_latency"] == [
        {"quantile": 0.9, "window_s": 10.0, "min_samples": 3}
    ]


def test_node_down_inhibits_connection_failures_of_its_connections_only() -> None:
    t = [0.0]
    store = make_store(t)
    for node in ("node-a", "node-b"):
        store.register_node(node, now=0.0)
    rec = RecordingNotifier()
    m = WebSocketAlertManager(store=store, channels=[rec], route=FAST, rules={"connection_failure": {"for": 0}})
    store.node_heartbeat("node-b", now=6.0)
    t[0] = 6.0
    # node-a missed its heartbeats; its connections and c3 (node-b) fail
    for cid in ("c1", "c2", "c3"):
        store.set_state(cid, ConnectionState.RECONNECTING)
    notes = m.check_alerts(6.0)
    notified = {
        (a.labels["alertname"], a.labels.get("connection_id", a.labels["node"])) for n in notes for a in n.alerts
    }
    assert notified == {("cluster_node_down", "node-a"), ("connection_failure", "c3")}
    summary = m.get_alert_summary()
    assert summary["total_active_alerts"] == 4 and summary["suppressed_alerts"] == 2
    assert summary["critical_alerts"] == 1 and summary["by_type"]["connection_failure"] == 3
    inhibited = {a.labels["connection_id"] for a in m.get_active_alerts() if a.suppressed_by == ("inhibited",)}
    assert inhibited == {"c1", "c2"}


def test_repeat_interval_is_the_cooldown_and_grouping_batches() -> None:
    rules = [manual_rule("lat", AlertType.HIGH_LATENCY, op=">", threshold=100)]
    route = RouteConfig(group_by=("alertname",), group_wait_s=5, group_interval_s=10, repeat_interval_s=60)
    m = WebSocketAlertManager(channels=[], rules=rules, route=route)
    m.observe("lat", {"connection_id": "c1"}, 500, 0.0)
    m.observe("lat", {"connection_id": "c2"}, 500, 2.0)
    assert m.check_alerts(4.0) == []  # group_wait not over
    (first,) = m.check_alerts(5.0)
    assert sorted(a.labels["connection_id"] for a in first.alerts) == ["c1", "c2"]
    assert first.group_labels == {"alertname": "lat"} and first.status == "firing"
    sent = [n for t in range(6, 130) for n in m.check_alerts(float(t))]
    assert [n.created_at for n in sent] == [65.0, 125.0]  # first flush >= 60 s later, at group_interval ticks


def test_fire_and_clear_between_flushes_is_never_notified() -> None:
    rules = [manual_rule("lat", AlertType.HIGH_LATENCY, op=">", threshold=100)]
    route = RouteConfig(group_wait_s=30, group_interval_s=30)
    m = WebSocketAlertManager(channels=[], rules=rules, route=route)
    m.observe("lat", {"c": "1"}, 500, 0.0)
    m.observe("lat", {"c": "1"}, 5, 10.0)
    assert [n for t in range(0, 100, 5) for n in m.check_alerts(float(t))] == []


def test_silence_mutes_until_it_ends_then_alert_is_notified() -> None:
    rules = [manual_rule("lat", AlertType.HIGH_LATENCY, op=">", threshold=100)]
    m = WebSocketAlertManager(channels=[], rules=rules, route=FAST)
    sid = m.add_silence(['connection_id=~"c[12]"'], ends_at=50.0, comment="maintenance")
    m.observe("lat", {"connection_id": "c1"}, 500, 0.0)
    m.observe("lat", {"connection_id": "c3"}, 500, 0.0)
    (n,) = m.check_alerts(0.0)
    assert [a.labels["connection_id"] for a in n.alerts] == ["c3"]
    assert m.get_alert_summary()["active_silences"] == 1
    assert [a.suppressed_by for a in m.get_active_alerts() if a.labels["connection_id"] == "c1"] == [(sid,)]
    assert all(m.check_alerts(float(t)) == [] for t in range(1, 50))
    (late,) = m.check_alerts(50.0)
    assert [a.labels["connection_id"] for a in late.alerts] == ["c1"]
    with pytest.raises(ConfigurationError, match="ends_at"):
        m.add_silence({"a": "b"}, ends_at=5.0, starts_at=10.0)
    with pytest.raises(ConfigurationError, match="at least one"):
        m.add_silence({}, ends_at=5.0)


def test_resolved_is_sent_once_even_when_silenced_after_firing_was_sent() -> None:
    rules = [manual_rule("lat", AlertType.HIGH_LATENCY, op=">", threshold=100)]
    m = WebSocketAlertManager(channels=[], rules=rules, route=FAST)
    m.observe("lat", {"c": "1"}, 500, 0.0)
    assert len(m.check_alerts(0.0)) == 1
    m.add_silence({"c": "1"}, ends_at=1000.0)
    m.observe("lat", {"c": "1"}, 1, 5.0)
    notes = [n for t in range(5, 20) for n in m.check_alerts(float(t))]
    assert [(n.status, len(n.alerts)) for n in notes] == [("resolved", 1)]


def test_analytics_anomalies_become_alerts_with_their_description() -> None:
    class Analytics:
        def get_anomalies(self, severity: str = "high", hours: float = 1) -> list[Any]:
            a = type("A", (), {})()
            a.anomaly_type, a.description, a.time, a.connection_id = "latency_spike", "latency 12x baseline", 9.0, "c1"
            return [a]

    m = WebSocketAlertManager(analytics=Analytics(), channels=[], route=FAST)
    (n,) = m.check_alerts(10.0)
    (a,) = n.alerts
    assert a.alert_type == "anomaly_detected" and a.message == "latency 12x baseline"
    assert a.labels["subject"] == "c1" and "latency_spike" in a.title


def test_a_failing_source_is_logged_and_evaluation_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class BadStore:
        def all(self) -> list[Any]:
            raise RuntimeError("store exploded")

    rules = [manual_rule("lat", AlertType.HIGH_LATENCY, op=">", threshold=1)]
    m = WebSocketAlertManager(store=BadStore(), channels=[], rules=rules, route=FAST)
    m.observe("lat", {"c": "1"}, 5, 0.0)
    assert len(m.check_alerts(0.0)) == 1 and m.source_errors == 1
    assert "store exploded" in caplog.text


def test_fingerprint_is_stable_and_label_order_free() -> None:
    assert fingerprint_of({"a": "1", "b": "2"}) == fingerprint_of({"b": "2", "a": "1"})
    assert fingerprint_of({"a": "1"}) != fingerprint_of({"a": "2"}) and len(fingerprint_of({})) == 16


# --- the asyncio shell --------------------------------------------------------------------------------------------


def test_check_alerts_shell_delivers_retries_and_records() -> None:
    async def main() -> None:
        ok = RecordingNotifier(name="ok")
        flaky = RecordingNotifier(name="flaky", fail_first=2, backoff_s=0.01)
        events: list[AlertEvent] = []
        rules = [manual_rule("lat", AlertType.HIGH_LATENCY, op=">", threshold=1)]
        m = WebSocketAlertManager(channels=[ok, flaky], rules=rules, route=FAST)
        m.add_listener(events.append)
        m.observe("lat", {"c": "1"}, 5, asyncio.get_running_loop().time())
        sent = await m._check_alerts()
        await m.drain()
        assert len(sent) == 1 and len(ok.received) == 1 and len(flaky.received) == 1
        assert [(d.channel, d.attempt, d.ok) for d in m.deliveries if d.channel == "flaky"] == [
            ("flaky", 1, False),
            ("flaky", 2, False),
            ("flaky", 3, True),
        ]
        assert m.epoch_offset is not None and m.epoch_offset > 1e9
        assert {e.kind for e in events} >= {"alert_firing", "notification", "delivery"}
        assert m.get_alert_summary()["delivery_failures"] == 2
        # direct send, filtered by channel name
        (alert,) = m.get_active_alerts()
        records = await m._send_notifications(alert, ["ok"])
        assert [r.channel for r in records] == ["ok"] and len(ok.received) == 2

    asyncio.run(main())


def test_default_channels_are_log_plus_configured_and_missing_config_is_named() -> None:
    m = WebSocketAlertManager()
    assert [n.channel for n in m.notifiers] == [NotificationChannel.LOG]
    with pytest.raises(ConfigurationError, match="slack_config"):
        WebSocketAlertManager(channels=[NotificationChannel.SLACK])


def test_run_loop_checks_periodically_until_stopped() -> None:
    async def main() -> None:
        rec = RecordingNotifier()
        rules = [manual_rule("lat", AlertType.HIGH_LATENCY, op=">", threshold=1)]
        m = WebSocketAlertManager(channels=[rec], rules=rules, route=FAST)
        m.observe("lat", {"c": "1"}, 5, asyncio.get_running_loop().time())
        stop = asyncio.Event()
        task = asyncio.create_task(m.run(0.01, stop))
        for _ in range(200):
            if rec.received:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 1.0)
        assert len(rec.received) == 1

    asyncio.run(main())


# --- stateful: invariants over random streams and clocks -----------------------------------------------------------

CONNS = {"c1": "a", "c2": "b"}
STATE_RULES = [
    manual_rule("lat", AlertType.HIGH_LATENCY, op=">", threshold=100, for_s=10),
    manual_rule("err", AlertType.HIGH_ERROR_RATE, op=">", threshold=0.5, keep_firing_for_s=5, severity="high"),
    manual_rule("fail", AlertType.CONNECTION_FAILURE, op=">=", threshold=1, for_s=3, severity="high"),
    manual_rule("down", AlertType.CLUSTER_NODE_DOWN, op=">=", threshold=1, severity="critical"),
]
VALUES = {"lat": [0.0, 50.0, 500.0], "err": [0.0, 0.9], "fail": [0.0, 1.0], "down": [0.0, 1.0]}


class AlertingMachine(RuleBasedStateMachine):
    @initialize(
        group_by=st.sampled_from([("alertname",), ("node",), ()]),
        group_wait=st.sampled_from([0.0, 3.0]),
        group_interval=st.sampled_from([1.0, 4.0]),
        repeat=st.sampled_from([5.0, 20.0]),
    )
    def setup(self, group_by: tuple[str, ...], group_wait: float, group_interval: float, repeat: float) -> None:
        self.route = RouteConfig(group_by, group_wait, group_interval, repeat)
        self.m = WebSocketAlertManager(channels=[], rules=STATE_RULES, route=self.route)
        self.m.add_listener(self.on_event)
        self.now = 0.0
        self.rules = {r.name: r for r in STATE_RULES}
        # model: series -> (condition, true_since); firing fingerprints of node-down alerts; silences
        self.cond: dict[tuple[str, str], tuple[bool, float | None]] = {}
        self.firing_down_nodes: dict[str, str] = {}
        self.silences: list[tuple[dict[str, str], float]] = []
        self.last_notice: dict[str, tuple[str, float]] = {}
        self.violations: list[str] = []

    def on_event(self, e: AlertEvent) -> None:
        if e.kind == "alert_firing":
            labels = dict(e.labels)
            key = (e.rule, labels.get("connection_id", labels.get("node", "")))
            cond, since = self.cond[key]
            # listener errors are swallowed by the manager (by design), so record and assert in an invariant
            if not (cond and since is not None and e.time - since >= self.rules[e.rule].for_s):
                self.violations.append(f"{key} fired at {e.time} (true since {since})")
            if e.rule == "down":
                self.firing_down_nodes[e.fingerprint] = labels["node"]
        elif e.kind == "alert_resolved" and e.rule == "down":
            self.firing_down_nodes.pop(e.fingerprint, None)

    def labels(self, rule_name: str, subject: str) -> dict[str, str]:
        if rule_name == "down":
            return {"node": subject}
        return {"connection_id": subject, "node": CONNS[subject]}

    @rule(data=st.data(), rule_name=st.sampled_from(sorted(VALUES)))
    def observe(self, data: st.DataObject, rule_name: str) -> None:
        subject = data.draw(st.sampled_from(["a", "b"] if rule_name == "down" else sorted(CONNS)))
        value = data.draw(st.sampled_from(VALUES[rule_name]))
        r = self.rules[rule_name]
        cond = (value > r.threshold) if r.op == ">" else (value >= r.threshold)
        prev, since = self.cond.get((rule_name, subject), (False, None))
        self.cond[(rule_name, subject)] = (cond, (since if prev else self.now) if cond else None)
        self.m.observe(rule_name, self.labels(rule_name, subject), value, self.now)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 7.0, 15.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        for n in self.m.check_alerts(self.now):
            self.check_notification(n)

    @rule(data=st.data(), duration=st.sampled_from([3.0, 10.0, 40.0]))
    def silence(self, data: st.DataObject, duration: float) -> None:
        matchers = data.draw(
            st.sampled_from([{"node": "a"}, {"node": "b"}, {"alertname": "lat"}, {"alertname": "err", "node": "b"}])
        )
        self.m.add_silence(matchers, ends_at=self.now + duration)
        self.silences.append((matchers, self.now + duration))

    def muted(self, labels: dict[str, str], at: float) -> bool:
        for matchers, ends in self.silences:
            if at < ends and all(labels.get(k) == v for k, v in matchers.items()):
                return True
        if labels["alert_type"] == "connection_failure":
            return labels["node"] in self.firing_down_nodes.values()
        return False

    def check_notification(self, n: Any) -> None:
        for a in n.alerts:
            prev = self.last_notice.get(a.fingerprint)
            if a.status == "firing":
                assert not self.muted(dict(a.labels), n.created_at), "muted alert notified"
                if prev is not None and prev[0] == "firing":
                    assert n.created_at - prev[1] >= self.route.repeat_interval_s, "repeat interval broken"
            else:
                assert prev is not None and prev[0] == "firing", "resolved without a firing notice before it"
            self.last_notice[a.fingerprint] = (a.status, n.created_at)

    @invariant()
    def summary_matches_active_alerts(self) -> None:
        if not hasattr(self, "m"):
            return
        assert self.violations == [], "fired before its `for` elapsed"
        active = self.m.get_active_alerts()
        s = self.m.get_alert_summary()
        assert s["total_active_alerts"] == len(active)
        assert s["critical_alerts"] == sum(a.severity is AlertSeverity.CRITICAL for a in active)
        assert sum(s["by_type"].values()) == sum(s["by_severity"].values()) == len(active)

    def teardown(self) -> None:
        if not hasattr(self, "m"):
            return
        # everything clears and silences end: every alert whose firing was notified gets its resolved notice
        for sid in [s.silence_id for s in self.m.get_silences()]:
            self.m.expire_silence(sid, self.now)
        self.silences.clear()
        for rule_name, subject in list(self.cond):
            self.m.observe(rule_name, self.labels(rule_name, subject), 0.0, self.now)
            self.cond[(rule_name, subject)] = (False, None)
        for _ in range(3):
            self.now += 10.0
            for n in self.m.check_alerts(self.now):
                self.check_notification(n)
        assert self.m.get_active_alerts() == []
        assert [fp for fp, (status, _) in self.last_notice.items() if status == "firing"] == []


AlertingMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
TestAlertingInvariants = AlertingMachine.TestCase


def test_inhibit_and_silence_matchers_can_be_regex() -> None:
    m = WebSocketAlertManager(channels=[], rules=STATE_RULES, route=FAST)
    m.add_silence([Matcher("alertname", "=~", "l.t")], ends_at=100.0)
    m.observe("lat", {"connection_id": "c1", "node": "a"}, 500, 0.0)
    m.observe("lat", {"connection_id": "c1", "node": "a"}, 500, 10.0)
    assert m.check_alerts(10.0) == [] and len(m.get_active_alerts()) == 1


def test_real_analytics_gets_the_evaluation_time_not_its_own_clock() -> None:
    from wsfinal.analytics import WebSocketAnalytics

    t = [0.0]
    store = make_store(t)
    analytics = WebSocketAnalytics(store)  # no clock: it would need a running loop if `now` were not passed
    rules = {"low_health": {"alert_type": "system_health", "metric": "health_score", "op": "<", "threshold": 101}}
    m = WebSocketAlertManager(store=store, analytics=analytics, channels=[], route=FAST, rules=rules)
    notes = m.check_alerts(5.0)  # outside any event loop
    assert {
        a.labels.get("connection_id") for n in notes for a in n.alerts if a.labels["alertname"] == "low_health"
    } == {
        "c1",
        "c2",
        "c3",
    }


def test_manager_repr_hides_channel_secrets() -> None:
    from wsfinal.config import NotificationConfig

    cfg = NotificationConfig(
        webhook_config={"url": "https://hooks.example.com/alerts/SeCrEt-tok", "secret": "hmac-SeCrEt"},
        slack_config={"webhook_url": "https://hooks.slack.com/services/T0/B0/SeCrEt-slack"},
    )
    m = WebSocketAlertManager(cfg)
    assert [n.channel.value for n in m.notifiers] == ["log", "webhook", "slack"]
    assert "SeCrEt" not in repr(m) and "hooks.example.com/***" in repr(m)


def test_replacing_a_rule_drops_its_old_alerts() -> None:
    rules = [manual_rule("lat", AlertType.HIGH_LATENCY, op=">", threshold=100)]
    m = WebSocketAlertManager(channels=[], rules=rules, route=FAST)
    m.observe("lat", {"c": "1"}, 500, 0.0)
    assert len(m.get_active_alerts()) == 1
    m.add_rule(manual_rule("lat", AlertType.HIGH_LATENCY, op=">", threshold=1000))
    assert m.get_active_alerts() == [] and m.check_alerts(1.0) == []
    m.observe("lat", {"c": "1"}, 2000, 2.0)
    assert [a.rule for a in m.get_active_alerts()] == ["lat"]
