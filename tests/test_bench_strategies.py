"""Per-pick cost of every strategy at 10..10,000 connections (``make bench``); random.choice is the yardstick."""

import random

import pytest

from benchmarks.strategy_table import SIZES, T, build_balancer
from wsfinal import LoadBalancingStrategy

pytestmark = pytest.mark.benchmark


@pytest.mark.parametrize("n", SIZES)
def test_yardstick_random_choice(benchmark, n):
    benchmark.group = f"pick-{n:05d}"
    items = list(range(n))
    rng = random.Random(1)
    benchmark(rng.choice, items)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", list(LoadBalancingStrategy), ids=lambda k: k.value)
def test_pick(benchmark, kind, n):
    benchmark.group = f"pick-{n:05d}"
    lb = build_balancer(n)
    lb.choose(T, kind, now=0.0)
    result = benchmark(lb.choose, T, kind, 0.0)
    assert result is not None
