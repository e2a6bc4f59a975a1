"""simulator.order_text, the exchange's hand-written order path texts: byte for byte what ``json`` gives (property
tests against the reference list and against ``json.loads``)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.bitfinex import Order


def _reference_note(session: Any, o: dict[str, Any], now: float, *, ok: bool, code: Any, text: str, oid: int) -> str:
    """The notification as a 32-field list through json (the original implementation): the oracle."""
    from simulator.bitfinex import _EVENT_DUMPS, ERR_UNKNOWN_EVENT, _number

    cid = o.get("cid") if type(o.get("cid")) is int else None
    gid = o.get("gid") if type(o.get("gid")) is int else None
    symbol = o.get("symbol") if isinstance(o.get("symbol"), str) and len(o["symbol"]) <= 32 else None
    order_type = o.get("type") if isinstance(o.get("type"), str) and len(o["type"]) <= 64 else None
    amount, price = _number(o.get("amount")), _number(o.get("price"))
    flags = o.get("flags") if type(o.get("flags")) is int and 0 <= o["flags"] < 2**31 else 0
    mts = session.market.mts(now)
    stamp = mts if ok else None
    order = [
        oid if ok else None, gid, cid, symbol, stamp, stamp, amount, amount, order_type, None,
        None, None, flags, "ACTIVE" if ok else None, None, None, price or 0, 0, 0, 0,
        None, None, None, 0, 1 if o.get("hidden") in (1, True) else 0, None, None, None, "API>BFX", None,
        None, None,
    ]  # fmt: skip
    if ok:
        side = "buy" if (amount or 0) > 0 else "sell"
        base = (symbol or "t???")[1:4] if symbol and ":" not in symbol else (symbol or "t?:").split(":")[0][1:]
        text = text or f"Submitting {(order_type or '').lower()} {side} order for {abs(amount or 0)} {base}."
    else:
        text = text or session.order_error_text(code or ERR_UNKNOWN_EVENT)
    note = [mts, "on-req", None, None, order, code, "SUCCESS" if ok else "ERROR", text]
    return '"n",' + _EVENT_DUMPS(note)


_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=2),
)

_any_fields = st.dictionaries(
    st.sampled_from(["cid", "gid", "symbol", "type", "amount", "price", "flags", "hidden", "meta"]), _scalar
)

_text = st.text(max_size=12)

_common_fields = st.fixed_dictionaries(
    {
        "type": st.one_of(_text, st.sampled_from(["EXCHANGE LIMIT", "EXCHANGE MARKET", "x" * 70])),
        "symbol": st.one_of(_text, st.sampled_from(["tBTCUSD", "tTEST:USD", "t" * 40])),
        "amount": st.one_of(_text, st.sampled_from(["0.1", "-2", "1e400", "nan", "0"])),
        "price": st.one_of(_text, st.sampled_from(["1000", "-1", "0"])),
        "cid": st.integers(-5, 2**60),
    }
)

_valid_fields = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["EXCHANGE LIMIT", "EXCHANGE MARKET", "LIMIT"]),
        "symbol": st.just("tBTCUSD"),
        "amount": st.sampled_from(["0.1", "-2", "3.5e-3"]),
        "price": st.sampled_from(["1000", "0.5"]),
        "cid": st.integers(0, 2**53 - 1),
    }
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(_any_fields, _common_fields, _valid_fields),
            st.booleans(),
            st.one_of(st.none(), st.integers(0, 30000)),
            st.sampled_from(["", "boom \u00e9"]),
            st.floats(0, 1e6),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_order_notifications_are_the_json_of_the_reference_list(calls: list[Any]) -> None:
    from simulator.bitfinex import ExchangeSession
    from simulator.market import MarketFeed

    session = ExchangeSession(market=MarketFeed(("tBTCUSD",), __import__("numpy").random.default_rng(1)))
    # flags 0: every frame is "[0," + payload + "]" (tests/test_bitfinex.py covers the flags' tails)
    for fields, ok, code, text, now in calls:  # one session: later calls hit the per-shape cache
        oid = session.market._order_id + 1
        got = session._notification(fields, now, ok=ok, code=code, text=text).text
        assert got == "[0," + _reference_note(session, fields, now, ok=ok, code=code, text=text, oid=oid) + "]"
        if type(fields.get("cid")) is int and 0 <= fields["cid"] < 2**53:
            assert session._order_problem(fields) == session._fields_problem(fields)
        # the order path proper: accepted orders carry their shape to order_done
        session.authenticated = True
        [action] = session._order([0, "on", None, fields], now)
        if isinstance(action, Order):
            oid = session.market._order_id + 1
            [sent, new] = session.order_done(action, now, ok=True)
            accepted = action.request[3]  # the fields, with the cid the exchange gave an order that had none
            note = _reference_note(session, accepted, now, ok=True, code=None, text="", oid=oid)
            assert sent.text == "[0," + note + "]"
            assert new.text == '[0,"on",' + json.dumps(json.loads(sent.text)[2][4], separators=(",", ":")) + "]"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
).map(json.dumps)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=30), _json_values),
    st.sampled_from(["", " ", "\n", "x", "\ufeff", "]", " 1"]),
    st.sampled_from(["", " ", "\ufeff", "\t"]),
)
def test_frames_parse_exactly_as_json_loads(body: str, tail: str, head: str) -> None:
    # The exchange's decoder gives json.loads's value and refuses what json refuses; only an integer beyond
    # 64 bits reads as a float (orjson)
    from json_rfc import int_within_64_bits

    from simulator.order_text import loads as _loads

    text = head + body + tail

    def outcome(parse: Any) -> str:
        try:
            return repr(("ok", parse(text)))
        except (ValueError, RecursionError) as exc:
            return repr(("error", type(exc)))

    assert outcome(_loads) == outcome(lambda t: json.loads(t, parse_int=int_within_64_bits))
