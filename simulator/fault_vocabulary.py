"""The fault vocabulary of the fake exchange: the kinds, the shape of a fault, and the decisions the engine returns.

Kinds split into link faults (they act on each frame of one connection, :mod:`simulator.fault_link`) and node
faults (they act on the node or on whole connections at the edges of their window, :mod:`simulator.faults`).
The decisions are plain values: the node (:mod:`simulator.node`) executes them on its loop, live or virtual alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "INSTANT_KINDS",
    "KINDS",
    "LINK_KINDS",
    "NODE_KINDS",
    "AbortLink",
    "CloseLink",
    "Deliver",
    "Delivery",
    "Edge",
    "Effect",
    "Fault",
    "FaultLike",
    "Info",
    "NodeState",
]

#: Toxiproxy-style link faults that act on each frame of a connection in one direction.
LINK_KINDS = frozenset(
    {
        "latency",
        "latency_factor",
        "bandwidth",
        "timeout",
        "reset",
        "slicer",
        "limit_data",
        "loss",
        "duplicate",
        "reorder",
        "malformed",
        "oversized",
        "binary",
    }
)
#: Faults that act on the node or on whole connections at the edges of their window.
NODE_KINDS = frozenset(
    {
        "slow_close",
        "node_down",
        "close",
        "error_reply",
        "info_reconnect",
        "maintenance",
        "connect_rate_limit",
        "capacity_drop",
    }
)
KINDS = LINK_KINDS | NODE_KINDS

#: Kinds that happen once at their start when given no duration.
INSTANT_KINDS = frozenset({"reset", "close", "info_reconnect"})


class FaultLike(Protocol):
    """What the engine reads from a fault (``simulator.scenario.FaultSpec`` has these fields)."""

    kind: str
    at_s: float
    duration_s: float | None
    node: str | None
    direction: str
    connection: int | None
    probability: float
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Fault:
    """A stand-alone fault spec with the same fields as ``simulator.scenario.FaultSpec`` (handy in tests)."""

    kind: str
    at_s: float = 0.0
    duration_s: float | None = None
    node: str | None = None
    direction: str = "both"
    connection: int | None = None
    probability: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


# -- decisions -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand ``data`` over at time ``at``; with ``fragments``, as a fragmented message, ``fragment_delay`` apart."""

    at: float
    data: str | bytes
    fragments: tuple[str | bytes, ...] = ()
    fragment_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class CloseLink:
    """Close the connection at ``at`` with a close frame carrying ``code`` and ``reason``."""

    at: float
    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AbortLink:
    """Drop the connection at ``at`` without a close frame (the client sees 1006)."""

    at: float


Delivery = Deliver | CloseLink | AbortLink


@dataclass(frozen=True, slots=True)
class Edge:
    """A fault window opens (``start``) or closes (``start=False``) at loop time ``time``."""

    time: float
    start: bool
    index: int
    fault: Any


@dataclass(frozen=True, slots=True)
class Info:
    """Send the Bitfinex info event ``code`` (20051, 20060, 20061) on a connection."""

    code: int


Effect = CloseLink | AbortLink | Info


@dataclass(frozen=True, slots=True)
class NodeState:
    """What the active node-level faults say at one moment."""

    down: bool = False
    maintenance: bool = False
    workers: int | None = None  # None: the nominal number
    latency_factor: float = 1.0
