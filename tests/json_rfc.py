"""Where orjson (the frame decoder of the client and the exchange) and ``json.loads`` agree, for the tests that
pin it: every RFC 8259 document with integers within 64 bits gives the same value; orjson refuses what json
accepts beyond the RFC (NaN, Infinity, numbers that overflow a double, unpaired surrogates) and reads an integer
beyond 64 bits as the nearest float."""

from __future__ import annotations

import math


def int_within_64_bits(text: str) -> int | float:
    """How orjson reads an integer: exactly within [-2**63, 2**64), as the nearest float beyond."""
    value = int(text)
    return value if -(2**63) <= value < 2**64 else float(text)


def rfc8259(value: object) -> bool:
    """True if ``value`` (from json.loads) is inside what orjson reads exactly like json: finite floats, strings
    without unpaired surrogates, integers within 64 bits."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list):
        return all(rfc8259(v) for v in value)
    assert isinstance(value, dict)
    return all(rfc8259(k) and rfc8259(v) for k, v in value.items())
