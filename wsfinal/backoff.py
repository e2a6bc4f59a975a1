"""Reconnect timing: exponential backoff with full jitter, and what a close code means for retrying.

Pure: no clock, no sleeping. The caller passes ``now`` (loop time) and a seeded ``random.Random``; the
:class:`Backoff` object says how long to wait before the next attempt, or that it is time to give up.

Delays follow AWS's "full jitter": attempt ``n`` (1-based) waits ``uniform(0, min(cap, base * 2**(n-1)))``.
A retry the server asked to be *later* (close codes 1012/1013) uses "equal jitter" on the same window,
``uniform(w/2, w)``, so it is never immediate. A reconnect the exchange asked for (Bitfinex info 20051) waits
``uniform(0, base)`` and does not count as a failed attempt. The attempt counter resets once a connection has
stayed up for ``stable_after_s``; ``max_attempts`` consecutive attempts without such a stable period give up.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class RetryPolicy(enum.Enum):
    """What to do after the connection was lost."""

    RETRY = "retry"  # back off with full jitter, then reconnect
    RETRY_LATER = "retry_later"  # the server is restarting or overloaded: back off, never immediately
    RETRY_NOW = "retry_now"  # the exchange asked us to reconnect (20051): small jitter only
    NO_RETRY = "no_retry"  # the server refused us on purpose: reconnecting would be refused again


#: Close codes after which reconnecting cannot help: policy violation and unsupported data.
NO_RETRY_CODES = frozenset({1003, 1008})
#: Close codes that mean "come back later": service restart and try again later.
RETRY_LATER_CODES = frozenset({1012, 1013})


def close_policy(code: int | None) -> RetryPolicy:
    """The retry policy for a connection closed with ``code`` (``None``: no close frame, e.g. a reset)."""
    if code in NO_RETRY_CODES:
        return RetryPolicy.NO_RETRY
    if code in RETRY_LATER_CODES:
        return RetryPolicy.RETRY_LATER
    return RetryPolicy.RETRY


@dataclass(frozen=True, slots=True)
class Delay:
    """One planned wait: ``seconds`` drawn from the window ``[low, high]`` for attempt number ``attempt``."""

    seconds: float
    low: float
    high: float
    attempt: int
    policy: RetryPolicy


class Backoff:
    """Exponential backoff with full jitter, a cap, a reset after a stable period and a give-up count.

    Call :meth:`next_delay` when a connection is lost or an attempt failed; ``None`` means give up (the
    caller moves the connection to FAILED). Call :meth:`connected` when a connection opens and
    :meth:`maybe_reset` (or :meth:`lost`, which does it) with the current time to forget old failures
    once the connection proved stable.
    """

    def __init__(
        self,
        *,
        base_s: float,
        cap_s: float = 30.0,
        max_attempts: int = 5,
        stable_after_s: float = 10.0,
        rng: random.Random,
    ) -> None:
        if base_s < 0 or cap_s < 0 or stable_after_s < 0:
            raise ValueError(f"backoff times must be >= 0 (base={base_s}, cap={cap_s}, stable={stable_after_s})")
        if max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0, got {max_attempts}")
        self.base_s = base_s
        self.cap_s = max(cap_s, base_s)
        self.max_attempts = max_attempts
        self.stable_after_s = stable_after_s
        self._rng = rng
        #: Consecutive attempts since the last stable connection.
        self.attempts = 0
        self._connected_at: float | None = None

    def window(self, attempt: int) -> float:
        """Upper bound of the jitter window of attempt ``attempt`` (1-based)."""
        if attempt <= 0:
            return 0.0
        # 2**exponent overflows a float only for absurd counts; clamp the exponent before raising.
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt - 1, 64))

    def connected(self, now: float) -> None:
        """A connection opened at ``now``. Failures are forgotten only once it stays up ``stable_after_s``."""
        self._connected_at = now

    def maybe_reset(self, now: float) -> bool:
        """Reset the attempt counter if the current connection has been up ``stable_after_s``; True if so."""
        if self._connected_at is not None and now - self._connected_at >= self.stable_after_s:
            self.attempts = 0
            return True
        return False

    def lost(self, now: float) -> None:
        """The connection went down at ``now`` (call before :meth:`next_delay`)."""
        self.maybe_reset(now)
        self._connected_at = None

    def next_delay(self, policy: RetryPolicy = RetryPolicy.RETRY) -> Delay | None:
        """How long to wait before the next attempt, or ``None`` to give up.

        ``NO_RETRY`` always gives up. ``RETRY_NOW`` (20051) waits ``uniform(0, base)`` and does not consume an
        attempt. Otherwise the attempt counter increases and the delay is drawn from its window.
        """
        if policy is RetryPolicy.NO_RETRY:
            return None
        if policy is RetryPolicy.RETRY_NOW:
            low, high = 0.0, self.base_s
            return Delay(self._rng.uniform(low, high), low, high, self.attempts, policy)
        if self.attempts >= self.max_attempts:
            return None
        self.attempts += 1
        high = self.window(self.attempts)
        low = high / 2.0 if policy is RetryPolicy.RETRY_LATER else 0.0
        return Delay(self._rng.uniform(low, high), low, high, self.attempts, policy)

    def reset(self) -> None:
        """Forget every failure (an explicit ``connect()`` by the user)."""
        self.attempts = 0
        self._connected_at = None
