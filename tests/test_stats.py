"""Tests of wsfinal.stats: histogram error bound and merging, EWMAs, sliding windows, trend fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsfinal.exceptions import ConfigurationError
from wsfinal.stats import (
    Ewma,
    HoltTrend,
    LatencyHistogram,
    PeakEwma,
    SlidingWindowCounter,
    SlidingWindowHistogram,
    WindowedQuantile,
    linear_trend,
)

QS = [0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 100.0]
# Floating-point slack on top of the stated bound (log rounding at bucket edges).
SLACK = 1e-9


def _check_bound(h: LatencyHistogram, data: np.ndarray) -> None:
    est = np.array(h.percentiles(QS))
    true = np.percentile(data, QS, method="lower")
    inside = true > h.lowest
    rel = np.abs(est[inside] - true[inside]) / true[inside]
    assert np.all(rel <= h.alpha * (1 + SLACK) + SLACK), (rel.max(), h.alpha)
    # values at or below `lowest` are reported within `lowest` (absolute)
    assert np.all(np.abs(est[~inside] - true[~inside]) <= h.lowest)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3000),
    alpha=st.sampled_from([0.005, 0.01, 0.02, 0.05]),
    dist=st.sampled_from(["lognormal", "exponential", "uniform", "pareto"]),
)
def test_percentiles_within_stated_relative_error(seed: int, n: int, alpha: float, dist: str) -> None:
    rng = np.random.default_rng(seed)
    data = {
        "lognormal": lambda: rng.lognormal(1.0, 1.5, n),
        "exponential": lambda: rng.exponential(20.0, n),
        "uniform": lambda: rng.uniform(0.0, 500.0, n),
        "pareto": lambda: (rng.pareto(1.5, n) + 1.0) * 3.0,
    }[dist]()
    data = np.minimum(data, 1e5)
    h = LatencyHistogram(alpha)
    for v in data:
        h.record(float(v))
    _check_bound(h, data)
    assert h.count == n
    assert h.min == data.min() and h.max == data.max()
    assert math.isclose(h.mean, float(data.mean()), rel_tol=1e-9)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(0.0, 1e5, allow_nan=False), min_size=1, max_size=400))
def test_bound_holds_on_arbitrary_values(values: list[float]) -> None:
    h = LatencyHistogram(0.01)
    for v in values:
        h.record(v)
    _check_bound(h, np.array(values))


@settings(max_examples=40, deadline=None)
@given(
    a=st.lists(st.floats(0.0, 1e4, allow_nan=False), max_size=300),
    b=st.lists(st.floats(0.0, 1e4, allow_nan=False), max_size=300),
)
def test_merge_equals_recording_the_union(a: list[float], b: list[float]) -> None:
    ha, hb, hu = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for v in a:
        ha.record(v)
        hu.record(v)
    for v in b:
        hb.record(v)
        hu.record(v)
    ha.merge(hb)
    assert ha.counts_equal(hu)
    assert ha.count == hu.count and ha.min == hu.min and ha.max == hu.max
    assert math.isclose(ha.total, hu.total, rel_tol=1e-9, abs_tol=1e-9)
    assert _nan_eq(ha.percentiles(QS), hu.percentiles(QS))


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(0.0, 2e6, allow_nan=False), max_size=300),
    bulk=st.lists(st.floats(0.0, 2e6, allow_nan=False), max_size=100),
    qs=st.lists(st.floats(0.0, 100.0, allow_nan=False) | st.sampled_from([0.0, 50.0, 99.0, 100.0]), max_size=6),
)
def test_percentiles_by_bisection_equal_the_bucket_walk(
    values: list[float], bulk: list[float], qs: list[float]
) -> None:
    # the fast path (running totals + bisection) against the reference walk, in any q order, with values below
    # lowest, above highest, and numpy-recorded ones (record_many may round a bucket edge the other way)
    h = LatencyHistogram(0.01)
    for v in values:
        h.record(v)
    h.record_many(np.array(bulk))
    fast, walk = h.percentiles(qs), h._percentiles_walk(qs)
    assert len(fast) == len(qs)
    assert all((math.isnan(p) and math.isnan(q)) or p == q for p, q in zip(fast, walk, strict=True))


def test_from_dict_refuses_counts_that_do_not_add_up_to_count() -> None:
    # from_dict once took counts as given, leaving ranks beyond them NaN; now it names the key, expected and got
    with pytest.raises(ConfigurationError, match=r"count=10: expected 4 \(the sum of the bucket counts\), got 10"):
        LatencyHistogram.from_dict(
            {"alpha": 0.01, "lowest": 1e-3, "highest": 1e6, "count": 10, "total": 10.0, "min": 1.0, "max": 2.0,
             "counts": {str(LatencyHistogram()._index(1.5)): 4}}
        )  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    a=st.lists(st.floats(0.0, 2e6, allow_nan=False), max_size=200),
    b=st.lists(st.floats(0.0, 2e6, allow_nan=False), max_size=200),
)
def test_merge_by_slices_equals_adding_every_bucket(a: list[float], b: list[float]) -> None:
    ha, hb = LatencyHistogram(), LatencyHistogram()
    ha.record_many(np.array(a))
    for v in b:
        hb.record(v)
    expected = [x + y for x, y in zip(ha._counts, hb._counts, strict=True)]
    ha.merge(hb)
    assert ha._counts == expected
    assert ha.count == len(a) + len(b)


def _nan_eq(x: list[float], y: list[float]) -> bool:
    return all((math.isnan(p) and math.isnan(q)) or p == q for p, q in zip(x, y))


def test_record_many_numpy_matches_scalar_recording() -> None:
    rng = np.random.default_rng(3)
    data = np.concatenate([rng.lognormal(2, 2, 20_000), [0.0, 1e-4, 5e6]])
    h1, h2 = LatencyHistogram(), LatencyHistogram()
    h1.record_many(data)
    for v in data:
        h2.record(float(v))
    assert h1.counts_equal(h2) and h1.count == h2.count
    assert h1.percentiles(QS) == h2.percentiles(QS)


def test_memory_is_bounded_and_values_out_of_range_are_clamped() -> None:
    h = LatencyHistogram(0.01, lowest=1e-3, highest=1e6)
    h.record_many(np.geomspace(1e-6, 1e9, 200_000))
    assert len(h._counts) == len(LatencyHistogram()._counts) < 1100  # independent of the count
    assert h.percentile(100) == 1e9  # the exact maximum
    assert h.percentile(0) == 1e-6  # the zero bucket, clamped to the exact minimum
    assert h.count == 200_000


def test_bad_values_and_config_are_rejected_with_names() -> None:
    h = LatencyHistogram()
    with pytest.raises(ValueError, match="-1"):
        h.record(-1.0)
    with pytest.raises(ValueError, match="nan"):
        h.record(math.nan)
    with pytest.raises(ValueError, match="percentile"):
        h.percentile(101)
    with pytest.raises(ConfigurationError, match="alpha"):
        LatencyHistogram(0.0)
    with pytest.raises(ConfigurationError, match="highest"):
        LatencyHistogram(0.01, lowest=10, highest=5)
    with pytest.raises(ConfigurationError, match="merge"):
        h.merge(LatencyHistogram(0.02))
    assert h.count == 0 and math.isnan(h.percentile(50)) and math.isnan(h.mean)


def test_round_trip_through_dict_and_clear() -> None:
    h = LatencyHistogram()
    h.record_many(np.random.default_rng(1).exponential(10, 1000))
    h2 = LatencyHistogram.from_dict(h.to_dict())
    assert h2.counts_equal(h) and h2.percentiles(QS) == h.percentiles(QS)
    c = h.copy()
    h.clear()
    assert h.count == 0 and c.count == 1000 and math.isnan(h.percentile(50))
    assert sum(n for _, _, n in c.buckets()) == 1000


def test_ewma_weights_by_elapsed_time() -> None:
    e = Ewma(tau_s=10.0)
    assert math.isnan(e.value)
    e.update(100.0, 0.0)
    e.update(0.0, 10.0)  # one time constant later: weight 1 - 1/e on the new sample
    assert math.isclose(e.value, 100.0 * math.exp(-1.0))
    e.update(50.0, 10.0)  # same instant: no weight
    assert math.isclose(e.value, 100.0 * math.exp(-1.0))


def test_peak_ewma_jumps_up_and_decays_down() -> None:
    p = PeakEwma(tau_s=5.0)
    p.update(10.0, 0.0)
    p.update(200.0, 1.0)
    assert p.value == 200.0
    p.update(10.0, 6.0)
    assert math.isclose(p.value, 200.0 * math.exp(-1) + 10.0 * (1 - math.exp(-1)))


def test_sliding_window_counter_rates() -> None:
    c = SlidingWindowCounter(window_s=10.0, buckets=10)
    assert c.rate(0.0) == 0.0
    for i in range(100):
        c.add(i * 0.1)  # 10 events/s for 10 s
    assert c.total(9.95) == 100
    assert c.rate(9.95) == pytest.approx(10.0, rel=0.01)
    assert c.total(15.05) == 40  # slots 6..15 remain: events at 6.0-9.9 s
    assert c.total(100.0) == 0
    c.add(50.0, 3)  # an old event, beyond the window: ignored
    assert c.total(100.0) == 0
    young = SlidingWindowCounter(60.0, 60)
    young.add(0.0, 20)
    assert math.isclose(young.rate(2.0), 10.0)  # over its 2 s age, not the 60 s window


def test_sliding_window_histogram_forgets_old_slots() -> None:
    w = SlidingWindowHistogram(window_s=10.0, slots=5)
    for i in range(10):
        w.record(1.0, float(i))
    for i in range(10, 20):
        w.record(100.0, float(i))
    merged = w.merged(19.5)
    assert merged.count == 10 and merged.percentile(50) == pytest.approx(100.0, rel=0.01)
    assert w.merged(100.0).count == 0


def test_linear_trend_and_holt_follow_a_line() -> None:
    t = [float(i) for i in range(20)]
    v = [3.0 + 2.0 * x for x in t]
    fit = linear_trend(t, v)
    assert fit is not None
    assert math.isclose(fit.slope, 2.0) and math.isclose(fit.at(19.0), 41.0) and fit.r2 == pytest.approx(1.0)
    assert fit.time_to(61.0) == pytest.approx(10.0)
    assert linear_trend([0.0, 1.0], [1.0, 2.0]) is None
    assert linear_trend([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    h = HoltTrend(alpha=0.5, beta=0.3)
    for x, y in zip(t, v):
        h.update(y, x)
    assert h.forecast(30.0) == pytest.approx(63.0, rel=0.05)


# --- WindowedQuantile: a quantile over the samples of a recent time window -------------------------------------


def _in_window(times: list[float], now: float, w: WindowedQuantile, window_s: float | None = None) -> list[bool]:
    """The reference membership: a sample is in when its slot is among the last m slots ending at now's slot."""
    slot_s = w.window_s / 10
    m = 10 if window_s is None else min(10, max(1, math.ceil(window_s / slot_s - 1e-9)))
    head = max([math.floor(now / slot_s)] + [math.floor(t / slot_s) for t in times])
    return [head - m < math.floor(t / slot_s) for t in times]


