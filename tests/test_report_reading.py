"""Reading the reports as their users do: the pairwise differences follow the ranking and fold when there are many,
the terminal table says what its columns mean, and every chart draws fault starts and ends the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from benchmarks.compare import ComparisonResult, aggregate, compare
from benchmarks.compare_commands import format_summary
from reports import charts as charts_module
from reports import html as report_html
from simulator.scenario import parse_scenario

SCENARIO: dict[str, Any] = {
    "name": "reading",
    "seed": 3,
    "duration": "3s",
    "warmup": "0.5s",
    "nodes": [
        {"id": n, "service": {"distribution": "exponential", "mean": "2ms"}, "api_keys": {"k": "s"}}
        for n in ("node-a", "node-b")
    ],
    "clients": {
        "connections": [{"type": "trading", "node": n, "count": 1, "api_key": "k"} for n in ("node-a", "node-b")],
        "workload": [{"type": "trading", "arrival": "poisson", "rate": "60/s"}],
    },
    "faults": [
        {"kind": "latency", "at": "1s", "duration": "1s", "node": "node-b", "latency": "20ms"},
        {"kind": "node_down", "at": "2.2s", "duration": "0.3s", "node": "node-a"},  # so connection states change
    ],
}

#: Four strategies whose p99 over six seeds never overlap: every pair differs significantly (6 pairs per metric).
BASES = {"peak_ewma": 10.0, "least_connections": 20.0, "random": 30.0, "round_robin": 40.0}


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> ComparisonResult:
    out = tmp_path_factory.mktemp("reading")
    return compare(parse_scenario(SCENARIO, "reading.yaml"), "round_robin,peak_ewma", seeds=2, workers=1, out=out)


def _separated(comparison: ComparisonResult) -> dict[str, Any]:
    """The comparison's data with four strategies x six seeds of well separated metrics."""
    data = dict(comparison.data)
    template = data["runs"][0]
    runs = []
    for name, base in BASES.items():
        for i in range(6):
            runs.append(
                {
                    **template,
                    "strategy": name,
                    "seed": i,
                    **{m: base + i * 0.1 for m in ("p50_ms", "p99_ms", "mean_ms")},
                }
            )
    # In the order a user lists them, not the order of the result: the tables must follow the ranking anyway.
    data["strategies_order"] = ["round_robin", "random", "least_connections", "peak_ewma"]
    data["runs"] = runs
    data.update(aggregate(runs, data["strategies_order"]))
    return data


def _html(data: dict[str, Any]) -> str:
    context = report_html.build_context(data, {}, "STAMP")
    return report_html._ENV.get_template(report_html.TEMPLATE).render(**context)


def test_pairwise_differences_follow_the_ranking_and_fold_when_many(comparison: ComparisonResult) -> None:
    data = _separated(comparison)
    context = report_html.build_context(data, {}, "STAMP")
    pairs = [(t["metric"], t["better"], t["worse"]) for t in context["significant"]]
    assert len(pairs) == 18  # 6 pairs x 3 latency metrics, all significant
    ranked = list(BASES)  # lower is better: peak_ewma first
    for metric in ("p50_ms", "p99_ms", "mean_ms"):
        mine = [(b, w) for m, b, w in pairs if m == metric]
        assert mine == sorted(mine, key=lambda bw: (ranked.index(bw[0]), ranked.index(bw[1])))
        assert mine[0] == ("peak_ewma", "least_connections")
    html = _html(data)
    section = html.split("Significant pairwise differences")[1].split("<h3>")[0]
    assert "<details><summary>18 significant pairs, the best strategy's first" in section
    assert section.count("<tr>") == 19  # the heading row and every pair: folded, not cut


def test_a_few_pairwise_differences_are_shown_unfolded(comparison: ComparisonResult) -> None:
    data = _separated(comparison)
    for name in ("random", "least_connections"):
        data["runs"] = [r for r in data["runs"] if r["strategy"] != name]
    data["strategies_order"] = ["round_robin", "peak_ewma"]
    data.update(aggregate(data["runs"], data["strategies_order"]))
    section = _html(data).split("Significant pairwise differences")[1].split("<h3>")[0]
    assert "<details>" not in section and section.count("<tr>") == 4  # heading + one pair per latency metric


def test_terminal_table_lists_the_best_strategys_wins_first_and_explains_reroute(
    comparison: ComparisonResult,
) -> None:
    text = format_summary(_separated(comparison))
    wins = [line.strip() for line in text.splitlines() if line.startswith("  p99_ms: ") and "better than" in line]
    assert [w.split(" (p=")[0] for w in wins[:3]] == [
        "p99_ms: peak_ewma better than least_connections",
        "p99_ms: peak_ewma better than random",
        "p99_ms: peak_ewma better than round_robin",
    ]
    assert "p99_ms: ... and 1 more significant pairs" in text
    assert "reroute s: time until the faulty node's share of requests halved, - never" in text


def test_every_chart_marks_fault_starts_solid_and_ends_dashed(comparison: ComparisonResult) -> None:
    runs = report_html.load_runs(comparison.data, comparison.out)
    scenario = comparison.data["scenario"]
    expected = {}
    for fault in scenario["faults"]:
        expected[float(fault["at_s"])] = "-"
        expected[float(fault["at_s"]) + float(fault["duration_s"])] = "--"
    for chart in (
        charts_module.load_share_chart,
        charts_module.connection_state_chart,
        charts_module.health_heatmap_chart,
    ):
        fig = chart(runs, scenario)
        assert isinstance(fig, Figure), (chart.__name__, fig)
        marked = 0
        title = fig.get_suptitle()
        assert "fault start: solid line, end: dashed" in title, (chart.__name__, title)
        for ax in fig.axes:
            styles = {
                line.get_xdata()[0]: line.get_linestyle()
                for line in ax.get_lines()
                if len(set(line.get_xdata())) == 1  # vertical lines only
            }
            if styles:
                assert styles == expected, (chart.__name__, styles)
                marked += 1
        assert marked == 2, chart.__name__  # one panel per strategy, each with the fault lines
    for name, (_draw, _caption, description) in charts_module.CHARTS.items():
        assert "dotted" not in description, name
        if "fault starts" in description:
            assert "fault starts (solid) and ends (dashed)" in description, name


def test_single_run_banner_names_the_command_for_this_scenario(comparison: ComparisonResult) -> None:
    run_dir = Path(comparison.out) / comparison.data["runs"][0]["dir"]
    from benchmarks.compare_commands import load_result

    data = load_result(run_dir).data
    headline = report_html.verdict(data)["headline"]
    assert headline.startswith("This report shows one run: there is nothing to compare.")
    assert "`" not in headline  # plain prose in HTML, no Markdown quotes
    assert "wsfinal compare reading.yaml --strategies a,b --seeds 5" in headline
