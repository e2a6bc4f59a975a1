"""Constructors of the JSON Schema fragments the scenario schema is declared with.

Each returns a plain ``dict``. Besides standard keywords they set the annotations that
:mod:`simulator.scenario_problems` turns into readable messages: ``x-unit`` (the value is parsed by
:mod:`simulator.units`, whose error says what was expected), ``x-context`` (what the mapping is, named in
"unknown key" and "missing" messages), ``x-conflicts`` and ``x-message`` (set by hand where needed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import units

__all__ = ["ID", "NODE_REF", "UNIT_KINDS", "closed", "dur", "enum_of", "fraction", "integer", "unit", "variants"]

#: Every ``x-unit`` kind: ``(pattern for the schema, parser whose error is the message, hint for editors)``.
UNIT_KINDS: dict[str, tuple[str, Callable[[object], float], str]] = {
    "duration": (
        units.DURATION_PATTERN,
        units.parse_duration,
        "a duration such as '250ms', '2s', '1.5m' (units us, ms, s, m, h)",
    ),
    "rate": (units.RATE_PATTERN, units.parse_rate, "a rate such as '800/s' or '30/m'"),
    "size": (
        units.SIZE_PATTERN,
        units.parse_size,
        "a size such as '64KB', '1MB' (binary multiples) or a number of bytes",
    ),
    "byte_rate": (units.BYTE_RATE_PATTERN, units.parse_byte_rate, "a byte rate such as '64KB/s'"),
}


def _with_default(out: dict[str, Any], default: Any) -> dict[str, Any]:
    if default is not None:
        out["default"] = default
    return out


def unit(kind: str, description: str, default: Any = None) -> dict[str, Any]:
    """A value in a unit of :data:`UNIT_KINDS` (a size may also be a plain number of bytes)."""
    pattern, _, hint = UNIT_KINDS[kind]
    out: dict[str, Any] = {
        "type": ["string", "integer"] if kind == "size" else "string",
        "pattern": pattern,
        "description": f"{description} ({hint})",
        "x-unit": kind,
    }
    if kind == "size":
        out["minimum"] = 0
    return _with_default(out, default)


def dur(description: str, default: Any = None) -> dict[str, Any]:
    """A duration such as ``"250ms"``."""
    return unit("duration", description, default)


def fraction(description: str, default: Any = None) -> dict[str, Any]:
    """A number in 0..1."""
    return _with_default({"type": "number", "minimum": 0, "maximum": 1, "description": description}, default)


def integer(description: str, minimum: int, maximum: int, default: Any = None) -> dict[str, Any]:
    """An integer in ``minimum..maximum``."""
    out = {"type": "integer", "minimum": minimum, "maximum": maximum, "description": description}
    return _with_default(out, default)


def enum_of(values: Iterable[Any], description: str, default: Any = None) -> dict[str, Any]:
    """One of ``values``."""
    return _with_default({"enum": list(values), "description": description}, default)


def closed(properties: dict[str, Any], required: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """A mapping with exactly these keys allowed (``extra``: more keywords or annotations)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def variants(
    key: str, base: dict[str, Any], cases: dict[str, tuple[dict[str, Any], list[str]]], default: str | None
) -> list[dict[str, Any]]:
    """One ``if key == X then (base + X's keys, nothing else)`` branch per variant.

    The default variant's ``if`` does not require the key, so it also applies when the key is left out.
    """
    branches = []
    for name, (props, required) in cases.items():
        cond: dict[str, Any] = {"properties": {key: {"const": name}}}
        if name != default:
            cond["required"] = [key]
        then = closed({**base, **props}, required, **{"x-context": f"{key} {name!r}"})
        branches.append({"if": cond, "then": then})
    return branches


#: An id: of a node, say.
ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", "maxLength": 64}
#: A reference to a node by its id.
NODE_REF = {**ID, "description": "the id of a node in `nodes`"}
