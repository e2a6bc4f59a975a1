"""reports.html and reports.charts: a self-contained, escaped report that headless Chromium renders cleanly."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg
from matplotlib.figure import Figure

from benchmarks.compare import ComparisonResult, aggregate, compare
from reports import charts as charts_module
from reports import html as report_html
from reports import style
from reports.charts import CHARTS, draw_charts, render_charts
from simulator.results import RequestRecorder, RequestTable, RunResult
from simulator.scenario import parse_scenario
from wsfinal.config import LoadBalancingStrategy

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "Tiny <script>alert(1)</script> & <img src=x onerror=alert(2)> \"quoted\" 'single'"

SCENARIO: dict[str, Any] = {
    "name": "hostile-text",
    "description": HOSTILE,
    "seed": 5,
    "duration": "3s",
    "warmup": "0.5s",
    "nodes": [
        {
            "id": "node-a",
            "service": {"distribution": "exponential", "mean": "2ms", "workers": 2},
            "api_keys": {"k": "s"},
        },
        {
            "id": "node-b",
            "service": {"distribution": "exponential", "mean": "2ms", "workers": 2},
            "api_keys": {"k": "s"},
        },
    ],
    "clients": {
        "connections": [
            {"type": "trading", "node": "node-a", "count": 1, "api_key": "k"},
            {"type": "trading", "node": "node-b", "count": 1, "api_key": "k"},
        ],
        "workload": [{"type": "trading", "arrival": "poisson", "rate": "80/s"}],
    },
    "manager": {"request_timeout": "1s"},
    "faults": [
        {"kind": "latency", "at": "1.5s", "duration": "1s", "node": "node-b", "direction": "down", "latency": "30ms"}
    ],
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[ComparisonResult, Path]:
    out = tmp_path_factory.mktemp("report")
    result = compare(parse_scenario(SCENARIO, "hostile.yaml"), "round_robin,peak_ewma", 2, "virtual", 1, out)
    return result, report_html.render_report(result.data, result.out)


def test_report_escapes_scenario_text(report: tuple[ComparisonResult, Path]) -> None:
    text = report[1].read_text()
    assert "Tiny &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(2)&gt;" in text
    assert "<script" not in text.lower()  # the page has no scripts at all
    assert "<img src=x" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def _omitted(html: str) -> list[str]:
    return re.findall(r"Not drawn: [^<]*\(([a-z_]+\.png)\): ", html)


def test_report_is_self_contained(report: tuple[ComparisonResult, Path]) -> None:
    path = report[1]
    text = path.read_text()
    omitted = _omitted(text)
    drawn = [name for name in CHARTS if name not in omitted]
    assert drawn and omitted, "the fixture has latency data, but every request succeeds"
    assert text.count('src="data:image/png;base64,') == len(drawn)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from the network
    for name in CHARTS:
        # Every chart file exists (an omitted one is a card saying why); only drawn ones are embedded and linked.
        assert (path.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (f'href="{name}"' in text) == (name in drawn)
    for needle in ("round_robin", "peak_ewma", "node-b", "seed derivation", "SeedSequence(5).spawn(2)", "numpy"):
        assert needle in text
    for seed in report[0].data["seeds"]:
        assert str(seed) in text


def test_significance_marks_appear_for_a_planted_difference(report: tuple[ComparisonResult, Path]) -> None:
    data = copy.deepcopy(report[0].data)
    template = data["runs"][0]
    runs = []
    for name, base in (("round_robin", 40.0), ("peak_ewma", 10.0)):
        for i in range(6):
            runs.append({**template, "strategy": name, "seed": i, "p99_ms": base + i * 0.1})
    data["runs"] = runs
    data.update(aggregate(runs, data["strategies_order"]))
    html = report_html._ENV.get_template(report_html.TEMPLATE).render(**report_html.build_context(data, {}, "now"))
    p99 = data["rankings"]["p99_ms"]
    assert p99["entries"][0]["strategy"] == "peak_ewma" and p99["entries"][1]["tier"] == 2
    assert '<span class="best">&#9650;</span>' in html.split("<th>runs</th>")[1]
    assert '<span class="worse">&#9660;</span>' in html.split("<th>runs</th>")[1]
    assert "Significant pairwise differences" in html and "None at" not in html.split("Significant pairwise")[1][:200]


def _render(data: dict[str, Any], **kwargs: Any) -> str:
    context = report_html.build_context(data, {}, "STAMP", **kwargs)
    return report_html._ENV.get_template(report_html.TEMPLATE).render(**context)


def _loaded(report: tuple[ComparisonResult, Path]) -> dict[str, list[RunResult]]:
    runs = report_html.load_runs(report[0].data, report[0].out)
    return {name: [RunResult(copy.deepcopy(r.summary), r.requests) for r in group] for name, group in runs.items()}


def _top(html: str) -> str:
    """The page before its first section: what a reader sees without scrolling."""
    return html.split("<h2>Scenario</h2>")[0]


def test_failed_expectation_is_named_at_the_top(report: tuple[ComparisonResult, Path]) -> None:
    runs = _loaded(report)
    target = runs["peak_ewma"][1].summary
    target["expect"] = [
        {"index": 0, "kind": "metric", "description": "p99_ms < 1", "passed": False, "actual": 12.345678},
        {"index": 1, "kind": "metric", "description": "success_rate >= 0.9", "passed": True, "actual": 1.0},
        {"index": 2, "kind": "metric", "description": "p50_ms < 9 [node node-a]", "passed": None},
    ]
    top = _top(_render(report[0].data, runs=runs))
    assert 'class="status fail"' in top
    assert "expect[0] <code>p99_ms &lt; 1</code> failed for peak_ewma in 1 of 2 seeds (actual 12.35)" in top
    assert "1 of 2 expect checks failed" in top  # the one not applying to the run (passed None) is not counted
    assert "1 of 1 run</td>" in top and 'class="bad">0 of 1 run</td>' in top  # the assertions' table


def test_failed_run_is_named_at_the_top_with_its_error(report: tuple[ComparisonResult, Path]) -> None:
    runs = _loaded(report)
    runs["round_robin"][0].summary.update(status="failed", error="RuntimeError: exchange node-a crashed")
    html = _render(report[0].data, runs=runs)
    top = _top(html)
    assert "1 of 4 runs failed" in top
    assert f"round_robin, seed {runs['round_robin'][0].summary['seed']}: RuntimeError: exchange node-a crashed" in top
    # Without the loaded runs the statuses of the comparison document still reach the top.
    data = copy.deepcopy(report[0].data)
    data["runs"][0]["status"] = "failed"
    assert "1 of 4 runs failed" in _top(_render(data))


def test_all_passed_is_said_once_at_the_top(report: tuple[ComparisonResult, Path]) -> None:
    top = _top(report[1].read_text())
    assert 'class="status ok"' in top and "All 4 runs finished" in top and "status fail" not in top


def test_verdict_answers_which_is_better_and_whether_significant(report: tuple[ComparisonResult, Path]) -> None:
    data = copy.deepcopy(report[0].data)
    template = data["runs"][0]
    runs = []
    for name, base in (("round_robin", 40.0), ("peak_ewma", 10.0)):
        for i in range(6):
            runs.append({**template, "strategy": name, "seed": i, "p99_ms": base + i * 0.1, "success_rate": base / 40})
    data["runs"] = runs
    data.update(aggregate(runs, data["strategies_order"]))
    v = report_html.verdict(data)
    # A third strategy interleaved with the best is in its tier: the verdict says they cannot be told apart.
    third = [{**template, "strategy": "least_connections", "seed": i, "p99_ms": 10.05 + i * 0.1} for i in range(6)]
    tied = {**data, "runs": runs + third, "strategies_order": ["round_robin", "peak_ewma", "least_connections"]}
    tied.update(aggregate(tied["runs"], tied["strategies_order"]))
    assert report_html.verdict(tied)["headline"].endswith("; not distinguishable from least_connections.")
    success = next(r for r in v["rows"] if r["metric"] == "success rate")
    assert success["best"] == "round_robin" and "-75 percentage points" in success["detail"]
    assert v["headline"].startswith("Best p99 latency (ms): peak_ewma (10.25 ms; next: round_robin 40.25 ms, +293%)")
    assert "significantly better than round_robin (Holm p = " in v["headline"]
    assert "Best p99 latency" in _top(_render(data))
    # The fixture's 2 seeds cannot reach significance: the verdict says so instead of "not significant".
    small = report_html.verdict(report[0].data)
    assert "cannot be significant with this many seeds" in small["headline"]
    assert "smallest attainable p-value" in _top(report[1].read_text())


def test_single_run_report_does_not_pretend_to_compare(report: tuple[ComparisonResult, Path]) -> None:
    from benchmarks.compare import comparison_from_run

    one = comparison_from_run(report[0].out / report[0].data["runs"][0]["dir"])
    html = _render(one.data, runs=report_html.load_runs(one.data, one.out))
    assert "This report shows one run: there is nothing to compare." in _top(html)
    assert "Significant pairwise differences" not in html and "<th>rank</th>" not in html
    assert "mean across seeds" not in html and "The run finished" in html and "1 run." in html


def test_tables_carry_units_and_readable_numbers(report: tuple[ComparisonResult, Path]) -> None:
    html = report[1].read_text()
    assert '<th title="p99 latency (ms)">p99<br><span class="unit">ms</span></th>' in html
    assert '<span class="unit">%</span>' in html and "<th>p99 (ms)</th>" in html
    data = copy.deepcopy(report[0].data)
    data["strategies"]["peak_ewma"]["submitted"] = 1234567
    assert "<td>1,234,567</td>" in _render(data)  # thousands separators
    assert report_html._fmt("success_rate", 0.99997) == "99.997"  # never "100.00" when something failed
    assert report_html._fmt("success_rate", 1.0) == "100.00"


def test_charts_without_data_are_omitted_with_a_reason() -> None:
    empty = RunResult({"seed": 1, "alerts_fired": []}, RequestTable.from_recorder(RequestRecorder()))
    scenario = {
        "duration_s": 5.0,
        "warmup_s": 1.0,
        "nodes": [],
        "faults": [{"kind": "reset", "at_s": 1.0, "duration_s": None, "node": None}],
    }
    charts = draw_charts({"a": [empty], "b": []}, scenario)
    assert charts.png == {} and set(charts.omitted) == set(CHARTS)
    assert "no request was acknowledged" in charts.omitted["latency_cdf.png"]
    assert charts.omitted["alerts.png"] == "no alert fired in any run"
    assert "series" in charts.omitted["health_heatmap.png"]
    cards = charts.files()
    assert list(cards) == list(CHARTS) and all(png[:4] == b"\x89PNG" for png in cards.values())
    assert render_charts({"a": [empty]}, scenario).keys() == cards.keys()


def test_rebuilding_is_deterministic_and_replaces_stale_charts(
    report: tuple[ComparisonResult, Path], tmp_path: Path
) -> None:
    first = report[1]
    omitted = _omitted(first.read_text())
    assert omitted, "the fixture has charts without data (all requests acknowledged, connections never drop)"
    (tmp_path / omitted[0]).write_bytes(b"left by an earlier rendering")
    again = report_html.render_report(report[0].data, report[0].out, tmp_path)
    for name in CHARTS:  # byte-identical PNGs, the stale file replaced by the card
        assert (tmp_path / name).read_bytes() == (first.parent / name).read_bytes(), name
    text = (tmp_path / omitted[0]).read_bytes()
    assert text == charts_module.no_data_card(omitted[0], charts_module.CHARTS[omitted[0]][0](
        report_html.load_runs(report[0].data, report[0].out), report[0].data["scenario"]))  # fmt: skip
    # Identical apart from the one wall-clock stamp the design allows.
    assert re.search(r"Rendered \d{4}-\d\d-\d\d \d\d:\d\d UTC\.", first.read_text())
    strip = re.compile(r"Rendered [^.]*UTC\.")
    assert strip.sub("", again.read_text()) == strip.sub("", first.read_text())


def test_strategy_styles_are_fixed_distinct_and_colour_blind_safe() -> None:
    names = [s.value for s in LoadBalancingStrategy]
    assert set(names) <= set(style.STRATEGY_STYLES)
    styles = [tuple(style.strategy_style(n).values()) for n in names]
    assert len(set(styles)) == len(names) and len({c for c, _ls in styles}) == len(names)
    # The colour of a strategy does not depend on which others are compared with it.
    assert style.strategy_colours(["peak_ewma"]) == {"peak_ewma": style.strategy_colours(names)["peak_ewma"]}
    assert style.strategy_style("custom", ["x", "custom"])["color"] in style.PALETTE


def test_latency_axis_is_logarithmic_only_across_decades() -> None:
    fig = Figure()
    wide, narrow = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    assert style.latency_axis(wide.yaxis, np.array([0.5, 3.0, 200.0])) and wide.get_yscale() == "log"
    assert not style.latency_axis(narrow.yaxis, np.array([2.5, 4.0, np.nan])) and narrow.get_yscale() == "linear"
    assert wide.yaxis.get_major_formatter()(20.0, 0) == "20"  # plain numbers, not 2x10^1


@pytest.mark.parametrize(("duration", "width"), [(3.0, 0.1), (14.0, 0.2), (40.0, 0.5), (60.0, 1.0), (600.0, 10.0)])
def test_time_bins_are_round_and_end_at_the_scenario_end(duration: float, width: float) -> None:
    edges = charts_module._bins({"duration_s": duration})
    assert edges[0] == 0.0 and edges[-1] == duration
    assert np.isclose(edges[1] - edges[0], width)


def test_latency_over_time_shows_the_fault_timeline_and_alerts(report: tuple[ComparisonResult, Path]) -> None:
    runs = report_html.load_runs(report[0].data, report[0].out)
    scenario = report[0].data["scenario"]
    fig = charts_module.percentiles_over_time_chart(runs, scenario)
    assert isinstance(fig, Figure)
    p50, p99, timeline = fig.axes[:3]
    rows = [t.get_text() for t in timeline.get_yticklabels()]
    assert rows[0] == "#0 latency on node-b"
    fired = [n for n in runs if any(r.summary.get("alerts_fired") for r in runs[n])]
    assert rows[1:] == [f"alerts: {n}" for n in fired]
    assert p50.get_xlim() == p99.get_xlim() == timeline.get_xlim() == (0.0, scenario["duration_s"])
    assert p50.get_ylabel().startswith("p50 latency (ms") and timeline.get_xlabel() == "scenario time (s)"
    colours = {line.get_label(): line.get_color() for line in p99.lines}
    assert colours == {n: style.strategy_style(n)["color"] for n in runs}  # the same colours as every chart


def test_images_have_alt_text_describing_the_encoding(report: tuple[ComparisonResult, Path]) -> None:
    html = report[1].read_text()
    alts = re.findall(r'<img src="data:image/png;base64,[^"]*" alt="([^"]*)"', html)
    assert alts and all(len(a) > 80 and "Strategies: round_robin, peak_ewma." in a for a in alts)


# --- headless Chromium -------------------------------------------------------------------------------------------


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing (needs root); fails the test otherwise."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and installing it needs root: run `apt-get install -y chromium`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600, env=env)
    subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, capture_output=True, timeout=1200, env=env)
    assert CHROMIUM.exists()
    return CHROMIUM


def headless_screenshot(page: Path, tmp: Path, size: str = "1200,3000") -> tuple[list[str], np.ndarray]:
    """Load ``page`` in headless Chromium; returns its console messages and the screenshot as an RGB(A) array."""
    shot = tmp / "shot.png"
    proc = subprocess.run(
        [
            str(ensure_chromium()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={size}",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shot.exists(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    console = [line for line in proc.stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]
    return console, mpimg.imread(str(shot))


def _not_blank(pixels: np.ndarray) -> bool:
    rgb = pixels[..., :3].reshape(-1, 3)
    colours = np.unique(np.round(rgb * 255).astype(np.uint8), axis=0)
    non_white = float(np.mean(np.any(rgb < 0.95, axis=1)))
    return len(colours) > 50 and non_white > 0.05


def test_chromium_console_check_catches_errors(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><p>x</p><script>console.error("planted-error"); nosuchfunction();</script>')
    console, pixels = headless_screenshot(page, tmp_path, "400,300")
    assert any("planted-error" in line for line in console)
    assert any("nosuchfunction" in line for line in console)
    assert not _not_blank(pixels)  # one word on white is "blank" by this measure


def test_report_renders_in_chromium_without_console_errors(
    report: tuple[ComparisonResult, Path], tmp_path: Path
) -> None:
    console, pixels = headless_screenshot(report[1], tmp_path)
    assert console == []
    assert _not_blank(pixels)
