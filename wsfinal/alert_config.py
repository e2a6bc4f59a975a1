"""What to alert on and how to route it: alert types and severities, the rules, their defaults and overrides,
the route timing and the default inhibition (the configuration half of :mod:`wsfinal.alerts`).

:func:`resolve_rules` turns ``rules=`` (``None``, a list of :class:`AlertRule`, or overrides by name) into the rule
list :class:`~wsfinal.alerts.WebSocketAlertManager` evaluates; errors name ``rules.<name>.<key>``. Pure data and
checks: no clock, no I/O. Every name is also importable from :mod:`wsfinal.alerts`, where they used to live.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .alert_rules import InhibitRule, Matcher, MetricSources, check_operator
from .anomaly import ALERT_SEVERITIES, Severity
from .exceptions import ConfigurationError

__all__ = [
    "ALERT_SEVERITIES",
    "DEFAULT_INHIBIT_RULES",
    "DEFAULT_RULES",
    "AlertRule",
    "AlertSeverity",
    "AlertType",
    "RouteConfig",
    "check_metric_params",
    "parse_alert_severity",
    "resolve_rules",
]


def check_metric_params(metric: str | None, params: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ConfigurationError` naming ``where.<key>`` for a parameter the metric cannot use."""
    if metric != "latency_quantile_ms":
        return
    q = params.get("quantile", 0.9)
    if isinstance(q, bool) or not isinstance(q, int | float) or not 0.0 <= q <= 1.0:
        raise ConfigurationError(f"{where}.quantile", q, "must be a number in [0, 1] (0.9 = p90)")
    n = params.get("min_samples", 5)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigurationError(f"{where}.min_samples", n, "must be an integer >= 1")
    w = params.get("window_s")
    if w is not None and (isinstance(w, bool) or not isinstance(w, int | float) or not 0.0 < w < math.inf):
        raise ConfigurationError(f"{where}.window_s", w, "must be a duration > 0 (seconds)")


class AlertType(enum.Enum):
    CONNECTION_FAILURE = "connection_failure"
    HIGH_LATENCY = "high_latency"
    HIGH_ERROR_RATE = "high_error_rate"
    FREQUENT_RECONNECTS = "frequent_reconnects"
    LOAD_BALANCER_ISSUES = "load_balancer_issues"
    CLUSTER_NODE_DOWN = "cluster_node_down"
    PERFORMANCE_DEGRADATION = "performance_degradation"
    CAPACITY_WARNING = "capacity_warning"
    ANOMALY_DETECTED = "anomaly_detected"
    SYSTEM_HEALTH = "system_health"


#: The severity of an alert: the same class as :class:`wsfinal.anomaly.Severity` (one definition, one scale); an
#: alert uses the members of ``ALERT_SEVERITIES`` (info, warning, high, critical).
AlertSeverity = Severity


def parse_alert_severity(value: object) -> Severity:
    """An alert severity from a member or its value (case-insensitive); ConfigurationError otherwise."""
    try:
        sev = Severity.parse(value)  # type: ignore[arg-type]
    except ConfigurationError:
        sev = None
    if sev not in ALERT_SEVERITIES:
        raise ConfigurationError("severity", value, "expected info, warning, high or critical")
    assert sev is not None
    return sev


