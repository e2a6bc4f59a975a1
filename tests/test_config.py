import pytest

from wsfinal import (
    ConfigurationError,
    ConnectionConfig,
    ConnectionType,
    IntegrationConfig,
    LoadBalancingStrategy,
    NotificationConfig,
)

URL = "ws://127.0.0.1:9001/ws/2"


def test_seed_defaults_are_kept():
    c = ConnectionConfig(url=URL, connection_type=ConnectionType.MARKET_DATA)
    assert (c.max_reconnect_attempts, c.reconnect_delay_seconds, c.heartbeat_interval_seconds) == (5, 1.0, 30.0)
    assert (c.connection_timeout_seconds, c.message_timeout_seconds) == (10.0, 5.0)
    assert c.max_message_size_bytes == 1024 * 1024
    assert c.enable_compression and c.enable_heartbeat
    assert c.cluster_node_id is None and c.load_balancing_weight == 1.0
    assert c.latency_stale_after_seconds == 10.0  # added: LEAST_LATENCY's fallback to the ping RTT
    i = IntegrationConfig()
    assert (i.max_connections, i.health_check_interval, i.analytics_interval, i.alert_check_interval) == (
        1000,
        30,
        60,
        30,
    )
    assert i.default_load_balancing_strategy is LoadBalancingStrategy.ROUND_ROBIN
    assert i.enable_analytics and i.enable_alerts and i.enable_load_balancing
    assert i.notification_config is None and i.cluster_node_id is None


def test_endpoint_from_url():
    assert ConnectionConfig(url=URL, connection_type=ConnectionType.TRADING).endpoint == "127.0.0.1:9001"
    assert ConnectionConfig(url="wss://example.test/x", connection_type=ConnectionType.TRADING).endpoint == (
        "example.test:443"
    )


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("url", "", "url=''"),
        ("url", "http://127.0.0.1/", "scheme must be ws or wss"),
        ("url", "ws://", "has no host"),
        ("connection_timeout_seconds", -1.0, "connection_timeout_seconds=-1.0"),
        ("message_timeout_seconds", 0, "message_timeout_seconds=0"),
        ("heartbeat_interval_seconds", 0, "heartbeat_interval_seconds=0"),
        ("load_balancing_weight", -2.0, "load_balancing_weight=-2.0"),
        ("max_reconnect_attempts", -1, "max_reconnect_attempts=-1"),
        ("max_message_size_bytes", 0, "max_message_size_bytes=0"),
        ("latency_stale_after_seconds", 0, "latency_stale_after_seconds=0"),
        ("latency_stale_after_seconds", -1.0, "must be > 0"),
        ("latency_stale_after_seconds", float("inf"), "must be finite"),
        ("latency_stale_after_seconds", "10", "must be a number"),
    ],
)
def test_invalid_connection_config_names_field_and_value(field, value, words):
    kwargs = {"url": URL, "connection_type": ConnectionType.MARKET_DATA, field: value}
    with pytest.raises(ValueError) as info:
        ConnectionConfig(**kwargs)
    assert isinstance(info.value, ConfigurationError)
    assert info.value.field == field
    assert words in str(info.value)


@pytest.mark.parametrize("field", ["health_check_interval", "analytics_interval", "alert_check_interval"])
def test_zero_interval_rejected(field):
    with pytest.raises(ConfigurationError, match=f"{field}=0"):
        IntegrationConfig(**{field: 0})


def test_strategy_parse_accepts_names_and_values():
    assert IntegrationConfig(default_load_balancing_strategy="least_latency").default_load_balancing_strategy is (
        LoadBalancingStrategy.LEAST_LATENCY
    )
    assert LoadBalancingStrategy.parse("PEAK_EWMA") is LoadBalancingStrategy.PEAK_EWMA
    assert LoadBalancingStrategy.parse("power-of-two-choices") is LoadBalancingStrategy.POWER_OF_TWO_CHOICES
    with pytest.raises(ConfigurationError, match="unknown strategy"):
        LoadBalancingStrategy.parse("fastest")


def test_notification_config_hides_secrets_in_repr():
    n = NotificationConfig(
        email_config={"host": "127.0.0.1", "password": "hunter2"},
        slack_config={"webhook_url": "http://127.0.0.1/T000/B000/XXXXSECRET"},
    )
    text = repr(n)
    assert "hunter2" not in text and "XXXXSECRET" not in text
    assert "127.0.0.1" in text  # non-secret values stay readable
    with pytest.raises(ConfigurationError, match="webhook_config"):
        NotificationConfig(webhook_config="http://x")  # type: ignore[arg-type]
