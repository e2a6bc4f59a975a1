"""Quantities with units as scenario files write them: ``"250ms"``, ``"2s"``, ``"1.5m"``, ``"800/s"``, ``"64KB"``.

Each ``parse_*`` function takes the raw YAML value and returns a number in base units (seconds, per second,
bytes, bytes per second), or raises :class:`UnitError` saying what was expected. Durations and rates need a unit
(a bare ``2`` is ambiguous); sizes accept a bare integer as bytes. Sizes are binary: ``1KB`` = ``1KiB`` = 1024
bytes. The ``*_PATTERN`` constants are the same grammar as regular expressions, for the JSON Schema.
"""

from __future__ import annotations

import math
import re

from wsfinal.exceptions import UsageError

__all__ = [
    "BYTE_RATE_PATTERN",
    "DURATION_PATTERN",
    "DURATION_UNITS",
    "RATE_PATTERN",
    "SIZE_PATTERN",
    "SIZE_UNITS",
    "UnitError",
    "format_duration",
    "parse_byte_rate",
    "parse_duration",
    "parse_rate",
    "parse_size",
]


class UnitError(UsageError, ValueError):
    """A quantity could not be read; the message says what was given and what is expected."""


#: Seconds per duration unit. ``m`` is minutes (there is no month).
DURATION_UNITS: dict[str, float] = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
}

#: Bytes per size unit (case-insensitive; binary multiples).
SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1 << 10,
    "kib": 1 << 10,
    "mb": 1 << 20,
    "mib": 1 << 20,
    "gb": 1 << 30,
    "gib": 1 << 30,
}

_NUM = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_DUR_UNIT = r"(?:us|µs|ms|sec|s|min|m|h)"
_SIZE_UNIT = r"(?:[bB]|[kKmMgG][iI]?[bB])"

#: A duration: a non-negative number and a unit, e.g. ``250ms``, ``2s``, ``1.5m``.
DURATION_PATTERN = rf"^\s*{_NUM}\s*{_DUR_UNIT}\s*$"
#: An event rate: a count per time unit, e.g. ``800/s``, ``30/m``.
RATE_PATTERN = rf"^\s*{_NUM}\s*/\s*{_DUR_UNIT}\s*$"
#: A size: bytes with an optional unit, e.g. ``64KB``, ``1MB``, ``512`` (bytes).
SIZE_PATTERN = rf"^\s*{_NUM}\s*{_SIZE_UNIT}?\s*$"
#: A byte rate: a size per time unit, e.g. ``64KB/s``.
BYTE_RATE_PATTERN = rf"^\s*{_NUM}\s*{_SIZE_UNIT}?\s*/\s*{_DUR_UNIT}\s*$"

_SPLIT = re.compile(rf"^\s*(?P<num>[+-]?{_NUM}|[+-]?inf(?:inity)?|nan)\s*(?P<unit>[^\s/]*)\s*$", re.IGNORECASE)
_EXAMPLES = {
    "duration": "'250ms', '2s' or '1.5m'",
    "rate": "'800/s' or '30/m'",
    "size": "'64KB', '1MB' or a number of bytes",
    "byte rate": "'64KB/s' or '1MB/s'",
}


def _number_and_unit(text: str, what: str) -> tuple[float, str]:
    match = _SPLIT.match(text)
    if match is None:
        raise UnitError(f"cannot read {text!r} as a {what}; write e.g. {_EXAMPLES[what]}")
    number = float(match["num"])
    if math.isnan(number) or math.isinf(number):
        raise UnitError(f"{text!r}: a {what} must be a finite number")
    if number < 0:
        raise UnitError(f"{text!r}: a {what} must not be negative")
    return number, match["unit"]


