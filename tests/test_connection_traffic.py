"""wsfinal.traffic, the request path of ManagedConnection (its behaviour is tested live in test_connection.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsfinal.traffic import _dumps, _encode_frame

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
