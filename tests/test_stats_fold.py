"""``stats.add_sample_and_count``: a windowed quantile's ``add`` and a window counter's ``add`` in one call.

Analytics makes it once per answered request; its fast paths (``now`` in each object's head slot) duplicate the
methods' own, so it must leave exactly the state the two method calls leave, whatever the times and values.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfinal.stats import SlidingWindowCounter, WindowedQuantile, add_sample_and_count


def _state(window: WindowedQuantile, counter: SlidingWindowCounter) -> tuple[Any, ...]:
    return (
        [dict(d) for d in window._slots],
        None if window._totals is None else dict(window._totals),
        window._head,
        window._slots.index(window._cur) if window._head is not None else None,
        (window._lo, window._hi),
        list(counter._counts),
        counter._head,
        counter._cur,
        counter.first,
        (counter._lo, counter._hi),
    )


values = st.one_of(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, 1e-3, 1.5e-3, 0.5, 12.0]),
)
steps = st.lists(
    st.tuples(
        values,
        st.floats(min_value=-3.0, max_value=8.0, allow_nan=False),  # time step: back within or beyond the window
        st.booleans(),  # ask a whole-window query first (builds the quantile's running totals)
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    steps=steps,
    start=st.floats(min_value=-20.0, max_value=1e6, allow_nan=False),
    window_s=st.sampled_from([0.5, 3.0, 10.0]),
    counter_s=st.sampled_from([1.0, 30.0]),
)
def test_one_call_leaves_the_state_of_both_adds(
    steps: list[tuple[float, float, bool]], start: float, window_s: float, counter_s: float
) -> None:
    fused = (WindowedQuantile(window_s, 10), SlidingWindowCounter(counter_s, 12))
    apart = (WindowedQuantile(window_s, 10), SlidingWindowCounter(counter_s, 12))
    now = start
    for value, dt, query in steps:
        now += dt
        if query:
            assert fused[0].count(now) == apart[0].count(now)
        add_sample_and_count(fused[0], fused[1], value, now)
        apart[0].add(value, now)
        apart[1].add(now)
        assert _state(*fused) == _state(*apart)
    assert fused[0].quantile(0.5, now) == apart[0].quantile(0.5, now)
    assert fused[1].total(now) == apart[1].total(now)


def test_the_fast_paths_run_and_count() -> None:
    window, counter = WindowedQuantile(10.0, 10), SlidingWindowCounter(60.0, 12)
    add_sample_and_count(window, counter, 5.0, 100.0)  # first sample: through both adds (no head slot yet)
    assert math.isfinite(window._lo) and math.isfinite(counter._lo)
    for i in range(9):
        add_sample_and_count(window, counter, 5.0 + i, 100.0 + i * 0.05)  # the head slots: the inline paths
    assert window.count(100.5) == 10 and counter.total(100.5) == 10.0
    value, n = window.quantile(0.0, 100.5)
    assert n == 10 and value == pytest.approx(5.0, rel=0.03)
