"""The declared schema of scenario files (JSON Schema, Draft 2020-12) and how its violations are reported.

:data:`SCHEMA` is the one source of truth: the loader validates against it and ``wsfinal scenario schema``
prints it for editors. Units are strings matched by the patterns of :mod:`simulator.units` (marked with the
``x-unit`` annotation so that errors come from the unit parser, which says what was expected). Defaults live in
:data:`DEFAULTS`, used both for the schema's ``default`` annotations and by the loader.
:func:`structural_problems` turns ``jsonschema`` errors into ``(key path, reason)`` pairs, the one place where
that library's error objects are translated; unknown keys get a "did you mean" when one is close.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from wsfinal.alert_rules import MetricSources
from wsfinal.alerts import DEFAULT_RULES, AlertType
from wsfinal.config import ConnectionType, LoadBalancingStrategy

from . import units

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
_CLOSE_CODES = (1000, 1001, 1006, 1008, 1011, 1012, 1013)

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
    },
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
    "fault": {"direction": "both", "probability": 1.0},
    "fault_params": {
        "latency": {"jitter": "0s", "distribution": "normal"},
        "slicer": {"size_variation": 0, "delay": "0s"},
        "close": {"code": 1001, "reason": ""},
        "reorder": {"gap": 1},
        "error_reply": {"rate": 1.0},
        "malformed": {"rate": 1.0},
        "oversized": {"rate": 1.0},
        "binary": {"rate": 1.0},
    },
}

_UNIT_HINTS = {
    "duration": "a duration such as '250ms', '2s', '1.5m' (units us, ms, s, m, h)",
    "rate": "a rate such as '800/s' or '30/m'",
    "size": "a size such as '64KB', '1MB' (binary multiples) or a number of bytes",
    "byte_rate": "a byte rate such as '64KB/s'",
}


def _unit(kind: str, description: str, default: Any = None) -> dict[str, Any]:
    pattern = {
        "duration": units.DURATION_PATTERN,
        "rate": units.RATE_PATTERN,
        "size": units.SIZE_PATTERN,
        "byte_rate": units.BYTE_RATE_PATTERN,
    }[kind]
    out: dict[str, Any] = {
        "type": ["string", "integer"] if kind == "size" else "string",
        "pattern": pattern,
        "description": f"{description} ({_UNIT_HINTS[kind]})",
        "x-unit": kind,
    }
    if kind == "size":
        out["minimum"] = 0
    if default is not None:
        out["default"] = default
    return out


def _dur(description: str, default: Any = None) -> dict[str, Any]:
    return _unit("duration", description, default)


def _fraction(description: str, default: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 1, "description": description}
    if default is not None:
        out["default"] = default
    return out


def _int(description: str, minimum: int, maximum: int, default: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "minimum": minimum, "maximum": maximum, "description": description}
    if default is not None:
        out["default"] = default
    return out


def _enum(values: Iterable[Any], description: str, default: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"enum": list(values), "description": description}
    if default is not None:
        out["default"] = default
    return out


def _closed(properties: dict[str, Any], required: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def _variants(
    key: str, base: dict[str, Any], variants: dict[str, tuple[dict[str, Any], list[str]]], default: str | None
) -> list[dict[str, Any]]:
    """One ``if key == X then (base + X's keys, nothing else)`` branch per variant.

    The default variant's ``if`` does not require the key, so it also applies when the key is left out.
    """
    branches = []
    for name, (props, required) in variants.items():
        cond: dict[str, Any] = {"properties": {key: {"const": name}}}
        if name != default:
            cond["required"] = [key]
        then = _closed({**base, **props}, required, **{"x-context": f"{key} {name!r}"})
        branches.append({"if": cond, "then": then})
    return branches


_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", "maxLength": 64}
_NODE_REF = {**_ID, "description": "the id of a node in `nodes`"}
_CONN_TYPES = [t.value for t in ConnectionType]
_STRATEGIES = [s.value for s in LoadBalancingStrategy]
_D = DEFAULTS

_SERVICE_BASE = {
    "distribution": _enum(("constant", "exponential", "lognormal", "empirical"), "service-time distribution"),
    "workers": _int("requests served in parallel", 1, 100_000, _D["service"]["workers"]),
}
_SERVICE = {
    "type": "object",
    "description": "the node's service model: workers taking service times from a distribution",
    "properties": _SERVICE_BASE,
    "required": ["distribution"],
    "allOf": _variants(
        "distribution",
        _SERVICE_BASE,
        {
            "constant": ({"value": _dur("every service time")}, ["value"]),
            "exponential": ({"mean": _dur("mean service time")}, ["mean"]),
            "lognormal": (
                {
                    "median": _dur("median service time"),
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
                    "unit": _enum(("ns", "us", "ms", "s"), "unit of the values in the CSV", _D["empirical"]["unit"]),
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

_NODE = _closed(
    {
        "id": {**_ID, "description": "unique node id"},
        "host": {"type": "string", "minLength": 1, "default": _D["node"]["host"], "description": "bind address"},
        "port": _int("TCP port; 0 = chosen by the OS", 0, 65535, _D["node"]["port"]),
        "service": _SERVICE,
        "queue_limit": _int(
            "requests waiting beyond the workers before replies are refused", 0, 10**7, _D["node"]["queue_limit"]
        ),
        "network": _closed(
            {
                "latency": _dur("one-way latency, each direction", _D["network"]["latency"]),
                "jitter": _dur("latency jitter", _D["network"]["jitter"]),
            },
            description="network delay between clients and this node",
        ),
        "heartbeat_interval": _dur("'hb' after this much channel silence", _D["node"]["heartbeat_interval"]),
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
        "max_subscriptions": _int(
            "subscriptions allowed per connection (error 10305 beyond)", 1, 10_000, _D["node"]["max_subscriptions"]
        ),
        "max_frame_size": _unit(
            "size", "largest client frame accepted (bigger: close 1009)", _D["node"]["max_frame_size"]
        ),
        "market_update_interval": _dur("mean time between market events", _D["node"]["market_update_interval"]),
        "platform_status": _enum(
            (0, 1), "platform status in the info event (0 = maintenance)", _D["node"]["platform_status"]
        ),
    },
    ["id", "service"],
)

_SUBSCRIPTION_BASE = {
    "channel": _enum(("ticker", "trades", "book"), "public channel"),
    "symbol": {"type": "string", "minLength": 1},
}
_SUBSCRIPTION = {
    "type": "object",
    "properties": _SUBSCRIPTION_BASE,
    "required": ["channel", "symbol"],
    "allOf": _variants(
        "channel",
        _SUBSCRIPTION_BASE,
        {
            "ticker": ({}, []),
            "trades": ({}, []),
            "book": (
                {
                    "prec": _enum(("P0", "P1", "P2", "P3", "P4"), "price aggregation", "P0"),
                    "len": _enum((1, 25, 100, 250), "price levels", 25),
                    "freq": _enum(("F0", "F1"), "update frequency", "F0"),
                },
                [],
            ),
        },
        None,
    ),
}

_CONNECTION = _closed(
    {
        "type": _enum(_CONN_TYPES, "connection type"),
        "node": _NODE_REF,
        "count": _int("connections in this group", 1, 100_000, _D["connection"]["count"]),
        "api_key": {"type": "string", "minLength": 1, "description": "key from the node's api_keys (trading)"},
        "subscriptions": {"type": "array", "items": _SUBSCRIPTION, "maxItems": 1000},
        "weight": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1e6,
            "default": _D["connection"]["weight"],
            "description": "balancing weight",
        },
        "max_reconnect_attempts": _int(
            "client reconnect attempts", 0, 1_000_000, _D["connection"]["max_reconnect_attempts"]
        ),
        "reconnect_delay": _dur("client delay before reconnecting", _D["connection"]["reconnect_delay"]),
        "heartbeat_interval": _dur("client heartbeat interval", _D["connection"]["heartbeat_interval"]),
        "connection_timeout": _dur("client connect timeout", _D["connection"]["connection_timeout"]),
    },
    ["type", "node"],
)

_WORKLOAD_BASE = {
    "type": _enum(_CONN_TYPES, "connections that carry this workload"),
    "arrival": _enum(
        ("constant", "poisson", "bursty", "schedule", "closed_loop"), "arrival process", _D["workload"]["arrival"]
    ),
    "start": _dur("when the workload starts", _D["workload"]["start"]),
    "stop": _dur("when it stops (default: end of the run)"),
    "symbol": {"type": "string", "minLength": 1, "description": "order symbol (default: node's first)"},
}
_RATE = _unit("rate", "requests per time unit")
_WORKLOAD = {
    "type": "object",
    "properties": _WORKLOAD_BASE,
    "required": ["type"],
    "allOf": _variants(
        "arrival",
        _WORKLOAD_BASE,
        {
            "constant": ({"rate": _RATE}, ["rate"]),
            "poisson": ({"rate": _RATE}, ["rate"]),
            "bursty": ({"rate": _RATE, "on": _dur("burst length"), "off": _dur("pause length")}, ["rate", "on", "off"]),
            "schedule": (
                {
                    "schedule": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 10_000,
                        "items": _closed({"at": _dur("step time"), "rate": _RATE}, ["at", "rate"]),
                    }
                },
                ["schedule"],
            ),
            "closed_loop": (
                {
                    "concurrency": _int("requests kept outstanding", 1, 100_000),
                    "think": _dur("pause after each reply", _D["workload"]["think"]),
                },
                ["concurrency"],
            ),
        },
        "poisson",
    ),
}

_RULE = _closed(
    {
        "threshold": {
            "type": ["number", "string"],
            "pattern": units.DURATION_PATTERN,
            "x-unit": "duration",
            "description": "the rule's threshold in its own unit; a duration is converted to milliseconds",
        },
        "metric": _enum(
            sorted(MetricSources.METRICS),
            "the series the rule watches (e.g. high_latency on latency_quantile_ms, its default, or peak_latency_ms)",
        ),
        "for": _dur("how long the condition must hold before the alert fires"),
        "keep_firing_for": _dur("how long the alert keeps firing after the condition clears"),
        "enabled": {"type": "boolean", "description": "false removes the rule"},
        "params": {
            "type": "object",
            "additionalProperties": {"type": ["number", "string", "boolean"]},
            "description": "rule source settings (window_s, min_requests, ...); durations become seconds",
        },
    },
    description="overrides of one alert rule of wsfinal.alerts",
)
_ALERT_RULES = _closed(
    {name: _RULE for name in RULE_NAMES},
    description="alert rule overrides by rule name (see wsfinal.alerts.DEFAULT_RULES)",
)

_MANAGER = _closed(
    {
        "strategy": _enum(_STRATEGIES, "load-balancing strategy", _D["manager"]["strategy"]),
        "health_check_interval": _dur("balancer health checks", _D["manager"]["health_check_interval"]),
        "analytics_interval": _dur("analytics aggregation", _D["manager"]["analytics_interval"]),
        "alert_check_interval": _dur("alert rule evaluation", _D["manager"]["alert_check_interval"]),
        "request_timeout": _dur("a request with no reply by then is a timeout", _D["manager"]["request_timeout"]),
        "max_connections": _int("manager capacity", 1, 10**7, _D["manager"]["max_connections"]),
        "enable_analytics": {"type": "boolean", "default": _D["manager"]["enable_analytics"]},
        "enable_alerts": {"type": "boolean", "default": _D["manager"]["enable_alerts"]},
        "enable_load_balancing": {"type": "boolean", "default": _D["manager"]["enable_load_balancing"]},
        "alert_rules": _ALERT_RULES,
    }
)

_RATE_P = _fraction("share of messages affected")
_FAULT_PARAMS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "latency": (
        {
            "latency": _dur("added delay"),
            "jitter": _dur("delay spread", "0s"),
            "distribution": _enum(("normal", "uniform", "exponential"), "jitter distribution", "normal"),
        },
        ["latency"],
    ),
    "latency_factor": (
        {
            "factor": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 1000,
                "description": "multiplies network and service time",
            }
        },
        ["factor"],
    ),
    "bandwidth": ({"rate": _unit("byte_rate", "bandwidth")}, ["rate"]),
    "slow_close": ({"delay": _dur("delay before the close completes")}, ["delay"]),
    "timeout": ({"timeout": _dur("close after this long with data stopped; 0 = half-open forever")}, ["timeout"]),
    "reset": ({}, []),
    "slicer": (
        {
            "average_size": _unit("size", "mean fragment size"),
            "size_variation": _unit("size", "fragment size spread", 0),
            "delay": _dur("delay between fragments", "0s"),
        },
        ["average_size"],
    ),
    "limit_data": ({"bytes": _unit("size", "close after this many bytes")}, ["bytes"]),
    "node_down": ({}, []),
    "close": (
        {
            "code": _enum(_CLOSE_CODES, "close code", 1001),
            "reason": {"type": "string", "maxLength": 123, "default": ""},
        },
        [],
    ),
    "loss": ({"rate": _RATE_P}, ["rate"]),
    "duplicate": ({"rate": _RATE_P}, ["rate"]),
    "reorder": ({"rate": _RATE_P, "gap": _int("messages held back", 1, 10_000, 1)}, ["rate"]),
    "error_reply": (
        {
            "code": _int("Bitfinex error code, e.g. 10001", 1, 99_999),
            "rate": _fraction("share of order requests answered with the code", 1.0),
        },
        ["code"],
    ),
    "malformed": ({"rate": _fraction("share replaced by invalid JSON", 1.0)}, []),
    "oversized": ({"size": _unit("size", "frame size"), "rate": _fraction("share of messages", 1.0)}, ["size"]),
    "binary": ({"rate": _fraction("share sent as binary frames", 1.0)}, []),
    "info_reconnect": ({}, []),
    "maintenance": ({}, []),
    "connect_rate_limit": (
        {"max_connects": _int("connects allowed per window", 0, 10**6), "window": _dur("window length")},
        ["max_connects", "window"],
    ),
    "capacity_drop": ({"workers": _int("workers during the fault", 0, 100_000)}, ["workers"]),
}
for _kind, _defaults in DEFAULTS["fault_params"].items():  # the schema shows the loader's defaults
    for _key, _value in _defaults.items():
        _FAULT_PARAMS[_kind][0][_key] = {**_FAULT_PARAMS[_kind][0][_key], "default": _value}

#: Every fault kind, in the order of the table in docs/scenarios.md.
FAULT_KINDS: tuple[str, ...] = tuple(_FAULT_PARAMS)
_FAULT_BASE = {
    "kind": _enum(_FAULT_PARAMS, "fault kind"),
    "at": _dur("start, from the start of the run"),
    "duration": _dur("how long (default: to the end of the run; instant kinds take none)"),
    "node": {**_NODE_REF, "description": "affected node (default: every node)"},
    "direction": _enum(
        ("up", "down", "both"), "up = client->exchange, down = exchange->client", _D["fault"]["direction"]
    ),
    "connection": _int("index of one client connection on `node` (default: all)", 0, 10**6),
    "probability": _fraction("chance each connection is affected (toxicity)", _D["fault"]["probability"]),
}
_FAULT = {
    "type": "object",
    "properties": _FAULT_BASE,
    "required": ["kind", "at"],
    "allOf": _variants("kind", _FAULT_BASE, _FAULT_PARAMS, None),
}

_EXPECT_COMMON = {
    "node": _NODE_REF,
    "connection_type": _enum(_CONN_TYPES, "restrict to connections of this type"),
}
_EXPECT = {
    "type": "object",
    "description": "a metric assertion {metric, op, value} or an alert assertion {alert, within | never}",
    "if": {"required": ["metric"]},
    "then": _closed(
        {
            **_EXPECT_COMMON,
            "metric": _enum(METRIC_NAMES, "metric over the run after warm-up"),
            "op": _enum((">=", "<=", ">", "<", "=="), "comparison"),
            "value": {"type": ["number", "string"], "description": "number (a duration allowed for *_ms)"},
            "strategy": _enum(_STRATEGIES, "restrict to requests routed by this strategy"),
        },
        ["metric", "op", "value"],
        **{
            "x-context": "a metric expectation",
            "x-conflicts": {"alert": "an expect entry has either 'metric' or 'alert', not both"},
        },
    ),
    "else": {
        "if": {"required": ["alert"]},
        "then": _closed(
            {
                **_EXPECT_COMMON,
                "alert": _enum(ALERT_NAMES, "alert type"),
                "within": _dur("must fire within this long"),
                "after_fault": _int("index in `faults` the window starts at (default: run start)", 0, 10**6),
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
    **_closed(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "description": {"type": "string", "description": "what the scenario tests"},
            "seed": _int("seed of every random stream", 0, 2**64 - 1, _D["scenario"]["seed"]),
            "duration": _dur("length of the run"),
            "warmup": _dur("start of the run left out of the metrics", _D["scenario"]["warmup"]),
            "nodes": {"type": "array", "items": _NODE, "minItems": 1, "maxItems": 256},
            "clients": _closed(
                {
                    "connections": {"type": "array", "items": _CONNECTION, "minItems": 1, "maxItems": 10_000},
                    "workload": {"type": "array", "items": _WORKLOAD, "maxItems": 1000},
                },
                ["connections"],
            ),
            "manager": _MANAGER,
            "faults": {"type": "array", "items": _FAULT, "maxItems": 10_000},
            "expect": {"type": "array", "items": _EXPECT, "maxItems": 10_000},
        },
        ["name", "duration", "nodes", "clients"],
    ),
}

_VALIDATOR = Draft202012Validator(SCHEMA)


# --- reporting -----------------------------------------------------------------------------------------------


def format_path(parts: Iterable[str | int]) -> str:
    """``["faults", 2, "latency"]`` -> ``"faults[2].latency"``; odd keys are quoted: ``api_keys["a.b"]``."""
    out = ""
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, part)
    return out


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _join(path: str, key: object) -> str:
    if not isinstance(key, str):
        return f"{path}[{key!r}]"
    if not _PLAIN_KEY.match(key):
        return f"{path}[{json.dumps(key)}]"
    return f"{path}.{key}" if path else key


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """``"; did you mean 'latency'?"`` when a choice is close to ``word``, else ``""``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _type_name(value: object) -> str:
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, int):
        return f"an integer ({value})"
    return f"a number ({value!r})"


