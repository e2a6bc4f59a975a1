"""wsfinal: a WebSocket connection manager with load balancing, analytics and alerting.

Import the public names from here; submodules are implementation detail unless documented.
"""

from __future__ import annotations

from .alerts import Alert, AlertRule, AlertSeverity, AlertType, RouteConfig, WebSocketAlertManager
from .analytics import PerformanceMetrics, Prediction, WebSocketAnalytics
from .analytics_records import WindowedLatency
from .anomaly import Anomaly, AnomalyType, Cusum, EwmaControlChart, RobustZScore, Severity
from .balancer import Selection, WebSocketLoadBalancer
from .config import (
    ConnectionConfig,
    ConnectionType,
    IntegrationConfig,
    LoadBalancingStrategy,
    NotificationConfig,
)
from .connection import ManagedConnection
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
from .health import HealthInputs, health_score
from .interface import ConnectionEvent, ConnectionMetrics, WebSocketConnectionInterface
from .manager import WebSocketIntegrationManager
from .notifications import DeliveryRecord, Notification, NotificationChannel, RecordingNotifier
from .records import ConnectionRecord
from .requests import OutcomeKind, RequestOutcome
from .states import TRANSITIONS, ConnectionState
from .stats import Ewma, LatencyHistogram, PeakEwma, SlidingWindowCounter, WindowedQuantile
from .store import ConnectionStore, InMemoryConnectionStore, StoreEvent
from .strategies import Strategy
from .transport import Channel, Transport, WebsocketsTransport

__version__ = "0.1.0"

__all__ = [
    "TRANSITIONS",
    "Alert",
    "AlertRule",
    "AlertSeverity",
    "AlertType",
    "Anomaly",
    "AnomalyType",
    "CapacityError",
    "Channel",
    "ConfigurationError",
    "ConnectTimeout",
    "ConnectionConfig",
    "ConnectionEvent",
    "ConnectionLost",
    "ConnectionMetrics",
    "ConnectionRecord",
    "ConnectionState",
    "ConnectionStore",
    "ConnectionType",
    "Cusum",
    "DeliveryRecord",
    "Ewma",
    "EwmaControlChart",
    "ExchangeError",
    "HealthInputs",
    "InMemoryConnectionStore",
    "IntegrationConfig",
    "InvalidTransitionError",
    "LatencyHistogram",
    "LoadBalancingStrategy",
    "ManagedConnection",
    "Notification",
    "NotificationChannel",
    "NotificationConfig",
    "NotificationError",
    "OutcomeKind",
    "PeakEwma",
    "PeerError",
    "PerformanceMetrics",
    "Prediction",
    "ProtocolViolation",
    "RecordingNotifier",
    "RequestOutcome",
    "RobustZScore",
    "RouteConfig",
    "Selection",
    "Severity",
    "SlidingWindowCounter",
    "StoreEvent",
    "Strategy",
    "Transport",
    "TransportError",
    "UnknownConnectionError",
    "UsageError",
    "WebSocketAlertManager",
    "WebSocketAnalytics",
    "WebSocketConnectionInterface",
    "WebSocketIntegrationManager",
    "WebSocketLoadBalancer",
    "WebsocketsTransport",
    "WindowedLatency",
    "WindowedQuantile",
    "WsFinalError",
    "__version__",
    "health_score",
]
