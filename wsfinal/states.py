"""Connection states and the table of legal transitions between them.

Every change of a connection's state goes through :func:`check_transition`, so this table is the one place
that says what may follow what. Rules:

- a connection starts ``DISCONNECTED``; ``connect()`` moves it to ``CONNECTING``;
- ``CONNECTING`` ends in ``CONNECTED`` (the handshake completed), ``RECONNECTING`` (it failed and a retry is
  planned), ``FAILED`` (it failed and no retry is left) or ``DISCONNECTED`` (the caller gave up);
- a ``CONNECTED`` connection that is lost goes to ``RECONNECTING`` (retry planned) or ``DISCONNECTED`` (asked to
  disconnect, or lost with reconnection off) or ``FAILED``;
- ``RECONNECTING`` waits out its backoff and goes back to ``CONNECTING``, or gives up to ``FAILED``;
- ``CLOSED`` is terminal: the connection was removed for good. ``FAILED`` may only be revived by an explicit
  ``connect()`` (to ``CONNECTING``) or closed.
"""

from __future__ import annotations

import enum

from .exceptions import InvalidTransitionError


class ConnectionState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSED = "closed"


_S = ConnectionState

#: old state -> the states it may move to. Staying in the same state is never a transition.
TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    _S.DISCONNECTED: frozenset({_S.CONNECTING, _S.CLOSED}),
    _S.CONNECTING: frozenset({_S.CONNECTED, _S.RECONNECTING, _S.FAILED, _S.DISCONNECTED, _S.CLOSED}),
    _S.CONNECTED: frozenset({_S.RECONNECTING, _S.DISCONNECTED, _S.FAILED, _S.CLOSED}),
    _S.RECONNECTING: frozenset({_S.CONNECTING, _S.FAILED, _S.DISCONNECTED, _S.CLOSED}),
    _S.FAILED: frozenset({_S.CONNECTING, _S.DISCONNECTED, _S.CLOSED}),
    _S.CLOSED: frozenset(),
}

#: States in which a connection can carry traffic.
USABLE_STATES: frozenset[ConnectionState] = frozenset({_S.CONNECTED})


def is_legal(old: ConnectionState, new: ConnectionState) -> bool:
    """True when ``old -> new`` is in the table."""
    return new in TRANSITIONS[old]


def check_transition(old: ConnectionState, new: ConnectionState) -> None:
    """Raise :class:`InvalidTransitionError` naming both states unless ``old -> new`` is legal."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransitionError(old, new)
