"""wsfinal: a WebSocket connection manager with load balancing, analytics and alerting.

Import the public names from here; submodules are implementation detail unless documented.
"""

from __future__ import annotations

from .config import (
    ConnectionConfig,
    ConnectionType,
    IntegrationConfig,
    LoadBalancingStrategy,
    NotificationConfig,
)
from .exceptions import (
    CapacityError,
    ConfigurationError,
    ConnectionLost,
    ConnectTimeout,
    ExchangeError,
    InvalidTransitionError,
    NotificationError,
    PeerError,
    ProtocolViolation,
    TransportError,
    UnknownConnectionError,
    UsageError,
    WsFinalError,
)
from .records import ConnectionRecord
from .states import TRANSITIONS, ConnectionState

__version__ = "0.1.0"

__all__ = [
    "TRANSITIONS",
    "CapacityError",
    "ConfigurationError",
    "ConnectTimeout",
    "ConnectionConfig",
    "ConnectionLost",
    "ConnectionRecord",
    "ConnectionState",
    "ConnectionType",
    "ExchangeError",
    "IntegrationConfig",
    "InvalidTransitionError",
    "LoadBalancingStrategy",
    "NotificationConfig",
    "NotificationError",
    "PeerError",
    "ProtocolViolation",
    "TransportError",
    "UnknownConnectionError",
    "UsageError",
    "WsFinalError",
    "__version__",
]
