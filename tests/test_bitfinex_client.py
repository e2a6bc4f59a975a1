"""The pure Bitfinex client: frame parsing, sequence gaps, book checksums, subscriptions, the client protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from json_rfc import int_within_64_bits, rfc8259

from simulator.bitfinex import ExchangeSession, Send
from simulator.market import MarketFeed
from wsfinal import bitfinex_client as bfx
from wsfinal.exceptions import ProtocolViolation


def test_a_pong_is_passed_on_for_the_connection_to_time_its_ping() -> None:
    proto = bfx.ClientProtocol(max_frame_bytes=1 << 20)
    assert proto.receive('{"event":"pong","cid":3,"ts":1700000000000}', 5.0) == [bfx.Pong(3)]
    assert proto.receive('{"event":"pong","ts":1}', 5.0) == [bfx.Pong(None)]  # no cid: nobody's ping


# --- sequence numbers ----------------------------------------------------------------------------------------


def test_sequence_tracker_reports_gaps_and_stale_frames() -> None:
    tracker = bfx.SequenceTracker()
    assert [tracker.check(n) for n in (5, 6, 7)] == ["ok", "ok", "ok"]
    assert tracker.check(9) == "gap"  # 8 lost
    assert tracker.check(9) == "stale"  # duplicate
    assert tracker.check(8) == "stale"  # late, reordered
    assert tracker.check(10) == "ok"
    assert (tracker.gaps, tracker.stale) == (1, 2)
    tracker.reset()
    assert tracker.check(1) == "ok"


# --- the client protocol against the simulator's exchange session ---------------------------------------


def _exchange(seed: int = 1) -> tuple[ExchangeSession, MarketFeed]:
    feed = MarketFeed(["tBTCUSD"], np.random.default_rng(seed), update_interval_s=0.1)
    return ExchangeSession(market=feed, heartbeat_interval_s=15.0), feed


def _texts(actions: list[object]) -> list[str | bytes]:
    return [a.text for a in actions if isinstance(a, Send)]


def _subscribe_book(proto: bfx.ClientProtocol, session: ExchangeSession) -> list[bfx.Action]:
    out: list[bfx.Action] = []
    for text in _texts(session.on_open(0.0)):
        out += proto.receive(text)
    for frame in proto.opening_frames():
        for text in _texts(session.on_message(json.dumps(frame), 0.0)):
            out += proto.receive(text)
    _, request = proto.subscriptions.add("book", {"symbol": "tBTCUSD", "prec": "P0", "len": "25"})
    for text in _texts(session.on_message(json.dumps(request), 0.0)):
        out += proto.receive(text)
    return out


def test_a_simulated_book_stream_verifies_its_checksums_and_sequence() -> None:
    session, feed = _exchange()
    proto = bfx.ClientProtocol(max_frame_bytes=1 << 20)
    actions = _subscribe_book(proto, session)
    assert not [a for a in actions if isinstance(a, bfx.Problem)]
    now = 0.0
    for _ in range(200):
        now += 0.1
        for text in _texts(session.on_market(feed.advance(now), now)):
            problems = [a for a in proto.receive(text) if isinstance(a, bfx.Problem)]
            assert not problems, problems
    assert proto.checksums_verified > 100
    assert proto.checksum_mismatches == 0 and proto.sequence.gaps == 0


def test_a_lost_frame_is_a_gap_and_a_corrupt_book_a_mismatch_both_answered_by_resubscribing() -> None:
    session, feed = _exchange(2)
    proto = bfx.ClientProtocol(max_frame_bytes=1 << 20)
    _subscribe_book(proto, session)
    texts: list[str | bytes] = []
    now = 0.0
    while len(texts) < 6:
        now += 0.1
        texts += _texts(session.on_market(feed.advance(now), now))
    actions = proto.receive(texts[0])
    actions = proto.receive(texts[2])  # texts[1] lost on the way
    kinds = [a.kind for a in actions if isinstance(a, bfx.Problem)]
    assert kinds == ["sequence_gap"]
    sent = [a.message for a in actions if isinstance(a, bfx.SendFrame)]
    assert [m["event"] for m in sent] == ["unsubscribe", "subscribe"]
    assert proto.resubscribes == 1 and proto.sequence.gaps == 1

    # a corrupted update: the next checksum cannot match
    session2, feed2 = _exchange(3)
    proto2 = bfx.ClientProtocol(max_frame_bytes=1 << 20)
    _subscribe_book(proto2, session2)
    sub = next(iter(proto2.subscriptions))
    assert sub.book is not None
    sub.book.bids[123456.0] = (123456.0, 123456.0, 1.0)
    mismatch: list[bfx.Action] = []
    while not mismatch and now < 100:
        now += 0.1
        for text in _texts(session2.on_market(feed2.advance(now), now)):
            mismatch += [a for a in proto2.receive(text) if isinstance(a, bfx.Problem)]
    assert [p.kind for p in mismatch if isinstance(p, bfx.Problem)] == ["checksum_mismatch"]
    assert proto2.checksum_mismatches == 1 and proto2.resubscribes == 1


def test_info_codes_oversized_and_malformed_frames_become_actions() -> None:
    proto = bfx.ClientProtocol(max_frame_bytes=100)
    proto.subscriptions.add("ticker", {"symbol": "tBTCUSD"})
    proto.handle(bfx.Subscribed(4, "ticker", {"symbol": "tBTCUSD"}))
    assert isinstance(proto.receive('{"event":"info","code":20051}')[-1], bfx.ReconnectRequested)
    started = proto.receive('{"event":"info","code":20060}')
    assert proto.paused and bfx.Notice("maintenance", {"active": True}) in started
    ended = proto.receive('{"event":"info","code":20061}')
    assert not proto.paused
    assert [a.message["event"] for a in ended if isinstance(a, bfx.SendFrame)] == ["unsubscribe", "subscribe"]
    assert [a.kind for a in proto.receive("x" * 101) if isinstance(a, bfx.Problem)] == ["oversized"]
    assert [a.kind for a in proto.receive("é" * 60) if isinstance(a, bfx.Problem)] == ["oversized"]  # 120 bytes
    assert [a.kind for a in proto.receive("{nope") if isinstance(a, bfx.Problem)] == ["malformed"]
    assert proto.receive(b'[4,"hb"]') == []  # binary frames are decoded as well


def test_a_gap_refreshes_every_book_and_the_channel_it_was_seen_on() -> None:
    proto = bfx.ClientProtocol(max_frame_bytes=1 << 20)
    for chan, (channel, params) in enumerate(
        [("book", {"symbol": "tBTCUSD"}), ("trades", {"symbol": "tBTCUSD"}), ("ticker", {"symbol": "tETHUSD"})],
        start=1,
    ):
        proto.subscriptions.add(channel, params)
        proto.handle(bfx.Subscribed(chan, channel, {"channel": channel, **params}))
    proto.receive("[2,[1,2,3,4],1]")
    actions = proto.receive("[2,[1,2,3,4],3]")  # seq 2 lost: it may have been a book update
    refreshed = [a.detail["key"][0] for a in actions if isinstance(a, bfx.Notice) and a.kind == "resubscribe"]
    assert sorted(refreshed) == ["book", "trades"]  # not the ticker: its next message replaces its state anyway
    assert proto.receive("[3,[1],4]")[-1] == bfx.Deliver(proto.subscriptions.by_chan(3), bfx.ChannelData(3, [1], 4))
    assert proto.receive('[0,"n",[0,"on-req",null,null,[1,null,7],null,"SUCCESS",""],5,1]') == [
        bfx.Answer(7, True, None, "")
    ]
    assert proto.receive('[0,"n",[0,"on-req",null,null,[1,null,7],null,"SUCCESS",""],5,1]')[0].kind == (  # type: ignore[union-attr]
        "sequence_stale"
    )


@given(
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=5)
                | st.dictionaries(st.sampled_from(["event", "chanId", "code", "channel", "status"]), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(json.dumps),
    )
)
def test_the_client_protocol_never_raises_on_any_frame(frame: str | bytes) -> None:
    proto = bfx.ClientProtocol(max_frame_bytes=150)
    proto.subscriptions.add("book", {"symbol": "tBTCUSD"})
    proto.handle(bfx.Subscribed(0, "book", {"channel": "book", "symbol": "tBTCUSD"}))
    proto.handle(bfx.Subscribed(1, "book", {"channel": "book", "symbol": "tBTCUSD"}))
    for _ in range(2):
        actions = proto.receive(frame)
        assert all(
            isinstance(
                a,
                bfx.Answer
                | bfx.SendFrame
                | bfx.Problem
                | bfx.Notice
                | bfx.ReconnectRequested
                | bfx.AuthAnswer
                | bfx.Deliver,
            )
            for a in actions
        )


def test_orphan_channels_are_released_and_released_again_if_they_keep_streaming() -> None:
    proto = bfx.ClientProtocol(max_frame_bytes=1 << 20, release_retry_s=5.0)
    first = proto.receive("[42,[1,2,3]]", now=10.0)
    assert [a.message for a in first if isinstance(a, bfx.SendFrame)] == [{"event": "unsubscribe", "chanId": 42}]
    assert not [a for a in proto.receive('[42,"hb"]', now=12.0) if isinstance(a, bfx.SendFrame)]  # asked already
    again = proto.receive('[42,"hb"]', now=15.0)  # still streaming 5 s later: our unsubscribe was lost
    assert [a.message for a in again if isinstance(a, bfx.SendFrame)] == [{"event": "unsubscribe", "chanId": 42}]
    proto.receive('{"event":"unsubscribed","status":"OK","chanId":42}', now=15.1)
    assert proto.orphans_released == 2
    assert proto.receive('[0,"hb"]', now=20.0) == []  # the account channel is never released


def test_unconfirmed_subscriptions_become_overdue_after_the_timeout() -> None:
    proto = bfx.ClientProtocol(max_frame_bytes=1 << 20)
    proto.subscriptions.add("ticker", {"symbol": "tBTCUSD"}, now=1.0)
    assert proto.overdue_subscriptions(1.5, 1.0) == []
    actions = proto.overdue_subscriptions(2.0, 1.0)
    assert [a.kind for a in actions if isinstance(a, bfx.Problem)] == ["subscribe_timeout"]
    assert [a.message["event"] for a in actions if isinstance(a, bfx.SendFrame)] == ["subscribe"]
    assert proto.overdue_subscriptions(2.5, 1.0) == []  # requested again at 2.0
    proto.receive('{"event":"subscribed","channel":"ticker","chanId":5,"symbol":"tBTCUSD"}', now=2.6)
    assert proto.overdue_subscriptions(10.0, 1.0) == []


_json_scalars = (
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["SUCCESS", "ERROR", "x", "on-req", ""])
)


@st.composite
def notification_frames(draw: st.DrawFn) -> list:
    """``[0, "n", payload, seq?]`` frames, well-formed or not, as the request path's fast parser sees them."""
    order = draw(
        st.one_of(
            st.lists(_json_scalars | st.integers(0, 10**6), min_size=0, max_size=5),
            st.dictionaries(st.sampled_from(["cid", "id"]), _json_scalars | st.integers(0, 10**6), max_size=2),
            _json_scalars,
        )
    )
    payload = [
        draw(st.integers(0, 10**12)),
        draw(st.sampled_from(["on-req", "oc-req", "ou-req", "te", "on", 5])),
        None,
        None,
        order,
        draw(st.none() | st.integers(0, 20000) | st.just("10001") | st.just(True)),
        draw(st.sampled_from(["SUCCESS", "ERROR", "FAILURE", None])),
        draw(st.sampled_from(["ok", "", None, 7])),
    ][: draw(st.integers(5, 8))]
    frame: list = [draw(st.sampled_from([0, 0, 0, False, 1])), "n", draw(st.sampled_from([payload, payload, None, 3]))]
    if draw(st.booleans()):
        frame.append(draw(st.none() | st.integers(0, 5) | st.just(True)))
    return frame


