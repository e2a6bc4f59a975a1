"""Backoff: delays inside their full-jitter windows, the cap, the reset after a stable period, giving up."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsfinal.backoff import Backoff, RetryPolicy, close_policy


def make(base: float = 1.0, cap: float = 30.0, attempts: int = 5, stable: float = 10.0, seed: int = 0) -> Backoff:
    return Backoff(base_s=base, cap_s=cap, max_attempts=attempts, stable_after_s=stable, rng=random.Random(seed))


def test_windows_double_from_the_base_delay_and_stop_at_the_cap() -> None:
    b = make(base=0.5, cap=3.0, attempts=10)
    assert [b.window(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_delays_lie_inside_their_full_jitter_windows_and_replay_from_the_seed() -> None:
    b = make(base=0.25, cap=2.0, attempts=8, seed=42)
    delays = [b.next_delay() for _ in range(8)]
    rng = random.Random(42)
    for n, d in enumerate(delays, start=1):
        assert d is not None
        high = min(2.0, 0.25 * 2 ** (n - 1))
        assert (d.attempt, d.low, d.high) == (n, 0.0, high)
        assert 0.0 <= d.seconds <= high
        assert d.seconds == rng.uniform(0.0, high)  # the same seed gives the same delays
    assert b.next_delay() is None  # ninth attempt: give up


def test_gives_up_after_max_attempts_and_no_retry_gives_up_at_once() -> None:
    b = make(attempts=2)
    assert b.next_delay() is not None
    assert b.next_delay() is not None
    assert b.next_delay() is None
    assert make().next_delay(RetryPolicy.NO_RETRY) is None
    assert make(attempts=0).next_delay() is None


def test_retry_later_is_never_immediate() -> None:
    b = make(base=1.0, cap=8.0, attempts=50, seed=3)
    for _ in range(50):
        d = b.next_delay(RetryPolicy.RETRY_LATER)
        assert d is not None
        assert d.high / 2 <= d.seconds <= d.high
        assert d.low == d.high / 2


def test_retry_now_uses_the_base_window_and_consumes_no_attempt() -> None:
    b = make(base=0.4, attempts=1, seed=9)
    for _ in range(20):
        d = b.next_delay(RetryPolicy.RETRY_NOW)
        assert d is not None and 0.0 <= d.seconds <= 0.4 and d.high == 0.4
    assert b.attempts == 0
    assert b.next_delay() is not None  # the one real attempt is still available


def test_reset_after_a_stable_connection_but_not_after_a_short_one() -> None:
    b = make(attempts=3, stable=10.0)
    b.next_delay()
    b.next_delay()
    b.connected(100.0)
    b.lost(105.0)  # up for 5 s: not stable, failures remembered
    assert b.attempts == 2
    d = b.next_delay()
    assert d is not None and d.attempt == 3
    b.connected(200.0)
    b.lost(210.0)  # up for 10 s: stable, start over
    assert b.attempts == 0
    d = b.next_delay()
    assert d is not None and d.attempt == 1 and d.high == 1.0


def test_close_codes_map_to_policies() -> None:
    assert close_policy(1008) is RetryPolicy.NO_RETRY
    assert close_policy(1003) is RetryPolicy.NO_RETRY
    assert close_policy(1012) is RetryPolicy.RETRY_LATER
    assert close_policy(1013) is RetryPolicy.RETRY_LATER
    for code in (None, 1000, 1001, 1006, 1011, 4000):
        assert close_policy(code) is RetryPolicy.RETRY


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="base"):
        make(base=-1.0)
    with pytest.raises(ValueError, match="max_attempts"):
        make(attempts=-1)


def test_jitter_spreads_a_storm_of_simultaneous_disconnects() -> None:
    rng = random.Random(2024)
    delays = []
    for _ in range(200):
        b = Backoff(base_s=1.0, cap_s=30.0, max_attempts=5, rng=rng)
        d = b.next_delay()
        assert d is not None
        delays.append(d.seconds)
    # uniform on [0, 1]: every tenth of the window gets some of the 200 reconnects, none gets most of them
    buckets = [0] * 10
    for d in delays:
        buckets[min(int(d * 10), 9)] += 1
    assert min(buckets) > 0
    assert max(buckets) < 50


@given(
    seed=st.integers(0, 2**32),
    base=st.floats(0.0, 5.0),
    cap=st.floats(0.0, 60.0),
    policies=st.lists(st.sampled_from(list(RetryPolicy)), max_size=30),
)
def test_every_delay_lies_in_its_window(seed: int, base: float, cap: float, policies: list[RetryPolicy]) -> None:
    b = Backoff(base_s=base, cap_s=cap, max_attempts=10, rng=random.Random(seed))
    for policy in policies:
        before = b.attempts
        d = b.next_delay(policy)
        if d is None:
            assert policy is RetryPolicy.NO_RETRY or before >= 10
            continue
        assert d.low <= d.seconds <= d.high <= max(cap, base)
        if policy is RetryPolicy.RETRY_NOW:
            assert b.attempts == before
        else:
            assert b.attempts == before + 1
