"""The fault state of one client connection: what happens to each frame, decided with no sockets and no clock.

A :class:`Link` is opened by :meth:`simulator.faults.FaultSchedule.open_link` for each accepted connection.
``link.plan(direction, data, now)`` returns what to do with one frame as a list of
:data:`~simulator.fault_vocabulary.Delivery` (deliver at ``t``, maybe in fragments, maybe twice, maybe replaced;
abort without a close frame; or nothing: dropped or held for reordering); the node executes them in order.
Every random choice comes from generators seeded by (seed, node, connection, direction).
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

from .fault_vocabulary import LINK_KINDS, AbortLink, Deliver, Delivery

if TYPE_CHECKING:
    from .faults import FaultSchedule

__all__ = ["Link"]

#: Kinds that act on each frame, order completion or close of a link (the others act at window edges only).
_PER_FRAME_KINDS = LINK_KINDS | {"error_reply", "slow_close"}


def _is_stream(data: str | bytes) -> bool:
    """Channel messages (JSON arrays); events (objects) are not subject to loss, duplication or reordering."""
    return isinstance(data, str) and data[:1] == "["


def _nbytes(data: str | bytes) -> int:
    return len(data) if isinstance(data, bytes) else len(data.encode())


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
        # The node's own latency and jitter, fixed for the link's life (FaultSchedule sets them once). Without
        # jitter, deliver_at / deliver_pair_at are the draw-free variants below, bound to this link: they run once
        # per frame on a plain link, and the jitter check and the schedule's attributes were a good part of them.
        # The tests hold both variants to plan().
        self._latency = schedule.base_latency_s
        self._jitter = schedule.base_jitter_s
        if not self._jitter:
            self.deliver_at = self._deliver_at_fixed  # type: ignore[method-assign]
            self.deliver_pair_at = self._deliver_pair_at_fixed  # type: ignore[method-assign]
        #: The latency every frame takes on this link while it is plain, when the node has no jitter; else None.
        #: Lets a caller work :meth:`deliver_at` out itself on its hot path, see :meth:`fifo`.
        self.fixed_latency: float | None = None if self._jitter else self._latency

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
        delay = self._latency
        if self._jitter:
            delay = max(0.0, delay + st.rng.gauss(0.0, self._jitter))
        at = now + delay
        if at < st.last_at:
            at = st.last_at
        st.last_at = at
        return at

    def deliver_pair_at(self, direction: str, now: float) -> tuple[float, float]:
        """:meth:`deliver_at` twice (two frames sent back to back at ``now``), in one call: same draws, same
        order, same FIFO bookkeeping."""
        st = self._dirs[direction]
        delay = second = self._latency
        jitter = self._jitter
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

    def fifo(self, direction: str) -> _Direction:
        """The state of ``direction`` whose ``last_at`` (the arrival time of the last frame planned that way) keeps
        the stream in order. On a plain link with :attr:`fixed_latency`, ``deliver_at(direction, now)`` is exactly
        ``at = max(now + fixed_latency, fifo.last_at)``, then ``fifo.last_at = at``: a caller doing that itself
        must do both (``NodeConnection`` does, once per frame). The object lives as long as the link."""
        return self._dirs[direction]

    def _deliver_at_fixed(self, direction: str, now: float) -> float:
        """:meth:`deliver_at` of a link without jitter (no draw): bound as ``deliver_at`` when the link opens."""
        st = self._dirs[direction]
        at = now + self._latency
        if at < st.last_at:
            at = st.last_at
        st.last_at = at
        return at

    def _deliver_pair_at_fixed(self, direction: str, now: float) -> tuple[float, float]:
        """:meth:`deliver_pair_at` of a link without jitter: both frames take the same latency, so the second
        arrives with the first (FIFO)."""
        st = self._dirs[direction]
        at = now + self._latency
        if at < st.last_at:
            at = st.last_at
        st.last_at = at
        return at, at

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
