"""Tests of simulator.market and simulator.book: number text, checksum, book views, determinism."""

from __future__ import annotations

import itertools
import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.book import (
    AMOUNT_EXP,
    LENGTHS,
    PRECISIONS,
    BookView,
    RawBook,
    book_checksum,
    checksum_of_levels,
    format_decimal,
    signed_crc32,
)
from simulator.market import F1_INTERVAL_S, MarketFeed, channel_key
from wsfinal.exceptions import ConfigurationError


def feed(seed: int = 1, symbols: tuple[str, ...] = ("tBTCUSD", "tETHUSD"), **kw: object) -> MarketFeed:
    return MarketFeed(list(symbols), np.random.default_rng(seed), **kw)  # type: ignore[arg-type]


def independent_signed_crc(text: str) -> int:
    return struct.unpack("<i", struct.pack("<I", zlib.crc32(text.encode("utf-8"))))[0]


def js_text(value: float | int) -> str:
    """What a Python client prints for a number it parsed from our JSON (repr = JS text in our range)."""
    return str(value) if isinstance(value, int) else repr(value)


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("n", "exp", "text"),
    [
        (36624, 0, "36624"),
        (7, 2, "700"),
        (5, -1, "0.5"),
        (-5, -1, "-0.5"),
        (12345, -4, "1.2345"),
        (10, -4, "0.001"),
        (100, -2, "1"),
        (0, -3, "0"),
        (-120, -4, "-0.012"),
        (299995, -1, "29999.5"),
    ],
)
def test_format_decimal(n: int, exp: int, text: str) -> None:
    assert format_decimal(n, exp) == text


@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=-8, max_value=3))
def test_format_decimal_survives_a_json_round_trip(n: int, exp: int) -> None:
    text = format_decimal(n, exp)
    value = json.loads(text)
    assert value == pytest.approx(n * 10.0**exp, rel=1e-12, abs=1e-12)
    if n != 0 and 1e-4 <= abs(n * 10.0**exp) < 1e15:
        # the property the checksum relies on: a client printing the parsed number gets our text back
        assert js_text(value) == text


# ----------------------------------------------------------------------------- checksum


def test_signed_crc32_matches_an_independent_computation() -> None:
    for text in ["", "a", "6000:1.5:6001:-2", "x" * 1000]:
        assert signed_crc32(text) == independent_signed_crc(text)
    # a value whose unsigned CRC has the top bit set comes out negative
    assert any(signed_crc32(str(i)) < 0 for i in range(20))


def test_book_checksum_interleaves_bids_and_asks() -> None:
    bids = [("6000", "1.5"), ("5999", "0.25"), ("5998", "3")]
    asks = [("6001", "-2"), ("6002", "-1")]
    expected = independent_signed_crc("6000:1.5:6001:-2:5999:0.25:6002:-1:5998:3")
    assert book_checksum(bids, asks) == expected


def test_book_checksum_uses_only_the_top_25_levels() -> None:
    bids = [(str(1000 - i), "1") for i in range(40)]
    asks = [(str(1001 + i), "-1") for i in range(40)]
    parts = []
    for i in range(25):
        parts += [bids[i][0], "1", asks[i][0], "-1"]
    assert book_checksum(bids, asks) == independent_signed_crc(":".join(parts))


def test_checksum_of_levels_sorts_a_client_book() -> None:
    rows = [[6001, 1, -2], [5999, 2, 0.25], [6000, 1, 1.5], [6002, 3, -1], [5998, 1, 3]]
    assert checksum_of_levels(rows) == independent_signed_crc("6000:1.5:6001:-2:5999:0.25:6002:-1:5998:3")


# ----------------------------------------------------------------------------- book views