@dataclass(frozen=True)
class AlertRule:
    """One rule: ``metric op threshold`` held for ``for_s`` fires an alert of ``alert_type`` at ``severity``.

    ``metric`` names a series source of :class:`~wsfinal.alert_rules.MetricSources` (``None``: values only come from
    :meth:`WebSocketAlertManager.observe`). ``title``/``message`` are ``str.format`` templates over the series'
    labels plus ``value``, ``threshold``, ``for_s`` and the source's extra fields. ``params`` tune the source
    (windows, minimum counts).
    """

    name: str
    alert_type: AlertType
    metric: str | None
    op: str = ">"
    threshold: float = 0.0
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    severity: AlertSeverity = AlertSeverity.WARNING
    title: str = "{rule}"
    message: str = "{rule}: value {value:.4g} {op} {threshold:.4g}"
    labels: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"rules.{self.name}"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError("rules[].name", self.name, "must be a non-empty string")
        kind: Any = self.alert_type
        if not isinstance(kind, AlertType):
            try:
                object.__setattr__(self, "alert_type", AlertType(str(kind).lower()))
            except ValueError:
                raise ConfigurationError(f"{where}.alert_type", self.alert_type, "unknown alert type") from None
        object.__setattr__(self, "severity", parse_alert_severity(self.severity))
        check_operator(self.op, f"{where}.op")
        for key in ("threshold", "for_s", "keep_firing_for_s"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ConfigurationError(f"{where}.{key}", v, "must be a finite number")
        if self.for_s < 0 or self.keep_firing_for_s < 0:
            raise ConfigurationError(f"{where}.for_s", (self.for_s, self.keep_firing_for_s), "durations must be >= 0")
        if self.metric is not None and self.metric not in MetricSources.METRICS:
            known = ", ".join(sorted(MetricSources.METRICS))
            raise ConfigurationError(f"{where}.metric", self.metric, f"unknown metric; known: {known}")
        check_metric_params(self.metric, self.params, f"{where}.params")


_T = AlertType
_S = AlertSeverity

#: The default rules: one (or two) per alert type. Override by name through ``rules={name: {...}}``.
DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule("connection_failure", _T.CONNECTION_FAILURE, "connection_failed", ">=", 1, for_s=10, severity=_S.HIGH,
              title="Connection {connection_id} failing",
              message="Connection {connection_id} ({connection_type}) to {endpoint} is {state} "
              "(not connected for {for_s:g}s)."),
    AlertRule("high_latency", _T.HIGH_LATENCY, "latency_quantile_ms", ">", 500, for_s=30, severity=_S.WARNING,
              title="High latency on {connection_id} ({node})",
              message="Request latency of {connection_id} on {node} ({stat}) is {value:.1f} ms, above "
              "{threshold:g} ms for at least {for_s:g}s.",
              params={"quantile": 0.9, "window_s": 10.0, "min_samples": 5}),
    AlertRule("high_error_rate", _T.HIGH_ERROR_RATE, "error_rate", ">", 0.05, for_s=30, severity=_S.HIGH,
              title="High error rate on {connection_id}",
              message="{value:.1%} of requests on {connection_id} failed over the last {window_s:g}s "
              "(threshold {threshold:.1%}).", params={"window_s": 60.0, "min_requests": 20}),
    AlertRule("frequent_reconnects", _T.FREQUENT_RECONNECTS, "reconnects", ">=", 5, for_s=0, severity=_S.WARNING,
              keep_firing_for_s=60, title="Frequent reconnects on {connection_id}",
              message="{connection_id} reconnected {value:.0f} times in the last {window_s:g}s.",
              params={"window_s": 300.0}),
    AlertRule("load_balancer_issues", _T.LOAD_BALANCER_ISSUES, "balancer_success_rate", "<", 0.9, for_s=60,
              severity=_S.HIGH, title="Load balancer strategy {strategy} failing",
              message="Strategy {strategy} succeeded on {value:.1%} of {selections:.0f} selections "
              "(threshold {threshold:.0%}).", params={"min_selections": 20}),
    AlertRule("load_balancer_panic", _T.LOAD_BALANCER_ISSUES, "balancer_panics", ">", 0, for_s=0,
              severity=_S.WARNING, keep_firing_for_s=60, title="Load balancer in panic mode ({connection_type})",
              message="{value:.0f} selections in the last {window_s:g}s ignored health because too few "
              "{connection_type} connections were healthy.", params={"window_s": 60.0}),
    AlertRule("cluster_node_down", _T.CLUSTER_NODE_DOWN, "node_down", ">=", 1, for_s=0, severity=_S.CRITICAL,
              title="Cluster node {node} down", message="Cluster node {node} ({address}) missed its heartbeats."),
    AlertRule("performance_degradation", _T.PERFORMANCE_DEGRADATION, "latency_ratio", ">", 2.0, for_s=60,
              severity=_S.WARNING, title="{connection_type} latency degraded",
              message="Mean latency of {connection_type} connections is {value:.1f}x its baseline "
              "({current_ms:.1f} ms vs {baseline_ms:.1f} ms).", params={"baseline_tau_s": 600.0}),
    AlertRule("capacity_warning", _T.CAPACITY_WARNING, "capacity_ratio", ">", 0.8, for_s=0, severity=_S.WARNING,
              title="Connection capacity at {value:.0%}",
              message="{connections:.0f} of {max_connections:.0f} connections in use.",
              params={"max_connections": 1000}),
    AlertRule("capacity_forecast", _T.CAPACITY_WARNING, "capacity_anomalies", ">=", 1, for_s=0,
              severity=_S.WARNING, keep_firing_for_s=300, title="Capacity forecast warning",
              message="{description}", params={"window_s": 600.0, "min_severity": "low"}),
    AlertRule("anomaly_detected", _T.ANOMALY_DETECTED, "anomalies", ">=", 1, for_s=0, severity=_S.WARNING,
              keep_firing_for_s=120, title="Anomaly: {anomaly_type} on {subject}", message="{description}",
              params={"window_s": 300.0, "min_severity": "high"}),
    AlertRule("system_health", _T.SYSTEM_HEALTH, "system_health", "<", 50, for_s=60, severity=_S.CRITICAL,
              title="System health low", message="Mean connection health is {value:.0f}/100 "
              "(threshold {threshold:g}) over {connections:.0f} connections."),
)  # fmt: skip

