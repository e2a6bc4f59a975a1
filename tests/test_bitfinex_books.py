"""Books and subscriptions of the client (wsfinal.bitfinex_books): checksums, raw books, the subscription table."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from wsfinal import bitfinex_books as bfx
from wsfinal.bitfinex_frames import Subscribed
from wsfinal.exceptions import ProtocolViolation


def independent_checksum(levels: list[list[float]]) -> int:
    """Bitfinex's documented recipe, written out longhand: top 25 bids and asks interleaved, CRC32, signed."""
    bids = sorted((lv for lv in levels if lv[2] > 0), key=lambda lv: -lv[0])[:25]
    asks = sorted((lv for lv in levels if lv[2] < 0), key=lambda lv: lv[0])[:25]

    def text(x: float) -> str:  # fixed-point without trailing zeros, as JavaScript prints these magnitudes
        return f"{x:.10f}".rstrip("0").rstrip(".")

    parts = []
    for i in range(25):
        if i < len(bids):
            parts += [text(bids[i][0]), text(bids[i][2])]
        if i < len(asks):
            parts += [text(asks[i][0]), text(asks[i][2])]
    value = zlib.crc32(":".join(parts).encode()) & 0xFFFFFFFF
    return value - 2**32 if value > 2**31 - 1 else value


# --- books and checksums -------------------------------------------------------------------------------------


def test_book_checksum_agrees_with_an_independent_computation() -> None:
    rng = np.random.default_rng(5)
    levels: list[list[float]] = []
    for i in range(40):
        levels.append([round(100.0 - i * 0.5, 1), int(rng.integers(1, 5)), round(float(rng.uniform(0.01, 3)), 4)])
        levels.append([round(100.5 + i * 0.5, 1), int(rng.integers(1, 5)), -round(float(rng.uniform(0.01, 3)), 4)])
    book = bfx.OrderBook()
    book.apply(levels)
    assert book.checksum() == independent_checksum(levels)
    # an update, a deletion on each side
    book.apply([99.5, 2, 7.25])
    book.apply([100.5, 0, -1])
    book.apply([80.0, 0, 1])
    changed = [lv for lv in levels if lv[0] not in (99.5, 100.5, 80.0)] + [[99.5, 2, 7.25]]
    assert book.checksum() == independent_checksum(changed)


def test_checksum_prints_numbers_as_javascript_does() -> None:
    assert bfx.checksum_of([(100.0, 1.0)], [(101.0, -0.00001)]) == bfx.checksum_of([(100, 1)], [(101, "-0.00001")])
    text = "100:1:101:-0.00001"
    crc = zlib.crc32(text.encode())
    assert bfx.checksum_of([(100, 1)], [(101, "-0.00001")]) == (crc - 2**32 if crc >= 2**31 else crc)


def test_raw_books_key_levels_by_order_id() -> None:
    book = bfx.OrderBook(raw=True)
    book.apply([[11, 100.0, 1.5], [12, 100.0, 0.5], [13, 101.0, -2.0]])
    assert book.sorted_levels() == ([(11, 1.5), (12, 0.5)], [(13, -2.0)])
    book.apply([11, 0, 1])  # price 0: order 11 removed
    assert book.sorted_levels() == ([(12, 0.5)], [(13, -2.0)])


def test_malformed_book_levels_raise() -> None:
    with pytest.raises(ProtocolViolation):
        bfx.OrderBook().apply([1, 2])
    with pytest.raises(ProtocolViolation):
        bfx.OrderBook().apply("x")


# --- subscriptions -------------------------------------------------------------------------------------------


def test_subscriptions_are_remembered_across_reconnects() -> None:
    table = bfx.SubscriptionTable()
    sub, request = table.add("book", {"symbol": "tBTCUSD", "prec": "P0", "len": 25})
    assert request == {"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "prec": "P0", "len": 25}
    table.add("ticker", {"symbol": "tETHUSD"})
    confirmed = table.confirmed(
        Subscribed(3, "book", {"channel": "book", "symbol": "tBTCUSD", "prec": "P0", "freq": "F0", "len": "25"})
    )
    assert confirmed is sub and table.by_chan(3) is sub and table.active == 1
    table.connection_lost()
    assert table.by_chan(3) is None and sub.chan_id is None
    again = table.requests_for_reconnect()
    assert {r["channel"] for r in again} == {"book", "ticker"}
    assert table.remove("ticker", {"symbol": "tETHUSD"}) is None  # never confirmed: nothing to unsubscribe
    assert len(table) == 1
