"""The seed's abstract ``WebSocketConnectionInterface`` and the events and metrics every connection offers.

A connection is event-driven: listeners added with :meth:`WebSocketConnectionInterface.add_listener` are called
synchronously with a :class:`ConnectionEvent` for every state change and every notable happening (reconnect
planned, maintenance, sequence gap...). A listener that raises is logged and otherwise ignored: it cannot break
the connection. :class:`~wsfinal.connection.ManagedConnection` is the implementation wsfinal ships; users may
write their own (the integration manager only relies on this interface).

Event kinds emitted by :class:`~wsfinal.connection.ManagedConnection`::

    state_changed        detail: old, new, reason
    connected            detail: url, attempt
    disconnected         detail: reason, code
    reconnect_scheduled  detail: delay, low, high, attempt, policy, reason
    gave_up              detail: reason, attempts
    info                 detail: code, message        (every Bitfinex info event)
    maintenance          detail: active (True at 20060, False at 20061)
    subscribed           detail: channel, chan_id, key
    resubscribe          detail: key, reason (sequence_gap, checksum_mismatch, maintenance_end, subscribe_timeout)
    stale                detail: silent_for, bound    (no traffic for the staleness bound: closing)
    error                detail: kind, message        (oversized, malformed, exchange_error, ...)
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import ConnectionConfig
from .states import ConnectionState

logger = logging.getLogger("wsfinal.interface")


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """Something that happened to a connection, at ``time`` on the loop's clock."""

    kind: str
    connection_id: str
    time: float
    detail: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[ConnectionEvent], None]


@dataclass(slots=True)
class ConnectionMetrics:
    """Counters of one connection since it was created (all reconnects included). Latencies in ms."""

    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    errors: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    connects: int = 0
    requests_submitted: int = 0
    requests_in_flight: int = 0
    requests_by_outcome: dict[str, int] = field(default_factory=dict)
    last_request_latency_ms: float | None = None
    last_ping_latency_ms: float | None = None
    sequence_gaps: int = 0
    checksum_mismatches: int = 0
    resubscribes: int = 0
    connected_since: float | None = None
    last_message_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class WebSocketConnectionInterface(abc.ABC):
    """A connection the integration manager can hold: connect, disconnect, send, observe.

    Implementations must provide :meth:`connect`, :meth:`disconnect`, :meth:`send_message` and the
    ``connection_id``, ``config``, ``state`` and ``metrics`` properties, and should call :meth:`_emit` for
    their events. Listener management is provided here.
    """

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    # -- what a connection must do ------------------------------------------------------------------------

    @abc.abstractmethod
    async def connect(self) -> bool:
        """Open the connection. ``True`` once usable; ``False`` if it could not be opened (see events)."""

    @abc.abstractmethod
    async def disconnect(self, reason: str = "manual") -> None:
        """Close the connection and stop every background task; no reconnect follows."""

    @abc.abstractmethod
    async def send_message(self, message: Any) -> bool:
        """Send one message (a dict or list is JSON-encoded). ``True`` if it was handed to the network."""

    @property
    @abc.abstractmethod
    def connection_id(self) -> str: ...

    @property
    @abc.abstractmethod
    def config(self) -> ConnectionConfig: ...

    @property
    @abc.abstractmethod
    def state(self) -> ConnectionState: ...

    @property
    @abc.abstractmethod
    def metrics(self) -> ConnectionMetrics: ...

    # -- provided -----------------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self.state is ConnectionState.CONNECTED

    def _listener_list(self) -> list[Listener]:
        # created on first use too: a subclass that forgot super().__init__() still gets events
        listeners: list[Listener] | None = self.__dict__.get("_listeners")
        if listeners is None:
            listeners = self._listeners = []
        return listeners

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(event)`` for every :class:`ConnectionEvent` of this connection."""
        self._listener_list().append(callback)

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        try:
            self._listener_list().remove(callback)
        except ValueError:
            pass

    def _emit(self, kind: str, time: float, /, **detail: Any) -> ConnectionEvent:
        """Build the event and call every listener with it; subclasses call this for their events."""
        event = ConnectionEvent(kind, self.connection_id, time, detail)
        for callback in tuple(self._listener_list()):
            try:
                callback(event)
            except Exception:  # a listener's bug must not break the connection
                logger.exception("listener %r failed on %s event of %s", callback, kind, self.connection_id)
        return event
