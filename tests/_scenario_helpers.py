"""Shared by the scenario loader tests (test_scenario*.py): a small valid scenario document, and helpers that
change one key of it and assert the problem the loader reports for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.scenario import ScenarioError, parse_scenario

ROOT = Path(__file__).resolve().parent.parent

BUNDLED = sorted((ROOT / "scenarios").glob("*.yaml"))

BASE = """
name: test
duration: 30s
nodes:
  - id: node-a
    service: {distribution: exponential, mean: 2ms, workers: 2}
    api_keys: {key-1: secret-1}
    symbols: [tBTCUSD, tETHUSD]
  - id: node-b
    service: {distribution: constant, value: 1ms}
clients:
  connections:
    - {type: trading, node: node-a, count: 2, api_key: key-1}
    - {type: market_data, node: node-b}
  workload:
    - {type: trading, rate: 100/s}
"""


def base() -> dict[str, Any]:
    return yaml.safe_load(BASE)


def problems_of(doc: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc, "test.yaml", **kwargs)
    err = info.value
    assert (err.path, err.reason) == err.problems[0]
    assert str(err) == (f"test.yaml: {err.path}: {err.reason}" if err.path else f"test.yaml: {err.reason}")
    return list(err.problems)


def assert_problem(doc: Any, path: str, fragment: str, **kwargs: Any) -> None:
    problems = problems_of(doc, **kwargs)
    matches = [reason for p, reason in problems if p == path]
    assert matches, f"no problem at {path!r}; got {problems}"
    assert any(fragment in reason for reason in matches), f"{fragment!r} not in {matches}"


Mutation = Callable[[dict[str, Any]], None]


def put(path: str, value: Any) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        target: Any = d
        parts = path.replace("[", ".").replace("]", "").split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
        last = parts[-1]
        if value is DELETE:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return mutate


DELETE = object()