@st.composite
def channel_zero_frames(draw: st.DrawFn) -> list:
    """``[0, TYPE, DATA, SEQ?, AUTH_SEQ?]`` frames other than notifications (order updates, trades, snapshots,
    heartbeats, checksums), well-formed or not."""
    frame: list = [
        draw(st.sampled_from([0, 0, 0, False, 0.0, 2])),
        draw(st.sampled_from(["on", "ou", "oc", "te", "ws", "hb", "cs", 5, None, [1]])),
        draw(st.none() | st.lists(_json_scalars, max_size=4) | _json_scalars),
    ]
    for _ in range(draw(st.integers(0, 2))):
        frame.append(draw(st.integers(0, 6) | st.none() | st.just(True) | st.just("3")))
    return frame[: draw(st.integers(2, len(frame)))]


def general_receive(proto: bfx.ClientProtocol, text: str, *, deliver: bool) -> list[bfx.Action]:
    """What ClientProtocol.receive must give, the long way round: decode, parse, handle, and filter."""
    try:
        actions = proto.handle(bfx.parse(bfx.decode(text)), 1.0)
    except ProtocolViolation as exc:
        return [bfx.Problem("malformed", str(exc))]
    return actions if deliver else [a for a in actions if not isinstance(a, bfx.Deliver)]


