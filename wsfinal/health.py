"""The connection health score: one documented formula, 0-100, monotone in every input.

The score is a product of a state factor and a sum of capped penalties::

    score = 100 * state_factor(state) * (1 - (W_SELF * p_self + W_PEER * p_peer + W_ERR * p_err
                                              + W_STALE * p_stale + W_RECONNECT * p_rc) / 100)

with the weights summing to 100 and every penalty ``p`` in ``[0, 1]``:

- ``p_self  = clamp(log2(latency / own_baseline) / log2(LATENCY_RATIO_CAP))``: 0 at or below the connection's own
  baseline, 1 at ``LATENCY_RATIO_CAP`` (8x) times it;
- ``p_peer  = clamp(log2(latency / peer_latency) / log2(LATENCY_RATIO_CAP))``: the same against the median of its
  peers (connections of the same type);
- ``p_err   = 1 - exp(-error_rate / ERROR_RATE_SCALE)``: 1 % errors costs 18 % of the error weight, 5 % costs 63 %;
- ``p_stale = clamp((staleness - stale_after/3) / (stale_after * 2/3))``: nothing while a connection has been quiet
  for under a third of its stale limit (one heartbeat interval with the store's 3x multiplier), all of it when
  the store would call it stale;
- ``p_rc    = 1 - exp(-reconnects / RECONNECT_SCALE)``: reconnects in the recent window (3 reconnects cost 63 %).

``state_factor`` is 1 for CONNECTED, 0.6 CONNECTING, 0.4 RECONNECTING, 0.2 DISCONNECTED, 0 FAILED and CLOSED.

The ``latency`` that :class:`~wsfinal.analytics.WebSocketAnalytics` passes is the connection's *health latency*
(:func:`wsfinal.analytics_records.health_latency`): the median of its request samples of the last 3 s (else of
its latency window), else its ping round trip once its request samples are stale (the ``LEAST_LATENCY`` rule),
else its request EWMA; the peer reference is the median of its peers' health latencies and the own baseline the
median latency per aggregation interval, smoothed over 10 minutes. A recent median, not the 10 s EWMA, so that the
score follows a spike within seconds both ways: with the EWMA a 10 s, 40 ms spike still cost 15-25 points 10 s
after it ended.

Monotonicity: a higher latency, error rate, staleness or reconnect count, or a state lower in that list, never
raises the score, because each penalty is non-decreasing in its input and the state factor is non-negative. The
baselines (own and peers) are reference points, not quality inputs. A missing latency or baseline (NaN or None)
adds no latency penalty: no evidence is not bad evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .exceptions import ConfigurationError
from .states import ConnectionState

__all__ = [
    "STATE_FACTOR",
    "WEIGHTS",
    "HealthInputs",
    "health_breakdown",
    "health_score",
]

#: Penalty weights (points out of 100).
WEIGHTS: dict[str, float] = {
    "latency_vs_self": 20.0,
    "latency_vs_peers": 20.0,
    "error_rate": 30.0,
    "staleness": 15.0,
    "reconnects": 15.0,
}
#: Multiplier on the score by connection state, best first (the order defines "worse state").
STATE_FACTOR: dict[ConnectionState, float] = {
    ConnectionState.CONNECTED: 1.0,
    ConnectionState.CONNECTING: 0.6,
    ConnectionState.RECONNECTING: 0.4,
    ConnectionState.DISCONNECTED: 0.2,
    ConnectionState.FAILED: 0.0,
    ConnectionState.CLOSED: 0.0,
}
LATENCY_RATIO_CAP = 8.0
ERROR_RATE_SCALE = 0.05
RECONNECT_SCALE = 3.0


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """What the score looks at. Latencies in ms, times in seconds, ``error_rate`` in [0, 1]."""

    latency_ms: float | None = None
    baseline_latency_ms: float | None = None
    peer_latency_ms: float | None = None
    error_rate: float = 0.0
    staleness_s: float = 0.0
    stale_after_s: float = 90.0
    reconnects: int = 0
    state: ConnectionState = ConnectionState.CONNECTED

    def __post_init__(self) -> None:
        if not (self.error_rate >= 0.0):  # also rejects NaN
            raise ConfigurationError("error_rate", self.error_rate, "must be a number >= 0")
        if not (self.stale_after_s > 0.0):
            raise ConfigurationError("stale_after_s", self.stale_after_s, "must be > 0")
        if self.reconnects < 0:
            raise ConfigurationError("reconnects", self.reconnects, "must be >= 0")
        if not isinstance(self.state, ConnectionState):
            raise ConfigurationError("state", self.state, "must be a ConnectionState")


def _clamp01(x: float) -> float:
    return 0.0 if x <= 0.0 else 1.0 if x >= 1.0 else x


def _ratio_penalty(latency: float | None, reference: float | None) -> float:
    if latency is None or reference is None or math.isnan(latency) or math.isnan(reference):
        return 0.0
    if reference <= 0.0:
        reference = 1e-9
    if latency <= reference:
        return 0.0
    return _clamp01(math.log2(latency / reference) / math.log2(LATENCY_RATIO_CAP))


def health_breakdown(inputs: HealthInputs) -> dict[str, float]:
    """Each penalty in [0, 1], the state factor and the score, for explanations and reports."""
    stale_limit = inputs.stale_after_s
    grace = stale_limit / 3.0
    staleness = inputs.staleness_s if not math.isnan(inputs.staleness_s) else 0.0
    penalties = {
        "latency_vs_self": _ratio_penalty(inputs.latency_ms, inputs.baseline_latency_ms),
        "latency_vs_peers": _ratio_penalty(inputs.latency_ms, inputs.peer_latency_ms),
        "error_rate": 1.0 - math.exp(-min(inputs.error_rate, 1e6) / ERROR_RATE_SCALE),
        "staleness": _clamp01((staleness - grace) / (stale_limit - grace)),
        "reconnects": 1.0 - math.exp(-inputs.reconnects / RECONNECT_SCALE),
    }
    lost = math.fsum(WEIGHTS[k] * p for k, p in penalties.items())
    factor = STATE_FACTOR[inputs.state]
    score = max(0.0, min(100.0, factor * (100.0 - lost)))
    out = dict(penalties)
    out["state_factor"] = factor
    out["score"] = score
    return out


def health_score(inputs: HealthInputs) -> float:
    """The 0-100 score of the formula in this module's docstring (100 = healthy).

    :func:`health_breakdown`'s ``"score"``, without its dictionaries: analytics scores every connection at every
    health check. The same penalties, weighted and summed by ``math.fsum`` (exactly rounded: the same float);
    tests/test_health_once.py holds the two to equality."""
    stale_limit = inputs.stale_after_s
    grace = stale_limit / 3.0
    staleness = inputs.staleness_s
    if staleness != staleness:
        staleness = 0.0
    latency = inputs.latency_ms
    w = WEIGHTS
    lost = math.fsum(
        (
            w["latency_vs_self"] * _ratio_penalty(latency, inputs.baseline_latency_ms),
            w["latency_vs_peers"] * _ratio_penalty(latency, inputs.peer_latency_ms),
            w["error_rate"] * (1.0 - math.exp(-min(inputs.error_rate, 1e6) / ERROR_RATE_SCALE)),
            w["staleness"] * _clamp01((staleness - grace) / (stale_limit - grace)),
            w["reconnects"] * (1.0 - math.exp(-inputs.reconnects / RECONNECT_SCALE)),
        )
    )
    return max(0.0, min(100.0, STATE_FACTOR[inputs.state] * (100.0 - lost)))
