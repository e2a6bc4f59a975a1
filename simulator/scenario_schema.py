"""The declared schema of scenario files (JSON Schema, Draft 2020-12) and the check of a document against it.

:data:`SCHEMA` is the one source of truth: the loader validates against it and ``wsfinal scenario schema``
prints it for editors. Units are strings matched by the patterns of :mod:`simulator.units` (marked with the
``x-unit`` annotation so that errors come from the unit parser, which says what was expected). Defaults live in
:data:`DEFAULTS`, used both for the schema's ``default`` annotations and by the loader.
:func:`structural_problems` reports violations as ``(key path, reason)`` pairs. The fragments the schema is
declared with are in :mod:`simulator.schema_fragments`, the ``faults`` section in :mod:`simulator.fault_schema`,
the wording of problems in :mod:`simulator.scenario_problems` (re-exported here: this is the import path).
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from wsfinal.alert_rules import MetricSources
from wsfinal.alerts import DEFAULT_RULES, AlertType
from wsfinal.config import ConnectionType, LoadBalancingStrategy

from . import units
from .fault_schema import FAULT_DEFAULTS, FAULT_KINDS, FAULT_PARAM_DEFAULTS, FAULT_SCHEMA
from .scenario_problems import did_you_mean, document_problems, format_path, validation_problems
from .schema_fragments import ID, NODE_REF, closed, dur, enum_of, integer, unit, variants

__all__ = [
    "ALERT_NAMES",
    "DEFAULTS",
    "FAULT_KINDS",
    "METRIC_NAMES",
    "RULE_NAMES",
    "SCHEMA",
    "did_you_mean",
    "document_problems",
    "format_path",
    "structural_problems",
]

#: Alert names an ``expect`` entry may name (the values of ``AlertType``).
ALERT_NAMES: tuple[str, ...] = tuple(t.value for t in AlertType)
#: Alert rule names ``manager.alert_rules`` may override (the default rules' names).
RULE_NAMES: tuple[str, ...] = tuple(r.name for r in DEFAULT_RULES)
#: Metrics an ``expect`` entry may assert on. ``*_ms`` are request latencies in milliseconds, ``*_rate`` are
#: shares in 0..1, ``throughput`` is completed requests per second, the rest are counts over the run.
METRIC_NAMES: tuple[str, ...] = (
    "success_rate",
    "error_rate",
    "timeout_rate",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "mean_ms",
    "max_ms",
    "throughput",
    "requests",
    "completed",
    "rejected",
    "timeouts",
    "reconnects",
    "connection_failures",
    "messages_received",
)

#: Default of every optional key, by section. The loader fills these in; the schema shows them to editors.
DEFAULTS: dict[str, dict[str, Any]] = {
    "scenario": {"description": "", "seed": 0, "warmup": "0s"},
    "node": {
        "host": "127.0.0.1",
        "port": 0,
        "queue_limit": 1000,
        "heartbeat_interval": "15s",
        "symbols": ["tBTCUSD"],
        "api_keys": {},
        "max_subscriptions": 25,
        "max_frame_size": "1MB",
        "market_update_interval": "100ms",
        "platform_status": 1,
    },
    "network": {"latency": "0s", "jitter": "0s"},
    "service": {"workers": 1},
    "empirical": {"column": "value", "unit": "ms", "scale": 1.0},
    "connection": {
        "count": 1,
        "weight": 1.0,
        "max_reconnect_attempts": 5,
        "reconnect_delay": "1s",
        "heartbeat_interval": "30s",
        "connection_timeout": "10s",
        "latency_stale_after": "10s",
        "latency_probe_budget": 1,
    },
    "book_subscription": {"prec": "P0", "len": 25, "freq": "F0"},
    "workload": {"arrival": "poisson", "start": "0s", "think": "0s"},
    "manager": {
        "strategy": "round_robin",
        "health_check_interval": "1s",
        "analytics_interval": "1s",
        "alert_check_interval": "1s",
        "request_timeout": "5s",
        "max_connections": 1000,
        "enable_analytics": True,
        "enable_alerts": True,
        "enable_load_balancing": True,
    },
    "fault": FAULT_DEFAULTS,
    "fault_params": FAULT_PARAM_DEFAULTS,
}

_CONN_TYPES = [t.value for t in ConnectionType]
_STRATEGIES = [s.value for s in LoadBalancingStrategy]
_D = DEFAULTS

_SERVICE_BASE = {
    "distribution": enum_of(("constant", "exponential", "lognormal", "empirical"), "service-time distribution"),
    "workers": integer("requests served in parallel", 1, 100_000, _D["service"]["workers"]),
}
_SERVICE = {
    "type": "object",
    "description": "the node's service model: workers taking service times from a distribution",
    "properties": _SERVICE_BASE,
    "required": ["distribution"],
    "allOf": variants(
        "distribution",
        _SERVICE_BASE,
        {
            "constant": ({"value": dur("every service time")}, ["value"]),
            "exponential": ({"mean": dur("mean service time")}, ["mean"]),
            "lognormal": (
                {
                    "median": dur("median service time"),
                    "sigma": {"type": "number", "exclusiveMinimum": 0, "maximum": 10, "description": "log sigma"},
                },
                ["median", "sigma"],
            ),
            "empirical": (
                {
                    "csv": {"type": "string", "minLength": 1, "description": "CSV file, relative to the scenario"},
                    "column": {
                        "type": ["string", "integer"],
                        "minimum": 0,
                        "minLength": 1,
                        "description": "column name (header row) or 0-based index",
                        "default": _D["empirical"]["column"],
                    },
                    "unit": enum_of(("ns", "us", "ms", "s"), "unit of the values in the CSV", _D["empirical"]["unit"]),
                    "scale": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": 1e6,
                        "default": _D["empirical"]["scale"],
                        "description": "multiplier",
                    },
                },
                ["csv"],
            ),
        },
        None,
    ),
}

_NODE = closed(
    {
        "id": {**ID, "description": "unique node id"},
        "host": {"type": "string", "minLength": 1, "default": _D["node"]["host"], "description": "bind address"},
        "port": integer("TCP port; 0 = chosen by the OS", 0, 65535, _D["node"]["port"]),
        "service": _SERVICE,
        "queue_limit": integer(
            "requests waiting beyond the workers before replies are refused", 0, 10**7, _D["node"]["queue_limit"]
        ),
        "network": closed(
            {
                "latency": dur("one-way latency, each direction", _D["network"]["latency"]),
                "jitter": dur("latency jitter", _D["network"]["jitter"]),
            },
            description="network delay between clients and this node",
        ),
        "heartbeat_interval": dur("'hb' after this much channel silence", _D["node"]["heartbeat_interval"]),
        "symbols": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[tf][A-Za-z0-9:]{2,20}$"},
            "minItems": 1,
            "uniqueItems": True,
            "default": _D["node"]["symbols"],
            "description": "symbols the node quotes, e.g. tBTCUSD",
        },
        "api_keys": {
            "type": "object",
            "additionalProperties": {"type": "string", "minLength": 1},
            "propertyNames": {"minLength": 1},
            "default": _D["node"]["api_keys"],
            "description": "api key -> secret accepted by the auth event",
        },
        "max_subscriptions": integer(
            "subscriptions allowed per connection (error 10305 beyond)", 1, 10_000, _D["node"]["max_subscriptions"]
        ),
        "max_frame_size": unit(
            "size", "largest client frame accepted (bigger: close 1009)", _D["node"]["max_frame_size"]
        ),
        "market_update_interval": dur("mean time between market events", _D["node"]["market_update_interval"]),
        "platform_status": enum_of(
            (0, 1), "platform status in the info event (0 = maintenance)", _D["node"]["platform_status"]
        ),
    },
    ["id", "service"],
)

_SUBSCRIPTION_BASE = {
    "channel": enum_of(("ticker", "trades", "book"), "public channel"),
    "symbol": {"type": "string", "minLength": 1},
}
_SUBSCRIPTION = {
    "type": "object",
    "properties": _SUBSCRIPTION_BASE,
    "required": ["channel", "symbol"],
    "allOf": variants(
        "channel",
        _SUBSCRIPTION_BASE,
        {
            "ticker": ({}, []),
            "trades": ({}, []),
            "book": (
                {
                    "prec": enum_of(
                        ("P0", "P1", "P2", "P3", "P4"), "price aggregation", _D["book_subscription"]["prec"]
                    ),
                    "len": enum_of((1, 25, 100, 250), "price levels", _D["book_subscription"]["len"]),
                    "freq": enum_of(("F0", "F1"), "update frequency", _D["book_subscription"]["freq"]),
                },
                [],
            ),
        },
        None,
    ),
}

_CONNECTION = closed(
    {
        "type": enum_of(_CONN_TYPES, "connection type"),
        "node": NODE_REF,
        "count": integer("connections in this group", 1, 100_000, _D["connection"]["count"]),
        "api_key": {"type": "string", "minLength": 1, "description": "key from the node's api_keys (trading)"},
        "subscriptions": {"type": "array", "items": _SUBSCRIPTION, "maxItems": 1000},
        "weight": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1e6,
            "default": _D["connection"]["weight"],
            "description": "balancing weight",
        },
        "max_reconnect_attempts": integer(
            "client reconnect attempts", 0, 1_000_000, _D["connection"]["max_reconnect_attempts"]
        ),
        "reconnect_delay": dur("client delay before reconnecting", _D["connection"]["reconnect_delay"]),
        "heartbeat_interval": dur("client heartbeat interval", _D["connection"]["heartbeat_interval"]),
        "connection_timeout": dur("client connect timeout", _D["connection"]["connection_timeout"]),
        "latency_stale_after": dur(
            "with no request-latency sample for this long, least_latency ranks the connection by its ping RTT",
            _D["connection"]["latency_stale_after"],
        ),
        "latency_probe_budget": integer(
            "least_latency sends at most this many requests to a connection it explores before an answer returns",
            1,
            1_000_000,
            _D["connection"]["latency_probe_budget"],
        ),
    },
    ["type", "node"],
)

_WORKLOAD_BASE = {
    "type": enum_of(_CONN_TYPES, "connections that carry this workload"),
    "arrival": enum_of(
        ("constant", "poisson", "bursty", "schedule", "closed_loop"), "arrival process", _D["workload"]["arrival"]
    ),
    "start": dur("when the workload starts", _D["workload"]["start"]),
    "stop": dur("when it stops (default: end of the run)"),
    "symbol": {"type": "string", "minLength": 1, "description": "order symbol (default: node's first)"},
}
_RATE = unit("rate", "requests per time unit")
_WORKLOAD = {
    "type": "object",
    "properties": _WORKLOAD_BASE,
    "required": ["type"],
    "allOf": variants(
        "arrival",
        _WORKLOAD_BASE,
        {
            "constant": ({"rate": _RATE}, ["rate"]),
            "poisson": ({"rate": _RATE}, ["rate"]),
            "bursty": ({"rate": _RATE, "on": dur("burst length"), "off": dur("pause length")}, ["rate", "on", "off"]),
            "schedule": (
                {
                    "schedule": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 10_000,
                        "items": closed({"at": dur("step time"), "rate": _RATE}, ["at", "rate"]),
                    }
                },
                ["schedule"],
            ),
            "closed_loop": (
                {
                    "concurrency": integer("requests kept outstanding", 1, 100_000),
                    "think": dur("pause after each reply", _D["workload"]["think"]),
                },
                ["concurrency"],
            ),
        },
        "poisson",
    ),
}

_RULE = closed(
    {
        "threshold": {
            "type": ["number", "string"],
            "pattern": units.DURATION_PATTERN,
            "x-unit": "duration",
            "description": "the rule's threshold in its own unit; a duration is converted to milliseconds",
        },
        "metric": enum_of(
            sorted(MetricSources.METRICS),
            "the series the rule watches (e.g. high_latency on latency_quantile_ms, its default, or peak_latency_ms)",
        ),
        "for": dur("how long the condition must hold before the alert fires"),
        "keep_firing_for": dur("how long the alert keeps firing after the condition clears"),
        "enabled": {"type": "boolean", "description": "false removes the rule"},
        "params": {
            "type": "object",
            "additionalProperties": {"type": ["number", "string", "boolean"]},
            "description": "rule source settings (window_s, min_requests, ...); durations become seconds",
        },
    },
    description="overrides of one alert rule of wsfinal.alerts",
)
_ALERT_RULES = closed(
    {name: _RULE for name in RULE_NAMES},
    description="alert rule overrides by rule name (see wsfinal.alerts.DEFAULT_RULES)",
)

_MANAGER = closed(
    {
        "strategy": enum_of(_STRATEGIES, "load-balancing strategy", _D["manager"]["strategy"]),
        "health_check_interval": dur("balancer health checks", _D["manager"]["health_check_interval"]),
        "analytics_interval": dur("analytics aggregation", _D["manager"]["analytics_interval"]),
        "alert_check_interval": dur("alert rule evaluation", _D["manager"]["alert_check_interval"]),
        "request_timeout": dur("a request with no reply by then is a timeout", _D["manager"]["request_timeout"]),
        "max_connections": integer("manager capacity", 1, 10**7, _D["manager"]["max_connections"]),
        "enable_analytics": {"type": "boolean", "default": _D["manager"]["enable_analytics"]},
        "enable_alerts": {"type": "boolean", "default": _D["manager"]["enable_alerts"]},
        "enable_load_balancing": {"type": "boolean", "default": _D["manager"]["enable_load_balancing"]},
        "alert_rules": _ALERT_RULES,
    }
)

_EXPECT_COMMON = {
    "node": NODE_REF,
    "connection_type": enum_of(_CONN_TYPES, "restrict to connections of this type"),
}
_EXPECT = {
    "type": "object",
    "description": "a metric assertion {metric, op, value} or an alert assertion {alert, within | never}",
    "if": {"required": ["metric"]},
    "then": closed(
        {
            **_EXPECT_COMMON,
            "metric": enum_of(METRIC_NAMES, "metric over the run after warm-up"),
            "op": enum_of((">=", "<=", ">", "<", "=="), "comparison"),
            "value": {"type": ["number", "string"], "description": "number (a duration allowed for *_ms)"},
            "strategy": enum_of(_STRATEGIES, "restrict to requests routed by this strategy"),
        },
        ["metric", "op", "value"],
        **{
            "x-context": "a metric expectation",
            "x-conflicts": {"alert": "an expect entry has either 'metric' or 'alert', not both"},
        },
    ),
    "else": {
        "if": {"required": ["alert"]},
        "then": closed(
            {
                **_EXPECT_COMMON,
                "alert": enum_of(ALERT_NAMES, "alert type"),
                "within": dur("must fire within this long"),
                "after_fault": integer("index in `faults` the window starts at (default: run start)", 0, 10**6),
                "never": {"type": "boolean", "description": "true: the alert must never fire"},
            },
            ["alert"],
            **{"x-context": "an alert expectation"},
        ),
        "else": {"required": ["metric"], "x-message": "an expect entry needs 'metric' (with op, value) or 'alert'"},
    },
}

#: The JSON Schema of a scenario file (what ``wsfinal scenario schema`` prints).
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://wsfinal.invalid/schemas/scenario.json",
    "title": "wsfinal scenario",
    "description": "A fake-exchange scenario: nodes, clients, manager settings, fault timeline, expectations.",
    **closed(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": {"type": "string", "description": "what the scenario tests"},
            "seed": integer("seed of every random stream", 0, 2**64 - 1, _D["scenario"]["seed"]),
            "duration": dur("length of the run"),
            "warmup": dur("start of the run left out of the metrics", _D["scenario"]["warmup"]),
            "nodes": {"type": "array", "items": _NODE, "minItems": 1, "maxItems": 256},
            "clients": closed(
                {
                    "connections": {"type": "array", "items": _CONNECTION, "minItems": 1, "maxItems": 10_000},
                    "workload": {"type": "array", "items": _WORKLOAD, "maxItems": 1000},
                },
                ["connections"],
            ),
            "manager": _MANAGER,
            "faults": {"type": "array", "items": FAULT_SCHEMA, "maxItems": 10_000},
            "expect": {"type": "array", "items": _EXPECT, "maxItems": 10_000},
        },
        ["name", "duration", "nodes", "clients"],
    ),
}

_VALIDATOR = Draft202012Validator(SCHEMA)


def structural_problems(document: Any) -> list[tuple[str, str]]:
    """Every schema violation of ``document`` as ``(key path, reason)``, deduplicated, in document order.

    ``document`` must have passed :func:`document_problems` (plain data, bounded depth and size).
    """
    return validation_problems(_VALIDATOR, document)
