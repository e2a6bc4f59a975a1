"""What a connection store is, apart from any implementation: its events, its observers, the clock it reads and
the :class:`ConnectionStore` protocol (split from :mod:`wsfinal.store`, which re-exports every name here).

:class:`ConnectionStore` lists every method the manager and its connections call on a store; a database-backed
store implements all of them. The connection (:class:`~wsfinal.connection.ManagedConnection`) is duck-typed, so
a store written before a reporting method existed keeps working: it calls ``request_not_sent``,
``request_no_connection``, ``record_ping`` and ``record_timeout`` only when the store has them (and the separate
``request_started``/``request_finished`` plus ``message_sent``/``message_received`` when ``request_sent`` and
``answer_received`` are missing). What such a store loses is stated on each method below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import ConnectionConfig, ConnectionType
from .exceptions import UsageError
from .records import ConnectionRecord
from .states import ConnectionState

__all__ = ["Clock", "ClusterNode", "ConnectionStore", "StoreEvent", "StoreObserver", "loop_clock"]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """Something the store did. ``kind`` is one of registered, state_changed, stale, removed, node_down, node_up."""

    kind: str
    connection_id: str | None
    time: float
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ClusterNode:
    """A manager node of the cluster, as this store sees it."""

    node_id: str
    address: str
    last_heartbeat: float
    up: bool = True


class StoreObserver(Protocol):
    """Told synchronously about every change that can alter a selection (the balancer implements this)."""

    def on_registered(self, record: ConnectionRecord) -> None: ...
    def on_state_changed(self, record: ConnectionRecord, old: ConnectionState) -> None: ...
    def on_load_changed(self, record: ConnectionRecord) -> None: ...
    def on_eligibility_changed(self, record: ConnectionRecord) -> None: ...
    def on_removed(self, record: ConnectionRecord) -> None: ...


class ConnectionStore(Protocol):
    """What the manager needs from a store; a database-backed store implements the same methods.

    :class:`~wsfinal.store.InMemoryConnectionStore` implements all of them (tests/test_store_protocol.py checks
    it). Of the reporting methods, the connection skips on a store without them (see the module docstring):
    ``request_not_sent`` / ``request_no_connection`` (those requests are then missing from the store's totals),
    ``record_ping`` (the record has no ``ping_rtt_ms``, so ``LEAST_LATENCY`` never explores a connection starved
    for being slow: docs/connections.md, *Latency signals*) and ``record_timeout`` (timeouts leave the latency
    EWMAs alone, so a blackholed connection keeps its last, good latency for routing).
    """

    async def register_connection(
        self, connection_id: str, connection_type: ConnectionType, config: ConnectionConfig
    ) -> bool: ...
    async def update_connection_state(self, connection_id: str, state: ConnectionState) -> bool: ...
    def get_connections_by_type(self, connection_type: ConnectionType) -> list[ConnectionRecord]: ...
    def register(
        self, connection_id: str, config: ConnectionConfig, *, cluster_node: str | None = None
    ) -> ConnectionRecord: ...
    def set_state(self, connection_id: str, state: ConnectionState) -> ConnectionRecord: ...
    def get(self, connection_id: str) -> ConnectionRecord | None: ...
    def all(self) -> list[ConnectionRecord]: ...
    def remove(self, connection_id: str) -> bool: ...
    def request_started(self, connection_id: str) -> None: ...
    def request_finished(
        self, connection_id: str, *, ok: bool, latency_ms: float | None, outcome: str | None = None
    ) -> None: ...
    def request_not_sent(self, connection_id: str) -> None: ...
    def request_no_connection(self, connection_type: ConnectionType) -> None: ...
    def message_sent(self, connection_id: str, nbytes: int = 0) -> None: ...
    def message_received(self, connection_id: str, nbytes: int = 0) -> None: ...
    def request_sent(self, connection_id: str, nbytes: int = 0) -> None: ...
    def answer_received(self, connection_id: str, nbytes: int, *, ok: bool, latency_ms: float | None) -> None: ...
    def record_timeout(self, connection_id: str, elapsed_ms: float) -> None:
        """A sent request got no answer within ``elapsed_ms``: a censored latency sample (a lower bound) for the
        record's latency EWMAs. The request still ends through ``request_finished``. Unknown ids are ignored."""
        ...

    def record_ping(self, connection_id: str, rtt_ms: float) -> None:
        """An app-level ping's round trip, kept as the record's ``ping_rtt_ms`` (never in the request EWMAs); a
        selection event, so observers are told. Unknown ids are ignored."""
        ...

    def record_error(self, connection_id: str, kind: str = "error") -> None: ...
    def record_reconnect(self, connection_id: str) -> None: ...
    def subscribe(self, observer: StoreObserver) -> None: ...
    def add_listener(self, callback: Callable[[StoreEvent], None]) -> None: ...


def loop_clock() -> float:
    """The running event loop's time. Raises :class:`UsageError` outside a loop: pass ``clock=`` then."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        raise UsageError("no running event loop to read the time from; pass now= or give the store a clock=") from None
