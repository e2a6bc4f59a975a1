"""Honest statistics for strategy comparisons: bootstrap intervals, rank and permutation tests, Holm correction.

Everything here is pure (numpy arrays in, plain dataclasses out) and takes its randomness from a seeded
``numpy.random.Generator``, so the same inputs always give the same intervals and p-values.

The unit of evidence is the **run** (one seed), never the request: requests inside one run share queues and
faults, so they are not independent, and pooling them would make every difference look significant. A
comparison with ``n`` seeds per strategy therefore has ``n`` observations per strategy, and with few seeds no
difference can be significant at all: :func:`min_attainable_p` says how small a p-value the design allows,
and the ranking reports it so a reader knows why nothing was marked.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Confidence level of intervals and significance level of tests used unless the caller says otherwise.
CONFIDENCE = 0.95
ALPHA = 0.05
#: Bootstrap resamples: enough that the 2.5%/97.5% percentiles are stable to a few per cent of the spread.
N_RESAMPLES = 2000
#: Above this many distinct relabellings, the permutation test samples instead of enumerating.
EXACT_PERMUTATION_LIMIT = 20_000
TESTS = ("mannwhitney", "permutation")


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval; ``n`` observations behind it (0: no data, all None)."""

    estimate: float | None
    low: float | None
    high: float | None
    n: int
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict[str, float | int | None]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n}


