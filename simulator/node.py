"""One fake exchange node: its client sessions, market feed, service model and faults, on one event loop.

The node runs the pure pieces (:class:`~simulator.bitfinex.ExchangeSession`, :class:`~simulator.market.MarketFeed`,
:class:`~simulator.service.ServiceModel`, :class:`~simulator.faults.FaultSchedule`) with ``loop.call_at`` timers
and talks to clients through a small server-side channel (:class:`ServerChannel`). The live server wraps a
``websockets`` connection in one; an in-memory transport can provide another, and the node then runs unchanged in
virtual time. Faults therefore act here, never in socket code.

The shell's duties: ask :meth:`ExchangeNode.refuse` in the handshake, call :meth:`ExchangeNode.connect` once the
connection is open, feed each client frame to :meth:`NodeConnection.receive`, and call
:meth:`NodeConnection.closed` when the connection is gone (whoever closed it), so its timers are released.
"""

from __future__ import annotations

import asyncio
import heapq
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulator.bitfinex import (
    ExchangeSession,
    Order,
)
from simulator.faults import CloseLink, Deliver, Edge, FaultSchedule, Info
from simulator.market import MarketFeed
from simulator.node_connection import (  # re-exported: the node's public names before the split
    CATCHUP_CHUNK,
    MAINTENANCE_CODE,
    RATE_LIMIT_CODE,
    NodeConnection,
    ServerChannel,
)
from simulator.service import ServiceDistribution, ServiceModel, distribution_from_params


def node_seeds(seed: int, node_id: str) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """The seed sequences of a node's market and service generators: independent, from (seed, node id)."""
    ss = np.random.SeedSequence([seed, zlib.crc32(node_id.encode())])
    market, service = ss.spawn(2)
    return market, service


def node_rngs(seed: int, node_id: str) -> tuple[np.random.Generator, np.random.Generator]:
    """The market and service generators of a node: independent streams from (seed, node id)."""
    market, service = node_seeds(seed, node_id)
    return np.random.default_rng(market), np.random.default_rng(service)