samples_st = st.lists(
    st.tuples(st.floats(0.0, 30.0, allow_nan=False), st.floats(0.0, 1e4, allow_nan=False)), min_size=1, max_size=200
)


@settings(max_examples=80, deadline=None)
@given(data=samples_st, q=st.floats(0.0, 1.0), extra=st.floats(0.0, 15.0), sub=st.sampled_from([None, 1.0, 3.5, 10.0]))
def test_windowed_quantile_matches_the_exact_rank_sample_of_the_window(
    data: list[tuple[float, float]], q: float, extra: float, sub: float | None
) -> None:
    data.sort()  # samples arrive in time order
    w = WindowedQuantile(10.0, 10, alpha=0.02)
    for t, x in data:
        w.add(x, t)
    now = data[-1][0] + extra
    inside = _in_window([t for t, _ in data], now, w, sub)
    kept = np.array([x for (t, x), ok in zip(data, inside) if ok])
    est, n = w.quantile(q, now, sub)
    assert n == len(kept) == w.count(now, sub)
    if n == 0:
        assert math.isnan(est)
        return
    exact = float(np.quantile(kept, q, method="lower"))  # rank floor(q (n - 1))
    if exact <= w.lowest:
        assert est == 0.0 or abs(est - exact) <= w.lowest * (1 + w.alpha)
    else:
        assert abs(est - exact) <= (w.alpha + SLACK) * exact, (est, exact)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(0.01, 1e4, allow_nan=False), min_size=2, max_size=60), q=st.floats(0.0, 0.99))