@given(
    st.lists(notification_frames() | channel_zero_frames(), min_size=1, max_size=8),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_fast_channel_zero_path_gives_what_the_general_parser_gives(
    frames: list, sequence_checks: bool, deliver: bool, subscribed_zero: bool
) -> None:
    # receive() reads the two channel-0 frames of each request (its answer and the order update that follows)
    # without the general parser; for any channel-0 frame, well-formed or not, in order or not, it must give the
    # same actions and leave the same state. A subscription on channel 0 sends data frames the general way.
    fast = bfx.ClientProtocol(max_frame_bytes=10**6, sequence_checks=sequence_checks)
    general = bfx.ClientProtocol(max_frame_bytes=10**6, sequence_checks=sequence_checks)
    if subscribed_zero:
        for proto in (fast, general):
            proto.subscriptions.add("book", {"symbol": "tBTCUSD"})
            proto.handle(bfx.Subscribed(0, "book", {"channel": "book", "symbol": "tBTCUSD"}))
    for frame in frames:
        text = json.dumps(frame)
        assert fast.receive(text, 1.0, deliver=deliver) == general_receive(general, text, deliver=deliver)
    assert (fast.sequence.last, fast.sequence.gaps, fast.sequence.stale, fast.resubscribes) == (
        general.sequence.last,
        general.sequence.gaps,
        general.sequence.stale,
        general.resubscribes,
    )


def test_the_fast_paths_on_the_frames_of_a_request() -> None:
    proto = bfx.ClientProtocol(max_frame_bytes=1 << 20)
    note = '[0,"n",[0,"on-req",null,null,[12,null,7,"tBTCUSD"],null,"SUCCESS","ok"],%d,1]'
    update = '[0,"on",[12,null,7,"tBTCUSD"],%d,2]'
    assert proto.receive(note % 1) == [bfx.Answer(7, True, None, "ok")]
    assert proto.receive(update % 2) == [bfx.Deliver(None, bfx.ChannelData(0, [12, None, 7, "tBTCUSD"], 2, "on"))]
    assert proto.receive(update % 3, deliver=False) == []
    assert proto.sequence.last == 3
    # out of order: the general path reports it (and the tracker counts it) either way
    gap = proto.receive(update % 5, deliver=False)
    assert [a.kind for a in gap if isinstance(a, bfx.Problem)] == ["sequence_gap"]
    assert not [a for a in gap if isinstance(a, bfx.Deliver)]
    assert [a.kind for a in proto.receive(note % 5) if isinstance(a, bfx.Problem)] == ["sequence_stale"]
    assert proto.receive(note % 7) == [
        bfx.Problem("sequence_gap", "seq 7 on channel 0", emit=False),
        bfx.Answer(7, True, None, "ok"),
    ]
    assert (proto.sequence.gaps, proto.sequence.stale) == (2, 1)


#: JSON documents with a little text around them (none, whitespace, or junk that makes them invalid).
_JSON_TEXTS = st.builds(
    lambda value, before, after: before + json.dumps(value) + after,
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=8,
    ),
    st.sampled_from(["", " ", "\n"]),
    st.sampled_from(["", " ", "x", "]", "{}"]),
)


