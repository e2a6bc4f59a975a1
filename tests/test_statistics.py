"""benchmarks.statistics against known cases: coverage, no false alarms on identical data, planted differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from scipy import stats as sps

from benchmarks import statistics as st

finite = hst.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_bootstrap_interval_covers_true_mean_at_about_nominal_rate() -> None:
    rng = np.random.default_rng(np.random.SeedSequence(11))
    true_mean, trials, hits = 5.0, 400, 0
    for _ in range(trials):
        sample = rng.normal(true_mean, 2.0, size=25)
        iv = st.bootstrap_ci(sample, rng, n_resamples=1000)
        assert iv.low is not None and iv.high is not None
        hits += iv.low <= true_mean <= iv.high
    coverage = hits / trials
    # Percentile bootstrap at n=25 under-covers slightly (about 0.93); 400 trials give +-0.025 noise.
    assert 0.88 <= coverage <= 0.99, coverage


def test_bootstrap_interval_of_a_skewed_percentile_statistic() -> None:
    rng = np.random.default_rng(3)
    sample = rng.lognormal(0, 1, size=400)
    iv = st.bootstrap_ci(sample, rng, statistic=lambda s: np.median(s, axis=-1))
    assert iv.low is not None and iv.high is not None and iv.estimate is not None
    assert iv.low < 1.0 < iv.high  # the true median of lognormal(0, 1) is 1
    assert iv.low <= iv.estimate <= iv.high


def test_bootstrap_edge_cases() -> None:
    rng = np.random.default_rng(0)
    assert st.bootstrap_ci([], rng).to_dict() == {"estimate": None, "low": None, "high": None, "n": 0}
    assert st.bootstrap_ci([None, float("nan")], rng).n == 0
    one = st.bootstrap_ci([4.0, None], rng)
    assert (one.estimate, one.low, one.high, one.n) == (4.0, 4.0, 4.0, 1)
    same = st.bootstrap_ci([2.0, 2.0, 2.0], rng)
    assert (same.low, same.high) == (2.0, 2.0)
    with pytest.raises(ValueError, match="confidence"):
        st.bootstrap_ci([1.0, 2.0], rng, confidence=1.5)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    data = [1.0, 3.0, 2.0, 8.0, 5.0]
    a = st.bootstrap_ci(data, np.random.default_rng(5))
    b = st.bootstrap_ci(data, np.random.default_rng(5))
    assert a == b


@settings(max_examples=60, deadline=None)
@given(hst.lists(finite, min_size=1, max_size=12), hst.randoms(use_true_random=False))
def test_identical_inputs_are_never_significant(values: list[float], shuffler: object) -> None:
    other = list(values)
    shuffler.shuffle(other)  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    assert st.mann_whitney_p(values, other) == 1.0
    assert st.permutation_p(values, other, rng) == 1.0
    ranking = st.rank({"a": values, "b": other, "c": list(values)}, "m", rng)
    assert not any(t.significant for t in ranking.tests)
    assert all(e.tier == 1 and not e.better_than and not e.worse_than for e in ranking.entries)


def test_all_ties_do_not_warn_or_divide_by_zero() -> None:
    assert st.mann_whitney_p([1.0, 1.0, 1.0], [1.0, 1.0]) == 1.0
    assert st.mann_whitney_p([], [1.0]) == 1.0


def test_planted_difference_is_found_and_ranked() -> None:
    rng = np.random.default_rng(np.random.SeedSequence(21))
    fast = rng.normal(10.0, 1.0, size=8)
    slow = rng.normal(14.0, 1.0, size=8)
    same = rng.normal(10.0, 1.0, size=8)
    for test in st.TESTS:
        ranking = st.rank({"slow": slow, "fast": fast, "same": same}, "p99_ms", rng, test=test)
        order = [e.strategy for e in ranking.entries]
        assert order[-1] == "slow"
        by = {t.a + "/" + t.b: t for t in ranking.tests}
        assert by["slow/fast"].significant and by["slow/fast"].better == "fast"
        assert by["slow/same"].significant and by["slow/same"].better == "same"
        assert not by["fast/same"].significant
        assert ranking.entry("slow").tier == 2
        assert ranking.entry("fast").tier == ranking.entry("same").tier == 1
        assert set(ranking.entry("slow").worse_than) == {"fast", "same"}
        assert ranking.notes == ()


def test_higher_is_better_metrics_rank_the_other_way() -> None:
    rng = np.random.default_rng(1)
    ranking = st.rank(
        {"low": [0.90, 0.91, 0.92, 0.90, 0.91], "high": [0.99] * 5}, "success_rate", rng, lower_is_better=False
    )
    assert [e.strategy for e in ranking.entries] == ["high", "low"]
    assert ranking.tests[0].better == "high"


def test_false_positive_rate_under_the_null_is_at_most_alpha() -> None:
    rng = np.random.default_rng(np.random.SeedSequence(99))
    trials = 300
    rejections = sum(st.mann_whitney_p(rng.normal(size=8), rng.normal(size=8)) <= 0.05 for _ in range(trials))
    assert rejections / trials <= 0.09  # nominal 0.05; the exact test is conservative


def test_min_attainable_p_matches_the_exact_tests() -> None:
    assert st.min_attainable_p(2, 2) == pytest.approx(1 / 3)
    assert st.min_attainable_p(4, 4) == pytest.approx(2 / 70)
    assert st.min_attainable_p(0, 3) == 1.0
    a, b = [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]
    assert st.mann_whitney_p(a, b) == pytest.approx(st.min_attainable_p(4, 4))
    assert st.permutation_p(a, b, np.random.default_rng(0)) == pytest.approx(st.min_attainable_p(4, 4))


def test_too_few_seeds_are_reported_as_such() -> None:
    rng = np.random.default_rng(0)
    ranking = st.rank({"a": [1.0, 1.1], "b": [50.0, 51.0]}, "p99_ms", rng)
    assert not ranking.tests[0].significant
    assert ranking.min_attainable_p == pytest.approx(1 / 3)
    assert ranking.notes and "no difference can be significant" in ranking.notes[0]


@pytest.mark.parametrize("strategies", [2, 3, 10])
def test_min_seeds_is_where_the_power_note_disappears(strategies: int) -> None:
    need = st.min_seeds(strategies)
    assert need == {2: 4, 3: 5, 10: 7}[strategies]  # the figures docs/reports.md quotes
    for seeds, noted in ((need - 1, True), (need, False)):
        samples = {f"s{k}": [float(100 * k + i) for i in range(seeds)] for k in range(strategies)}
        ranking = st.rank(samples, "p99_ms", np.random.default_rng(0))
        assert bool(ranking.notes) is noted


def test_min_seeds_edge_cases() -> None:
    assert st.min_seeds(1) == st.min_seeds(0) == 1
    assert st.min_seeds(2, alpha=0.01) > st.min_seeds(2)
    with pytest.raises(ValueError, match="alpha"):
        st.min_seeds(2, alpha=0)


def test_permutation_sampling_path_is_seeded_and_never_zero() -> None:
    a = np.arange(15, dtype=float)
    b = a + 100
    p1 = st.permutation_p(a, b, np.random.default_rng(4), n_resamples=500)
    p2 = st.permutation_p(a, b, np.random.default_rng(4), n_resamples=500)
    assert p1 == p2 == pytest.approx(1 / 501)


def test_holm_known_values() -> None:
    assert st.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert st.holm([]) == []
    assert st.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


@given(hst.lists(hst.floats(min_value=0, max_value=1), min_size=1, max_size=20))
def test_holm_invariants(ps: list[float]) -> None:
    adj = st.holm(ps)
    assert all(q >= p - 1e-15 and q <= 1.0 for p, q in zip(ps, adj, strict=True))
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    assert all(adj[order[i]] <= adj[order[i + 1]] + 1e-15 for i in range(len(ps) - 1))
    assert min(adj) == pytest.approx(min(1.0, min(ps) * len(ps)))


def test_mann_whitney_agrees_with_scipy() -> None:
    a, b = [1.0, 5.0, 2.5, 7.0], [3.0, 9.0, 8.0, 6.5, 10.0]
    expected = sps.mannwhitneyu(a, b, alternative="two-sided").pvalue
    assert math.isclose(st.mann_whitney_p(a, b), expected)


def test_unknown_test_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="test='t'"):
        st.pairwise_tests({"a": [1.0], "b": [2.0]}, "m", np.random.default_rng(0), test="t")
