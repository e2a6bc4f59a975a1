"""The fake exchange's Bitfinex v2 vocabulary: protocol constants (flags, error and info codes with their texts)
and the actions an :class:`~simulator.bitfinex.ExchangeSession` returns to its shell (:class:`Send`,
:class:`Close`, :class:`Order`).

Shared by the session's hot path (:mod:`simulator.bitfinex`) and its control events
(:mod:`simulator.bitfinex_events`); every public name here is also importable from :mod:`simulator.bitfinex`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from wsfinal.exceptions import UsageError

# ----------------------------------------------------------------------------- protocol constants

API_VERSION = 2

FLAG_DEC_S = 8  # accepted, not implemented: decimals stay numbers
FLAG_TIME_S = 32  # accepted, not implemented: timestamps stay numbers
FLAG_TIMESTAMP = 32768
FLAG_SEQ_ALL = 65536
FLAG_OB_CHECKSUM = 131072

ERR_UNKNOWN_EVENT = 10000  # also: malformed JSON, wrong message shape
ERR_UNKNOWN_PAIR = 10001
ERR_PARAMS = 10020  # order input with a missing or invalid field
ERR_AUTH_FAILED = 10100
ERR_SUB_FAILED = 10300
ERR_SUB_DUP = 10301
ERR_SUB_UNKNOWN_CHANNEL = 10302
ERR_SUB_LIMIT = 10305
ERR_UNSUB_FAILED = 10400
ERR_UNSUB_NOT_SUBSCRIBED = 10401
ERR_RATE_LIMIT = 11010  # Bitfinex's "ratelimit: error"; the node uses it when its queue is full

INFO_RECONNECT = 20051
INFO_MAINTENANCE_START = 20060
INFO_MAINTENANCE_END = 20061

INFO_TEXTS: dict[int, str] = {
    INFO_RECONNECT: "Stopping. Please try to reconnect",
    INFO_MAINTENANCE_START: (
        "Entering in Maintenance mode. Please pause any activity and resume after receiving the info "
        "message 20061 (it should take 120 seconds at most)."
    ),
    INFO_MAINTENANCE_END: (
        "Maintenance ended. You can resume normal activity. It is advised to unsubscribe/subscribe again all channels."
    ),
}

#: Texts of ERROR notifications by code (order_done with ok=False and no text uses these).
ORDER_ERROR_TEXTS: dict[int, str] = {
    ERR_UNKNOWN_EVENT: "error: unknown",
    ERR_UNKNOWN_PAIR: "symbol: invalid",
    ERR_PARAMS: "Invalid order: parameters",
    ERR_AUTH_FAILED: "auth: not authenticated",
    ERR_RATE_LIMIT: "ratelimit: error",
    INFO_MAINTENANCE_START: "maintenance: orders refused",
}

CLOSE_MESSAGE_TOO_BIG = 1009
MAX_CID = 2**53  # cids must survive a JavaScript client
# ASCII-only output: echoed client strings may hold lone surrogates, which a frame could not carry as UTF-8
EVENT_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


class SessionUsageError(UsageError, ValueError):
    """The shell called the session wrongly (e.g. an info code that does not exist)."""


# ----------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``text`` to the client as one frame (``bytes``: a binary frame)."""

    text: str | bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection with this WebSocket close code and reason."""

    code: int
    reason: str = ""


class Order(NamedTuple):
    """An authenticated order input ``[0,"on",null,{...}]`` waiting for the node's service model.

    A named tuple, not a frozen dataclass like the other actions: one is made per simulated request, and the
    session builds it with ``tuple.__new__`` (about 0.1 us; the frozen dataclass's ``__init__``, one
    ``object.__setattr__`` per field, about 0.9 us). Equality, hashing and repr are the dataclass's (``shape`` left
    out); as a tuple it also unpacks, indexes and orders like one, and equals a plain tuple of its four values.
    """

    cid: int
    request: list[Any]
    received_at: float
    #: What the session validated and cached for orders of this shape (its ``_OrderShape``), or None.
    shape: Any = None

    def __eq__(self, other: object) -> bool:
        if type(other) is not Order:
            return NotImplemented
        return self[:3] == other[:3]  # type: ignore[index]

    def __ne__(self, other: object) -> bool:
        if type(other) is not Order:
            return NotImplemented
        return self[:3] != other[:3]  # type: ignore[index]

    def __hash__(self) -> int:
        return hash(self[:3])

    def __repr__(self) -> str:
        return f"Order(cid={self.cid!r}, request={self.request!r}, received_at={self.received_at!r})"


#: ``Order`` from a tuple of its four fields, without the generated ``__new__``'s Python frame.
new_order: Callable[[type[Order], tuple[Any, ...]], Order] = tuple.__new__


Action = Send | Close | Order


# ----------------------------------------------------------------------------- small helpers


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def is_short_scalar(value: object) -> bool:
    if isinstance(value, str):
        return len(value) <= 64
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, int | bool)