def _check_type(value: object, what: str, *, numbers_ok: bool) -> str | None:
    """Return the text to parse, or None when ``value`` is a number accepted as is."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a {what}; write e.g. {_EXAMPLES[what]}")
    if isinstance(value, int | float):
        if numbers_ok:
            return None
        raise UnitError(f"{value!r} has no unit; write e.g. {_EXAMPLES[what]}")
    if not isinstance(value, str):
        raise UnitError(f"expected a {what} such as {_EXAMPLES[what]}, got {type(value).__name__}")
    return value


def _time_unit(unit: str, text: str, what: str) -> float:
    try:
        return DURATION_UNITS[unit]
    except KeyError:
        known = ", ".join(DURATION_UNITS)
        hint = " (units are lower case)" if unit.lower() in DURATION_UNITS else ""
        raise UnitError(f"{text!r}: unknown time unit {unit!r}{hint}; use one of {known}") from None


def _finite(value: float, text: str, what: str) -> float:
    if math.isinf(value) or math.isnan(value):
        raise UnitError(f"{text!r}: the {what} is too large")
    return value


def parse_duration(value: object) -> float:
    """Seconds from ``"250ms"``, ``"2s"``, ``"1.5m"``, ``"1h"``, ``"500us"``. A bare number is refused."""
    text = _check_type(value, "duration", numbers_ok=False)
    assert text is not None
    if "/" in text:
        raise UnitError(f"{text!r} is a rate, not a duration; write e.g. {_EXAMPLES['duration']}")
    number, unit = _number_and_unit(text, "duration")
    if not unit:
        raise UnitError(f"{text!r} has no unit; write e.g. {_EXAMPLES['duration']}")
    return _finite(number * _time_unit(unit, text, "duration"), text, "duration")


def parse_rate(value: object) -> float:
    """Events per second from ``"800/s"``, ``"30/m"``, ``"2/ms"``. A bare number is refused."""
    text = _check_type(value, "rate", numbers_ok=False)
    assert text is not None
    head, sep, per = text.partition("/")
    if not sep:
        raise UnitError(f"{text!r} has no time unit; write e.g. {_EXAMPLES['rate']}")
    number, unit = _number_and_unit(head, "rate")
    if unit:
        raise UnitError(f"{text!r}: unexpected {unit!r} before '/'; write e.g. {_EXAMPLES['rate']}")
    seconds = _time_unit(per.strip(), text, "rate")
    return _finite(number / seconds, text, "rate")


def parse_size(value: object) -> int:
    """Bytes from ``"64KB"``, ``"1MB"``, ``"512B"``, or a bare non-negative number of bytes (rounded down)."""
    text = _check_type(value, "size", numbers_ok=True)
    if text is None:
        assert isinstance(value, int | float)
        if not math.isfinite(value) or value < 0:
            raise UnitError(f"{value!r}: a size must be a finite number of bytes >= 0")
        return int(value)
    if "/" in text:
        raise UnitError(f"{text!r} is a rate, not a size; write e.g. {_EXAMPLES['size']}")
    number, unit = _number_and_unit(text, "size")
    factor = 1
    if unit:
        try:
            factor = SIZE_UNITS[unit.lower()]
        except KeyError:
            raise UnitError(f"{text!r}: unknown size unit {unit!r}; use B, KB, MB or GB") from None
    return int(_finite(number * factor, text, "size"))


def parse_byte_rate(value: object) -> float:
    """Bytes per second from ``"64KB/s"``, ``"1MB/s"``, ``"500B/ms"``. A bare number is refused."""
    text = _check_type(value, "byte rate", numbers_ok=False)
    assert text is not None
    head, sep, per = text.partition("/")
    if not sep:
        raise UnitError(f"{text!r} has no time unit; write e.g. {_EXAMPLES['byte rate']}")
    size = parse_size(head)
    seconds = _time_unit(per.strip(), text, "byte rate")
    return _finite(size / seconds, text, "byte rate")


def format_duration(seconds: float) -> str:
    """A short human form of a duration in seconds (``0.25`` -> ``"250ms"``), for messages."""
    if seconds != 0 and abs(seconds) < 1e-3:
        return f"{seconds * 1e6:g}us"
    if abs(seconds) < 1:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds:g}s"
