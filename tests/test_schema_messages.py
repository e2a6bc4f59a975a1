"""One translator of JSON Schema errors (simulator.scenario_problems) for scenario, sweep and gate suite files: every
problem is one "FILE: key.path: reason" line, the reason naming the offending value."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from benchmarks.gate import _VALIDATOR as SUITE_VALIDATOR
from benchmarks.sweep import SWEEP_SCHEMA, SweepError, parse_sweep
from simulator.scenario import ScenarioError, parse_scenario
from simulator.scenario_problems import format_path, format_problem, problem_lines, schema_problems

SWEEP_VALIDATOR = Draft202012Validator(SWEEP_SCHEMA)
VALID_SWEEP: dict[str, Any] = {
    "scenarios": ["a.yaml"],
    "strategies": ["round_robin"],
    "seeds": 2,
    "set": {"duration": "5s"},
    "parameters": {"clients.workload[0].rate": ["100/s", "200/s"]},
    "report": {"x": "clients.workload[0].rate", "metrics": ["p99_ms"]},
}


def test_format_problem_and_lines() -> None:
    assert format_problem("f.yaml", "a.b[0]", "bad") == "f.yaml: a.b[0]: bad"
    assert format_problem("f.yaml", "", "the document is empty") == "f.yaml: the document is empty"
    assert problem_lines("f", [("x", "r1"), ("", "r2")]) == ["f: x: r1", "f: r2"]


def test_the_valid_sweep_has_no_problems() -> None:
    assert schema_problems(SWEEP_VALIDATOR, VALID_SWEEP) == []


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"seedz": 3}, "seedz: unknown key 'seedz'; did you mean 'seeds'?"),
        ({"foo": 1}, "foo: unknown key 'foo'; allowed keys: name, description, scenarios, strategies, seeds, "),
        ({"strategies": "round_robin"}, "strategies: 'round_robin' is not valid here (expected 'all' or a list "),
        ({"seeds": 0}, "seeds: must be >= 1, got 0"),
        ({"seeds": [1, -1]}, "seeds[1]: must be >= 0, got -1"),
        ({"seeds": "three"}, "seeds: 'three' is not valid here (expected a count"),
        ({"parameters": {"rate 2": [1]}}, "parameters[\"rate 2\"]: key 'rate 2': not a key path like clients."),
        ({"set": {"a..b": 1}}, "set[\"a..b\"]: key 'a..b': not a key path like clients.workload[0].rate"),
        ({"parameters": {"duration": []}}, "parameters.duration: must have at least 1 item(s), got 0"),
        ({"report": {"x": "a b"}}, "report.x: 'a b' is not a key path like clients.workload[0].rate"),
        ({"report": {"metrics": ["p98_ms"]}}, "report.metrics[0]: 'p98_ms' is not one of: p50_ms, "),
        ({"mode": "lve"}, "mode: 'lve' is not one of: virtual, live; did you mean 'live'?"),
        ({"set": {1: 2}}, "set: key 1 must be a string, got an integer (1)"),
        ({"base_seed": float("nan")}, "base_seed: must be a finite number, got nan"),
    ],
)
def test_sweep_problems_name_file_key_path_and_value(change: dict[str, Any], line: str) -> None:
    document = {**VALID_SWEEP, **change}
    with pytest.raises(SweepError) as info:
        parse_sweep(document, "sweep.yaml")
    lines = str(info.value).splitlines()
    assert any(text.startswith(f"sweep.yaml: {line}") for text in lines), lines


def test_every_sweep_problem_is_one_line_in_document_order() -> None:
    document = {"scenarios": [], "strategies": ["round_robin"], "mode": "lve", "report": {"x": "a b"}}
    with pytest.raises(SweepError) as info:
        parse_sweep(document, "sweep.yaml")
    assert str(info.value).splitlines() == [
        "sweep.yaml: scenarios: must have at least 1 item(s), got 0",
        "sweep.yaml: mode: 'lve' is not one of: virtual, live; did you mean 'live'?",
        "sweep.yaml: report.x: 'a b' is not a key path like clients.workload[0].rate",
    ]


def test_missing_keys_are_named_after_their_mapping() -> None:
    assert schema_problems(SWEEP_VALIDATOR, {"strategies": "all"}) == [("scenarios", "missing: this key is required")]


def test_gate_suite_problems_use_the_same_wording() -> None:
    suite = {
        "scenarios": [{"path": "a.yaml", "set": {"x y": 1}}],
        "strategies": ["round_robin"],
        "metrics": {"p42_ms": {"worse": "up"}},
    }
    assert schema_problems(SUITE_VALIDATOR, suite) == [
        ('scenarios[0].set["x y"]', "key 'x y': not a key path like clients.workload[0].rate (names and [index] "
         "joined by dots)"),
        ("metrics.p42_ms", "unknown key 'p42_ms'; expected one of: success_rate, p50_ms, p90_ms, p95_ms, p99_ms, "
         "p99_9_ms, mean_ms, max_ms, reconnects, alerts_fired; did you mean 'p99_ms'?"),
        ("metrics.p42_ms.worse", "'up' is not one of: higher, lower"),
    ]  # fmt: skip
    assert schema_problems(SUITE_VALIDATOR, {**suite, "metrics": {}}) == [
        ("scenarios[0].set[\"x y\"]", "key 'x y': not a key path like clients.workload[0].rate (names and [index] "
         "joined by dots)"),
        ("metrics", "must have at least 1 key(s), got 0"),
    ]  # fmt: skip


def test_gate_suite_file_error_lines(tmp_path: Path) -> None:
    from benchmarks.gate import load_suite

    path = tmp_path / "suite.yaml"
    path.write_text("scenarios: [{path: a.yaml}]\nstrategies: [round_robin]\nmetrics: {p42_ms: {worse: higher}}\n")
    with pytest.raises(SweepError) as info:
        load_suite(path)
    assert str(info.value).startswith(f"{path}: metrics.p42_ms: unknown key 'p42_ms'; expected one of: ")


def test_scenario_keys_are_checked_with_their_own_path() -> None:
    doc = {
        "name": "t",
        "duration": "5s",
        "nodes": [{"id": "a", "service": {"distribution": "constant", "value": "1ms"}, "api_keys": {"": "s"}}],
        "clients": {"connections": [{"type": "market_data", "node": "a"}]},
    }
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc, "s.yaml")
    err = info.value
    assert (err.path, err.reason) == ('nodes[0].api_keys[""]', "a key must not be empty")
    assert str(err) == format_problem("s.yaml", err.path, err.reason)
    assert err.lines() == problem_lines("s.yaml", err.problems)


@pytest.mark.parametrize(
    ("schema", "document", "expected"),
    [
        ({"const": "all"}, "some", ("", "must be 'all', got a string ('some')")),
        ({"type": "array", "uniqueItems": True}, [1, 2, 1], ("", "must not repeat items, got 1 more than once")),
        (
            {"oneOf": [{"type": "string"}, {"type": "integer"}], "description": "a name or a number"},
            [1],
            ("", "[1] is not valid here (expected a name or a number)"),
        ),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 1.5, ("", "1.5 is not valid here")),
        (
            {"type": "object", "properties": {"n": {"type": "integer", "x-message": "{value} is not a count"}}},
            {"n": "x"},
            ("n", "'x' is not a count"),
        ),
        (
            {"type": "object", "propertyNames": {"maxLength": 2}},
            {"abc": 1},
            ("abc", "key 'abc': 'abc' is too long"),
        ),
        ({"type": "object", "maxProperties": 1}, {"a": 1, "b": 2}, ("", "must have at most 1 key(s), got 2")),
    ],
)
def test_keywords_beyond_the_scenario_schema(schema: dict[str, Any], document: Any, expected: tuple[str, str]) -> None:
    assert schema_problems(Draft202012Validator(schema), document) == [expected]


def test_a_long_value_is_cut_short() -> None:
    schema = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    ((path, reason),) = schema_problems(Draft202012Validator(schema), {"k": "v" * 500})
    assert path == "" and len(reason) < 120 and "..." in reason


# --- properties -----------------------------------------------------------------------------------------------------

_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_ 0123456789", min_size=0, max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False) | _KEYS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=10,
)


def _paths(document: Any) -> set[str]:
    out: set[str] = set()
    stack: list[tuple[Any, list[str | int]]] = [(document, [])]
    while stack:
        value, parts = stack.pop()
        out.add(format_path(parts))
        if isinstance(value, dict):
            stack.extend((v, [*parts, k]) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, [*parts, i]) for i, v in enumerate(value))
    return out


def _parent(path: str) -> str:
    return path[: max(path.rfind("."), path.rfind("["), 0)]


@settings(max_examples=150, deadline=None)
@given(
    where=st.lists(st.sampled_from([*VALID_SWEEP, "report", "other", "set", "parameters"]), min_size=1, max_size=3),
    values=st.lists(_JSON, min_size=3, max_size=3),
    inner_key=_KEYS,
)
def test_every_problem_points_into_the_document(where: list[str], values: list[Any], inner_key: str) -> None:
    # mutate a valid sweep: replace top-level values, or add a key inside a mapping; each problem's key path is
    # a place in the document, or a missing key of a mapping that is there
    document = copy.deepcopy(VALID_SWEEP)
    for key, value in zip(where, values):
        if isinstance(document.get(key), dict) and values[0] is None:
            document[key][inner_key] = value
        else:
            document[key] = value
    problems = schema_problems(SWEEP_VALIDATOR, document)
    paths = _paths(document)
    for path, reason in problems:
        assert isinstance(reason, str) and reason and "\n" not in reason
        assert path in paths or _parent(path) in paths, (path, reason)
    assert len(problems) == len(set(problems))
    assert schema_problems(SWEEP_VALIDATOR, document) == problems  # deterministic
