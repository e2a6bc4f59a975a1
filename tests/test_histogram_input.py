"""LatencyHistogram.from_dict refuses inconsistent data with the key, what was expected and what it got; to_dict
round-trips (through JSON too); clear() leaves an empty histogram, cheaply when it already is."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfinal.exceptions import ConfigurationError
from wsfinal.histogram import LatencyHistogram

QS = [0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0]
_VALUES = st.lists(st.floats(0.0, 5e6, allow_nan=False), max_size=150)


def _filled(values: list[float], bulk: list[float] | None = None) -> LatencyHistogram:
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    h.record_many(np.array(bulk or [], dtype=float))
    return h


def _sample_dict() -> dict[str, Any]:
    return _filled([0.5, 1.5, 1.5, 20.0, 3000.0]).to_dict()


def _rejected(data: Any, **kwargs: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        LatencyHistogram.from_dict(data, **kwargs)
    return info.value


def _same(a: LatencyHistogram, b: LatencyHistogram) -> bool:
    return (
        a.counts_equal(b)
        and (a.count, a.total) == (b.count, b.total)
        and (a.min, a.max) == (b.min, b.max)
        and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a.percentiles(QS), b.percentiles(QS)))
    )


# --- round trip -----------------------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(values=_VALUES, bulk=_VALUES, other=_VALUES)
def test_to_dict_from_dict_round_trip_through_json(values: list[float], bulk: list[float], other: list[float]) -> None:
    h = _filled(values, bulk)
    h.merge(_filled(other))
    back = LatencyHistogram.from_dict(json.loads(json.dumps(h.to_dict())))
    assert _same(back, h)
    assert back.to_dict() == h.to_dict()


def test_an_empty_histogram_round_trips() -> None:
    h = LatencyHistogram(0.02, lowest=1e-2, highest=1e4)
    back = LatencyHistogram.from_dict(json.loads(json.dumps(h.to_dict())))
    assert back.count == 0 and back.compatible(h) and math.isnan(back.percentile(50))


# --- any inconsistency is refused -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(values=_VALUES, delta=st.integers(-1000, 1000).filter(bool))
def test_any_change_of_count_is_refused(values: list[float], delta: int) -> None:
    data = _filled(values).to_dict()
    expected = data["count"]
    data["count"] = expected + delta
    err = _rejected(data)
    assert err.field == "count" and err.value == expected + delta
    assert f"expected {expected} (the sum of the bucket counts), got {expected + delta}" in str(err)


@settings(max_examples=60, deadline=None)
@given(values=_VALUES.filter(bool), data=st.data(), delta=st.integers(-3, 3).filter(bool))
def test_any_change_of_a_bucket_count_is_refused(values: list[float], data: st.DataObject, delta: int) -> None:
    d = _filled(values).to_dict()
    key = data.draw(st.sampled_from(sorted(d["counts"])))
    d["counts"][key] += delta
    err = _rejected(d)
    assert err.field in ("count", f"counts.{key}")  # a mismatch with count, or a negative bucket


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (lambda d: d["counts"].update({"17": -2}), "counts.17", "integer >= 0"),
        (lambda d: d["counts"].update({"17": 1.5}), "counts.17", "integer >= 0"),
        (lambda d: d["counts"].update({"17": True}), "counts.17", "integer >= 0"),
        (lambda d: d["counts"].update({"-1": 1}), "counts.-1", "out of range 0..1038"),
        (lambda d: d["counts"].update({"1039": 1}), "counts.1039", "out of range 0..1038"),
        (lambda d: d["counts"].update({"x": 1}), "counts.x", "is not an integer"),
        (lambda d: d.update(counts=[1, 2]), "counts", "expected a mapping"),
        (lambda d: d.update(count="5"), "count", "expected 5"),
        (lambda d: d.update(count=5.0), "count", "expected 5"),
        (lambda d: d.update(min=4000.0), "min", "min <= max"),
        (lambda d: d.update(min=-1.0), "min", "min <= max"),
        (lambda d: d.update(max=None), "max", "finite number"),
        (lambda d: d.update(max=math.inf), "max", "finite number"),
        (lambda d: d.update(min=0.3), "min", "no sample counted in its bucket"),
        (lambda d: d.update(max=900.0), "counts.", "outside min..max"),
        (lambda d: d.update(total=1e9), "total", "outside min..max"),
        (lambda d: d.update(total=math.nan), "total", "finite number"),
        (lambda d: d.update(alpha=0.7), "alpha", "(0, 0.5)"),
        (lambda d: d.update(lowest="1e-3"), "lowest", "finite number"),
        (lambda d: d.update(sum=1), "sum", "unknown key"),
        (lambda d: d.pop("total"), "total", "missing"),
    ],
)
def test_inconsistent_fields_are_named(change: Any, field: str, fragment: str) -> None:
    data = _sample_dict()
    change(data)
    err = _rejected(data)
    assert err.field.startswith(field) and fragment in str(err), str(err)


def test_min_and_max_of_an_empty_histogram_must_be_null() -> None:
    data = LatencyHistogram().to_dict()
    data["min"] = 1.0
    assert _rejected(data).field == "min"
    data = LatencyHistogram().to_dict()
    data["total"] = 3.0
    assert _rejected(data).field == "total"


def test_a_bucket_given_twice_is_refused() -> None:
    data = _sample_dict()
    key = sorted(data["counts"])[0]
    data["counts"]["0" + key] = 1
    err = _rejected(data)
    assert err.field == f"counts.0{key}" and "given twice" in str(err)


def test_the_key_path_of_an_embedded_histogram_prefixes_the_field() -> None:
    data = _sample_dict()
    data["count"] += 1
    err = _rejected(data, path="latency.histogram")
    assert err.field == "latency.histogram.count"
    assert str(err).startswith("latency.histogram.count=6: expected 5")
    assert _rejected([1, 2], path="latency.histogram").field == "latency.histogram"
    assert _rejected(None).field == "histogram"


# --- clear ----------------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(values=_VALUES, bulk=_VALUES, other=_VALUES)
def test_clear_leaves_a_histogram_equal_to_a_new_one(
    values: list[float], bulk: list[float], other: list[float]
) -> None:
    h = _filled(values, bulk)
    h.merge(_filled(other))
    h.clear()
    fresh = LatencyHistogram()
    assert h.counts_equal(fresh) and h.to_dict() == fresh.to_dict()
    h.clear()  # clearing an empty one changes nothing
    assert h.to_dict() == fresh.to_dict()
    h.record(7.0)
    assert h.count == 1 and h.percentile(50) == pytest.approx(7.0, rel=0.01)