def _clean(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def bootstrap_ci(
    values: Sequence[float | None] | np.ndarray,
    rng: np.random.Generator,
    *,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
) -> Interval:
    """Percentile bootstrap interval of ``statistic`` (default: the mean) of ``values``.

    ``None`` and non-finite values are dropped (a run where the metric did not apply). ``statistic`` receives
    a 2-D array (one resample per row) and must reduce along ``axis=1``'s meaning: it is called as
    ``statistic(samples)`` with ``samples.shape == (n_resamples, n)``. With one value the interval is that
    value; with none, everything is ``None``. With very few values the percentile bootstrap is too narrow
    (it cannot see beyond the observed range): read intervals from fewer than ~5 seeds as rough.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: must be between 0 and 1")
    x = _clean(values)
    reduce = statistic or (lambda s: np.mean(s, axis=-1))
    if x.size == 0:
        return Interval(None, None, None, 0, confidence)
    estimate = float(reduce(x[np.newaxis, :])[0])
    if x.size == 1 or np.all(x == x[0]):
        return Interval(estimate, estimate, estimate, int(x.size), confidence)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    boot = np.asarray(reduce(x[idx]), dtype=np.float64)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), int(x.size), confidence)


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    pooled = np.concatenate([a, b])
    return bool(np.all(pooled == pooled[0])) or (a.size == b.size and bool(np.array_equal(np.sort(a), np.sort(b))))


def mann_whitney_p(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value (scipy; exact for small samples without ties).

    Samples with identical values (as multisets) return exactly 1.0 (scipy would divide by a zero variance
    when every value ties). Empty samples return 1.0: no evidence.
    """
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0 or _identical(x, y):
        return 1.0
    from scipy import stats  # imported here: scipy.stats costs ~0.6 s, and `wsfinal --help` needs none of it

    return float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def permutation_p(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
    *,
    n_resamples: int = 10_000,
) -> float:
    """Two-sided permutation test of the difference in means.

    Enumerates every relabelling when there are at most :data:`EXACT_PERMUTATION_LIMIT` of them (exact p);
    otherwise samples ``n_resamples`` with ``rng`` and returns ``(hits + 1) / (n_resamples + 1)`` (never 0).
    """
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0 or _identical(x, y):
        return 1.0
    pooled = np.concatenate([x, y])
    n, total = x.size, pooled.size
    observed = abs(x.mean() - y.mean())
    tol = 1e-12 * max(1.0, float(np.max(np.abs(pooled))))
    if math.comb(total, n) <= EXACT_PERMUTATION_LIMIT:
        combos = np.array(list(itertools.combinations(range(total), n)), dtype=np.intp)
        sums = pooled[combos].sum(axis=1)
        diffs = np.abs(sums / n - (pooled.sum() - sums) / (total - n))
        return float(np.mean(diffs >= observed - tol))
    perm = np.argsort(rng.random((n_resamples, total)), axis=1)
    sums = pooled[perm[:, :n]].sum(axis=1)
    diffs = np.abs(sums / n - (pooled.sum() - sums) / (total - n))
    return float((np.sum(diffs >= observed - tol) + 1) / (n_resamples + 1))


def min_attainable_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p-value a rank or permutation test can give with these sample sizes.

    ``2 / C(n_a + n_b, n_a)``: with 2 seeds per strategy that is 0.33, with 4 it is 0.029, so at least
    4 seeds per strategy are needed before anything can be significant at 0.05.
    """
    if n_a <= 0 or n_b <= 0:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def min_seeds(strategies: int, alpha: float = ALPHA) -> int:
    """The fewest seeds per strategy with which a difference among ``strategies`` can be significant at ``alpha``.

    The bound behind :func:`rank`'s note on power: Holm multiplies the smallest p-value by the number of pairs,
    so ``n`` seeds can only suffice when ``min_attainable_p(n, n) * C(strategies, 2) <= alpha``. 2 strategies
    need 4 seeds, 3 need 5, all 10 need 7. Fewer than 2 strategies compare nothing: 1.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    pairs = math.comb(strategies, 2) if strategies > 1 else 0
    if pairs == 0:
        return 1
    n = 2
    while min_attainable_p(n, n) * pairs > alpha:  # C(2n, n) grows about 4^n: a few steps
        n += 1
    return n


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given); reject where adjusted <= alpha.

    Controls the family-wise error rate at alpha for any dependence between the tests, and is uniformly more
    powerful than plain Bonferroni.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class PairwiseTest:
    """One comparison of strategies ``a`` and ``b`` on a metric; ``better`` names the winner when significant."""

    metric: str
    a: str
    b: str
    p: float
    p_adjusted: float
    significant: bool
    better: str | None
    mean_a: float | None
    mean_b: float | None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RankEntry:
    """A strategy's place on one metric: ``rank`` by point estimate (1 = best), ``tier`` (1 = statistically
    tied with the best), and the strategies it is significantly better / worse than."""

    strategy: str
    rank: int
    tier: int
    estimate: float | None
    better_than: tuple[str, ...] = ()
    worse_than: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "rank": self.rank,
            "tier": self.tier,
            "estimate": self.estimate,
            "better_than": list(self.better_than),
            "worse_than": list(self.worse_than),
        }


@dataclass(frozen=True)
class Ranking:
    metric: str
    lower_is_better: bool
    test: str
    alpha: float
    entries: tuple[RankEntry, ...]
    tests: tuple[PairwiseTest, ...]
    min_attainable_p: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def entry(self, strategy: str) -> RankEntry:
        for e in self.entries:
            if e.strategy == strategy:
                return e
        raise KeyError(strategy)

    def to_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "lower_is_better": self.lower_is_better,
            "test": self.test,
            "alpha": self.alpha,
            "min_attainable_p": self.min_attainable_p,
            "entries": [e.to_dict() for e in self.entries],
            "tests": [t.to_dict() for t in self.tests],
            "notes": list(self.notes),
        }


