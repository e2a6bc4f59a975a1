from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from simulator.workload import BLOCK, arrival_times, expected_count


def spec(**kw):
    base = dict(arrival="poisson", rate_per_s=100.0, on_s=None, off_s=None, schedule=(), start_s=0.0, stop_s=100.0)
    base.update(kw)
    return SimpleNamespace(**base)


def times(s, seed=0):
    return np.fromiter(arrival_times(s, np.random.default_rng(seed)), dtype=float)


def test_constant_is_evenly_spaced():
    t = times(spec(arrival="constant", rate_per_s=10.0, start_s=1.0, stop_s=2.0))
    assert np.allclose(t, 1.0 + np.arange(10) / 10.0)


def test_poisson_gaps_are_exponential_with_the_right_rate():
    t = times(spec(rate_per_s=200.0, stop_s=200.0))
    gaps = np.diff(t)
    assert abs(len(t) - 40_000) < 4 * np.sqrt(40_000)
    assert stats.kstest(gaps, "expon", args=(0, 1 / 200.0)).pvalue > 0.001


def test_bursty_only_during_on_windows():
    t = times(spec(arrival="bursty", rate_per_s=500.0, on_s=1.0, off_s=3.0, stop_s=40.0))
    phase = np.mod(t, 4.0)
    assert np.all(phase < 1.0)
    assert (
        abs(len(t) - expected_count(spec(arrival="bursty", rate_per_s=500.0, on_s=1.0, off_s=3.0, stop_s=40.0))) < 300
    )


def test_schedule_steps_rates():
    s = spec(arrival="schedule", schedule=((10.0, 100.0), (20.0, 1000.0), (30.0, 0.0)), stop_s=40.0)
    t = times(s)
    assert t.min() >= 10.0 and t.max() < 30.0
    n1 = np.sum((t >= 10) & (t < 20))
    n2 = np.sum((t >= 20) & (t < 30))
    assert abs(n1 - 1000) < 150 and abs(n2 - 10_000) < 500
    assert expected_count(s) == pytest.approx(11_000)


def test_closed_loop_is_not_an_arrival_process():
    with pytest.raises(ValueError, match="not an open-loop process"):
        arrival_times(spec(arrival="closed_loop"), np.random.default_rng(0))


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(["constant", "poisson", "bursty"]),
    st.floats(1.0, 500.0),
    st.floats(0.0, 5.0),
    st.floats(0.1, 10.0),
    st.integers(0, 2**32 - 1),
)
def test_times_sorted_within_window_and_reproducible(kind, rate, start, length, seed):
    s = spec(arrival=kind, rate_per_s=rate, on_s=0.5, off_s=0.25, start_s=start, stop_s=start + length)
    a, b = times(s, seed), times(s, seed)
    assert np.array_equal(a, b)
    assert np.all(np.diff(a) >= 0)
    if len(a):
        assert a[0] >= start and a[-1] < start + length


def _reference(s, seed):
    """The one-variate-at-a-time processes ``arrival_times`` computes a block at a time (same floats expected)."""
    rng = np.random.default_rng(seed)
    buf, i = [], 0

    def gap():
        nonlocal buf, i
        if i >= len(buf):
            buf, i = rng.standard_exponential(BLOCK).tolist(), 0
        i += 1
        return buf[i - 1]

    def poisson(rate, start, stop):
        t = start
        while rate > 0:
            t += gap() / rate
            if t >= stop:
                return
            yield t

    start, stop = float(s.start_s), float(s.stop_s)
    if s.arrival == "constant":
        yield from (
            t for t in (start + k / s.rate_per_s for k in range(int((stop - start) * s.rate_per_s) + 1)) if t < stop
        )
    elif s.arrival == "poisson":
        yield from poisson(s.rate_per_s, start, stop)
    elif s.arrival == "bursty":
        window = start
        while window < stop:
            yield from poisson(s.rate_per_s, window, min(window + s.on_s, stop))
            window += s.on_s + s.off_s
    else:
        steps = s.schedule
        for k, (at, rate) in enumerate(steps):
            seg_start, seg_stop = max(start, at), min(stop, steps[k + 1][0] if k + 1 < len(steps) else stop)
            if seg_stop > seg_start:
                yield from poisson(rate, seg_start, seg_stop)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["constant", "poisson", "bursty", "schedule"]),
    st.sampled_from([0.5, 3.0, 97.3, 2000.0, 9000.0]),
    st.floats(0.0, 5.0),
    st.floats(0.01, 3.0),
    st.integers(0, 2**32 - 1),
)
def test_block_computation_gives_the_one_at_a_time_floats(kind, rate, start, length, seed):
    # Rates up to 9000/s over 3 s cross several blocks of BLOCK variates, and bursty/schedule share one stream.
    sched = ((start, rate), (start + length / 3, 0.0), (start + length / 2, rate / 2))
    s = spec(arrival=kind, rate_per_s=rate, on_s=0.2, off_s=0.1, schedule=sched, start_s=start, stop_s=start + length)
    got = list(arrival_times(s, np.random.default_rng(seed)))
    assert got == list(_reference(s, seed))
    assert all(type(t) is float for t in got)
