"""Sweep report charts: a success-rate axis never shows rates above 1."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.sweep_report import _chart, build_table


def _records(rates: list[float]) -> list[dict[str, Any]]:
    """Two loads x two seeds, ``rates`` in that order."""
    cells = [(load, seed) for load in (100, 200) for seed in (1, 2)]
    return [
        {
            "key": f"k{i}",
            "scenario_name": "demo",
            "strategy": "round_robin",
            "seed": seed,
            "params": {"rate": load},
            "metrics": {"success_rate": rate, "p99_ms": 10.0 + i},
        }
        for i, ((load, seed), rate) in enumerate(zip(cells, rates, strict=True))
    ]


SWEEP = {"parameters": {"rate": [100, 200]}, "report": {"x": "rate", "metrics": ["success_rate", "p99_ms"]},
         "strategies": ["round_robin"]}  # fmt: skip


@pytest.mark.parametrize("rates", [[1.0, 1.0, 1.0, 1.0], [0.999, 1.0, 0.998, 1.0], [0.5, 0.7, 0.9, 1.0]])
def test_success_rate_axis_capped_at_one(rates: list[float]) -> None:
    table = build_table(SWEEP, _records(rates))
    ax = _chart(table, "success_rate").axes[0]
    bottom, top = ax.get_ylim()
    assert top == 1.0
    assert bottom < min(rates)
    (line,) = ax.get_lines()
    assert not line.get_clip_on()  # markers at 1.0 drawn whole


def test_latency_axis_left_to_autoscale() -> None:
    table = build_table(SWEEP, _records([1.0, 1.0, 1.0, 1.0]))
    ax = _chart(table, "p99_ms").axes[0]
    bottom, top = ax.get_ylim()
    assert top > 12.5 and bottom < 10.5
    assert ax.get_lines()[0].get_clip_on()
