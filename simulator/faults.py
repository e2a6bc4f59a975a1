"""The fault vocabulary of the fake exchange, as a pure engine: decisions in, no sockets, no clock.

A :class:`FaultSchedule` is built from a scenario's fault specs for one node and a seed. It answers two kinds of
question, always given ``now`` (loop time):

* per message, through the :class:`Link` of one client connection: ``link.plan(direction, data, now)`` returns
  what to do with one frame as a list of :data:`Delivery` (deliver at ``t``, maybe in fragments, maybe twice,
  maybe replaced; close with a code; abort without a close frame; or nothing: dropped or held for reordering);
* per node, at the edges of fault windows (:meth:`FaultSchedule.edges`): what changes for the node (workers,
  latency factor, down, maintenance) and what happens to each connection (:meth:`FaultSchedule.on_edge`).

The node (:mod:`simulator.node`) executes these decisions on its loop, live or virtual alike. Every random
choice comes from generators seeded by (seed, node, connection, direction), so the same scenario, seed and
message sequence give the same decisions.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

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

#: Close codes that cannot travel in a close frame: the connection is aborted instead.
_ABORT_CODES = frozenset({1005, 1006, 1015})


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


#: Kinds that act on each frame, order completion or close of a link (the others act at window edges only).
_PER_FRAME_KINDS = LINK_KINDS | {"error_reply", "slow_close"}

#: Kinds that happen once at their start when given no duration.
INSTANT_KINDS = frozenset({"reset", "close", "info_reconnect"})


def _duration(f: FaultLike) -> float:
    if f.duration_s is not None:
        return float(f.duration_s)
    return 0.0 if f.kind in INSTANT_KINDS else math.inf


def _close(code: int, reason: str, at: float) -> CloseLink | AbortLink:
    return AbortLink(at) if code in _ABORT_CODES else CloseLink(at, code, reason)


def _is_stream(data: str | bytes) -> bool:
    """Channel messages (JSON arrays); events (objects) are not subject to loss, duplication or reordering."""
    return isinstance(data, str) and data[:1] == "["


def _nbytes(data: str | bytes) -> int:
    return len(data) if isinstance(data, bytes) else len(data.encode())


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
        self.faults: tuple[Any, ...] = tuple(f for f in faults if f.node in (None, node_id))
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


class _Direction:
    """Per-direction state of a link: its generator, FIFO order, pacing, byte counts and held frames."""

    __slots__ = ("bytes", "free_at", "held", "last_at", "rng")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.last_at = -math.inf
        self.free_at = -math.inf
        self.bytes: dict[int, int] = {}
        self.held: list[list[Any]] = []  # [remaining frames to wait, data]


class Link:
    """Fault state of one client connection; :meth:`plan` decides the fate of each frame.

    Deliveries in one direction never overtake each other (a TCP stream), except through the ``reorder`` fault.
    """

    def __init__(self, schedule: FaultSchedule, index: int) -> None:
        self.schedule = schedule
        self.index = index
        base = f"{schedule.seed}/{schedule.node_id}/{index}"
        self._dirs = {d: _Direction(random.Random(f"{base}/{d}")) for d in ("down", "up")}
        self._error_rng = random.Random(f"{base}/orders")
        self._cache_key: tuple[int, ...] | None = None
        self._cache: dict[str, list[Any]] = {}
        self.dead = False

    def _faults(self, direction: str, now: float) -> list[Any]:
        active = self.schedule.active(now)
        if active != self._cache_key:
            self._cache_key = active
            self._cache = {"down": [], "up": [], "any": []}
            for i in active:
                f = self.schedule.faults[i]
                if not self.schedule.affects(i, self.index):
                    continue
                self._cache["any"].append((i, f))
                if f.kind in LINK_KINDS:
                    for d in ("down", "up"):
                        if f.direction in (d, "both"):
                            self._cache[d].append((i, f))
        return self._cache[direction]

    def plain_until(self, now: float) -> float:
        """Until when (exclusive) no fault acts on this link, or ``-inf`` if one does at ``now``.

        Plain: no link fault, ``error_reply`` or ``slow_close`` is active on this connection, the link is alive
        and holds no frame back. Then :meth:`plan` only applies the node's own latency and jitter (ask
        :meth:`deliver_at` for the time instead), :meth:`order_error` returns ``None`` without a draw and
        :meth:`close_delay` is 0, until the returned time (the node's next fault window edge). Faults added with
        :func:`injected` after the call are not seen: ask again.
        """
        if self.dead:
            return -math.inf
        for _, f in self._faults("any", now):
            if f.kind in _PER_FRAME_KINDS:
                return -math.inf
        for st in self._dirs.values():
            if st.held:
                return -math.inf
        return self.schedule._cache_window[1]  # active(now) just ran: the window around now with no edge inside

    def deliver_at(self, direction: str, now: float) -> float:
        """On a plain link (see :meth:`plain_until`): when a frame sent now in ``direction`` arrives, i.e. the time
        of the one delivery :meth:`plan` would return, with the same draw and the same FIFO bookkeeping."""
        st = self._dirs[direction]
        sched = self.schedule
        delay = sched.base_latency_s
        if sched.base_jitter_s:
            delay = max(0.0, delay + st.rng.gauss(0.0, sched.base_jitter_s))
        at = now + delay
        if at < st.last_at:
            at = st.last_at
        st.last_at = at
        return at

    def deliver_pair_at(self, direction: str, now: float) -> tuple[float, float]:
        """:meth:`deliver_at` twice (two frames sent back to back at ``now``), in one call: same draws, same
        order, same FIFO bookkeeping."""
        st = self._dirs[direction]
        sched = self.schedule
        delay = second = sched.base_latency_s
        jitter = sched.base_jitter_s
        if jitter:
            gauss = st.rng.gauss
            delay = max(0.0, delay + gauss(0.0, jitter))
            second = max(0.0, second + gauss(0.0, jitter))
        at = now + delay
        if at < st.last_at:
            at = st.last_at
        at_second = now + second
        if at_second < at:
            at_second = at
        st.last_at = at_second
        return at, at_second

    def stalled(self, direction: str, now: float) -> bool:
        """True while a ``timeout`` fault stops all data in ``direction`` (a half-open link when ``timeout`` is 0).

        Shells that answer protocol pings themselves (``websockets``) should stop reading from the peer while
        the up direction is stalled, so that pings go unanswered too.
        """
        return any(f.kind == "timeout" for _, f in self._faults(direction, now))

    def plan(self, direction: str, data: str | bytes, now: float) -> list[Delivery]:
        """Decide what happens to one frame sent at ``now`` in ``direction`` ("down" exchange->client, "up").

        Returns the deliveries to execute in order (possibly none: dropped, or held back for reordering, in
        which case a later call returns it). After an :class:`AbortLink`/:class:`CloseLink` the link is dead and
        every later frame is dropped.
        """
        if self.dead:
            return []
        faults = self._faults(direction, now)
        st = self._dirs[direction]
        sched = self.schedule
        rng = st.rng
        delay = sched.base_latency_s
        if sched.base_jitter_s:
            delay = max(0.0, delay + rng.gauss(0.0, sched.base_jitter_s))
        if not faults:  # the node's own latency only: what the general path below gives with no fault
            at = now + delay
            if at < st.last_at:
                at = st.last_at
            st.last_at = at
            if st.held:
                return [Deliver(at, data), *self._count_down(st, at)]
            return [Deliver(at, data)]
        factor = 1.0
        rate = math.inf
        fragments: tuple[str | bytes, ...] = ()
        fragment_delay = 0.0
        duplicate = hold = False
        gap = 0
        stream = _is_stream(data)
        for i, f in faults:
            p = f.params
            kind = f.kind
            if kind == "reset":
                self.dead = True
                return [AbortLink(now)]
            if kind == "timeout":
                return []
            if kind == "limit_data":
                sent = st.bytes.get(i, 0) + _nbytes(data)
                st.bytes[i] = sent
                if sent > int(p.get("bytes", 0)):
                    self.dead = True
                    return [AbortLink(max(now, st.last_at))]
            elif kind == "loss" and stream and rng.random() < float(p.get("rate", 0.0)):
                return []
            elif kind == "latency":
                delay += _jitter(rng, float(p.get("latency", 0.0)), float(p.get("jitter", 0.0)), p)
            elif kind == "latency_factor":
                factor *= float(p.get("factor", 1.0))
            elif kind == "bandwidth":
                rate = min(rate, float(p.get("rate", math.inf)))
            elif kind == "malformed" and rng.random() < float(p.get("rate", 0.0)):
                data = _malform(data)
            elif kind == "oversized" and rng.random() < float(p.get("rate", 1.0)):
                data = _oversize(int(p.get("size", 1 << 20)))
            elif kind == "binary" and rng.random() < float(p.get("rate", 1.0)):
                data = data.encode() if isinstance(data, str) else data
            elif kind == "slicer" and direction == "down":
                fragments = _slice(rng, data, p)
                fragment_delay = float(p.get("delay", 0.0))
            elif kind == "duplicate" and stream and rng.random() < float(p.get("rate", 0.0)):
                duplicate = True
            elif kind == "reorder" and stream and rng.random() < float(p.get("rate", 0.0)):
                hold = True
                gap = max(1, int(p.get("gap", 1)))
        if hold:
            st.held.append([gap, data])
            return []
        at = max(now + delay * factor, st.last_at)
        if math.isfinite(rate):
            at = max(at, st.free_at) + _nbytes(data) / rate
            st.free_at = at
        if fragments and direction == "up":
            at += fragment_delay * (len(fragments) - 1)
            fragments = ()
        out: list[Delivery] = [Deliver(at, data, fragments, fragment_delay)]
        if duplicate:
            out.append(Deliver(at, data, fragments, fragment_delay))
        if fragments:
            at += fragment_delay * (len(fragments) - 1)
        st.last_at = at
        if st.held:
            out.extend(self._count_down(st, at))
        return out

    def _count_down(self, st: _Direction, at: float) -> list[Delivery]:
        released: list[Delivery] = []
        keep = []
        for entry in st.held:
            entry[0] -= 1
            if entry[0] <= 0:
                released.append(Deliver(at, entry[1]))
            else:
                keep.append(entry)
        st.held = keep
        return released

    def release(self, now: float) -> list[tuple[str, Delivery]]:
        """Frames still held back for reordering, to deliver now (call at the end of a reorder window)."""
        out: list[tuple[str, Delivery]] = []
        for name, st in self._dirs.items():
            at = max(now, st.last_at)
            out.extend((name, Deliver(at, entry[1])) for entry in st.held)
            st.held = []
        return out

    def close_delay(self, now: float) -> float:
        """Extra delay before a close this node initiates at ``now`` takes effect (``slow_close``)."""
        delay = 0.0
        for _, f in self._faults("any", now):
            if f.kind == "slow_close":
                delay = max(delay, float(f.params.get("delay", 0.0)))
        return delay

    def close_at(self, now: float) -> float:
        """When a close the node initiates at ``now`` happens: after queued frames and any slow-close delay."""
        return max(now, self._dirs["down"].last_at) + self.close_delay(now)

    def order_error(self, now: float) -> tuple[int, str] | None:
        """An error reply ``(code, text)`` for an order finishing at ``now`` (``error_reply`` fault), or None."""
        for _, f in self._faults("any", now):
            if f.kind == "error_reply" and self._error_rng.random() < float(f.params.get("rate", 1.0)):
                return int(f.params.get("code", 10001)), str(f.params.get("text", "injected error"))
        return None


def _jitter(rng: random.Random, latency: float, jitter: float, params: dict[str, Any]) -> float:
    if jitter <= 0:
        return latency
    dist = params.get("distribution", "normal")
    if dist == "uniform":
        value = rng.uniform(latency - jitter, latency + jitter)
    elif dist == "exponential":
        value = latency + rng.expovariate(1.0 / jitter)
    else:
        value = rng.gauss(latency, jitter)
    return max(0.0, value)


def _malform(data: str | bytes) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return text[: max(1, len(text) // 2)] + "\x00}{not json"


def _oversize(size: int) -> str:
    head = '[0,"oversized","'
    return head + "x" * max(0, size - len(head) - 2) + '"]'


def _slice(rng: random.Random, data: str | bytes, params: dict[str, Any]) -> tuple[str | bytes, ...]:
    average = max(1, int(params.get("average_size", 64)))
    variation = max(0, int(params.get("size_variation", 0)))
    parts: list[str | bytes] = []
    pos = 0
    # a str is sliced by characters; websockets reassembles the text message from the fragments
    while pos < len(data):
        size = max(1, average + (rng.randint(-variation, variation) if variation else 0))
        parts.append(data[pos : pos + size])
        pos += size
    return tuple(parts) if len(parts) > 1 else ()


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


def faults_for(faults: Sequence[FaultLike], node_id: str) -> list[FaultLike]:
    """The faults of a scenario that apply to ``node_id`` (``node`` None applies to every node)."""
    return [f for f in faults if f.node in (None, node_id)]
