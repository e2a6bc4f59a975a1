"""The fault schedule of one node: a pure engine, decisions in, no sockets, no clock.

A :class:`FaultSchedule` is built from a scenario's fault specs for one node and a seed. It answers two kinds of
question, always given ``now`` (loop time):

* per message, through the :class:`~simulator.fault_link.Link` of one client connection (:meth:`open_link`):
  ``link.plan(direction, data, now)`` returns what to do with one frame as a list of :data:`Delivery`;
* per node, at the edges of fault windows (:meth:`FaultSchedule.edges`): what changes for the node (workers,
  latency factor, down, maintenance) and what happens to each connection (:meth:`FaultSchedule.on_edge`).

The node (:mod:`simulator.node`) executes these decisions on its loop, live or virtual alike. Every random
choice comes from generators seeded by (seed, node, connection, direction), so the same scenario, seed and
message sequence give the same decisions. The vocabulary (kinds, :class:`Fault`, the decisions) lives in
:mod:`simulator.fault_vocabulary` and is re-exported here, the import path the rest of the project uses.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from .fault_link import Link
from .fault_vocabulary import (
    INSTANT_KINDS,
    KINDS,
    LINK_KINDS,
    NODE_KINDS,
    AbortLink,
    CloseLink,
    Deliver,
    Delivery,
    Edge,
    Effect,
    Fault,
    FaultLike,
    Info,
    NodeState,
)

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
    "FaultSchedule",
    "Info",
    "Link",
    "NodeState",
    "faults_for",
    "injected",
]

#: Close codes that cannot travel in a close frame: the connection is aborted instead.
_ABORT_CODES = frozenset({1005, 1006, 1015})


def _duration(f: FaultLike) -> float:
    if f.duration_s is not None:
        return float(f.duration_s)
    return 0.0 if f.kind in INSTANT_KINDS else math.inf


def _close(code: int, reason: str, at: float) -> CloseLink | AbortLink:
    return AbortLink(at) if code in _ABORT_CODES else CloseLink(at, code, reason)


class FaultSchedule:
    """The faults of one node on the timeline of one run.

    ``origin`` is the loop time of scenario time 0 (faults' ``at_s`` count from it). ``base_latency_s`` and
    ``base_jitter_s`` are the node's one-way network latency, applied to every frame in each direction. Call
    :meth:`open_link` once per accepted connection, in accept order.
    """

    def __init__(
        self,
        faults: Iterable[FaultLike],
        *,
        node_id: str = "",
        seed: int = 0,
        origin: float = 0.0,
        base_latency_s: float = 0.0,
        base_jitter_s: float = 0.0,
    ) -> None:
        self.node_id = node_id
        self.seed = seed
        self.origin = origin
        self.base_latency_s = base_latency_s
        self.base_jitter_s = base_jitter_s
        self.faults: tuple[Any, ...] = tuple(faults_for(faults, node_id))
        for f in self.faults:
            if f.kind not in KINDS:
                raise ValueError(f"unknown fault kind {f.kind!r} (node {node_id!r})")
        self._windows = [(origin + f.at_s, origin + f.at_s + _duration(f)) for f in self.faults]
        self._rate_log: dict[str, deque[float]] = {}
        self._cache_window = (math.inf, -math.inf)
        self._cache_active: tuple[int, ...] = ()
        self._links = 0

    # -- the timeline -------------------------------------------------------------------------------------------

    def edges(self) -> list[Edge]:
        """Every window start and end, in time order: the node schedules :meth:`on_edge` for each."""
        out = []
        for i, (f, (start, end)) in enumerate(zip(self.faults, self._windows)):
            out.append(Edge(start, True, i, f))
            if start < end < math.inf:
                out.append(Edge(end, False, i, f))
        out.sort(key=lambda e: (e.time, e.start, e.index))
        return out

    def active(self, now: float) -> tuple[int, ...]:
        """Indices of the faults whose window contains ``now`` (``start <= now < end``)."""
        lo, hi = self._cache_window
        if lo <= now < hi:
            return self._cache_active
        active = []
        lo, hi = -math.inf, math.inf
        for i, (start, end) in enumerate(self._windows):
            if start <= now < end:
                active.append(i)
                hi = min(hi, end)
            elif now < start:
                hi = min(hi, start)
            else:
                lo = max(lo, end)
            if start <= now:
                lo = max(lo, start)
        self._cache_window = (lo, hi)
        self._cache_active = tuple(active)
        return self._cache_active

    def affects(self, index: int, connection: int) -> bool:
        """Whether fault ``index`` applies to connection number ``connection`` of this node (its toxicity draw).

        Decided once per pair by a generator seeded with (seed, node, fault, connection): stable and independent
        of the order questions are asked in.
        """
        f = self.faults[index]
        if f.connection is not None and f.connection != connection:
            return False
        p = float(f.probability)
        if p >= 1.0:
            return True
        return random.Random(f"{self.seed}/{self.node_id}/{index}/{connection}").random() < p

    def node_state(self, now: float) -> NodeState:
        """Node-level effects of the faults active at ``now``."""
        down = maintenance = False
        workers: int | None = None
        factor = 1.0
        for i in self.active(now):
            f = self.faults[i]
            if f.kind == "node_down":
                down = True
            elif f.kind == "maintenance":
                maintenance = True
            elif f.kind == "capacity_drop":
                w = int(f.params.get("workers", 1))
                workers = w if workers is None else min(workers, w)
            elif f.kind == "latency_factor" and f.connection is None and f.probability >= 1.0:
                factor *= float(f.params.get("factor", 1.0))
        return NodeState(down, maintenance, workers, factor)

    def refuse_connect(self, client: str, now: float) -> tuple[int, str] | None:
        """Whether to refuse a new connection from ``client`` in the handshake: ``(http_status, reason)`` or None.

        Node down -> 503; more than ``max_connects`` accepted from this client within ``window`` -> 429.
        Accepted connects are counted, so call this exactly once per handshake.
        """
        limit: tuple[int, float] | None = None
        for i in self.active(now):
            f = self.faults[i]
            if f.kind == "node_down":
                return 503, f"node {self.node_id} is down"
            if f.kind == "connect_rate_limit":
                pair = (int(f.params.get("max_connects", 1)), float(f.params.get("window", 1.0)))
                limit = pair if limit is None else min(limit, pair)
        log = self._rate_log.setdefault(client, deque())
        if limit is not None:
            max_connects, window = limit
            while log and log[0] <= now - window:
                log.popleft()
            if len(log) >= max_connects:
                return 429, f"too many connections from {client}: at most {max_connects} per {window:g}s"
        log.append(now)
        if len(log) > 10_000:  # bounded memory when no limit is active
            log.popleft()
        return None

    def on_edge(self, edge: Edge, links: Iterable[Link], now: float) -> list[tuple[Link, Effect]]:
        """The connection effects of a window edge: close, abort or info events for the affected links.

        Call it at ``edge.time`` with the node's open links; the node applies :meth:`node_state` itself.
        Reorder holds of links are released at the end of a reorder window (see :meth:`Link.release`).
        """
        f, i = edge.fault, edge.index
        out: list[tuple[Link, Effect]] = []
        for link in links:
            if not self.affects(i, link.index) and f.kind != "node_down":
                continue
            if edge.start:
                if f.kind == "close":
                    code = int(f.params.get("code", 1001))
                    out.append((link, _close(code, str(f.params.get("reason", "")), now)))
                elif f.kind in ("reset", "node_down"):
                    out.append((link, AbortLink(now)))
                elif f.kind == "timeout" and float(f.params.get("timeout", 0.0)) > 0:
                    out.append((link, AbortLink(now + float(f.params["timeout"]))))
                elif f.kind == "info_reconnect":
                    out.append((link, Info(20051)))
                elif f.kind == "maintenance":
                    out.append((link, Info(20060)))
            elif f.kind == "maintenance":
                out.append((link, Info(20061)))
        return out

    def open_link(self, connection: int | None = None) -> Link:
        """The per-connection fault state of the next accepted connection (numbered in accept order)."""
        if connection is None:
            connection = self._links
        self._links = max(self._links, connection + 1)
        return Link(self, connection)

    def has_link_faults(self) -> bool:
        return any(f.kind in LINK_KINDS for f in self.faults)


# -- fault doubles for tests -------------------------------------------------------------------------------------


@contextmanager
def injected(schedule: FaultSchedule, fault: FaultLike, *, now: float) -> Iterator[int]:
    """Activate ``fault`` on ``schedule`` from ``now`` until the block exits (a fault double for tests).

    Yields the fault's index; the window is open-ended while inside the block and closed at exit.
    """
    active = replace(_as_fault(fault), at_s=now - schedule.origin, duration_s=None)
    schedule.faults = (*schedule.faults, active)
    schedule._windows.append((now, math.inf))
    schedule._cache_window = (math.inf, -math.inf)
    index = len(schedule.faults) - 1
    try:
        yield index
    finally:
        schedule._windows[index] = (-math.inf, -math.inf)
        schedule._cache_window = (math.inf, -math.inf)


def _as_fault(f: FaultLike) -> Fault:
    if isinstance(f, Fault):
        return f
    return Fault(f.kind, f.at_s, f.duration_s, f.node, f.direction, f.connection, f.probability, dict(f.params))


def faults_for(faults: Iterable[FaultLike], node_id: str) -> list[FaultLike]:
    """The faults of a scenario that apply to ``node_id`` (``node`` None applies to every node)."""
    return [f for f in faults if f.node in (None, node_id)]