@given(
    st.one_of(
        st.text(max_size=30),
        st.binary(max_size=30),
        _JSON_TEXTS,
    )
)
@example(b"\x000")  # UTF-16-BE "0" to json.loads(bytes); not UTF-8, so malformed
@example(b"\xef\xbb\xbf0")  # a UTF-8 byte order mark
def test_receive_decodes_as_json_loads(text: str | bytes) -> None:
    # receive() decodes with orjson: json.loads's values for every RFC 8259 document, a "malformed" problem naming
    # the frame's size for everything json refuses too
    proto = bfx.ClientProtocol(max_frame_bytes=10**6)
    other = bfx.ClientProtocol(max_frame_bytes=10**6)
    got = proto.receive(text)
    try:
        # the reference reads bytes as UTF-8, as RFC 8259 (section 8.1) requires of JSON between systems: json.loads
        # would also guess UTF-16 and UTF-32 from the first bytes (b"\x000" is "0" in UTF-16-BE to it)
        value = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, UnicodeDecodeError):
        assert len(got) == 1 and got[0].kind == "malformed"
        assert got[0].message.startswith(f"undecodable frame ({len(text)} bytes): ")
        return
    if not rfc8259(value):  # NaN and the like are refused; a huge integer reads as a float: no exception either way
        assert isinstance(got, list)
        return
    try:
        expected = other.handle(bfx.parse(value))
    except ProtocolViolation as exc:
        expected = [bfx.Problem("malformed", str(exc))]
    assert repr(got) == repr(expected)


