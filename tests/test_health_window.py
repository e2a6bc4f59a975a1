"""The health latency's recent span as a setting: WebSocketAnalytics(health_latency_recent_s=...)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfinal.analytics import WebSocketAnalytics
from wsfinal.analytics_records import HEALTH_LATENCY_RECENT_S
from wsfinal.config import ConnectionType
from wsfinal.exceptions import ConfigurationError

TR = ConnectionType.TRADING


def _feed(a: WebSocketAnalytics, spike_ms: float, level_ms: float) -> None:
    """c1 at ``level_ms`` for 0-5 s, ``spike_ms`` for 5-10 s, back at ``level_ms`` for 10-12 s (10 a second);
    c2 at ``level_ms`` throughout."""
    for k in range(120):
        t = k * 0.1
        a.record_latency("c1", TR, spike_ms if 5.0 <= t < 10.0 else level_ms, now=t)
        a.record_latency("c2", TR, level_ms, now=t)


def test_the_default_is_the_constant_and_gives_the_same_results_as_setting_it() -> None:
    default = WebSocketAnalytics(clock=lambda: 0.0)
    explicit = WebSocketAnalytics(clock=lambda: 0.0, health_latency_recent_s=HEALTH_LATENCY_RECENT_S)
    assert default.health_latency_recent_s == HEALTH_LATENCY_RECENT_S == 3.0
    for a in (default, explicit):
        _feed(a, 40.0, 3.0)
    for now in (6.0, 10.5, 11.0, 12.0, 12.5, 14.0):
        assert default.health_inputs("c1", now=now) == explicit.health_inputs("c1", now=now)
        assert default.get_connection_health_score("c1", now=now) == explicit.get_connection_health_score("c1", now=now)


def test_a_shorter_window_below_the_default_caps_the_default_span() -> None:
    # a latency window shorter than 3 s: the default span is the whole window (what 3 s read before)
    a = WebSocketAnalytics(clock=lambda: 0.0, latency_window_s=2.0)
    assert a.health_latency_recent_s == 2.0


def test_a_shorter_span_forgets_a_spike_sooner_and_a_longer_one_later() -> None:
    short = WebSocketAnalytics(clock=lambda: 0.0, health_latency_recent_s=1.0)
    default = WebSocketAnalytics(clock=lambda: 0.0)
    long = WebSocketAnalytics(clock=lambda: 0.0, health_latency_recent_s=8.0)
    for a in (short, default, long):
        _feed(a, 40.0, 3.0)
    now = 11.5  # 1.5 s after the spike ended
    lat = {name: a.health_inputs("c1", now=now).latency_ms for name, a in (("s", short), ("d", default), ("l", long))}
    assert lat["s"] == pytest.approx(3.0, rel=0.05)  # the last second: all back at 3 ms
    assert lat["d"] == pytest.approx(3.0, rel=0.05)  # the last 3 s: 2 s at 3 ms outweigh 1 s at 40 ms
    assert lat["l"] == pytest.approx(40.0, rel=0.05)  # the last 8 s: mostly the spike
    assert short.get_connection_health_score("c1", now=now) > long.get_connection_health_score("c1", now=now)


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, math.nan, math.inf, -math.inf, 10.5, "3", True])
def test_a_bad_span_is_refused_with_a_clear_error(bad: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        WebSocketAnalytics(latency_window_s=10.0, health_latency_recent_s=bad)  # type: ignore[arg-type]
    message = str(info.value)
    assert info.value.field == "health_latency_recent_s"
    assert "health_latency_recent_s" in message and "latency_window_s" in message and "10.0" in message


def test_the_whole_window_is_a_valid_span() -> None:
    a = WebSocketAnalytics(latency_window_s=5.0, health_latency_recent_s=5)
    assert a.health_latency_recent_s == 5.0


@settings(max_examples=80, deadline=None)
@given(
    span=st.floats(0.1, 10.0),
    samples=st.lists(st.tuples(st.floats(0.0, 20.0), st.floats(0.1, 500.0)), min_size=1, max_size=30),
)
def test_the_health_latency_is_the_median_of_the_samples_in_the_span(
    span: float, samples: list[tuple[float, float]]
) -> None:
    """Right after the last sample, the health latency is the median (the lower one) of the samples of the newest
    ``ceil(span)`` one-second slots of the 10 s latency window, within the window's 2 % relative accuracy."""
    a = WebSocketAnalytics(clock=lambda: 0.0, health_latency_recent_s=span)
    samples = sorted(samples)
    for t, v in samples:
        a.record_latency("c1", TR, v, now=t)
    at = samples[-1][0]
    slots = min(10, max(1, math.ceil(span - 1e-9)))
    recent = sorted(v for t, v in samples if math.floor(t) > math.floor(at) - slots)
    expected = recent[math.floor(0.5 * (len(recent) - 1))]
    assert a.health_inputs("c1", now=at).latency_ms == pytest.approx(expected, rel=0.021)