_JSON_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _unit_reason(kind: str, value: object) -> str | None:
    parser = {
        "duration": units.parse_duration,
        "rate": units.parse_rate,
        "size": units.parse_size,
        "byte_rate": units.parse_byte_rate,
    }[kind]
    try:
        parser(value)
    except units.UnitError as exc:
        return str(exc)
    return None


def _context(schema: Any) -> str:
    ctx = schema.get("x-context") if isinstance(schema, dict) else None
    return f" for {ctx}" if ctx else ""


def _translate(err: ValidationError) -> Iterator[tuple[str, str]]:
    path = format_path(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    validator, expected, instance = err.validator, err.validator_value, err.instance
    if "x-message" in schema:
        yield path, str(schema["x-message"])
        return
    if validator == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        conflicts = schema.get("x-conflicts", {})
        for key in instance:
            if key in conflicts:
                yield _join(path, key), str(conflicts[key])
            elif key not in allowed:
                hint = did_you_mean(key, allowed) or f"; allowed keys: {', '.join(allowed)}"
                yield _join(path, key), f"unknown key {key!r}{_context(schema)}{hint}"
        return
    if validator == "required":
        for key in expected:
            if key not in instance:
                yield _join(path, key), f"missing: this key is required{_context(schema)}"
        return
    unit = schema.get("x-unit")
    if unit and validator in ("type", "pattern", "minimum"):
        reason = _unit_reason(unit, instance)
        if reason:
            yield path, reason
            return
    if validator == "enum":
        choices = ", ".join(str(c) for c in expected)
        hint = did_you_mean(instance, [str(c) for c in expected])
        yield path, f"{instance!r} is not one of: {choices}{hint}"
    elif validator == "type":
        wanted = [expected] if isinstance(expected, str) else list(expected)
        names = " or ".join(_JSON_TYPE_NAMES.get(t, t) for t in wanted)
        yield path, f"must be {names}, got {_type_name(instance)}"
    elif validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[validator]
        yield path, f"must be {op} {expected}, got {instance!r}"
    elif validator in ("minItems", "maxItems"):
        word = "at least" if validator == "minItems" else "at most"
        yield path, f"must have {word} {expected} item(s), got {len(instance)}"
    elif validator in ("minLength", "maxLength"):
        if expected == 1 and validator == "minLength":
            yield path, "must not be empty"
        else:
            word = "at least" if validator == "minLength" else "at most"
            yield path, f"must have {word} {expected} character(s), got {len(instance)}"
    elif validator == "uniqueItems":
        yield path, "must not repeat items"
    elif validator == "pattern":
        yield path, f"{instance!r} is not a valid value here (expected to match {expected})"
    elif validator == "propertyNames":
        yield path, f"invalid key: {err.message}"
    else:
        yield path, err.message


def _document_order(document: Any) -> dict[str, int]:
    """The position of every key path in the document, in reading order (iterative, bounded by the caller)."""
    order: dict[str, int] = {}
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        order.setdefault(path, len(order))
        if isinstance(value, dict):
            stack.extend((v, _join(path, k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
    return order


def _sorted(problems: Iterable[tuple[str, str]], document: Any) -> list[tuple[str, str]]:
    """Deduplicate and sort problems in document order; a missing key sorts right after its parent."""
    order = _document_order(document)

    def key(problem: tuple[str, str]) -> tuple[int, int]:
        path = problem[0]
        while path not in order:
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                return (len(order), 0)
            path = path[:cut]
        return (order[path], 0 if path == problem[0] else 1)

    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=key)


def structural_problems(document: Any) -> list[tuple[str, str]]:
    """Every schema violation of ``document`` as ``(key path, reason)``, deduplicated, in document order.

    ``document`` must have passed :func:`document_problems` (plain data, bounded depth and size).
    """
    problems = [p for err in _VALIDATOR.iter_errors(document) for p in _translate(err)]
    return _sorted(problems, document)


# --- raw document checks and YAML ------------------------------------------------------------------------------

MAX_DEPTH = 40
MAX_NODES = 200_000


def document_problems(document: Any) -> list[tuple[str, str]]:
    """Problems JSON Schema cannot see: non-string keys, non-JSON values, NaN/inf, absurd depth or size.

    Run before :func:`structural_problems`; a document that passes is plain JSON-like data.
    """
    problems: list[tuple[str, str]] = []
    count = 0
    stack: list[tuple[Any, list[str | int], int]] = [(document, [], 0)]
    while stack:
        value, parts, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            return [("", f"the document is too large (more than {MAX_NODES} values)")]
        if depth > MAX_DEPTH:
            return [(format_path(parts), f"nested too deeply (more than {MAX_DEPTH} levels)")]
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    problems.append((format_path(parts), f"key {key!r} must be a string, got {_type_name(key)}"))
                    continue
                stack.append((item, [*parts, key], depth + 1))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                stack.append((item, [*parts, i], depth + 1))
        elif isinstance(value, float):
            if math.isnan(value) or math.isinf(value):
                problems.append((format_path(parts), f"must be a finite number, got {value!r}"))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**64:
            problems.append((format_path(parts), "the integer is too large"))
        elif not (value is None or isinstance(value, str | int | bool)):
            problems.append((format_path(parts), f"unsupported value of type {type(value).__name__}"))
    return _sorted(problems, document)
