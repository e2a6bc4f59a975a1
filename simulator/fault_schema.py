"""The ``faults`` section of the scenario schema: every fault kind with its parameters and their defaults.

The kinds are those of the fault engine (:data:`simulator.fault_vocabulary.KINDS`), in the order of the table
in docs/scenarios.md. :mod:`simulator.scenario_schema` puts :data:`FAULT_SCHEMA` under ``faults`` and the
defaults into its ``DEFAULTS`` (the loader fills them in).
"""

from __future__ import annotations

from typing import Any

from .schema_fragments import NODE_REF, dur, enum_of, fraction, integer, unit, variants

__all__ = ["FAULT_DEFAULTS", "FAULT_KINDS", "FAULT_PARAM_DEFAULTS", "FAULT_SCHEMA"]

_CLOSE_CODES = (1000, 1001, 1006, 1008, 1011, 1012, 1013)

#: Defaults of the keys every fault has.
FAULT_DEFAULTS: dict[str, Any] = {"direction": "both", "probability": 1.0}
#: Defaults of the kinds' own parameters, by kind.
FAULT_PARAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "latency": {"jitter": "0s", "distribution": "normal"},
    "slicer": {"size_variation": 0, "delay": "0s"},
    "close": {"code": 1001, "reason": ""},
    "reorder": {"gap": 1},
    "error_reply": {"rate": 1.0},
    "malformed": {"rate": 1.0},
    "oversized": {"rate": 1.0},
    "binary": {"rate": 1.0},
}

_RATE_P = fraction("share of messages affected")
_FAULT_PARAMS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "latency": (
        {
            "latency": dur("added delay"),
            "jitter": dur("delay spread"),
            "distribution": enum_of(("normal", "uniform", "exponential"), "jitter distribution"),
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
    "bandwidth": ({"rate": unit("byte_rate", "bandwidth")}, ["rate"]),
    "slow_close": ({"delay": dur("delay before the close completes")}, ["delay"]),
    "timeout": ({"timeout": dur("close after this long with data stopped; 0 = half-open forever")}, ["timeout"]),
    "reset": ({}, []),
    "slicer": (
        {
            "average_size": unit("size", "mean fragment size"),
            "size_variation": unit("size", "fragment size spread"),
            "delay": dur("delay between fragments"),
        },
        ["average_size"],
    ),
    "limit_data": ({"bytes": unit("size", "close after this many bytes")}, ["bytes"]),
    "node_down": ({}, []),
    "close": (
        {
            "code": enum_of(_CLOSE_CODES, "close code"),
            "reason": {"type": "string", "maxLength": 123},
        },
        [],
    ),
    "loss": ({"rate": _RATE_P}, ["rate"]),
    "duplicate": ({"rate": _RATE_P}, ["rate"]),
    "reorder": ({"rate": _RATE_P, "gap": integer("messages held back", 1, 10_000)}, ["rate"]),
    "error_reply": (
        {
            "code": integer("Bitfinex error code, e.g. 10001", 1, 99_999),
            "rate": fraction("share of order requests answered with the code"),
        },
        ["code"],
    ),
    "malformed": ({"rate": fraction("share replaced by invalid JSON")}, []),
    "oversized": ({"size": unit("size", "frame size"), "rate": fraction("share of messages")}, ["size"]),
    "binary": ({"rate": fraction("share sent as binary frames")}, []),
    "info_reconnect": ({}, []),
    "maintenance": ({}, []),
    "connect_rate_limit": (
        {"max_connects": integer("connects allowed per window", 0, 10**6), "window": dur("window length")},
        ["max_connects", "window"],
    ),
    "capacity_drop": ({"workers": integer("workers during the fault", 0, 100_000)}, ["workers"]),
}
for _kind, _defaults in FAULT_PARAM_DEFAULTS.items():  # the schema shows the loader's defaults, declared once
    for _key, _value in _defaults.items():
        _FAULT_PARAMS[_kind][0][_key] = {**_FAULT_PARAMS[_kind][0][_key], "default": _value}

#: Every fault kind, in the order of the table in docs/scenarios.md.
FAULT_KINDS: tuple[str, ...] = tuple(_FAULT_PARAMS)
_FAULT_BASE = {
    "kind": enum_of(_FAULT_PARAMS, "fault kind"),
    "at": dur("start, from the start of the run"),
    "duration": dur("how long (default: to the end of the run; instant kinds take none)"),
    "node": {**NODE_REF, "description": "affected node (default: every node)"},
    "direction": enum_of(
        ("up", "down", "both"), "up = client->exchange, down = exchange->client", FAULT_DEFAULTS["direction"]
    ),
    "connection": integer("index of one client connection on `node` (default: all)", 0, 10**6),
    "probability": fraction("chance each connection is affected (toxicity)", FAULT_DEFAULTS["probability"]),
}
#: The schema of one entry of ``faults``.
FAULT_SCHEMA = {
    "type": "object",
    "properties": _FAULT_BASE,
    "required": ["kind", "at"],
    "allOf": variants("kind", _FAULT_BASE, _FAULT_PARAMS, None),
}
