"""The exceptions wsfinal raises, under one root.

Errors split by whose fault they are: the caller's ("you called me wrong": bad configuration, an illegal state
transition, an unknown connection, a full manager) or the peer's ("the peer misbehaved": a malformed frame, an
exchange error reply, a lost connection). Third-party errors (``websockets``, ``httpx``, ``smtplib``) are
translated into this tree in one place each, so callers never need to import them::

    WsFinalError
    ├── UsageError                      you called me wrong
    │   ├── ConfigurationError (ValueError)   a config value is invalid: names the field and the value
    │   ├── InvalidTransitionError            a connection state change the state table forbids
    │   ├── UnknownConnectionError (KeyError) no connection with that id
    │   └── CapacityError                     the manager is at max_connections
    ├── PeerError                       the peer misbehaved
    │   ├── ProtocolViolation                 a frame that cannot be decoded or breaks the protocol
    │   └── ExchangeError                     the exchange answered with an error code
    ├── TransportError                  the network failed us
    │   ├── ConnectTimeout                    no connection within connection_timeout_seconds
    │   └── ConnectionLost                    the connection closed while we needed it
    └── NotificationError               a notification could not be delivered
"""

from __future__ import annotations


class WsFinalError(Exception):
    """Root of every error wsfinal raises on purpose."""


class UsageError(WsFinalError):
    """The caller used the API wrongly; fix the call, retrying will not help."""


class ConfigurationError(UsageError, ValueError):
    """A configuration value is invalid. The message names the field and the value."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={value!r}: {reason}")


class InvalidTransitionError(UsageError):
    """A connection state change that the state table in :mod:`wsfinal.states` forbids."""

    def __init__(self, old: object, new: object) -> None:
        self.old = old
        self.new = new
        old_name = getattr(old, "value", old)
        new_name = getattr(new, "value", new)
        super().__init__(f"illegal connection state transition: {old_name} -> {new_name}")


class UnknownConnectionError(UsageError, KeyError):
    """No connection with this id is known."""

    def __init__(self, connection_id: str) -> None:
        self.connection_id = connection_id
        super().__init__(f"unknown connection id {connection_id!r}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message again
        return str(self.args[0])


class CapacityError(UsageError):
    """The manager already holds ``max_connections`` connections."""


class PeerError(WsFinalError):
    """The remote peer misbehaved."""


class ProtocolViolation(PeerError):
    """A frame could not be decoded, was too large, or broke the protocol."""


class ExchangeError(PeerError):
    """The exchange answered with an error code (Bitfinex codes, e.g. 10001)."""

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        super().__init__(f"exchange error {code}: {message}" if message else f"exchange error {code}")


class TransportError(WsFinalError):
    """The network or the transport failed."""


class ConnectTimeout(TransportError):
    """No connection could be opened within the connect timeout."""


class ConnectionLost(TransportError):
    """The connection closed (or was found dead) while it was needed."""

    def __init__(self, message: str = "connection lost", code: int | None = None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(message)


class NotificationError(WsFinalError):
    """A notification could not be delivered on a channel."""
