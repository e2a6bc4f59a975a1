"""Tests of simulator.units: every accepted form and every error, plus agreement between patterns and parsers."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.units import (
    BYTE_RATE_PATTERN,
    DURATION_PATTERN,
    RATE_PATTERN,
    SIZE_PATTERN,
    UnitError,
    format_duration,
    parse_byte_rate,
    parse_duration,
    parse_rate,
    parse_size,
)
from wsfinal.exceptions import WsFinalError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("2s", 2.0),
        ("1.5m", 90.0),
        ("1h", 3600.0),
        ("500us", 0.0005),
        ("500µs", 0.0005),
        ("3sec", 3.0),
        ("2min", 120.0),
        (".5s", 0.5),
        ("1e-3s", 0.001),
        (" 2 s ", 2.0),
        ("0s", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert re.search(DURATION_PATTERN, text)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2", "'2' has no unit"),
        (2, "2 has no unit"),
        (2.5, "2.5 has no unit"),
        ("-2s", "must not be negative"),
        ("2S", "unknown time unit 'S' (units are lower case)"),
        ("2x", "unknown time unit 'x'"),
        ("infs", "must be a finite number"),
        ("nan s", "must be a finite number"),
        ("1e400s", "must be a finite number"),
        ("1e306h", "too large"),
        (True, "True is not a duration"),
        (None, "got NoneType"),
        ([1], "got list"),
        ("800/s", "is a rate, not a duration"),
        ("", "cannot read ''"),
        ("two seconds", "cannot read 'two seconds'"),
    ],
)
def test_duration_errors(value: object, message: str) -> None:
    with pytest.raises(UnitError) as info:
        parse_duration(value)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, WsFinalError)


@pytest.mark.parametrize(("text", "per_s"), [("800/s", 800.0), ("30/m", 0.5), ("2/ms", 2000.0), ("7.5 / s", 7.5)])
def test_rates(text: str, per_s: float) -> None:
    assert parse_rate(text) == pytest.approx(per_s)
    assert re.search(RATE_PATTERN, text)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("800", "has no time unit"),
        (800, "800 has no unit"),
        ("800/x", "unknown time unit 'x'"),
        ("800ms/s", "unexpected 'ms' before '/'"),
        ("-1/s", "must not be negative"),
        ("abc/s", "cannot read 'abc'"),
        ("1e308/us", "too large"),
    ],
)
def test_rate_errors(value: object, message: str) -> None:
    with pytest.raises(UnitError, match=re.escape(message)):
        parse_rate(value)


@pytest.mark.parametrize(
    ("value", "nbytes"),
    [("64KB", 65536), ("1MB", 1 << 20), ("1GB", 1 << 30), ("512B", 512), ("512", 512), (512, 512),
     ("1kib", 1024), ("2.5KB", 2560), ("3MiB", 3 << 20), (0, 0)],
)  # fmt: skip
def test_sizes(value: object, nbytes: int) -> None:
    assert parse_size(value) == nbytes
    assert re.search(SIZE_PATTERN, str(value))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("64XB", "unknown size unit 'XB'"),
        ("-1", "must not be negative"),
        (-1, "finite number of bytes >= 0"),
        (math.inf, "finite number of bytes >= 0"),
        ("1/s", "is a rate, not a size"),
        (False, "False is not a size"),
        ({}, "got dict"),
    ],
)
def test_size_errors(value: object, message: str) -> None:
    with pytest.raises(UnitError, match=re.escape(message)):
        parse_size(value)


@pytest.mark.parametrize(("text", "per_s"), [("64KB/s", 65536.0), ("1MB/s", float(1 << 20)), ("500/ms", 500e3)])
def test_byte_rates(text: str, per_s: float) -> None:
    assert parse_byte_rate(text) == pytest.approx(per_s)
    assert re.search(BYTE_RATE_PATTERN, text)


@pytest.mark.parametrize(
    ("value", "message"),
    [("64KB", "has no time unit"), (64, "has no unit"), ("64KB/x", "unknown time unit"), ("64QB/s", "size unit")],
)
def test_byte_rate_errors(value: object, message: str) -> None:
    with pytest.raises(UnitError, match=re.escape(message)):
        parse_byte_rate(value)


def test_format_duration() -> None:
    assert format_duration(0.25) == "250ms"
    assert format_duration(2.0) == "2s"
    assert format_duration(0.0005) == "500us"
    assert format_duration(0) == "0ms"


@given(st.text(max_size=20))
def test_pattern_and_parser_agree_on_durations(text: str) -> None:
    """Whatever the schema's pattern accepts parses (or is refused only for overflow); no other exception."""
    try:
        seconds = parse_duration(text)
    except UnitError as exc:
        if re.search(DURATION_PATTERN, text):
            assert "finite" in str(exc) or "too large" in str(exc)
    else:
        assert re.search(DURATION_PATTERN, text)
        assert seconds >= 0 and math.isfinite(seconds)


@given(st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.none(), st.booleans()))
def test_parsers_raise_only_unit_error(value: object) -> None:
    for parser in (parse_duration, parse_rate, parse_size, parse_byte_rate):
        try:
            result = parser(value)
        except UnitError:
            continue
        assert result >= 0 and math.isfinite(result)


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.sampled_from(["us", "ms", "s", "m", "h"]))
def test_duration_roundtrip(number: float, unit: str) -> None:
    text = f"{number!r}{unit}"
    factor = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    assert parse_duration(text) == pytest.approx(number * factor)
    assert re.search(DURATION_PATTERN, text)
