"""The integration manager: the seed's one-stop object holding connections, store, balancer, analytics, alerts.

:class:`WebSocketIntegrationManager` owns a connection store and, as the config enables them, a load balancer,
analytics and an alert manager, and runs their periodic work as background tasks between :meth:`start` and
:meth:`stop` (health checks and stale cleanup every ``health_check_interval``, aggregation and anomaly detection
every ``analytics_interval``, alert evaluation every ``alert_check_interval``). A periodic job that raises is
logged and runs again next period: one bad tick never stops the manager.

The request path is :meth:`submit`: pick a connection with the balancer, hand the request to the connection,
report the outcome back to the balancer. It creates no task per request (DESIGN.md, performance notes): the
connection reports the outcome synchronously (to the balancer, to the caller's optional ``on_done``) and
resolves the future it returns.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
from collections.abc import Callable
from typing import Any, Literal, overload

import numpy as np

from .alerts import WebSocketAlertManager
from .analytics import WebSocketAnalytics
from .balancer import Selection, WebSocketLoadBalancer
from .config import ConnectionConfig, ConnectionType, IntegrationConfig, LoadBalancingStrategy
from .exceptions import CapacityError, UsageError, WsFinalError
from .interface import ConnectionEvent, WebSocketConnectionInterface
from .requests import OutcomeKind, RequestLedger, RequestOutcome
from .states import ConnectionState
from .store import Clock, InMemoryConnectionStore, loop_clock

logger = logging.getLogger("wsfinal.manager")

S = ConnectionState
#: Enum members read once (a member read costs about 0.2 us in Python 3.11): these are read per request.
_CONNECTED = ConnectionState.CONNECTED
_NO_CONNECTION = OutcomeKind.NO_CONNECTION
_ROUND_ROBIN = LoadBalancingStrategy.ROUND_ROBIN


def _call_on_done(on_done: Callable[[RequestOutcome], None], outcome: RequestOutcome) -> None:
    try:
        on_done(outcome)
    except Exception:  # the caller's bug must not break the request path
        logger.exception("submit(on_done=...) callback failed")


def _parameters(method: Any) -> frozenset[str]:
    """The parameter names of a connection's method (``submit``: does it take ``tag``, ``on_done``?)."""
    if method is None:
        return frozenset()
    try:
        return frozenset(inspect.signature(method).parameters)
    except (TypeError, ValueError):
        return frozenset()