class ExchangeNode:
    """A fake exchange node: configure, :meth:`start` on a running loop, then let the shell connect clients.

    ``spec`` is a ``simulator.scenario.NodeSpec`` (or any object with its fields); ``faults`` the scenario's
    faults (those for other nodes are ignored); ``seed`` the scenario seed. Fault times count from
    :meth:`start`.

    ``market_on_demand``: the market feed steps only while some session of the node has a subscription. A
    dormant feed that gets a subscriber first replays every step it missed, in order, so subscribers see
    exactly the stream an always-running feed gives (same seed, same subscribe time), and a node nobody
    subscribes to costs no market work. Meant for virtual time; in live mode the replay would stall the loop
    (a step costs tens of microseconds), so the live server keeps the default (always running).
    """

    def __init__(
        self,
        spec: Any,
        *,
        faults: Sequence[Any] = (),
        seed: int = 0,
        base_dir: str | Path | None = None,
        market_update_interval_s: float | None = None,
        market_on_demand: bool = False,
    ) -> None:
        self.spec = spec
        self.id: str = spec.id
        self.seed = seed
        self._market_seed, service_seed = node_seeds(seed, self.id)
        interval = market_update_interval_s or getattr(spec, "market_update_interval_s", None) or 0.1
        self._market_interval = float(interval)
        self.market = MarketFeed(
            tuple(spec.symbols), np.random.default_rng(self._market_seed), update_interval_s=self._market_interval
        )
        self.market_on_demand = market_on_demand
        #: True while the feed is not stepping (market_on_demand and no session subscribed).
        self._market_dormant = False
        self.service = ServiceModel(
            _distribution(spec.service, base_dir),
            workers=int(spec.service.workers),
            queue_limit=int(spec.queue_limit),
            rng=np.random.default_rng(service_seed),
        )
        self._fault_specs = tuple(faults)
        self.faults = FaultSchedule(
            faults,
            node_id=self.id,
            seed=seed,
            base_latency_s=float(spec.network_latency_s),
            base_jitter_s=float(spec.network_jitter_s),
        )
        # Insertion-ordered (a dict, not a set): iteration order must not depend on memory addresses, or runs
        # would differ between processes.
        self.connections: dict[NodeConnection, None] = {}
        #: Live mode only (set by the server): timers fire this much early and frames due within it go now.
        #: asyncio on epoll wakes timers up to 1 ms late (millisecond poll timeouts, rounded up); a slack of
        #: half that centres the error of every delivery on the modelled time. Virtual time needs none (0).
        self.timer_slack_s = 0.0
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.origin = 0.0
        self._timers: list[asyncio.TimerHandle] = []
        self._market_timer: asyncio.TimerHandle | None = None
        self.frames_sent = 0
        self.frames_received = 0
        self.orders_rejected = 0
        self.started = False

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the market feed and the fault timeline on ``loop`` (default: the running loop), from now."""
        self.loop = loop or asyncio.get_running_loop()
        self.origin = self.loop.time()
        self.market = MarketFeed(
            tuple(self.spec.symbols),
            np.random.default_rng(self._market_seed),
            update_interval_s=self._market_interval,
            start_time=self.origin,
        )
        self.faults = FaultSchedule(
            self._fault_specs,
            node_id=self.id,
            seed=self.seed,
            origin=self.origin,
            base_latency_s=self.faults.base_latency_s,
            base_jitter_s=self.faults.base_jitter_s,
        )
        for edge in self.faults.edges():
            self._timers.append(self.loop.call_at(edge.time, self._on_edge, edge))
        self._market_dormant = self.market_on_demand
        if not self._market_dormant:
            self._arm_market()
        self.started = True

    def stop(self) -> None:
        """Cancel the node's timers and abort every connection still open."""
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        if self._market_timer is not None:
            self._market_timer.cancel()
            self._market_timer = None
        self._market_dormant = False
        for conn in list(self.connections):
            conn._shut()
            conn.channel.abort()
        self.started = False

    # -- the handshake and connections ------------------------------------------------------------------------

    def refuse(self, client: str) -> tuple[int, str] | None:
        """Call once per opening handshake: ``(http_status, reason)`` to refuse it (503 down, 429 rate limit)."""
        return self.faults.refuse_connect(client, self.loop.time())

    def connect(self, channel: ServerChannel) -> NodeConnection:
        """A client connection is open: create its session, send the info event; feed frames to the result.

        Call :meth:`start` first (the node's clock and fault timeline begin there).
        """
        if not self.started:
            raise RuntimeError(f"exchange node {self.id!r}: call start() before connect()")
        spec = self.spec
        session = ExchangeSession(
            market=self.market,
            api_keys=dict(spec.api_keys),
            heartbeat_interval_s=float(spec.heartbeat_interval_s),
            max_subscriptions=int(getattr(spec, "max_subscriptions", 25)),
            platform_status=int(getattr(spec, "platform_status", 1)),
            max_frame_bytes=int(getattr(spec, "max_frame_bytes", 1 << 20)),
        )
        conn = NodeConnection(self, channel, session, self.faults.open_link())
        self.connections[conn] = None
        now = self.loop.time()
        conn.execute(session.on_open(now), now)
        if self.faults.node_state(now).maintenance:
            conn.execute(session.info(MAINTENANCE_CODE, now), now)
        conn.update_reading(now)
        return conn

    @property
    def backlog(self) -> int:
        return sum(c.backlog for c in self.connections)

    # -- market -----------------------------------------------------------------------------------------------

    def _arm_market(self) -> None:
        at = self.market.next_time()
        self._market_timer = self.loop.call_at(at, self._on_market)

    def _on_market(self) -> None:
        self._market_timer = None
        now = self.loop.time()
        events = self.market.advance(now)
        subscribed = False
        for conn in list(self.connections):
            session = conn.session
            if session.subscription_count:
                subscribed = True
                if events:
                    conn.execute(session.on_market(events, now), now)
        if self.market_on_demand and not subscribed:
            self._market_dormant = True  # until a session subscribes (see _wake_market)
            return
        self._arm_market()

    def _wake_market(self, now: float) -> None:
        """A session is about to subscribe to a dormant feed: replay the steps it missed, then step it again."""
        market = self.market
        step = market.update_interval_s
        while (at := market.next_time()) <= now:
            market.advance(min(now, at + (CATCHUP_CHUNK - 1) * step))
            if market.next_time() == at:  # no step taken (rounding at huge clock values): let advance() decide
                market.advance(now)
                break
        self._market_dormant = False
        self._arm_market()

    # -- orders -----------------------------------------------------------------------------------------------

    def _reject(self, conn: NodeConnection, order: Order, now: float) -> None:
        """The service model refused ``order`` (queue full): answer it with the rate-limit error now."""
        self.orders_rejected += 1
        conn.execute(conn.session.order_done(order, now, ok=False, code=RATE_LIMIT_CODE), now)

    def _finish(self, conn: NodeConnection, order: Order, now: float) -> None:
        # A plain link has no error_reply fault active: order_error() would return None without a draw.
        error = None if now < conn._plain_until else conn.link.order_error(now)
        if error is None:
            actions = conn.session.order_done(order, now, ok=True)
        else:
            actions = conn.session.order_done(order, now, ok=False, code=error[0], text=error[1])
        conn.execute(actions, now)

    # -- faults -----------------------------------------------------------------------------------------------

    def _on_edge(self, edge: Edge) -> None:
        now = self.loop.time()
        state = self.faults.node_state(now)
        self.service.latency_factor = state.latency_factor
        workers = state.workers if state.workers is not None else self.service.nominal_workers
        if workers != self.service.workers:
            self.service.set_workers(workers, now)
        by_link = {c.link: c for c in self.connections}
        for link, effect in self.faults.on_edge(edge, list(by_link), now):
            conn = by_link[link]
            if not conn.open:
                continue
            if isinstance(effect, Info):
                conn.execute(conn.session.info(effect.code, now), now)
            elif isinstance(effect, CloseLink):
                conn._schedule_out(CloseLink(max(effect.at, link.close_at(now)), effect.code, effect.reason))
            else:
                conn._schedule_out(effect)
        if edge.fault.kind == "timeout":
            for conn in list(self.connections):
                conn.update_reading(now)
        if not edge.start and edge.fault.kind == "reorder":
            for conn in list(self.connections):
                for direction, d in conn.link.release(now):
                    if direction == "down":
                        conn._schedule_out(d)
                    elif isinstance(d, Deliver):
                        heapq.heappush(conn._in, (d.at, next(conn._seq), d.data))
                        conn._arm_in()


def _distribution(service: Any, base_dir: str | Path | None) -> ServiceDistribution:
    samples = getattr(service, "samples", ())
    if service.distribution == "empirical" and samples:
        return ServiceDistribution.empirical(samples)
    return distribution_from_params(service.distribution, service.params, base_dir=base_dir)


__all__ = [
    "CATCHUP_CHUNK",
    "MAINTENANCE_CODE",
    "RATE_LIMIT_CODE",
    "ExchangeNode",
    "NodeConnection",
    "ServerChannel",
    "node_rngs",
    "node_seeds",
]
