"""The connection store: the one writer of :class:`~wsfinal.records.ConnectionRecord` fields.

Connections report what happens to them here (state changes, requests, messages, errors, pings, timeouts); the
balancer and analytics read the records and listen to the store's events. :class:`ConnectionStore` (in
:mod:`wsfinal.store_protocol`, with the event, observer and clock types; all importable from here) is the
interface a persistent store implements later; :class:`InMemoryConnectionStore` keeps everything in dicts behind
one lock, so it may be called from any thread. Listeners and observers run synchronously in the caller's thread,
outside the lock.

Time: every method that needs ``now`` takes it as an optional argument and otherwise reads the injected clock
(by default the running event loop's ``time()``).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from .config import ConnectionConfig, ConnectionType
from .exceptions import UnknownConnectionError, UsageError, WsFinalError
from .records import ConnectionRecord
from .states import ConnectionState, check_transition
from .store_protocol import Clock, ClusterNode, ConnectionStore, StoreEvent, StoreObserver, loop_clock

__all__ = [
    "Clock",
    "ClusterNode",
    "ConnectionStore",
    "InMemoryConnectionStore",
    "StoreEvent",
    "StoreObserver",
    "loop_clock",
]

logger = logging.getLogger("wsfinal.store")


class InMemoryConnectionStore:
    """A thread-safe in-memory :class:`ConnectionStore` with stale cleanup and cluster-node tracking.

    A connection with no activity for ``stale_multiplier`` x its heartbeat interval is marked stale (event
    ``stale``) by :meth:`cleanup_stale`; if it stays silent for the same time again it is removed (event
    ``removed``, reason ``stale``). Cluster nodes send heartbeats; one silent for ``node_timeout_s`` is down.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        stale_multiplier: float = 3.0,
        node_timeout_s: float = 30.0,
    ) -> None:
        if stale_multiplier <= 0:
            raise UsageError(f"stale_multiplier={stale_multiplier!r}: must be > 0")
        if node_timeout_s <= 0:
            raise UsageError(f"node_timeout_s={node_timeout_s!r}: must be > 0")
        self._clock: Clock = clock or loop_clock
        #: The clock this store reads when ``now`` is not given (shared with the balancer by default).
        self.clock: Clock = self._clock
        self.stale_multiplier = stale_multiplier
        self.node_timeout_s = node_timeout_s
        self._lock = threading.RLock()
        self._records: dict[str, ConnectionRecord] = {}
        self._by_type: dict[ConnectionType, dict[str, ConnectionRecord]] = defaultdict(dict)
        self._by_node: dict[str, dict[str, ConnectionRecord]] = defaultdict(dict)
        self._nodes: dict[str, ClusterNode] = {}
        self._observers: list[StoreObserver] = []
        self._listeners: list[Callable[[StoreEvent], None]] = []
        #: Operation counts: the store's own performance metrics.
        self.operations: dict[str, int] = defaultdict(int)
        #: Requests that found no usable connection at submit (NO_CONNECTION), by type: they belong to no record.
        self._no_connection: dict[ConnectionType, int] = defaultdict(int)

    # -- plumbing ---------------------------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def subscribe(self, observer: StoreObserver) -> None:
        """Add an observer told about every change that can alter a selection; it sees existing records."""
        with self._lock:
            self._observers.append(observer)
            existing = list(self._records.values())
        for record in existing:
            observer.on_registered(record)

    def add_listener(self, callback: Callable[[StoreEvent], None]) -> None:
        """Call ``callback(event)`` for every :class:`StoreEvent`. A listener that raises is logged, not fatal."""
        with self._lock:
            self._listeners.append(callback)

    def _emit(self, event: StoreEvent) -> None:
        for callback in list(self._listeners):
            try:
                callback(event)
            except Exception:
                logger.exception("store listener %r failed on %s", callback, event.kind)

    def _record(self, connection_id: str) -> ConnectionRecord:
        record = self._records.get(connection_id)
        if record is None:
            raise UnknownConnectionError(connection_id)
        return record

    # -- registration and state ---------------------------------------------------------------------------

    def register(
        self,
        connection_id: str,
        config: ConnectionConfig,
        *,
        cluster_node: str | None = None,
        now: float | None = None,
    ) -> ConnectionRecord:
        """Add a connection in state ``DISCONNECTED``. Raises :class:`UsageError` if the id is taken."""
        if not isinstance(connection_id, str) or not connection_id:
            raise UsageError(f"connection_id={connection_id!r}: must be a non-empty string")
        t = self._now(now)
        record = ConnectionRecord(
            connection_id=connection_id,
            connection_type=config.connection_type,
            endpoint=config.endpoint,
            cluster_node=cluster_node if cluster_node is not None else config.cluster_node_id,
            weight=config.load_balancing_weight,
            config=config,
            created_at=t,
            last_activity=t,
            latency_stale_after_s=config.latency_stale_after_seconds,
            latency_probe_budget=config.latency_probe_budget,
        )
        with self._lock:
            if connection_id in self._records:
                raise UsageError(f"connection id {connection_id!r} is already registered")
            self._records[connection_id] = record
            self._by_type[record.connection_type][connection_id] = record
            if record.cluster_node is not None:
                self._by_node[record.cluster_node][connection_id] = record
            self.operations["register"] += 1
            observers = list(self._observers)
        for observer in observers:
            observer.on_registered(record)
        self._emit(StoreEvent("registered", connection_id, t, {"type": record.connection_type.value}))
        return record

    async def register_connection(
        self, connection_id: str, connection_type: ConnectionType, config: ConnectionConfig
    ) -> bool:
        """Seed API: register; ``False`` (and a log line) when the id is taken or the type disagrees."""
        if config.connection_type is not connection_type:
            logger.warning(
                "register_connection(%r): connection_type %s disagrees with config.connection_type %s",
                connection_id,
                connection_type.value,
                config.connection_type.value,
            )
            return False
        try:
            self.register(connection_id, config)
        except WsFinalError as exc:
            logger.warning("register_connection(%r) refused: %s", connection_id, exc)
            return False
        return True

    def set_state(self, connection_id: str, state: ConnectionState, now: float | None = None) -> ConnectionRecord:
        """Move a connection to ``state``; raises :class:`InvalidTransitionError` if the table forbids it.

        Setting the state it already has is a no-op (no event). Entering ``CONNECTED`` clears ``stale`` and the
        ``consecutive_failures`` streak: the session is new.
        """
        t = self._now(now)
        with self._lock:
            record = self._record(connection_id)
            old = record.state
            if old is state:
                return record
            check_transition(old, state)
            record.state = state
            record.last_activity = t
            if state is ConnectionState.CONNECTED:
                # A new session: its failure streak starts again (requests lost with the old session would
                # otherwise get the healthy new one ejected at its first request).
                record.stale = False
                record.consecutive_failures = 0
            self.operations["set_state"] += 1
            observers = list(self._observers)
        for observer in observers:
            observer.on_state_changed(record, old)
        self._emit(StoreEvent("state_changed", connection_id, t, {"old": old.value, "new": state.value}))
        return record

    async def update_connection_state(self, connection_id: str, state: ConnectionState) -> bool:
        """Seed API: :meth:`set_state` returning ``False`` (logged) instead of raising."""
        try:
            self.set_state(connection_id, state)
        except WsFinalError as exc:
            logger.warning("update_connection_state(%r, %s) refused: %s", connection_id, state.value, exc)
            return False
        return True

    def remove(self, connection_id: str, now: float | None = None, reason: str = "removed") -> bool:
        """Forget a connection. Returns ``False`` if it was not known."""
        t = self._now(now)
        with self._lock:
            record = self._records.pop(connection_id, None)
            if record is None:
                return False
            self._by_type[record.connection_type].pop(connection_id, None)
            if record.cluster_node is not None:
                self._by_node[record.cluster_node].pop(connection_id, None)
            self.operations["remove"] += 1
            observers = list(self._observers)
        for observer in observers:
            observer.on_removed(record)
        self._emit(StoreEvent("removed", connection_id, t, {"reason": reason}))
        return True

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, connection_id: str) -> ConnectionRecord | None:
        with self._lock:
            return self._records.get(connection_id)

    def all(self) -> list[ConnectionRecord]:
        with self._lock:
            return list(self._records.values())

    def get_connections_by_type(self, connection_type: ConnectionType) -> list[ConnectionRecord]:
        with self._lock:
            return list(self._by_type[connection_type].values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __contains__(self, connection_id: object) -> bool:
        with self._lock:
            return connection_id in self._records

    # -- per-connection metrics (the hot path: one lock, a few additions) -----------------------------------

    def request_started(self, connection_id: str, now: float | None = None) -> None:
        with self._lock:
            record = self._record(connection_id)
            record.outstanding += 1
            record.last_activity = self._now(now)
            observers = self._observers
        for observer in observers:
            observer.on_load_changed(record)

    def request_finished(
        self,
        connection_id: str,
        *,
        ok: bool,
        latency_ms: float | None,
        outcome: str | None = None,
        now: float | None = None,
    ) -> None:
        """A request reported with :meth:`request_started` ended; ``latency_ms`` feeds the EWMAs when given
        (``None`` for failures with no reply). ``outcome`` (optional) is its :class:`~wsfinal.requests.OutcomeKind`
        value: ``"not_sent"`` (it was still queued when the connection was lost) also counts it in
        ``requests_not_sent`` and, having never reached the exchange, leaves ``consecutive_failures`` alone."""
        with self._lock:
            record = self._records.get(connection_id)
            if record is None:  # removed while the request was in flight: nothing left to update
                return
            t = self._now(now)
            if outcome == "not_sent":
                if record.outstanding > 0:
                    record.outstanding -= 1
                record.requests_failed += 1
                record.requests_not_sent += 1
            else:
                _finish(record, ok, latency_ms, t)
            observers = self._observers
        for observer in observers:
            observer.on_load_changed(record)

    def request_not_sent(self, connection_id: str, now: float | None = None) -> None:
        """A request meant for this connection ended ``NOT_SENT`` at submit (the exchange announced maintenance):
        a failed request, also counted in ``requests_not_sent``. Nothing went out, so it is no message, no load,
        no latency and no activity; and it says nothing of how the exchange answers, so ``consecutive_failures``
        (outlier ejection) is left alone. Not preceded by :meth:`request_started`. Unknown ids are ignored."""
        with self._lock:
            record = self._records.get(connection_id)
            if record is None:
                return
            record.requests_failed += 1
            record.requests_not_sent += 1

    def request_no_connection(self, connection_type: ConnectionType, now: float | None = None) -> None:
        """A request of ``connection_type`` ended ``NO_CONNECTION``: no usable connection of the type at submit.
        It belongs to no record; :meth:`request_totals` and :meth:`metrics` report it by type."""
        with self._lock:
            self._no_connection[connection_type] += 1

    def request_sent(self, connection_id: str, nbytes: int = 0, now: float | None = None) -> None:
        """A request started and its frame of ``nbytes`` went out: :meth:`request_started` and
        :meth:`message_sent` in one step (one lock, one observer notification)."""
        with self._lock:
            record = self._records.get(connection_id)  # _record() and _now() inline: once per request
            if record is None:
                raise UnknownConnectionError(connection_id)
            record.outstanding += 1
            record.messages_sent += 1
            record.bytes_sent += nbytes
            record.last_activity = self._clock() if now is None else now
            observers = self._observers
        for observer in observers:
            observer.on_load_changed(record)

    def answer_received(
        self, connection_id: str, nbytes: int, *, ok: bool, latency_ms: float | None, now: float | None = None
    ) -> None:
        """A frame of ``nbytes`` answered a request: :meth:`message_received` and :meth:`request_finished` in
        one step (one lock, one observer notification). Nothing happens if the connection was removed."""
        with self._lock:
            record = self._records.get(connection_id)
            if record is None:
                return
            t = self._clock() if now is None else now
            record.messages_received += 1
            record.bytes_received += nbytes
            record.stale = False
            _finish(record, ok, latency_ms, t)
            observers = self._observers
        for observer in observers:
            observer.on_load_changed(record)

    def message_sent(self, connection_id: str, nbytes: int = 0, now: float | None = None) -> None:
        with self._lock:
            record = self._record(connection_id)
            record.messages_sent += 1
            record.bytes_sent += nbytes
            record.last_activity = self._now(now)
            observers = self._observers
        for observer in observers:
            observer.on_load_changed(record)

    def message_received(self, connection_id: str, nbytes: int = 0, now: float | None = None) -> None:
        with self._lock:
            record = self._records.get(connection_id)  # _record() and _now() inline: about once per request
            if record is None:
                raise UnknownConnectionError(connection_id)
            record.messages_received += 1
            record.bytes_received += nbytes
            record.last_activity = self._clock() if now is None else now
            record.stale = False
            observers = self._observers
        for observer in observers:
            observer.on_load_changed(record)

    def record_latency(self, connection_id: str, latency_ms: float, now: float | None = None) -> None:
        """A request-latency sample measured outside the request path (a connection reports its requests through
        :meth:`request_finished`/:meth:`answer_received`). Ping round trips go to :meth:`record_ping` instead."""
        with self._lock:
            record = self._record(connection_id)
            record.record_latency(latency_ms, self._now(now))
            observers = self._observers
        for observer in observers:
            observer.on_load_changed(record)

    def record_timeout(self, connection_id: str, elapsed_ms: float, now: float | None = None) -> None:
        """A sent request got no answer within ``elapsed_ms`` (send to timeout): a censored sample, a lower bound
        of its latency, folded into the latency EWMAs (see :meth:`ConnectionRecord.record_censored`). The request
        itself still ends through :meth:`request_finished`. Unknown ids are ignored."""
        with self._lock:
            record = self._records.get(connection_id)
            if record is None:
                return
            record.record_censored(elapsed_ms, self._now(now))
            observers = self._observers
        for observer in observers:
            observer.on_load_changed(record)

    def record_ping(self, connection_id: str, rtt_ms: float, now: float | None = None) -> None:
        """An app-level ping's round trip (``ping_rtt_ms``): kept apart from request latency, it is what
        ``LEAST_LATENCY`` falls back to when the request EWMA is stale (:meth:`ConnectionRecord.routing_latency_ms`).
        A selection event: observers are told. Unknown ids are ignored."""
        with self._lock:
            record = self._records.get(connection_id)
            if record is None:
                return
            record.record_ping(rtt_ms, self._now(now))
            observers = self._observers
        for observer in observers:
            observer.on_load_changed(record)

    def record_error(self, connection_id: str, kind: str = "error", now: float | None = None) -> None:
        with self._lock:
            record = self._records.get(connection_id)
            if record is None:
                return
            record.errors += 1
            self.operations[f"error:{kind}"] += 1

    def record_reconnect(self, connection_id: str, now: float | None = None) -> None:
        with self._lock:
            record = self._records.get(connection_id)
            if record is None:
                return
            record.reconnects += 1

    def touch(self, connection_id: str, now: float | None = None) -> None:
        """Activity that is not a message (a pong, say): keeps the connection from going stale."""
        with self._lock:
            record = self._record(connection_id)
            record.last_activity = self._now(now)
            record.stale = False

    def set_health_score(self, connection_id: str, score: float) -> None:
        with self._lock:
            record = self._records.get(connection_id)
            if record is None:
                return
            record.health_score = score
            observers = self._observers
        for observer in observers:
            observer.on_load_changed(record)

    def set_paused(self, connection_id: str, paused: bool) -> None:
        """Mark a connection paused (exchange maintenance) or not; a paused connection is not selected."""
        with self._lock:
            record = self._records.get(connection_id)
            if record is None or record.paused is paused:
                return
            record.paused = paused
            observers = list(self._observers)
        for observer in observers:
            observer.on_eligibility_changed(record)

    def set_ejection(self, connection_id: str, until: float | None) -> None:
        """Eject a connection from selection until ``until`` (``None`` lifts it); the balancer calls this."""
        with self._lock:
            record = self._record(connection_id)
            if until is not None:
                record.ejection_count += 1
            record.ejected_until = until

    # -- stale cleanup -------------------------------------------------------------------------------------

    def stale_after(self, record: ConnectionRecord) -> float:
        interval = record.config.heartbeat_interval_seconds if record.config else 30.0
        return self.stale_multiplier * interval

    def cleanup_stale(self, now: float | None = None) -> list[StoreEvent]:
        """Mark silent connections stale, remove those stale for as long again; return the events emitted."""
        t = self._now(now)
        events: list[StoreEvent] = []
        to_remove: list[str] = []
        with self._lock:
            for record in self._records.values():
                if record.state is ConnectionState.CLOSED:
                    to_remove.append(record.connection_id)
                    continue
                silence = t - record.last_activity
                limit = self.stale_after(record)
                if silence >= 2 * limit and record.stale:
                    to_remove.append(record.connection_id)
                elif silence >= limit and not record.stale:
                    record.stale = True
                    events.append(
                        StoreEvent("stale", record.connection_id, t, {"silence_s": silence, "limit_s": limit})
                    )
        for event in events:
            logger.info("connection %s is stale (%.1f s silent)", event.connection_id, event.detail["silence_s"])
            self._emit(event)
        for connection_id in to_remove:
            if self.remove(connection_id, now=t, reason="stale"):
                events.append(StoreEvent("removed", connection_id, t, {"reason": "stale"}))
        return events

    # -- cluster nodes -------------------------------------------------------------------------------------

    def register_node(self, node_id: str, address: str = "", now: float | None = None) -> None:
        t = self._now(now)
        with self._lock:
            self._nodes[node_id] = ClusterNode(node_id, address, t, True)

    def node_heartbeat(self, node_id: str, now: float | None = None) -> None:
        t = self._now(now)
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None:
                raise UsageError(f"unknown cluster node {node_id!r}: register_node() it first")
            node.last_heartbeat = t
            came_back = not node.up
            node.up = True
        if came_back:
            self._emit(StoreEvent("node_up", None, t, {"node_id": node_id}))

    def list_nodes(self, now: float | None = None) -> list[ClusterNode]:
        """Every known node, with ``up`` refreshed: a node silent for ``node_timeout_s`` is down."""
        t = self._now(now)
        went_down: list[str] = []
        with self._lock:
            for node in self._nodes.values():
                alive = t - node.last_heartbeat < self.node_timeout_s
                if node.up and not alive:
                    went_down.append(node.node_id)
                node.up = alive
            nodes = [ClusterNode(n.node_id, n.address, n.last_heartbeat, n.up) for n in self._nodes.values()]
        for node_id in went_down:
            logger.warning("cluster node %s is down (no heartbeat for %.1f s)", node_id, self.node_timeout_s)
            self._emit(StoreEvent("node_down", None, t, {"node_id": node_id}))
        return nodes

    def connections_by_node(self, node_id: str) -> list[ConnectionRecord]:
        with self._lock:
            return list(self._by_node.get(node_id, {}).values())

    def request_totals(self, connection_type: ConnectionType | None = None) -> dict[str, int]:
        """Request counts summed over the records the store holds (of ``connection_type``, if given), plus the
        requests that found no connection: ``ok``, ``failed`` (of which ``not_sent``), ``outstanding`` (in
        flight), ``no_connection``, and ``submitted``, their sum (``ok + failed + outstanding + no_connection``).
        Counts of removed connections are gone with their records."""
        with self._lock:  # one consistent view: no request is counted twice or not at all
            if connection_type is None:
                records = self._records.values()
                no_connection = sum(self._no_connection.values())
            else:
                records = self._by_type[connection_type].values()
                no_connection = self._no_connection.get(connection_type, 0)
            ok = sum(r.requests_ok for r in records)
            failed = sum(r.requests_failed for r in records)
            not_sent = sum(r.requests_not_sent for r in records)
            outstanding = sum(r.outstanding for r in records)
        return {
            "submitted": ok + failed + outstanding + no_connection,
            "ok": ok,
            "failed": failed,
            "not_sent": not_sent,
            "outstanding": outstanding,
            "no_connection": no_connection,
        }

    def metrics(self) -> dict[str, Any]:
        """Store-wide counts: connections per state and type, operation counts, and :meth:`request_totals` (with
        ``no_connection`` by type)."""
        with self._lock:
            requests: dict[str, Any] = self.request_totals()
            requests["no_connection_by_type"] = {t.value: n for t, n in self._no_connection.items()}
            by_state: dict[str, int] = defaultdict(int)
            by_type: dict[str, int] = defaultdict(int)
            for record in self._records.values():
                by_state[record.state.value] += 1
                by_type[record.connection_type.value] += 1
            return {
                "connections": len(self._records),
                "by_state": dict(by_state),
                "by_type": dict(by_type),
                "nodes": len(self._nodes),
                "operations": dict(self.operations),
                "requests": requests,
            }


def _finish(record: ConnectionRecord, ok: bool, latency_ms: float | None, t: float) -> None:
    """A request of ``record`` ended at ``t`` (the shared part of ``request_finished`` and ``answer_received``;
    the caller holds the store's lock)."""
    if record.outstanding > 0:
        record.outstanding -= 1
    if ok:
        record.requests_ok += 1
        record.consecutive_failures = 0
    else:
        record.requests_failed += 1
        record.consecutive_failures += 1
    if latency_ms is not None:
        record.record_latency(latency_ms, t)
    record.last_activity = t
