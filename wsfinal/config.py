"""Configuration: the seed's dataclasses and enums, with their field names and defaults, validated on construction.

An invalid value raises :class:`~wsfinal.exceptions.ConfigurationError` (a ``ValueError``) naming the field and
the value, at the moment the object is built, not later when it is first used.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from .exceptions import ConfigurationError


class ConnectionType(enum.Enum):
    MARKET_DATA = "market_data"
    USER_DATA = "user_data"
    TRADING = "trading"
    SYSTEM = "system"


class LoadBalancingStrategy(enum.Enum):
    """How the balancer picks one connection among the eligible connections of a type.

    The seed's seven strategies come first; ``RANDOM``, ``POWER_OF_TWO_CHOICES`` and ``PEAK_EWMA`` are added.
    Each is implemented in :mod:`wsfinal.strategies`, whose docstrings say exactly how it picks.
    """

    ROUND_ROBIN = "round_robin"
    LEAST_CONNECTIONS = "least_connections"
    LEAST_LOAD = "least_load"
    WEIGHTED_ROUND_ROBIN = "weighted_round_robin"
    LEAST_LATENCY = "least_latency"
    HEALTH_BASED = "health_based"
    ADAPTIVE = "adaptive"
    RANDOM = "random"
    POWER_OF_TWO_CHOICES = "power_of_two_choices"
    PEAK_EWMA = "peak_ewma"

    @classmethod
    def parse(cls, text: str | LoadBalancingStrategy) -> LoadBalancingStrategy:
        """Accept an enum member, its value (``"least_latency"``) or its name (``"LEAST_LATENCY"``)."""
        if isinstance(text, cls):
            return text
        key = str(text).strip()
        for member in cls:
            if key.lower() in (member.value, member.name.lower()) or key.lower().replace("-", "_") == member.value:
                return member
        names = ", ".join(m.value for m in cls)
        raise ConfigurationError("strategy", text, f"unknown strategy; expected one of {names}")


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigurationError(name, value, "must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(name, value, "must be >= 0" if allow_zero else "must be > 0")
    if math.isinf(value):
        raise ConfigurationError(name, value, "must be finite")


def _non_negative_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(name, value, "must be an integer >= 0")


_SECRET_HINTS = ("password", "passwd", "secret", "token", "key", "url", "webhook", "auth")


def redact(mapping: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of a notification settings dict with secret-looking values replaced by ``'***'``.

    URLs count as secrets: Slack and Discord webhook URLs carry their token in the path.
    """
    if mapping is None:
        return None
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        if isinstance(v, dict):
            out[k] = redact(v)
        elif any(h in k.lower() for h in _SECRET_HINTS) and v not in (None, ""):
            out[k] = "***"
        else:
            out[k] = v
    return out


@dataclass
class ConnectionConfig:
    """How to reach and keep one connection. Validated on construction."""

    url: str
    connection_type: ConnectionType
    max_reconnect_attempts: int = 5
    reconnect_delay_seconds: float = 1.0
    heartbeat_interval_seconds: float = 30.0
    connection_timeout_seconds: float = 10.0
    message_timeout_seconds: float = 5.0
    max_message_size_bytes: int = 1024 * 1024
    enable_compression: bool = True
    enable_heartbeat: bool = True
    cluster_node_id: str | None = None
    load_balancing_weight: float = 1.0
    #: ``LEAST_LATENCY`` ranks a connection with no request-latency sample for this long by its last ping round
    #: trip instead of its request EWMA (explicit exploration: see :meth:`~wsfinal.records.ConnectionRecord.\
    #: routing_latency_ms` and docs/connections.md). Pings come every ``heartbeat_interval_seconds``, so a
    #: connection starved for being slow is measured again within about the sum of the two once its link is fast.
    latency_stale_after_seconds: float = 10.0
    #: ``LEAST_LATENCY``'s probe budget: a connection being explored (no request-latency sample yet, or ranked by
    #: its ping RTT because its sample is stale) is ranked by that exploration signal only while it has fewer than
    #: this many requests in flight; beyond, by its request EWMA (or, with none, last). A burst then sends it at
    #: most this many requests before its first answer or timeout says what it is worth (docs/connections.md).
    latency_probe_budget: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.strip():
            raise ConfigurationError("url", self.url, "must be a non-empty ws:// or wss:// URL")
        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss"):
            raise ConfigurationError("url", self.url, "scheme must be ws or wss")
        if not parts.hostname:
            raise ConfigurationError("url", self.url, "has no host")
        if not isinstance(self.connection_type, ConnectionType):
            raise ConfigurationError("connection_type", self.connection_type, "must be a ConnectionType")
        _non_negative_int("max_reconnect_attempts", self.max_reconnect_attempts)
        _positive("reconnect_delay_seconds", self.reconnect_delay_seconds, allow_zero=True)
        _positive("heartbeat_interval_seconds", self.heartbeat_interval_seconds)
        _positive("connection_timeout_seconds", self.connection_timeout_seconds)
        _positive("message_timeout_seconds", self.message_timeout_seconds)
        if isinstance(self.max_message_size_bytes, bool) or not isinstance(self.max_message_size_bytes, int):
            raise ConfigurationError("max_message_size_bytes", self.max_message_size_bytes, "must be an integer")
        if self.max_message_size_bytes <= 0:
            raise ConfigurationError("max_message_size_bytes", self.max_message_size_bytes, "must be > 0")
        _positive("load_balancing_weight", self.load_balancing_weight)
        _positive("latency_stale_after_seconds", self.latency_stale_after_seconds)
        budget = self.latency_probe_budget
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ConfigurationError("latency_probe_budget", budget, "must be an integer >= 1")

    @property
    def endpoint(self) -> str:
        """The server this connection talks to: ``host:port`` from the URL (default ports filled in)."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        host = parts.hostname or ""
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class NotificationConfig:
    """Settings per notification channel; ``None`` disables the channel. Secrets are redacted in ``repr``."""

    email_config: dict[str, Any] | None = None
    webhook_config: dict[str, Any] | None = None
    slack_config: dict[str, Any] | None = None
    discord_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not isinstance(value, dict):
                raise ConfigurationError(f.name, type(value).__name__, "must be a dict or None")

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}={redact(getattr(self, f.name))!r}" for f in fields(self))
        return f"NotificationConfig({inner})"


@dataclass
class IntegrationConfig:
    """Settings of a :class:`~wsfinal.manager.WebSocketIntegrationManager`. Validated on construction."""

    max_connections: int = 1000
    #: Periods of the manager's background jobs, in seconds (any positive number; the seed API's ints work).
    health_check_interval: float = 30
    analytics_interval: float = 60
    alert_check_interval: float = 30
    default_load_balancing_strategy: LoadBalancingStrategy = LoadBalancingStrategy.ROUND_ROBIN
    enable_analytics: bool = True
    enable_alerts: bool = True
    enable_load_balancing: bool = True
    notification_config: NotificationConfig | None = None
    cluster_node_id: str | None = None
    #: Seed for every random choice the manager makes (strategies, reconnect jitter). Same seed, same choices.
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_connections, bool) or not isinstance(self.max_connections, int):
            raise ConfigurationError("max_connections", self.max_connections, "must be an integer")
        if self.max_connections <= 0:
            raise ConfigurationError("max_connections", self.max_connections, "must be > 0")
        for name in ("health_check_interval", "analytics_interval", "alert_check_interval"):
            _positive(name, getattr(self, name))
        self.default_load_balancing_strategy = LoadBalancingStrategy.parse(self.default_load_balancing_strategy)
