"""Tests of wsfinal.health: range, monotonicity (hypothesis) and the documented anchor points."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfinal.exceptions import ConfigurationError
from wsfinal.health import STATE_FACTOR, WEIGHTS, HealthInputs, health_breakdown, health_score
from wsfinal.states import ConnectionState

STATES_BEST_FIRST = list(STATE_FACTOR)  # the documented order: worse states come later

latency = st.floats(0.0, 1e5, allow_nan=False)
reference = st.one_of(st.none(), st.floats(0.01, 1e5, allow_nan=False))


@st.composite
def inputs(draw: st.DrawFn) -> HealthInputs:
    return HealthInputs(
        latency_ms=draw(st.one_of(st.none(), latency)),
        baseline_latency_ms=draw(reference),
        peer_latency_ms=draw(reference),
        error_rate=draw(st.floats(0.0, 1.0)),
        staleness_s=draw(st.floats(0.0, 1e4)),
        stale_after_s=draw(st.floats(0.1, 1e3)),
        reconnects=draw(st.integers(0, 1000)),
        state=draw(st.sampled_from(STATES_BEST_FIRST)),
    )


@st.composite
def worse(draw: st.DrawFn, base: HealthInputs) -> HealthInputs:
    """Inputs that are at least as bad as ``base`` in every quality input (references unchanged)."""
    lat = base.latency_ms
    if lat is not None and draw(st.booleans()):
        lat = lat + draw(st.floats(0.0, 1e5))
    idx = STATES_BEST_FIRST.index(base.state)
    return dataclasses.replace(
        base,
        latency_ms=lat,
        error_rate=min(1.0, base.error_rate + draw(st.floats(0.0, 1.0))),
        staleness_s=base.staleness_s + draw(st.floats(0.0, 1e4)),
        reconnects=base.reconnects + draw(st.integers(0, 100)),
        state=STATES_BEST_FIRST[draw(st.integers(idx, len(STATES_BEST_FIRST) - 1))],
    )


@settings(max_examples=300, deadline=None)
@given(data=st.data(), base=inputs())
def test_worse_inputs_never_raise_the_score(data: st.DataObject, base: HealthInputs) -> None:
    w = data.draw(worse(base))
    assert health_score(w) <= health_score(base)


@settings(max_examples=200, deadline=None)
@given(base=inputs(), field=st.sampled_from(["latency_ms", "error_rate", "staleness_s", "reconnects"]))
def test_each_input_alone_is_monotone(base: HealthInputs, field: str) -> None:
    value = getattr(base, field)
    if value is None:
        value = 0.0
    bigger = value * 2 + 1 if field != "error_rate" else min(1.0, value + 0.1)
    if field == "reconnects":
        bigger = int(bigger)
    s0 = health_score(base)
    s1 = health_score(dataclasses.replace(base, **{field: bigger}))
    assert 0.0 <= s1 <= s0 <= 100.0


@settings(max_examples=200, deadline=None)
@given(base=inputs(), fraction=st.floats(0.0, 1.0))
def test_latency_back_at_its_references_costs_nothing(base: HealthInputs, fraction: float) -> None:
    """Recovery is complete in the formula: once the latency input is at or below both references (what the
    health latency of wsfinal.analytics returns a few seconds after a spike ends), the score is the one without
    any latency evidence."""
    refs = [r for r in (base.baseline_latency_ms, base.peer_latency_ms) if r is not None]
    recovered = dataclasses.replace(base, latency_ms=fraction * min(refs) if refs else 0.0)
    assert health_score(recovered) == health_score(dataclasses.replace(base, latency_ms=None))


def test_anchor_points_of_the_formula() -> None:
    assert health_score(HealthInputs()) == 100.0
    assert sum(WEIGHTS.values()) == 100.0
    # 8x own baseline and 8x the peers: both latency penalties are full
    b = health_breakdown(HealthInputs(latency_ms=80.0, baseline_latency_ms=10.0, peer_latency_ms=10.0))
    assert b["latency_vs_self"] == 1.0 and b["latency_vs_peers"] == 1.0 and b["score"] == 60.0
    # 2x: one third of the way to 8x on a log scale
    b = health_breakdown(HealthInputs(latency_ms=20.0, baseline_latency_ms=10.0))
    assert b["latency_vs_self"] == pytest.approx(1 / 3)
    # 5 % errors -> 1 - exp(-1) of the error weight
    assert health_score(HealthInputs(error_rate=0.05)) == pytest.approx(100 - 30 * (1 - math.exp(-1)))
    # staleness: nothing up to a third of the limit, everything at the limit
    assert health_score(HealthInputs(staleness_s=30.0, stale_after_s=90.0)) == 100.0
    assert health_score(HealthInputs(staleness_s=90.0, stale_after_s=90.0)) == 85.0
    # state factors
    assert health_score(HealthInputs(state=ConnectionState.RECONNECTING)) == 40.0
    assert health_score(HealthInputs(state=ConnectionState.FAILED)) == 0.0
    # no evidence is not bad evidence
    assert health_score(HealthInputs(latency_ms=math.nan, baseline_latency_ms=5.0)) == 100.0


def test_invalid_inputs_are_named() -> None:
    with pytest.raises(ConfigurationError, match="error_rate"):
        HealthInputs(error_rate=math.nan)
    with pytest.raises(ConfigurationError, match="stale_after_s"):
        HealthInputs(stale_after_s=0.0)
    with pytest.raises(ConfigurationError, match="reconnects"):
        HealthInputs(reconnects=-1)
