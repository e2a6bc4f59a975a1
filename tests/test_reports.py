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

from benchmarks.compare import ComparisonResult, aggregate, compare
from reports import html as report_html
from reports.charts import CHARTS, render_charts
from simulator.results import RequestRecorder, RequestTable, RunResult
from simulator.scenario import parse_scenario

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


def test_report_is_self_contained(report: tuple[ComparisonResult, Path]) -> None:
    path = report[1]
    text = path.read_text()
    assert text.count('src="data:image/png;base64,') == len(CHARTS)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from the network
    for name in CHARTS:
        png = path.parent / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'href="{name}"' in text
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


def test_charts_survive_empty_runs_and_missing_series() -> None:
    empty = RunResult({"seed": 1, "alerts_fired": []}, RequestTable.from_recorder(RequestRecorder()))
    scenario = {
        "duration_s": 5.0,
        "warmup_s": 1.0,
        "nodes": [],
        "faults": [{"kind": "reset", "at_s": 1.0, "duration_s": None, "node": None}],
    }
    charts = render_charts({"a": [empty], "b": []}, scenario)
    assert set(charts) == set(CHARTS)
    assert all(png[:4] == b"\x89PNG" for png in charts.values())


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
