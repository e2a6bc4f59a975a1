"""Tests of simulator.book's incremental P0 refresh: it must say exactly what a full recompute says.

(Number text, checksums and full views are tested with the feed in tests/test_market.py.)
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import book as book_module
from simulator.book import MIN_AMOUNT_UNITS, BookView, RawBook, decimal_text, format_decimal

# One change to the raw book: (side, offset from the mid, None = delete | (count, amount units)).
change = st.tuples(
    st.sampled_from(("bid", "ask")),
    st.integers(min_value=1, max_value=60),
    st.none() | st.tuples(st.integers(1, 9), st.integers(MIN_AMOUNT_UNITS, 5000)),
)


def raw_book(levels: int, gap_every: int = 3) -> RawBook:
    raw = RawBook(-1)
    raw.mid = 1000
    for off in range(1, levels + 1):
        if off % gap_every:
            raw.bids[1000 - off] = [1 + off % 4, 100 * off]
            raw.asks[1000 + off] = [1 + off % 3, 90 * off]
    return raw


def apply(raw: RawBook, changes: list[tuple[str, int, tuple[int, int] | None]]) -> tuple[set[int], set[int]]:
    dirty: tuple[set[int], set[int]] = (set(), set())
    for side_name, off, level in changes:
        bids = side_name == "bid"
        side, idx = (raw.bids, 1000 - off) if bids else (raw.asks, 1000 + off)
        if level is None:
            side.pop(idx, None)
        else:
            side[idx] = [level[0], level[0] * level[1]]
        dirty[0 if bids else 1].add(idx)
    return dirty


def same(incremental: BookView, full: BookView) -> None:
    assert incremental.bids == full.bids and incremental.asks == full.asks
    assert incremental.checksum == full.checksum
    assert incremental.snapshot_text() == full.snapshot_text()


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from((1, 25, 100, 250)),
    st.integers(min_value=0, max_value=40),
    st.lists(st.lists(change, max_size=12), min_size=1, max_size=8),
)
def test_incremental_refresh_says_what_a_full_recompute_says(length: int, levels: int, steps: list) -> None:
    raw = raw_book(levels)
    incremental, full = BookView(raw, "P0", length), BookView(raw, "P0", length)
    for changes in steps:
        dirty = apply(raw, changes)
        assert incremental.refresh(raw, dirty) == full.refresh(raw)
        same(incremental, full)
    # and the result is what a new subscriber gets
    same(incremental, BookView(raw, "P0", length))


def test_incremental_refresh_refills_across_a_wide_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(book_module, "_WALK_LIMIT", 8)  # force the sorted fallback after a short walk
    raw = raw_book(10, gap_every=1000)
    raw.bids.update({500: [1, 10], 499: [2, 20]})  # far below the rest
    incremental, full = BookView(raw, "P0", 10), BookView(raw, "P0", 10)
    for off in (1, 2, 3):
        dirty = apply(raw, [("bid", off, None)])
        assert incremental.refresh(raw, dirty) == full.refresh(raw)
        same(incremental, full)
    assert [b for b, _, _ in incremental.bids][-2:] == [500, 499]


def test_incremental_refresh_ignores_other_precisions_and_the_first_refresh() -> None:
    raw = raw_book(30)
    p1, p1_full = BookView(raw, "P1", 25), BookView(raw, "P1", 25)
    dirty = apply(raw, [("bid", 1, None), ("ask", 50, (3, 100))])
    # P1 cannot use P0 indices: the view recomputes in full whatever it is given
    assert p1.refresh(raw, dirty) == p1_full.refresh(raw)
    same(p1, BookView(raw, "P1", 25))
    # a P0 view refreshed for the first time recomputes in full too
    empty = RawBook(-1)
    p0 = BookView(empty, "P0", 25)
    assert p0.bids == [] and p0.checksum == 0
    p0._fresh = True
    assert len(p0.refresh(raw, (set(), set()))) == len(raw.bids) + len(raw.asks)  # 20 levels a side: all new
    same(p0, BookView(raw, "P0", 25))


def test_deletions_come_first_and_levels_keep_their_order() -> None:
    raw = raw_book(10, gap_every=1000)
    view = BookView(raw, "P0", 3)  # bids 999, 998, 997; asks 1001, 1002, 1003
    dirty = apply(raw, [("bid", 2, None), ("ask", 1, None), ("bid", 1, (3, 50)), ("ask", 3, (1, 70))])
    updates = [json.loads(u) for u in view.refresh(raw, dirty)]
    # deletes (bids then asks, best first), then changes and new levels (bids then asks, best first)
    assert updates == [
        [99.8, 0, 1],
        [100.1, 0, -1],
        [99.9, 3, 0.015],
        [99.6, 1, 0.04],
        [100.3, 1, -0.007],
        [100.4, 2, -0.036],
    ]


def test_a_change_below_the_top_25_leaves_the_checksum_alone() -> None:
    raw = raw_book(80, gap_every=1000)
    view = BookView(raw, "P0", 100)
    before = view.checksum
    updates = view.refresh(raw, apply(raw, [("bid", 60, (5, 10))]))
    assert len(updates) == 1 and view.checksum == before == BookView(raw, "P0", 25).checksum


@given(st.integers(min_value=-(10**9), max_value=10**9), st.integers(min_value=-6, max_value=2))
def test_decimal_text_is_format_decimal(n: int, exp: int) -> None:
    assert decimal_text(n, exp) == format_decimal(n, exp)
    assert decimal_text(n, exp) == format_decimal(n, exp)  # the remembered one too