def pairwise_tests(
    samples: Mapping[str, Sequence[float | None]],
    metric: str,
    rng: np.random.Generator,
    *,
    lower_is_better: bool = True,
    test: str = "mannwhitney",
    alpha: float = ALPHA,
) -> list[PairwiseTest]:
    """Every pair of strategies tested on ``metric`` (one value per seed), Holm-corrected as one family."""
    if test not in TESTS:
        raise ValueError(f"test={test!r}: expected one of {', '.join(TESTS)}")
    names = list(samples)
    clean = {k: _clean(v) for k, v in samples.items()}
    pairs = list(itertools.combinations(names, 2))
    raw = [
        mann_whitney_p(clean[a], clean[b]) if test == "mannwhitney" else permutation_p(clean[a], clean[b], rng)
        for a, b in pairs
    ]
    adjusted = holm(raw)
    out = []
    for (a, b), p, q in zip(pairs, raw, adjusted, strict=True):
        ma = float(clean[a].mean()) if clean[a].size else None
        mb = float(clean[b].mean()) if clean[b].size else None
        significant = q <= alpha and ma is not None and mb is not None and ma != mb
        better = None
        if significant and ma is not None and mb is not None:
            better = a if (ma < mb) == lower_is_better else b
        out.append(PairwiseTest(metric, a, b, p, q, significant, better, ma, mb))
    return out


def rank(
    samples: Mapping[str, Sequence[float | None]],
    metric: str,
    rng: np.random.Generator,
    *,
    lower_is_better: bool = True,
    test: str = "mannwhitney",
    alpha: float = ALPHA,
) -> Ranking:
    """Order strategies by their mean ``metric`` across seeds and say which differences are significant.

    Tiers: the best strategy starts tier 1; walking down the order, a strategy opens a new tier when it is
    significantly worse (Holm-corrected) than the first strategy of the current tier. Strategies in one tier
    are not distinguishable from its leader with this many seeds. Strategies with no data rank last.
    """
    tests = pairwise_tests(samples, metric, rng, lower_is_better=lower_is_better, test=test, alpha=alpha)
    clean = {k: _clean(v) for k, v in samples.items()}
    means = {k: (float(v.mean()) if v.size else None) for k, v in clean.items()}

    def key(name: str) -> tuple[int, float]:
        m = means[name]
        if m is None:
            return (1, 0.0)
        return (0, m if lower_is_better else -m)

    order = sorted(samples, key=key)
    better: dict[str, list[str]] = {k: [] for k in samples}
    worse: dict[str, list[str]] = {k: [] for k in samples}
    sig: set[tuple[str, str]] = set()
    for t in tests:
        if t.better is not None:
            loser = t.b if t.better == t.a else t.a
            better[t.better].append(loser)
            worse[loser].append(t.better)
            sig.add((t.better, loser))
    entries = []
    tier, leader = 1, order[0] if order else None
    for i, name in enumerate(order):
        if leader is not None and (leader, name) in sig:
            tier, leader = tier + 1, name
        entries.append(
            RankEntry(name, i + 1, tier, means[name], tuple(sorted(better[name])), tuple(sorted(worse[name])))
        )
    sizes = [v.size for v in clean.values() if v.size]
    floor = min((min_attainable_p(x, y) for x, y in itertools.combinations(sizes, 2)), default=1.0)
    notes = []
    # Holm multiplies the smallest p-value by the number of tests: that bounds what can ever be significant.
    if tests and floor * len(tests) > alpha:
        fewest = min(sizes) if sizes else 0
        notes.append(
            f"with {fewest} seed{'' if fewest == 1 else 's'} per strategy the smallest attainable p-value is "
            f"{floor:.3g}, "
            f"{min(1.0, floor * len(tests)):.3g} after Holm over {len(tests)} pairwise tests (> alpha {alpha}): "
            "no difference can be significant; use more seeds or fewer strategies"
        )
    return Ranking(metric, lower_is_better, test, alpha, tuple(entries), tuple(tests), floor, tuple(notes))


__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "TESTS",
    "Interval",
    "PairwiseTest",
    "RankEntry",
    "Ranking",
    "bootstrap_ci",
    "holm",
    "mann_whitney_p",
    "min_attainable_p",
    "min_seeds",
    "pairwise_tests",
    "permutation_p",
    "rank",
]
