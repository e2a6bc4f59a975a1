"""Tests of wsfinal.order_encoding: the quick encoders write exactly what the json module writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsfinal import order_encoding
from wsfinal.order_encoding import dumps as _dumps
from wsfinal.order_encoding import encode_frame as _encode_frame
from wsfinal.order_encoding import encode_order as _encode_order

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(_json)
def test_the_frame_encoder_writes_what_the_plain_encoder_writes(obj: Any) -> None:
    assert _encode_frame(obj) == _dumps(obj)


def test_the_frame_encoder_on_an_order_frame_and_on_what_json_cannot_encode() -> None:
    frame = [0, "on", None, {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.01", "price": 1e3, "cid": 7}]
    assert _encode_frame(frame) == '[0,"on",null,{"type":"EXCHANGE LIMIT","symbol":"tBTCUSD","amount":"0.01",' + (
        '"price":1000.0,"cid":7}]'
    )
    assert json.loads(_encode_frame(frame)) == frame
    with pytest.raises(TypeError, match="not JSON serializable"):
        _encode_frame([0, "on", None, {"x": object()}])


_fields = st.dictionaries(
    st.text(max_size=8) | st.sampled_from(["cid", "type", "\x7f", "é", "\ud800"]),
    st.text(max_size=12)
    | st.sampled_from(["\x7f", "a\x7f", "é", "\u2028", "\ud800", '\x00\x1f\\"/'])
    | st.integers(-(2**70), 2**70)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.lists(st.integers(), max_size=2),
    max_size=6,
)


@given(_fields)
def test_the_order_encoder_writes_what_the_frame_encoder_writes(fields: dict[str, Any]) -> None:
    assert _encode_order(fields) == _encode_frame([0, "on", None, fields])


def test_the_order_encoder_takes_orjsons_way_only_where_it_writes_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    import enum

    class Side(enum.Enum):
        BUY = "buy"

    plain = {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "flags": 0, "hidden": True, "gid": None}
    json_way = []
    monkeypatch.setattr(order_encoding, "encode_frame", lambda frame: json_way.append(frame) or _encode_frame(frame))
    assert json.loads(_encode_order(plain)) == [0, "on", None, plain] and not json_way
    for odd in ({"price": 1e16}, {"cid": 2**64}, {"x": "é"}, {"x": "\x7f"}, {1: "a"}, {"x": "\ud800"}):
        assert _encode_order(odd) == _encode_frame([0, "on", None, odd])
    assert len(json_way) == 6
    with pytest.raises(TypeError, match="not JSON serializable"):  # orjson would write "buy"
        _encode_order({"side": Side.BUY})