class ClientBook:
    """A client's copy of a book, maintained the way Bitfinex documents (count 0 = delete, sign = side)."""

    def __init__(self, snapshot: list[list[float]]) -> None:
        self.bids: dict[float, tuple[int, float]] = {}
        self.asks: dict[float, tuple[int, float]] = {}
        for row in snapshot:
            self.apply(row)

    def apply(self, row: list[float]) -> None:
        price, count, amount = row
        side = self.bids if amount > 0 else self.asks
        if count == 0:
            assert amount in (1, -1)
            assert price in side, f"delete of unknown level {row}"
            del side[price]
        else:
            side[price] = (int(count), amount)

    def checksum(self) -> int:
        bids = sorted(self.bids.items(), key=lambda kv: -kv[0])[:25]
        asks = sorted(self.asks.items(), key=lambda kv: kv[0])[:25]
        parts: list[str] = []
        for i in range(25):
            if i < len(bids):
                parts += [js_text(bids[i][0]), js_text(bids[i][1][1])]
            if i < len(asks):
                parts += [js_text(asks[i][0]), js_text(asks[i][1][1])]
        return independent_signed_crc(":".join(parts))


@pytest.mark.parametrize(("prec", "length"), [("P0", 25), ("P0", 1), ("P1", 100), ("P2", 250), ("P4", 25)])
def test_client_following_a_view_stays_equal_and_matches_its_checksum(prec: str, length: int) -> None:
    f = feed(3)
    key = channel_key("book", "tBTCUSD", prec, "F0", length)
    f.retain(key)
    payload, checksum = f.snapshot(key)
    client = ClientBook(json.loads(payload))
    assert client.checksum() == checksum
    updates = 0
    for step in range(1, 301):
        for ev in f.advance(step * 0.1):
            if key not in ev.payloads:
                continue
            for text in ev.payloads[key]:
                client.apply(json.loads(text))
                updates += 1
            assert client.checksum() == ev.checksums[key]
        assert len(client.bids) <= length and len(client.asks) <= length
        if client.bids and client.asks:
            assert max(client.bids) < min(client.asks)
    assert updates > 0
    fresh, checksum = f.snapshot(key)
    assert ClientBook(json.loads(fresh)).checksum() == checksum == client.checksum()


def test_view_levels_are_sorted_and_amounts_printable() -> None:
    f = feed(5)
    f.advance(20.0)
    raw = f._symbols["tETHUSD"].raw
    for prec in PRECISIONS:
        for length in LENGTHS:
            view = BookView(raw, prec, length)
            bids = [b for b, _, _ in view.bids]
            asks = [a for a, _, _ in view.asks]
            assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
            assert len(bids) <= length and len(asks) <= length
            assert all(amount * 10.0**AMOUNT_EXP >= 1e-3 for _, _, amount in view.bids + view.asks)
            assert all(count >= 1 for _, count, _ in view.bids + view.asks)


def test_raw_book_helpers() -> None:
    raw = RawBook(0)
    assert raw.best_bid() is None and raw.best_ask() is None
    raw.bids[99] = [1, 10]
    raw.asks[101] = [1, 10]
    assert (raw.best_bid(), raw.best_ask()) == (99, 101)


# ----------------------------------------------------------------------------- the feed


def stream(f: MarketFeed, steps: int) -> list[tuple[int, float, str, tuple[tuple[str, tuple[str, ...]], ...]]]:
    out = []
    for ev in f.advance(steps * f.update_interval_s):
        out.append((ev.seq, ev.time, ev.symbol, tuple(sorted(ev.payloads.items()))))
    return out


def test_same_seed_same_stream_different_seed_different_stream() -> None:
    a, b, c = feed(11), feed(11), feed(12)
    for f in (a, b, c):
        f.retain(channel_key("book", "tBTCUSD", "P0", "F0", 25))
    sa, sb, sc = stream(a, 200), stream(b, 200), stream(c, 200)
    assert sa == sb
    assert sa != sc


def test_stream_does_not_depend_on_what_is_subscribed() -> None:
    a, b = feed(21), feed(21)
    a.retain(channel_key("book", "tBTCUSD", "P1", "F0", 100))
    a.retain(channel_key("book", "tETHUSD", "P0", "F1", 25))

    def public(f: MarketFeed) -> list[tuple[str, tuple[str, ...]]]:
        return [(k, v) for ev in f.advance(30.0) for k, v in ev.payloads.items() if not k.startswith("book")]

    assert public(a) == public(b)


