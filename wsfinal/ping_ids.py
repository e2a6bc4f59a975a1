"""The connection's own app-level pings: their client ids and their round trips (pure).

A managed connection times its app-level pings (``{"event": "ping", "cid": N}``) by the ``cid`` the exchange
echoes in its pong. A caller may send its own pings over the same connection (``send_message``), with cids of
its choosing, and the exchange answers those too. So that a caller's pong never times one of ours (and none of
ours is taken for a caller's), the connection's pings use cids from a reserved range, :data:`PING_CID_BASE` up to
:data:`PING_CID_LIMIT` (exclusive), and a caller's ping with a cid in that range is refused at send
(:func:`reserved_ping_cid`, checked by ``send_message`` / ``send_message_nowait``). A pong whose cid is outside the
range, or not one of the pings in flight, is someone else's and is ignored.

The range is ``[2**44, 2**45)``: inside the 45-bit integer Bitfinex documents for client ids and exactly
representable as a JavaScript number, so any exchange that echoes a cid echoes these unchanged; far above the
small counters callers tend to use. Per connection the ids count up from the base and wrap around within the
range (2**44 pings: never, in practice).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .exceptions import UsageError

__all__ = [
    "PING_CID_BASE",
    "PING_CID_LIMIT",
    "PingTable",
    "is_own_ping_cid",
    "refuse_reserved_ping",
    "reserved_ping_cid",
]

#: The first cid of the connection's own app-level pings.
PING_CID_BASE = 2**44
#: One past the last cid of the reserved range.
PING_CID_LIMIT = 2**45
#: App-level pings remembered while awaiting their pong; older ones are forgotten (their pong is not coming).
MAX_PINGS_IN_FLIGHT = 8


def is_own_ping_cid(cid: object) -> bool:
    """Whether ``cid`` is in the range reserved for the connection's own pings."""
    return type(cid) is int and PING_CID_BASE <= cid < PING_CID_LIMIT


def reserved_ping_cid(message: object) -> int | None:
    """The cid of ``message`` when it is an app-level ping (a JSON object with ``"event": "ping"``, as a mapping or
    as text/bytes) whose cid is in the reserved range, else ``None``. The connection refuses to send such a
    message for a caller (its pong would be taken for one of the connection's own). Cheap for everything else:
    text is parsed only when it contains ``ping``."""
    if isinstance(message, Mapping):
        parsed: Any = message
    elif isinstance(message, str | bytes | bytearray):
        if ("ping" not in message) if isinstance(message, str) else (b"ping" not in message):
            return None
        try:
            parsed = json.loads(message)
        except ValueError:
            return None
    else:
        return None
    if not isinstance(parsed, Mapping) or parsed.get("event") != "ping":
        return None
    cid = parsed.get("cid")
    return cid if is_own_ping_cid(cid) else None


def refuse_reserved_ping(message: object, connection_id: str) -> None:
    """Raise :class:`~wsfinal.exceptions.UsageError` when a caller's ``message`` is an app-level ping with a cid
    of the reserved range (:func:`reserved_ping_cid`); the caller must pick a cid below :data:`PING_CID_BASE`."""
    cid = reserved_ping_cid(message)
    if cid is not None:
        raise UsageError(
            f"{connection_id}: a ping with cid {cid} cannot be sent: cids {PING_CID_BASE} to {PING_CID_LIMIT - 1} "
            "are reserved for the connection's own pings (use a cid below 2**44)"
        )


class PingTable:
    """The connection's app-level pings in flight: ``cid -> loop time sent``, at most ``max_in_flight`` (the
    oldest is forgotten when a new one would exceed it). :meth:`send` hands out the next reserved cid and
    remembers it; :meth:`answer` takes a pong and returns the round trip in ms, or ``None`` when the pong is not for
    a ping of ours. :meth:`clear` when the channel changes (pings of an earlier channel never get their pong)."""

    __slots__ = ("_next", "max_in_flight", "pending")

    def __init__(self, max_in_flight: int = MAX_PINGS_IN_FLIGHT) -> None:
        if max_in_flight < 1:
            raise ValueError(f"PingTable: max_in_flight must be >= 1, got {max_in_flight!r}")
        self.max_in_flight = max_in_flight
        self.pending: dict[int, float] = {}
        self._next = PING_CID_BASE

    def send(self, now: float) -> int:
        """A ping goes out at ``now``: its cid (send it as ``{"event": "ping", "cid": cid}``)."""
        cid = self._next
        self._next = cid + 1 if cid + 1 < PING_CID_LIMIT else PING_CID_BASE
        pending = self.pending
        pending.pop(cid, None)  # (after a wrap-around only)
        if len(pending) >= self.max_in_flight:
            del pending[next(iter(pending))]  # the oldest: its pong is not coming
        pending[cid] = now
        return cid

    def answer(self, cid: int | None, now: float) -> float | None:
        """A pong with ``cid`` was read at ``now``: the round trip (ms) of our ping with that cid, which is then
        done, or ``None`` (a caller's pong, a pong without cid, or one for a ping already answered or forgotten)."""
        if cid is None or not PING_CID_BASE <= cid < PING_CID_LIMIT:
            return None
        sent = self.pending.pop(cid, None)
        if sent is None:
            return None
        return (now - sent) * 1000.0

    def clear(self) -> None:
        self.pending.clear()