@given(
    st.one_of(
        st.text(max_size=30),
        _JSON_TEXTS,
    )
)
def test_the_frame_decoder_is_json_loads(text: str) -> None:
    # Within RFC 8259 (and 64-bit integers) the decoder gives json.loads's value; what json refuses, it refuses
    try:
        expected: object = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            bfx._loads(text)
        return
    if rfc8259(expected):
        assert json.dumps(bfx._loads(text)) == json.dumps(expected)
    else:  # NaN, Infinity, unpaired surrogates are refused; an integer beyond 64 bits reads as a float
        try:
            got = bfx._loads(text)
        except ValueError:
            return
        assert json.dumps(got) == json.dumps(json.loads(text, parse_int=int_within_64_bits))


def test_an_unanswered_conf_is_sent_again_until_the_exchange_confirms_it() -> None:
    # A conf frame garbled on its way gets an error 10000, not a conf answer: without a retry the session would
    # never get checksums or sequence numbers.
    proto = bfx.ClientProtocol(max_frame_bytes=1 << 20)
    (conf,) = proto.opening_frames(now=1.0)
    assert conf["event"] == "conf"
    assert proto.overdue_subscriptions(1.5, 1.0) == []
    proto.receive('{"event":"error","code":10000,"msg":"Unknown event"}', now=1.6)
    actions = proto.overdue_subscriptions(2.0, 1.0)
    assert [a.kind for a in actions if isinstance(a, bfx.Problem)] == ["conf_timeout"]
    assert [a.message for a in actions if isinstance(a, bfx.SendFrame)] == [conf]
    assert proto.conf_retries == 1
    assert proto.overdue_subscriptions(2.5, 1.0) == []  # sent again at 2.0
    proto.receive(json.dumps({"event": "conf", "status": "OK", "flags": conf["flags"]}), now=2.6)
    assert proto.conf_sent_at is None
    assert proto.overdue_subscriptions(10.0, 1.0) == []
    # a fresh channel starts over
    assert proto.opening_frames(now=20.0) == [conf] and proto.conf_sent_at == 20.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[0, 19000000000000000000]", [0, 1.9e19]),  # beyond 64 bits: the nearest float
        ("[18446744073709551615, -9223372036854775808]", [2**64 - 1, -(2**63)]),  # the 64-bit edges, exact
        ('[1.5, "\\u00e9", {"a": null}]', [1.5, "é", {"a": None}]),
    ],
)
def test_the_frame_decoder_at_the_edges(text: str, expected: object) -> None:
    got = bfx._loads(text)
    assert got == expected and [type(v) for v in got] == [type(v) for v in expected]  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", "[1e400]", '["\\ud800"]', b"\xff", "\ufeff[1]", "[1]x", ""])
def test_the_frame_decoder_refuses_what_rfc_8259_refuses(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        bfx._loads(text)
    [problem] = bfx.ClientProtocol(max_frame_bytes=1 << 20).receive(text)
    assert problem.kind == "malformed" and problem.message.startswith(f"undecodable frame ({len(text)} bytes): ")
