"""Text helpers of the fake exchange's order path (:mod:`simulator.bitfinex`): fast, and exact.

The order path runs once per simulated request, so its JSON is written and read with as little Python as
possible, without changing a byte:

- :func:`loads` is orjson's decoder with ``json.loads`` behind it for what orjson refuses: json's values;
- :func:`scalar` writes one scalar exactly as the session's event encoder (compact, ASCII-only) does;
- :func:`note_parts` writes the parts of an ``on-req`` notification that do not depend on the order's cid, time
  or id, and :class:`OrderShape` keeps them, with the validation, for every order of the same shape
  (:func:`order_shape`): a client sends the same few order bodies again and again.

``tests/test_order_text.py`` checks these against ``json.loads`` / ``json.dumps`` of the reference list.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

#: The session's event encoder (simulator.bitfinex._EVENT_DUMPS): compact, ASCII-only, no NaN.
EVENT_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode

_json_str = json.encoder.encode_basestring_ascii  # what EVENT_DUMPS writes for a str (ensure_ascii)

#: Order shapes remembered per session (a client sends few distinct ones; a hostile one cannot grow memory).
ORDER_CACHE_SIZE = 64


_orjson_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def loads(text: str) -> Any:
    """``json.loads(text)``'s value, read by orjson (several times quicker on order frames). What orjson refuses
    and json accepts (an escaped unpaired surrogate, ``NaN``, ``Infinity``: a JavaScript server takes them too)
    goes to ``json.loads``, which decides. One difference is left: an integer beyond 64 bits reads as a float."""
    try:
        return _orjson_loads(text)
    except _JSONDecodeError:
        return json.loads(text)


def scalar(value: object) -> str:
    """JSON text of one scalar, exactly as :data:`EVENT_DUMPS` writes it (ints, finite floats, str, None)."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is int:
        return int.__repr__(value)  # type: ignore[arg-type]
    if kind is float:
        return float.__repr__(value)  # type: ignore[arg-type]
    if kind is str:
        return _json_str(value)  # type: ignore[arg-type]
    return EVENT_DUMPS(value)


def number(value: object) -> float | None:
    """A finite number from a JSON number or numeric string (Bitfinex accepts both), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value) if not isinstance(value, int) or abs(value) < 2**63 else math.inf
    elif isinstance(value, str) and len(value) <= 40:
        try:
            result = float(value)
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


class OrderShape:
    """What every order with the same fields other than ``cid`` shares: its validation and its reply parts."""

    __slots__ = ("problem", "success")

    def __init__(self, problem: tuple[int, str] | None) -> None:
        self.problem = problem
        self.success: tuple[str, str, str, str] | None = None


def order_shape(o: dict[str, Any]) -> tuple[str, str, str, str] | None:
    """A cache key for an order's fields other than ``cid``, for the common shape only: exactly ``type``,
    ``symbol``, ``amount``, ``price`` and ``cid``, the first four strings (then equal keys mean equal fields)."""
    if len(o) != 5:
        return None
    try:  # subscripts, not o.get(): no call per field (this runs once per order)
        order_type, symbol, amount, price = o["type"], o["symbol"], o["amount"], o["price"]
    except KeyError:
        return None
    if type(order_type) is str and type(symbol) is str and type(amount) is str and type(price) is str and "cid" in o:
        return order_type, symbol, amount, price
    return None


def note_parts(o: dict[str, Any], *, ok: bool, code: int | None, text: str) -> tuple[str, str, str, str]:
    """JSON texts of an ``on-req`` notification's order array that do not depend on cid, time or order id:
    (gid, symbol, the rest of the order array after its two time stamps, closing bracket included, and what
    follows the order array up to the end of the notification).

    ``text`` empty and ``ok``: the "Submitting ..." text Bitfinex sends; an error's text must be given.
    """
    get = o.get
    gid = get("gid")
    symbol = get("symbol")
    order_type = get("type")
    flags = get("flags")
    if type(gid) is not int:
        gid = None
    if not isinstance(symbol, str) or len(symbol) > 32:
        symbol = None
    if not isinstance(order_type, str) or len(order_type) > 64:
        order_type = None
    if type(flags) is not int or not 0 <= flags < 2**31:
        flags = 0
    amount = number(get("amount"))
    price = number(get("price"))
    hidden = 1 if get("hidden") in (1, True) else 0
    amount_text = scalar(amount)
    if ok:
        side = "buy" if (amount or 0) > 0 else "sell"
        base = (symbol or "t???")[1:4] if symbol and ":" not in symbol else (symbol or "t?:").split(":")[0][1:]
        text = text or f"Submitting {(order_type or '').lower()} {side} order for {abs(amount or 0)} {base}."
    state, status = ('"ACTIVE"', '"SUCCESS"') if ok else ("null", '"ERROR"')
    rest = (
        f"{amount_text},{amount_text},{scalar(order_type)},null,null,null,{flags},{state},null,null,"
        f"{scalar(price or 0)},0,0,0,null,null,null,0,{hidden},null,null,null,"
        '"API>BFX",null,null,null]'
    )
    return scalar(gid), scalar(symbol), rest, f",{scalar(code)},{status},{scalar(text)}]"