def test_one_outlier_never_sets_a_quantile_below_one(values: list[float], q: float) -> None:
    """floor(q (n - 1)) < n - 1 for q < 1: the largest sample alone cannot be the answer, however large."""
    w = WindowedQuantile(10.0, 10)
    for x in values:
        w.add(x, 1.0)
    w.add(1e6, 1.5)  # the outlier
    est, n = w.quantile(q, 2.0)
    assert n == len(values) + 1
    assert est <= max(values) * (1 + w.alpha + SLACK)


@settings(max_examples=80, deadline=None)
@given(
    fast=st.lists(st.floats(0.5, 20.0), max_size=60),
    slow=st.lists(st.floats(50.0, 500.0), max_size=20),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_the_quantile_exceeds_a_threshold_exactly_when_enough_samples_do(
    fast: list[float], slow: list[float], q: float
) -> None:
    """With n samples, the q-quantile is above T (here 30, between the fast and the slow ones) iff at least
    n - floor(q (n - 1)) samples are: how many slow answers it takes to fire, whatever their order."""
    if not fast and not slow:
        return
    w = WindowedQuantile(10.0, 10)
    for i, x in enumerate(slow + fast if len(slow) % 2 else fast + slow):
        w.add(x, 0.001 * i)
    est, n = w.quantile(q, 0.5)
    needed = n - math.floor(q * (n - 1))
    assert (est > 30.0) == (len(slow) >= needed)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(0.0, 1e4, allow_nan=False), min_size=1, max_size=80))
