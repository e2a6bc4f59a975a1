"""How a connection writes its frames as JSON text: compact, exactly as the json module writes it, and quickly.

:func:`encode_order` writes the order frame of every request (``[0, "on", null, {...}]``) with orjson when that is
sure to give json's text (about 3x quicker), :func:`encode_frame` any other frame with json's C encoder made
once. Used by :mod:`wsfinal.traffic` (the request path); ``tests/test_order_encoding.py`` checks that the quick
ways write what :data:`dumps` writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

dumps = json.JSONEncoder(separators=(",", ":")).encode


def _c_iterencode() -> Callable[[Any, int], Any] | None:
    """The json module's C encoder for compact JSON, made once (``JSONEncoder.encode`` builds a new one per
    call); ``None`` without the C accelerator (another interpreter)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    iterencode: Callable[[Any, int], Any] = make(
        None, json.JSONEncoder().default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )
    return iterencode


#: ``"".join(iterencode(obj, 0))`` is compact JSON, as :data:`dumps` writes it (see :func:`encode_frame`).
iterencode = _c_iterencode()


def encode_frame(obj: Any) -> str:
    """Compact JSON for the frames :meth:`wsfinal.traffic.ConnectionTraffic.submit` builds, output identical to
    :data:`dumps`: with the C encoder made once, and without circular-reference checks (those frames are a list
    around a copy of the caller's order)."""
    if iterencode is None:
        return dumps(obj)
    return "".join(iterencode(obj, 0))


_orjson_dumps = orjson.dumps
#: The field types :func:`encode_order` hands to orjson (exact types: no subclasses, no enums).
_PLAIN_FIELDS = frozenset({str, int, bool, type(None)})


def encode_order(body: dict[str, Any]) -> str:
    """``encode_frame([0, "on", None, body])``: the same text, written by orjson (about 3x quicker) when that is
    sure to give the same text, else by :func:`encode_frame`. orjson's way is taken when every field of ``body``
    is a str, int, bool or None (of exactly these types) and orjson's text is ASCII without DEL: json escapes
    other characters (``\\uXXXX``) where orjson writes them as they are; orjson writes floats in its own way,
    refuses ints beyond 64 bits, non-str keys and lone surrogates (``TypeError``: then json's way too), and would
    encode enums, dataclasses and more that json refuses. tests/test_order_encoding.py checks both ways agree.
    """
    frame = [0, "on", None, body]
    for value in body.values():
        if type(value) not in _PLAIN_FIELDS:
            return encode_frame(frame)
    try:
        raw = _orjson_dumps(frame)
    except TypeError:  # orjson.JSONEncodeError
        return encode_frame(frame)
    if raw.isascii() and b"\x7f" not in raw:
        return raw.decode()
    return encode_frame(frame)
