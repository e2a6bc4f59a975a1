"""The ranking's note when too few seeds make significance impossible: its count reads correctly."""

from __future__ import annotations

import numpy as np

from benchmarks.statistics import rank


def _note(seeds: int) -> str:
    samples = {name: [float(i + k) for k in range(seeds)] for i, name in enumerate(("a", "b", "c"))}
    ranking = rank(samples, "p99_ms", np.random.default_rng(1))
    (note,) = ranking.notes
    return note


def test_one_seed_is_singular() -> None:
    assert _note(1).startswith("with 1 seed per strategy the smallest attainable p-value is 1, ")


def test_two_seeds_plural() -> None:
    assert _note(2).startswith("with 2 seeds per strategy the smallest attainable p-value is 0.333, ")
