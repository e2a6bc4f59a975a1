"""Report rendering time for a 20-run comparison, against rendering one bare matplotlib figure as the yardstick.

Run: ``.venv/bin/python -m pytest -m benchmark --benchmark-only tests/test_bench_reports.py``. The comparison
(latency-spike, 4 strategies x 5 seeds, virtual time) is made once per session by the fixture (about a minute
on two cores); only the rendering is timed: loading 20 run directories, drawing 7 charts, writing the HTML.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from benchmarks.compare import ComparisonResult, compare
from reports.charts import render_charts
from reports.html import load_runs, render_report
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = "round_robin,least_connections,power_of_two_choices,peak_ewma"
# The fixture's 20 runs take one to several minutes depending on the machine's load.
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def twenty_runs(tmp_path_factory: pytest.TempPathFactory) -> ComparisonResult:
    scenario = load_scenario(ROOT / "scenarios" / "latency-spike.yaml")
    result = compare(scenario, STRATEGIES, 5, "virtual", 2, tmp_path_factory.mktemp("bench-report"))
    assert len(result.runs) == 20
    return result


@pytest.mark.benchmark(group="report")
def test_bench_render_report_20_runs(benchmark: object, twenty_runs: ComparisonResult, tmp_path: Path) -> None:
    path = benchmark.pedantic(  # type: ignore[attr-defined]
        render_report, args=(twenty_runs.data, twenty_runs.out, tmp_path), rounds=3, iterations=1
    )
    assert path.stat().st_size > 100_000


@pytest.mark.benchmark(group="report")
def test_bench_charts_only_20_runs(benchmark: object, twenty_runs: ComparisonResult) -> None:
    runs = load_runs(twenty_runs.data, twenty_runs.out)
    charts = benchmark.pedantic(  # type: ignore[attr-defined]
        render_charts, args=(runs, twenty_runs.data["scenario"]), rounds=3, iterations=1
    )
    assert len(charts) == 7


@pytest.mark.benchmark(group="report")
def test_bench_load_20_runs(benchmark: object, twenty_runs: ComparisonResult) -> None:
    runs = benchmark.pedantic(load_runs, args=(twenty_runs.data, twenty_runs.out), rounds=3, iterations=1)  # type: ignore[attr-defined]
    assert sum(len(v) for v in runs.values()) == 20


def bare_figure_png() -> bytes:
    """The yardstick: one 9x4.5 in figure with a 1,000-point line, saved as PNG at the report's DPI."""
    fig = Figure(figsize=(9, 4.5), dpi=100)
    ax = fig.add_subplot()
    x = np.linspace(0, 10, 1000)
    ax.plot(x, np.sin(x))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


@pytest.mark.benchmark(group="report")
def test_bench_bare_matplotlib_figure(benchmark: object) -> None:
    png = benchmark(bare_figure_png)  # type: ignore[operator]
    assert png[:4] == b"\x89PNG"