_OVERRIDE_KEYS = {f for f in AlertRule.__dataclass_fields__ if f != "name"} | {"for", "keep_firing_for", "enabled"}


def resolve_rules(rules: Mapping[str, Any] | Sequence[AlertRule] | None) -> list[AlertRule]:
    """The rules to use. ``None``: the defaults. A sequence of :class:`AlertRule`: exactly those. A mapping
    ``{name: {field: value} | AlertRule | None}``: the defaults with those fields overridden, those rules added,
    and ``None`` (or ``{"enabled": False}``) removing one. Errors name ``rules.<name>.<key>``."""
    if rules is None:
        return list(DEFAULT_RULES)
    if not isinstance(rules, Mapping):
        out = list(rules)
        for i, r in enumerate(out):
            if not isinstance(r, AlertRule):
                raise ConfigurationError(f"rules[{i}]", r, "must be an AlertRule")
        names = [r.name for r in out]
        if len(set(names)) != len(names):
            raise ConfigurationError("rules", names, "rule names must be unique")
        return out
    by_name = {r.name: r for r in DEFAULT_RULES}
    for name, spec in rules.items():
        if spec is None:
            by_name.pop(name, None)
        elif isinstance(spec, AlertRule):
            by_name[name] = replace(spec, name=name)
        elif isinstance(spec, Mapping):
            spec = dict(spec)
            for key in spec:
                if key not in _OVERRIDE_KEYS:
                    raise ConfigurationError(f"rules.{name}.{key}", spec[key], "unknown rule setting")
            if not spec.pop("enabled", True):
                by_name.pop(name, None)
                continue
            if "for" in spec:
                spec["for_s"] = spec.pop("for")
            if "keep_firing_for" in spec:
                spec["keep_firing_for_s"] = spec.pop("keep_firing_for")
            if name in by_name:
                base = by_name[name]
                if "params" in spec:
                    spec["params"] = {**base.params, **spec["params"]}
                by_name[name] = replace(base, **spec)
            else:
                if "alert_type" not in spec or "metric" not in spec:
                    raise ConfigurationError(f"rules.{name}", spec, "a new rule needs alert_type and metric")
                by_name[name] = AlertRule(name=name, **spec)
        else:
            raise ConfigurationError(f"rules.{name}", spec, "expected a dict of settings, an AlertRule or None")
    return list(by_name.values())


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """Alertmanager's route timing. ``repeat_interval_s`` is the seed's cooldown; ``group_by`` names labels."""

    group_by: tuple[str, ...] = ("alertname",)
    group_wait_s: float = 30.0
    group_interval_s: float = 300.0
    repeat_interval_s: float = 4 * 3600.0
    send_resolved: bool = True
    receiver: str = "wsfinal"

    def __post_init__(self) -> None:
        for key in ("group_wait_s", "group_interval_s", "repeat_interval_s"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or not math.isfinite(v):
                raise ConfigurationError(f"route.{key}", v, "must be a finite number >= 0")
        object.__setattr__(self, "group_by", tuple(self.group_by))


#: Default inhibition: a node-down alert mutes the connection-failure alerts of connections on that node.
DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(
        source=(Matcher("alert_type", "=", AlertType.CLUSTER_NODE_DOWN.value),),
        target=(Matcher("alert_type", "=", AlertType.CONNECTION_FAILURE.value),),
        equal=("node",),
    ),
)