def test_quantile_is_monotone_in_q_and_bounded_by_the_samples(values: list[float]) -> None:
    w = WindowedQuantile(5.0, 10)
    for i, x in enumerate(values):
        w.add(x, 0.01 * i)
    qs = [0.0, 0.1, 0.5, 0.9, 0.99, 1.0]
    est = [w.quantile(q, 0.01 * len(values))[0] for q in qs]
    assert est == sorted(est)
    assert est[0] >= min(values) * (1 - w.alpha) - w.lowest and est[-1] <= max(values) * (1 + w.alpha + SLACK)


def test_windowed_quantile_forgets_whole_slots_and_a_starved_series_shows_its_few_slow_samples() -> None:
    w = WindowedQuantile(10.0, 10)
    for i in range(1000):  # a busy, fast connection: 100 samples per second for 10 s
        w.add(3.0, i * 0.01)
    for i, x in enumerate([35.0, 40.0, 45.0, 50.0, 55.0, 60.0]):  # then starved: one slow burst at 12 s
        w.add(x, 12.0 + 0.009 * i)
    est, n = w.quantile(0.9, 12.1)
    assert n == 706 and est == pytest.approx(3.0, rel=0.02)  # the fast samples of 3-10 s still dominate
    est, n = w.quantile(0.9, 20.5)  # they have left the window; the burst has not
    assert n == 6 and est == pytest.approx(55.0, rel=0.02)
    assert w.quantile(0.9, 22.5) == (pytest.approx(math.nan, nan_ok=True), 0)
    w.add(7.0, 100.0)  # a jump of many windows clears everything
    assert w.quantile(0.5, 100.0)[1] == 1 and w.count(100.0, 0.5) == 1


def test_windowed_quantile_ignores_samples_older_than_the_window_and_rejects_bad_config() -> None:
    w = WindowedQuantile(10.0, 10)
    w.add(5.0, 50.0)
    w.add(500.0, 39.0)  # older than the window ending at 50 s: ignored
    w.add(9.0, 45.0)  # late but within the window: counted in its own slot
    assert w.count(50.0) == 2 and w.count(50.0, 2.0) == 1
    with pytest.raises(ValueError, match="q must be in"):
        w.quantile(1.5, 50.0)
    for kwargs, name in (
        ({"window_s": 0}, "window_s"),
        ({"window_s": math.inf}, "window_s"),
        ({"slots": 0}, "slots"),
        ({"alpha": 1.0}, "alpha"),
        ({"lowest": 0.0}, "lowest"),
    ):
        with pytest.raises(ConfigurationError, match=name):
            WindowedQuantile(**kwargs)  # type: ignore[arg-type]


def test_trend_fits_moved_to_wsfinal_trend_are_still_importable_from_stats() -> None:
    import wsfinal.stats
    import wsfinal.trend

    for name in ("HoltTrend", "TrendFit", "linear_trend"):
        assert getattr(wsfinal.stats, name) is getattr(wsfinal.trend, name)


class _OldCounterAdd:
    """SlidingWindowCounter.add before its float-compare fast path: the reference for the property test."""

    @staticmethod
    def add(c: SlidingWindowCounter, now: float, n: float = 1.0) -> None:
        if now >= 0.0:
            slot = int(now * c._inv_slot)
            if slot == c._head:
                c._counts[slot % c._nb] += n
                return
        slot = c._advance(now)
        assert c._head is not None
        if slot <= c._head - c._nb:
            return
        c._counts[slot % c._nb] += n
        if c.first is None or now < c.first:
            c.first = now