def test_advance_timing_and_next_time() -> None:
    f = feed(1, update_interval_s=0.5, start_time=100.0)
    assert f.next_time() == 100.5
    assert f.advance(100.4) == []
    events = f.advance(101.0)
    assert [e.time for e in events] == [100.5, 100.5, 101.0, 101.0]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert f.next_time() == 101.5 and f.last_seq == 4


def test_advance_after_a_stall_skips_beyond_the_catch_up_limit() -> None:
    f = feed(1, symbols=("tBTCUSD",), max_catchup_steps=10)
    events = f.advance(100.0)
    assert len(events) == 10
    assert events[-1].time == pytest.approx(100.0)


def test_trades_te_then_tu_and_snapshot_newest_first() -> None:
    f = feed(4, symbols=("tBTCUSD",), trade_rate_per_s=20.0)
    seen: list[list[float]] = []
    for ev in f.advance(5.0):
        texts = ev.payloads.get("trades:tBTCUSD", ())
        assert len(texts) % 2 == 0
        for te, tu in zip(texts[::2], texts[1::2]):
            assert te.startswith('"te",') and tu.startswith('"tu",') and te[5:] == tu[5:]
            seen.append(json.loads(te[5:]))
    assert len(seen) > 30
    ids = [t[0] for t in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(t[2] != 0 and abs(t[2]) >= 1e-3 for t in seen)
    snap, checksum = f.snapshot("trades:tBTCUSD")
    assert checksum is None
    assert json.loads(snap) == list(reversed(seen[-30:]))


def test_ticker_has_the_ten_bitfinex_fields() -> None:
    f = feed(2)
    f.advance(3.0)
    text, _ = f.snapshot("ticker:tBTCUSD")
    bid, bid_size, ask, ask_size, _change, _rel, last, volume, high, low = json.loads(text)
    assert bid < ask and bid_size > 0 and ask_size > 0 and volume > 0
    assert low <= last <= high


def test_f1_books_send_a_snapshot_at_most_every_two_seconds() -> None:
    f = feed(6)
    key = channel_key("book", "tBTCUSD", "P0", "F1", 25)
    f.retain(key)
    times = [ev.time for ev in f.advance(10.0) if key in ev.payloads]
    assert len(times) >= 4
    assert all(b - a >= F1_INTERVAL_S - 1e-6 for a, b in itertools.pairwise(times))
    for ev in f.advance(12.0):
        if key in ev.payloads:
            (text,) = ev.payloads[key]
            assert ClientBook(json.loads(text)).checksum() == ev.checksums[key]


def test_retain_and_release_count_holders() -> None:
    f = feed(1)
    key = channel_key("book", "tBTCUSD", "P0", "F0", 25)
    f.retain(key)
    f.retain(key)
    f.retain("book:tNOPE:P0:F0:25")  # unknown symbol: ignored
    f.retain("nonsense")
    assert f.retained_keys() == {key: 2}
    f.release(key)
    assert f.retained_keys() == {key: 1}
    f.release(key)
    f.release(key)  # one too many: harmless
    f.release("nonsense")
    assert f.retained_keys() == {}
    assert key not in f._symbols["tBTCUSD"].views


def test_snapshot_of_unknown_key_raises_key_error() -> None:
    f = feed(1)
    with pytest.raises(KeyError):
        f.snapshot("candles:tBTCUSD")
    with pytest.raises(KeyError):
        f.snapshot("ticker:tNOPE")


def test_symbols_with_a_colon_work() -> None:
    f = feed(1, symbols=("tTESTBTC:TESTUSD",))
    key = channel_key("book", "tTESTBTC:TESTUSD", "P0", "F0", 25)
    f.retain(key)
    assert f.retained_keys() == {key: 1}
    assert any(key in ev.payloads for ev in f.advance(2.0))


@pytest.mark.parametrize(
    ("symbols", "kw", "field"),
    [
        ([], {}, "symbols"),
        ("tBTCUSD", {}, "symbols"),
        (["BTCUSD"], {}, "symbols[0]"),
        (["tBTCUSD", "tBTCUSD"], {}, "symbols[1]"),
        (["tBTCUSD"], {"update_interval_s": 0}, "update_interval_s"),
        (["tABCUSD"], {"initial_prices": {"tABCUSD": 0.0}}, "initial_prices['tABCUSD']"),
    ],
)
def test_bad_configuration_names_the_field(symbols: object, kw: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        MarketFeed(symbols, np.random.default_rng(0), **kw)  # type: ignore[arg-type]
    assert info.value.field == field


def test_mts_and_order_ids() -> None:
    f = feed(1, epoch_s=1_600_000_000.0)
    assert f.mts(1.5) == 1_600_000_001_500
    assert f._order_id == 120_000_000_000  # none handed out yet: the first is 120_000_000_001, as before
    first = f.next_order_id()
    assert first == 120_000_000_001 and f._order_id == first
    assert [f.next_order_id() for _ in range(3)] == [first + 1, first + 2, first + 3]
    assert f._order_id == first + 3
    assert feed(2).next_order_id() == first  # per feed, not global


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.sampled_from(sorted(PRECISIONS)), st.sampled_from(LENGTHS))
def test_any_seed_keeps_views_consistent(seed: int, prec: str, length: int) -> None:
    f = feed(seed, symbols=("tXRPUSD",))
    key = channel_key("book", "tXRPUSD", prec, "F0", length)
    f.retain(key)
    client = ClientBook(json.loads(f.snapshot(key)[0]))
    for ev in f.advance(3.0):
        for text in ev.payloads.get(key, ()):
            client.apply(json.loads(text))
        if key in ev.checksums:
            assert client.checksum() == ev.checksums[key]


def test_checksum_matches_the_official_client_library_test_vector() -> None:
    # bfx-api-node-models' order book test: checksumArr([[6000,1,1],[5900,1,2],[6100,1,-3],[6200,1,-4]])
    # must equal CRC.str('6000:1:6100:-3:5900:2:6200:-4') (crc-32's signed result)
    expected = independent_signed_crc("6000:1:6100:-3:5900:2:6200:-4")
    assert checksum_of_levels([[6000, 1, 1], [5900, 1, 2], [6100, 1, -3], [6200, 1, -4]]) == expected
    raw = RawBook(0)
    raw.bids.update({6000: [1, 10_000], 5900: [1, 20_000]})
    raw.asks.update({6100: [1, 30_000], 6200: [1, 40_000]})
    view = BookView(raw, "P0", 25)
    assert view.checksum == expected
    assert json.loads(view.snapshot_text()) == [[6000, 1, 1], [5900, 1, 2], [6100, 1, -3], [6200, 1, -4]]
    # the same book aggregated to P2 (buckets of 100): asks round up, bids round down
    assert BookView(raw, "P2", 25).checksum == independent_signed_crc("6000:1:6100:-3:5900:2:6200:-4")


def test_the_constructor_draws_nothing_books_are_built_on_first_use() -> None:
    rng = np.random.default_rng(9)
    before = rng.bit_generator.state
    f = MarketFeed(["tBTCUSD", "tETHUSD"], rng)
    assert rng.bit_generator.state == before and f.next_time() == pytest.approx(0.1)
    assert f.advance(0.05) == [] and rng.bit_generator.state == before  # nothing due yet
    # the first snapshot builds the books; a twin feed that steps first sees the same market
    snap = f.snapshot("ticker:tETHUSD")[0]
    assert rng.bit_generator.state != before
    twin = feed(9)
    assert twin.snapshot("ticker:tETHUSD")[0] == snap
    assert stream(f, 20) == stream(feed(9), 20)