def derive_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent integer seeds from one: child ``i`` of ``numpy.random.SeedSequence(seed).spawn(n)``
    gives seed ``i`` (a 32-bit int). The one place seeds are derived, for the manager, runs and comparisons."""
    if n < 1:
        raise ValueError(f"seeds={n!r}: need at least one seed")
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(n)]


class WebSocketIntegrationManager:
    """Holds the connections of one manager node and everything that watches and routes them.

    ``analytics``, ``alert_manager`` and ``load_balancer`` are ``None`` when the config disables them. Use as
    ``async with WebSocketIntegrationManager(config) as manager:`` or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        config: IntegrationConfig | None = None,
        *,
        store: InMemoryConnectionStore | None = None,
        clock: Clock | None = None,
        notifiers: Any = None,
        alert_rules: Any = None,
        alert_options: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or IntegrationConfig()
        self.store = store or InMemoryConnectionStore(clock=clock)
        self._clock: Clock = clock or self.store.clock
        #: The clock is the running loop's: submit() passes the time it read anyway instead of reading it again.
        self._loop_time = self._clock is loop_clock
        balancer_seed, self.connection_seed = derive_seeds(self.config.seed, 2)
        self.load_balancer: WebSocketLoadBalancer | None = None
        if self.config.enable_load_balancing:
            self.load_balancer = WebSocketLoadBalancer(
                self.store,
                seed=balancer_seed,
                clock=self._clock,
                default_strategy=self.config.default_load_balancing_strategy,
            )
        self.analytics: WebSocketAnalytics | None = None
        if self.config.enable_analytics:
            self.analytics = WebSocketAnalytics(self.store, clock=self._clock)
            if self.load_balancer is not None:
                analytics = self.analytics
                self.load_balancer.health_scorer = lambda record, now: analytics.get_connection_health_score(
                    record.connection_id
                )
        self.alert_manager: WebSocketAlertManager | None = None
        if self.config.enable_alerts:
            self.alert_manager = WebSocketAlertManager(
                self.config.notification_config,
                store=self.store,
                analytics=self.analytics,
                balancer=self.load_balancer,
                clock=self._clock,
                channels=notifiers,
                rules=alert_rules,
                **(alert_options or {}),
            )
        self._connections: dict[str, WebSocketConnectionInterface] = {}
        self._configs: dict[str, ConnectionConfig] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._rr_cursor = 0
        #: Connections that report outcomes through ``outcome_hook`` (ManagedConnection does).
        self._hooked: set[str] = set()
        #: The bound ``submit`` of connections that take ``tag`` and ``on_done`` and, when there is a balancer,
        #: report outcomes through ``outcome_hook``: submit() calls it straight away; with whether it also takes
        #: ``now`` (the loop time submit() read already: the connection need not read it again).
        self._fast_submit: dict[str, tuple[Callable[..., asyncio.Future[RequestOutcome] | None], bool]] = {}
        #: Of those, the ones whose ``submit`` also takes ``now`` and ``future`` (``submit(..., future=False)``).
        self._takes_future: set[str] = set()
        self.started = False
        #: Requests that ended without reaching a connection (no connection available); the store counts them
        #: too (``store.request_totals()["no_connection"]``).
        self.ledger = RequestLedger()
        self.events: list[ConnectionEvent] = []
        self._max_events = 10_000

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the periodic health checks, analytics and alert evaluation. Idempotent."""
        if self.started:
            return
        self.started = True
        if self.config.cluster_node_id is not None:
            self.store.register_node(self.config.cluster_node_id, "local")
        self._spawn("health-checks", self.config.health_check_interval, self._health_tick)
        if self.analytics is not None:
            self._spawn("analytics", self.config.analytics_interval, self._analytics_tick)
        if self.alert_manager is not None:
            self._spawn("alerts", self.config.alert_check_interval, self._alert_tick)
        logger.info("manager started (%d connections)", len(self._connections))

    async def stop(self) -> None:
        """Cancel the background tasks and disconnect every connection. Idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        connections = list(self._connections.values())
        if connections:
            await asyncio.gather(*(c.disconnect("manager stopped") for c in connections), return_exceptions=True)
        if self.alert_manager is not None:
            closer = getattr(self.alert_manager, "aclose", None)
            if closer is not None:
                await closer()
        self.started = False
        logger.info("manager stopped")

    async def __aenter__(self) -> WebSocketIntegrationManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, name: str, interval: float, job: Callable[[], Any]) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._periodic(name, interval, job), name=name))

    @staticmethod
    async def _periodic(name: str, interval: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                result = job()
                if asyncio.iscoroutine(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("periodic job %s failed; it runs again in %.1f s", name, interval)

    async def _health_tick(self) -> None:
        if self.load_balancer is not None:
            await self.load_balancer._perform_health_checks()
        self.store.cleanup_stale()
        if self.config.cluster_node_id is not None:
            self.store.node_heartbeat(self.config.cluster_node_id)
            self.store.list_nodes()

    async def _analytics_tick(self) -> None:
        assert self.analytics is not None
        await self.analytics._update_performance_metrics()
        await self.analytics._detect_anomalies()

    async def _alert_tick(self) -> None:
        assert self.alert_manager is not None
        await self.alert_manager._check_alerts()

    # -- connections -----------------------------------------------------------------------------------------

    async def register_connection(self, connection: WebSocketConnectionInterface, config: ConnectionConfig) -> bool:
        """Hold ``connection`` (described by ``config``) and connect it if it is not connected yet.

        Returns ``True`` once it is registered (a failed first connect is retried by the connection itself),
        ``False`` if a connection with the same id is already registered. Raises :class:`CapacityError` when the
        manager already holds ``max_connections``.
        """
        if not isinstance(connection, WebSocketConnectionInterface):
            raise UsageError(
                f"register_connection() needs a WebSocketConnectionInterface, got {type(connection).__name__}"
            )
        cid = connection.connection_id
        if cid in self._connections:
            logger.warning("connection %s is already registered", cid)
            return False
        if len(self._connections) >= self.config.max_connections:
            raise CapacityError(
                f"cannot register {cid}: the manager already holds max_connections={self.config.max_connections}"
            )
        cluster_node = config.cluster_node_id or self.config.cluster_node_id
        self.store.register(cid, config, cluster_node=cluster_node)
        bind = getattr(connection, "bind", None)
        if bind is not None:
            # A ManagedConnection writes its own state and metrics to the store and analytics.
            bind(store=self.store, analytics=self.analytics)
        else:
            connection.add_listener(self._mirror_state)
            self._sync_state(cid, connection.state)
        connection.add_listener(self._remember_event)
        submit = getattr(connection, "submit", None)
        takes = _parameters(submit)
        if self.load_balancer is not None and hasattr(connection, "outcome_hook") and "tag" in takes:
            # A ManagedConnection reports each routed request's outcome straight to the balancer (see submit).
            connection.outcome_hook = self.load_balancer.report_outcome
            self._hooked.add(cid)
        if submit is not None and (self.load_balancer is None or cid in self._hooked) and {"tag", "on_done"} <= takes:
            self._fast_submit[cid] = (submit, "now" in takes)
            if {"now", "future"} <= takes:
                self._takes_future.add(cid)
        self._connections[cid] = connection
        self._configs[cid] = config
        if connection.state is not S.CONNECTED:
            try:
                await connection.connect()
            except WsFinalError as exc:
                logger.warning("connection %s did not connect: %s", cid, exc)
        return True

    async def unregister_connection(self, connection_id: str, reason: str = "unregistered") -> bool:
        """Disconnect a connection and forget it. ``False`` if it was not registered."""
        connection = self._connections.pop(connection_id, None)
        if connection is None:
            return False
        self._configs.pop(connection_id, None)
        self._fast_submit.pop(connection_id, None)
        self._takes_future.discard(connection_id)
        if connection_id in self._hooked:
            self._hooked.discard(connection_id)
            setattr(connection, "outcome_hook", None)  # noqa: B010 - set only on connections that have it
        await connection.disconnect(reason)
        self.store.remove(connection_id, reason=reason)
        return True

    def _mirror_state(self, event: ConnectionEvent) -> None:
        """For connections that do not write to the store themselves: copy their state changes into it."""
        if event.kind == "state_changed":
            connection = self._connections.get(event.connection_id)
            new = connection.state if connection is not None else None
            if new is not None:
                self._sync_state(event.connection_id, new)

    def _sync_state(self, connection_id: str, state: ConnectionState) -> None:
        record = self.store.get(connection_id)
        if record is None or record.state is state:
            return
        try:
            self.store.set_state(connection_id, state)
        except WsFinalError:
            # A foreign implementation skipped a step of the table: walk through CONNECTING when that makes it legal.
            if state is S.CONNECTED and record.state is not S.CONNECTING:
                self.store.set_state(connection_id, S.CONNECTING)
                self.store.set_state(connection_id, state)
            else:
                logger.warning("connection %s reported an illegal change %s -> %s", connection_id, record.state, state)

    def _remember_event(self, event: ConnectionEvent) -> None:
        if event.kind == "maintenance":
            # Requests to a connection in exchange maintenance would end NOT_SENT: route around it meanwhile.
            self.store.set_paused(event.connection_id, bool(event.detail.get("active")))
        elif event.kind == "state_changed" and event.detail.get("new") != "connected":
            self.store.set_paused(event.connection_id, False)
        self.events.append(event)
        if len(self.events) > self._max_events:
            del self.events[: len(self.events) - self._max_events]

    def connections(self) -> list[WebSocketConnectionInterface]:
        return list(self._connections.values())

    async def get_connection(
        self, connection_type: ConnectionType, strategy: LoadBalancingStrategy | None = None
    ) -> WebSocketConnectionInterface | None:
        """A connected connection of ``connection_type`` chosen by ``strategy`` (default: the config's)."""
        selection = self._choose(connection_type, strategy)
        if selection is None:
            return None
        return self._connections.get(selection.record.connection_id)

    def _choose(
        self, connection_type: ConnectionType, strategy: LoadBalancingStrategy | None, now: float | None = None
    ) -> Selection | None:
        if self.load_balancer is not None:
            return self.load_balancer.choose(connection_type, strategy, now)
        # Load balancing disabled: plain round robin over the connected connections of the type.
        connected = [r for r in self.store.get_connections_by_type(connection_type) if r.state is _CONNECTED]
        if not connected:
            return None
        self._rr_cursor += 1
        record = connected[self._rr_cursor % len(connected)]
        kind = _ROUND_ROBIN
        return Selection(record, kind, kind, self._clock() if now is None else now)

    # -- messages and requests -------------------------------------------------------------------------------

    async def broadcast_message(self, message: Any, connection_type: ConnectionType | None = None) -> dict[str, bool]:
        """Send ``message`` on every connected connection (of ``connection_type``, if given), concurrently.

        One result per connection; a connection that is not connected gets ``False`` at once, and a slow one
        gets ``False`` after its ``message_timeout_seconds`` without delaying the others.
        """
        targets = [
            (cid, c)
            for cid, c in self._connections.items()
            if connection_type is None or self._configs[cid].connection_type is connection_type
        ]
        if not targets:
            return {}
        results: dict[str, bool] = {}
        pending: dict[asyncio.Task[bool], str] = {}
        text: str | None = None
        loop = asyncio.get_running_loop()
        for cid, connection in targets:
            if connection.state is not S.CONNECTED:
                results[cid] = False
                continue
            nowait = getattr(connection, "send_message_nowait", None)
            if nowait is not None:
                # Connections that can hand a frame to the transport without waiting need no task at all;
                # the message is encoded once for all of them.
                if text is None:
                    text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
                sent = nowait(text)
                if sent is not None:
                    results[cid] = bool(sent)
                    continue
            pending[loop.create_task(self._send_counted(connection, message))] = cid
        if pending:
            timeout = max(self._configs[cid].message_timeout_seconds for cid in pending.values())
            done, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
                results[pending[task]] = False
            if late:
                await asyncio.gather(*late, return_exceptions=True)
            for task in done:
                results[pending[task]] = task.result()
        return {cid: results[cid] for cid, _ in targets}

    @staticmethod
    async def _send_counted(connection: WebSocketConnectionInterface, message: Any) -> bool:
        try:
            return bool(await connection.send_message(message))
        except WsFinalError:
            return False

    @overload
    def submit(
        self,
        request: Any,
        connection_type: ConnectionType,
        strategy: LoadBalancingStrategy | None = None,
        *,
        timeout: float | None = None,
        on_done: Callable[[RequestOutcome], None] | None = None,
        future: Literal[True] = True,
    ) -> asyncio.Future[RequestOutcome]: ...

    @overload
    def submit(
        self,
        request: Any,
        connection_type: ConnectionType,
        strategy: LoadBalancingStrategy | None = None,
        *,
        timeout: float | None = None,
        on_done: Callable[[RequestOutcome], None],
        future: Literal[False],
    ) -> None: ...

    def submit(
        self,
        request: Any,
        connection_type: ConnectionType,
        strategy: LoadBalancingStrategy | None = None,
        *,
        timeout: float | None = None,
        on_done: Callable[[RequestOutcome], None] | None = None,
        future: bool = True,
    ) -> asyncio.Future[RequestOutcome] | None:
        """Route one request: select a connection, send, and return a future of its :class:`RequestOutcome`.

        The future always resolves (never raises): with ``NO_CONNECTION`` when no connection of the type is
        connected, else with what the connection reports. No task is created per request.

        ``on_done`` (optional) is called with the outcome exactly once, when the request ends: synchronously,
        where the outcome becomes known (before the future's done-callbacks are scheduled; before ``submit``
        returns when the request ends at once, e.g. ``NO_CONNECTION``), on connections whose ``submit`` takes
        ``on_done`` (:class:`~wsfinal.connection.ManagedConnection` does); else from a done-callback of the
        future. A caller that only needs the outcome may then ignore the future: that saves a done-callback, a
        loop iteration and a callback handle per request. ``on_done``'s exceptions are logged, not raised.

        ``future=False`` (needs ``on_done``, else :class:`UsageError`): ``submit`` returns ``None`` and the outcome
        reaches the caller through ``on_done`` only. Connections whose ``submit`` takes ``future`` then make no
        future at all (one ``asyncio.Future`` less per request); others are called as before and their future is
        left to them. Outcomes are counted (store, balancer, ledgers) exactly as with the future.
        """
        if not future and on_done is None:
            raise UsageError("submit(future=False) needs on_done: the outcome would reach no one")
        loop = asyncio.get_running_loop()
        now = loop.time()  # read once: the balancer (when the clock is the loop's) and the connection get it
        clock_now = now if self._loop_time else None
        balancer = self.load_balancer
        selection = (
            balancer.choose(connection_type, strategy, clock_now)  # _choose, inline
            if balancer is not None
            else self._choose(connection_type, strategy, clock_now)
        )
        if selection is not None:
            chosen = selection.record.connection_id
            fast = self._fast_submit.get(chosen)
            if fast is not None:
                # The connection reports the outcome to the balancer (through the tag) and to on_done itself,
                # synchronously: no callback per request.
                tag = selection if balancer is not None else None
                submit_now, takes_now = fast
                if not future and chosen in self._takes_future:  # (its submit takes now too)
                    submit_now(request, timeout=timeout, tag=tag, on_done=on_done, now=now, future=False)
                    return None
                if takes_now:
                    fut = submit_now(request, timeout=timeout, tag=tag, on_done=on_done, now=now)
                else:
                    fut = submit_now(request, timeout=timeout, tag=tag, on_done=on_done)
                return fut if future else None
        connection = None if selection is None else self._connections.get(selection.record.connection_id)
        submit = getattr(connection, "submit", None)
        if selection is None or submit is None:
            outcome = self.ledger.record_immediate(_NO_CONNECTION, now)
            # no connection to count it against: the store counts it by type, beside the records' totals
            self.store.request_no_connection(connection_type, now=outcome.finished_at)
            if on_done is not None:
                _call_on_done(on_done, outcome)
            if not future:
                return None
            done: asyncio.Future[RequestOutcome] = loop.create_future()
            done.set_result(outcome)
            return done
        if balancer is not None and selection.record.connection_id in self._hooked:
            inner: asyncio.Future[RequestOutcome] = submit(request, timeout=timeout, tag=selection)
        else:
            inner = submit(request, timeout=timeout)
            if balancer is not None:
                sel = selection

                def report(fut: asyncio.Future[RequestOutcome]) -> None:
                    if fut.cancelled():
                        return
                    outcome = fut.result()
                    balancer.report(sel, ok=outcome.ok, latency_ms=outcome.latency_ms, now=outcome.finished_at)

                inner.add_done_callback(report)
        if on_done is not None:
            callback = on_done

            def done_callback(fut: asyncio.Future[RequestOutcome]) -> None:
                if not fut.cancelled() and fut.exception() is None:
                    _call_on_done(callback, fut.result())

            inner.add_done_callback(done_callback)
        return inner if future else None

    # -- overview --------------------------------------------------------------------------------------------

    def _health_score(self, connection_id: str) -> float:
        if self.analytics is not None:
            return float(self.analytics.get_connection_health_score(connection_id))
        record = self.store.get(connection_id)
        return record.health_score if record is not None else 0.0

    def get_connection_info(self, connection_id: str) -> dict[str, Any] | None:
        """What is known of one connection (record, metrics, health score), or ``None`` if unknown."""
        record = self.store.get(connection_id)
        connection = self._connections.get(connection_id)
        if record is None or connection is None:
            return None
        info: dict[str, Any] = record.snapshot()
        info["health_score"] = self._health_score(connection_id)
        info["url"] = self._configs[connection_id].url
        info["metrics"] = connection.metrics.as_dict() if hasattr(connection.metrics, "as_dict") else {}
        return info

    def get_system_overview(self) -> dict[str, Any]:
        """The whole node at a glance: connections by state and type, health, balancer, alerts, analytics."""
        records = self.store.all()
        active = sum(1 for r in records if r.state is S.CONNECTED)
        scores = [self._health_score(r.connection_id) for r in records]
        by_state: dict[str, int] = {}
        by_type: dict[str, dict[str, int]] = {}
        for r in records:
            by_state[r.state.value] = by_state.get(r.state.value, 0) + 1
            t = by_type.setdefault(r.connection_type.value, {"total": 0, "active": 0})
            t["total"] += 1
            t["active"] += r.state is S.CONNECTED
        overall = sum(scores) / len(scores) if scores else 100.0
        overview: dict[str, Any] = {
            "cluster_node_id": self.config.cluster_node_id,
            "started": self.started,
            "connections": {
                "total": len(records),
                "active": active,
                "by_state": by_state,
                "by_type": by_type,
                "max_connections": self.config.max_connections,
            },
            "health": {
                "overall_health_score": overall if not math.isnan(overall) else 0.0,
                "unhealthy_connections": sum(1 for s in scores if s < 50.0),
            },
            "requests": self.request_summary(),
            # the store's view of the same requests: what analytics, health and the balancer read
            "store": self.store.metrics(),
        }
        if self.load_balancer is not None:
            overview["load_balancer"] = {
                "default_strategy": self.load_balancer.default_strategy.value,
                "strategies": {k.value: v for k, v in self.load_balancer.get_strategy_performance().items()},
                "panic_selections": {k.value: v for k, v in self.load_balancer.panic_selections.items()},
                "ejections": len(self.load_balancer.ejection_log),
            }
        if self.alert_manager is not None:
            overview["alerts"] = self.alert_manager.get_alert_summary()
        if self.config.cluster_node_id is not None:
            overview["cluster"] = [
                {"node_id": n.node_id, "up": n.up, "connections": len(self.store.connections_by_node(n.node_id))}
                for n in self.store.list_nodes()
            ]
        return overview

    def request_summary(self) -> dict[str, int]:
        """Request outcomes over every connection plus the manager's own NO_CONNECTION count."""
        total = dict(self.ledger.summary())
        for connection in self._connections.values():
            ledger = getattr(connection, "ledger", None)
            if isinstance(ledger, RequestLedger):
                for k, v in ledger.summary().items():
                    total[k] = total.get(k, 0) + v
        return total
