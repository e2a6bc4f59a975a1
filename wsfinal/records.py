"""What the store and the strategies know of one connection.

A :class:`ConnectionRecord` is plain mutable data. The connection store is its only writer (see
:mod:`wsfinal.store`); strategies and analytics read it. Latency figures are milliseconds, times are seconds on
the event loop's clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .config import ConnectionConfig, ConnectionType
from .states import ConnectionState

_exp = math.exp
#: An enum member read once (a member read goes through the enum metaclass: about 0.2 us in Python 3.11).
_CONNECTED = ConnectionState.CONNECTED

#: Time constant of the latency EWMA, in seconds (a sample weighs 1 - exp(-dt / tau)).
DEFAULT_EWMA_TAU_S = 10.0
#: Decay time constant of the peak-EWMA (Finagle's default decay is 10 s).
DEFAULT_PEAK_EWMA_TAU_S = 10.0
#: With no request-latency sample for this long, a connection's routing latency falls back to its ping RTT
#: (:attr:`ConnectionRecord.latency_stale_after_s`; set from ``ConnectionConfig.latency_stale_after_seconds``).
DEFAULT_LATENCY_STALE_AFTER_S = 10.0
#: ``LEAST_LATENCY``'s probe budget: requests in flight to a connection being explored (no request sample, or a
#: stale one) beyond which it is no longer ranked by its exploration signal (:attr:`ConnectionRecord.\
#: latency_probe_budget`; set from ``ConnectionConfig.latency_probe_budget``).
DEFAULT_LATENCY_PROBE_BUDGET = 1


@dataclass(slots=True, eq=False)
class ConnectionRecord:
    connection_id: str
    connection_type: ConnectionType
    endpoint: str
    cluster_node: str | None = None
    state: ConnectionState = ConnectionState.DISCONNECTED
    weight: float = 1.0
    config: ConnectionConfig | None = None
    created_at: float = 0.0
    last_activity: float = 0.0
    #: Requests sent and not yet finished.
    outstanding: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    requests_ok: int = 0
    #: Requests that ended in any other way (rejected, timed out, lost, not sent).
    requests_failed: int = 0
    #: Of ``requests_failed``, those never written to the socket (NOT_SENT: refused at submit during exchange
    #: maintenance, or still queued when the connection was lost): no message, no latency, no load.
    requests_not_sent: int = 0
    errors: int = 0
    consecutive_failures: int = 0
    reconnects: int = 0
    #: Smoothed request latency (ms); NaN until the first sample. Requests only (answers, and timeouts as
    #: censored samples): never ping round trips.
    latency_ewma_ms: float = math.nan
    #: Peak-EWMA latency (ms): jumps up to a slower sample at once, decays towards faster ones.
    peak_ewma_ms: float = math.nan
    #: When the EWMAs were last updated (loop time): the time of the last request-latency sample.
    latency_stamp: float = 0.0
    #: The last answered request's latency (ms).
    last_latency_ms: float = math.nan
    #: The last app-level ping's round trip (ms) through the exchange session and its link (no service time);
    #: NaN until the first pong. A separate signal: it never enters the request-latency EWMAs.
    ping_rtt_ms: float = math.nan
    #: When that pong was read (loop time).
    ping_stamp: float = -math.inf
    #: See :meth:`routing_latency_ms`.
    latency_stale_after_s: float = DEFAULT_LATENCY_STALE_AFTER_S
    #: See :meth:`routing_latency_ms` (``LEAST_LATENCY``'s probe budget).
    latency_probe_budget: int = DEFAULT_LATENCY_PROBE_BUDGET
    health_score: float = 100.0
    stale: bool = False
    #: The exchange is in maintenance on this connection (Bitfinex 20060 until 20061): requests would not be sent.
    paused: bool = False
    ejected_until: float | None = None
    ejection_count: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def messages(self) -> int:
        """Messages handled, both directions: the measure of ``LEAST_LOAD``."""
        return self.messages_sent + self.messages_received

    @property
    def is_connected(self) -> bool:
        return self.state is _CONNECTED

    def is_ejected(self, now: float) -> bool:
        return self.ejected_until is not None and now < self.ejected_until

    def record_latency(
        self,
        latency_ms: float,
        now: float,
        tau_s: float = DEFAULT_EWMA_TAU_S,
        peak_tau_s: float = DEFAULT_PEAK_EWMA_TAU_S,
    ) -> None:
        """Fold one latency sample into the EWMA and the peak-EWMA (time-weighted, as Finagle does)."""
        self.last_latency_ms = latency_ms
        ewma = self.latency_ewma_ms
        if ewma != ewma:  # NaN: the first sample (no math.isnan call: once per request)
            self.latency_ewma_ms = latency_ms
            self.peak_ewma_ms = latency_ms
        else:
            dt = now - self.latency_stamp
            if dt < 0.0:  # max(dt, 0.0) without the call; the same value (also for -0.0)
                dt = 0.0
            w = _exp(-dt / tau_s)
            self.latency_ewma_ms = ewma * w + latency_ms * (1.0 - w)
            peak = self.peak_ewma_ms
            if latency_ms > peak:
                self.peak_ewma_ms = latency_ms
            else:
                pw = _exp(-dt / peak_tau_s)
                self.peak_ewma_ms = peak * pw + latency_ms * (1.0 - pw)
        self.latency_stamp = now

    def record_censored(self, elapsed_ms: float, now: float) -> None:
        """A request that got no answer within ``elapsed_ms`` (a timeout): a censored sample, a lower bound of its
        latency, folded into the EWMAs like an answer's so that a silent connection looks slow rather than
        unmeasured. ``last_latency_ms`` (answered requests only) is left alone."""
        last = self.last_latency_ms
        self.record_latency(elapsed_ms, now)
        self.last_latency_ms = last

    def record_ping(self, rtt_ms: float, now: float) -> None:
        """An app-level ping's round trip of ``rtt_ms``, its pong read at ``now``."""
        self.ping_rtt_ms = rtt_ms
        self.ping_stamp = now

    def routing_latency_ms(self) -> float:
        """The latency ``LEAST_LATENCY`` ranks by: the request EWMA, unless the last request sample is older than
        :attr:`latency_stale_after_s` at the last ping, in which case the ping RTT (the link's round trip, without
        the exchange's service time): a connection that lost its traffic for being slow is tried again once its
        link answers fast. Decided from the record alone (the times of the last request sample and the last pong),
        so it changes only at a store event. NaN when there is no request sample yet. ``LEAST_LATENCY`` ranks by this
        within its probe budget (:attr:`latency_probe_budget` requests in flight) only: see
        :func:`wsfinal.strategies.least_latency_rank`."""
        ewma = self.latency_ewma_ms
        if self.ping_stamp - self.latency_stamp >= self.latency_stale_after_s and ewma == ewma:
            return self.ping_rtt_ms
        return ewma

    def peak_ewma_at(self, now: float, peak_tau_s: float = DEFAULT_PEAK_EWMA_TAU_S) -> float:
        """The peak-EWMA as seen at ``now``: like Finagle, it decays towards zero while no sample arrives, so a
        connection left alone for a while is tried again (and its cost corrected by the next sample)."""
        if math.isnan(self.peak_ewma_ms):
            return math.nan
        dt = max(now - self.latency_stamp, 0.0)
        return self.peak_ewma_ms * math.exp(-dt / peak_tau_s)

    def snapshot(self) -> dict[str, object]:
        """A JSON-friendly copy, for overviews, events and reports."""
        routing = self.routing_latency_ms()
        return {
            "connection_id": self.connection_id,
            "connection_type": self.connection_type.value,
            "endpoint": self.endpoint,
            "cluster_node": self.cluster_node,
            "state": self.state.value,
            "weight": self.weight,
            "outstanding": self.outstanding,
            "messages_sent": self.messages_sent,
            "messages_received": self.messages_received,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "requests_ok": self.requests_ok,
            "requests_failed": self.requests_failed,
            "requests_not_sent": self.requests_not_sent,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "latency_ewma_ms": None if math.isnan(self.latency_ewma_ms) else self.latency_ewma_ms,
            "peak_ewma_ms": None if math.isnan(self.peak_ewma_ms) else self.peak_ewma_ms,
            "ping_rtt_ms": None if math.isnan(self.ping_rtt_ms) else self.ping_rtt_ms,
            "routing_latency_ms": None if math.isnan(routing) else routing,
            "health_score": self.health_score,
            "stale": self.stale,
            "paused": self.paused,
            "ejected_until": self.ejected_until,
            "last_activity": self.last_activity,
            "created_at": self.created_at,
        }