def _old_quantile_add(w: WindowedQuantile, value: float, now: float) -> None:
    """WindowedQuantile.add before its float-compare fast path: the reference for the property test."""
    slot = int(now * w._inv_slot) if now >= 0.0 else math.floor(now * w._inv_slot)
    if slot == w._head:
        d = w._cur
    else:
        head = w._head
        if head is None or slot > head:
            w._expire(slot)
            d = w._cur
        elif slot <= head - w._nb:
            return
        else:
            d = w._slots[slot % w._nb]
    key = int(math.log(value * w._inv_lowest) * w._inv_lg) if value > w.lowest else -1
    d[key] = d.get(key, 0) + 1
    if w._totals is not None:  # kept once a whole-window query built them
        w._totals[key] = w._totals.get(key, 0) + 1


# absolute times, in any order: many exactly on slot edges (multiples of 1/8 s), negative ones, random ones
_TIMES = st.lists(
    st.tuples(st.integers(-24, 120).map(lambda k: k / 8) | st.floats(-3.0, 15.0, allow_nan=False), st.floats(0, 50)),
    max_size=80,
)


@settings(max_examples=80, deadline=None)
@given(steps=_TIMES, start=st.sampled_from([0.0, 1e6]), buckets=st.sampled_from([1, 2, 3, 4, 8, 16]))
@example(steps=[(-0.125, 1.0), (-0.25, 1.0)], start=0.0, buckets=8)  # an earlier event in a negative head slot
def test_counter_fast_add_equals_the_int_slot_add(steps: list[tuple[float, float]], start: float, buckets: int) -> None:
    # times around slot edges, going back within and beyond the window, negative ones (which set `first`)
    fast, ref = SlidingWindowCounter(2.0, buckets), SlidingWindowCounter(2.0, buckets)
    now = start
    for t, n in steps:
        now = start + t
        fast.add(now, n)
        _OldCounterAdd.add(ref, now, n)
        assert (fast._counts, fast._head, fast.first) == (ref._counts, ref._head, ref.first)
    assert fast.total(now) == ref.total(now) and fast.rate(now + 0.3) == ref.rate(now + 0.3)


@settings(max_examples=80, deadline=None)
@given(steps=_TIMES, start=st.sampled_from([0.0, 1e6]), slots=st.sampled_from([1, 2, 3, 4, 8, 16]))
def test_windowed_quantile_fast_add_equals_the_int_slot_add(
    steps: list[tuple[float, float]], start: float, slots: int
) -> None:
    fast, ref = WindowedQuantile(2.0, slots), WindowedQuantile(2.0, slots)
    now = start
    for t, value in steps:
        now = start + t
        fast.add(value, now)
        _old_quantile_add(ref, value, now)
        assert (fast._slots, fast._totals, fast._head) == (ref._slots, ref._totals, ref._head)
    for q in (0.0, 0.5, 0.99):
        a, b = fast.quantile(q, now), ref.quantile(q, now)
        assert a[1] == b[1] and (a[0] == b[0] or (math.isnan(a[0]) and math.isnan(b[0])))


def _slot_sum(w: WindowedQuantile) -> dict[int, int]:
    out: dict[int, int] = {}
    for d in w._slots:
        for key, c in d.items():
            out[key] = out.get(key, 0) + c
    return out


@settings(max_examples=80, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(-8, 400).map(lambda k: k / 16), st.floats(0, 50), st.booleans()), max_size=80)
)
def test_windowed_quantile_totals_built_late_equal_totals_kept_from_the_start(
    steps: list[tuple[float, float, bool]],
) -> None:
    # `always` is asked at every step (its totals kept from the first sample on), `late` only at some steps (its
    # totals built from the slots at the first whole-window query, then kept): same answers, same totals
    always, late = WindowedQuantile(2.0, 8), WindowedQuantile(2.0, 8)
    for t, value, ask in steps:
        always.add(value, t)
        late.add(value, t)
        expected = always.quantile(0.9, t)
        assert always._totals == _slot_sum(always)
        if ask:
            assert late.quantile(0.5, t, window_s=0.5) == always.quantile(0.5, t, window_s=0.5)  # totals not used
            got = late.quantile(0.9, t)
            assert got[1] == expected[1] and (got[0] == expected[0] or (math.isnan(got[0]) and math.isnan(expected[0])))
            assert late._totals == _slot_sum(late)
            assert late.count(t) == always.count(t)
    assert (late._totals is None) == (not any(ask for _, _, ask in steps))
