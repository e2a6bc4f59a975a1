"""One self-contained HTML report per comparison (or per run), readable offline and attachable to a CI job.

:func:`render_report` reads only saved results (the comparison document, as :mod:`benchmarks.compare` writes
it to comparison.json, and the run directories it names relative to its directory), draws the charts of
:mod:`reports.charts`, writes each PNG beside the report and embeds it as a ``data:`` URI, and renders
``templates/report.html.j2`` with jinja2 autoescaping on: every string that comes from a scenario file (name,
description, fault and node names, parameters) is escaped. The page has no scripts and a
Content-Security-Policy that forbids them and every network fetch, so it renders the same offline.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from pathlib import Path
from typing import Any

import jinja2

from reports.charts import CHARTS, render_charts
from simulator.results import RunResult

REPORT_NAME = "report.html"

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"

# autoescape=True for every template whatever its file name (.j2 would not match select_autoescape's defaults).
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True, undefined=jinja2.StrictUndefined
)

#: Column headings of the summary table (the full labels are in the legend under it).
SHORT_LABELS = {
    "p50_ms": "p50 ms",
    "p95_ms": "p95 ms",
    "p99_ms": "p99 ms",
    "p99_9_ms": "p99.9 ms",
    "mean_ms": "mean ms",
    "success_rate": "success",
    "reconnects": "reconn.",
    "reroute_s": "reroute s",
    "alerts_fired": "alerts",
    "alert_delay_s": "alert delay s",
}
COLUMNS = (
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "p99_9_ms",
    "mean_ms",
    "success_rate",
    "reconnects",
    "reroute_s",
    "alerts_fired",
    "alert_delay_s",
)


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "success_rate":
        return f"{value * 100:.2f}%"
    if metric in ("reconnects", "alerts_fired"):
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def _mark(ranking: dict[str, Any] | None, name: str) -> str | None:
    if ranking is None:
        return None
    for e in ranking["entries"]:
        if e["strategy"] == name:
            if e["tier"] > 1:
                return "worse"
            if e["better_than"]:
                return "best"
    return None


def load_runs(data: dict[str, Any], base_dir: str | Path) -> dict[str, list[RunResult]]:
    """The saved runs of a comparison grouped by strategy, in the comparison's order."""
    runs: dict[str, list[RunResult]] = {name: [] for name in data["strategies_order"]}
    for r in data["runs"]:
        runs.setdefault(r["strategy"], []).append(RunResult.load(Path(base_dir) / r["dir"]))
    return runs


def build_context(d: dict[str, Any], charts: dict[str, bytes], rendered_at: str) -> dict[str, Any]:
    """The template's variables from a comparison document (every string reaches the page through autoescaping)."""
    names = list(d["strategies_order"])
    rankings = d.get("rankings", {})
    order = {e["strategy"]: e["rank"] for e in rankings.get("p99_ms", {}).get("entries", [])}
    rows = []
    for name in sorted(names, key=lambda n: order.get(n, len(names) + 1)):
        block = d["strategies"][name]
        cells = []
        for m in COLUMNS:
            iv = block["metrics"][m]
            parts = []
            if iv["n"] > 1 and iv["low"] is not None and iv["low"] != iv["high"]:
                parts.append(f"[{_fmt(m, iv['low'])}, {_fmt(m, iv['high'])}]")
            if m in ("reroute_s", "alert_delay_s") and iv["n"]:
                parts.append(f"n={iv['n']}")  # seeds where it happened
            ci = " ".join(parts) or None
            cells.append({"text": _fmt(m, iv["estimate"]), "ci": ci, "mark": _mark(rankings.get(m), name)})
        rows.append(
            {
                "rank": order.get(name, "-"),
                "name": name,
                "cells": cells,
                "runs": block["runs"],
                "failed": block.get("failed_runs", 0),
            }
        )
    significant = []
    # One note on power is enough: the p99 ranking's (every latency metric has the same seeds).
    notes: list[str] = list(rankings.get("p99_ms", {}).get("notes", []))
    for ranking in rankings.values():
        for t in ranking["tests"]:
            if t["significant"]:
                worse = t["b"] if t["better"] == t["a"] else t["a"]
                significant.append({**t, "worse": worse})
    outcomes = list(next(iter(d["strategies"].values()))["outcomes"]) if d["strategies"] else []
    outcome_rows = [
        {
            "name": n,
            "submitted": d["strategies"][n]["submitted"],
            "counts": [d["strategies"][n]["outcomes"][o] for o in outcomes],
        }
        for n in names
    ]
    run_rows = [
        {
            "strategy": r["strategy"],
            "seed": r["seed"],
            "status": r["status"],
            "submitted": r["submitted"],
            "success": _fmt("success_rate", r.get("success_rate")),
            "p99": _fmt("p99_ms", r.get("p99_ms")),
            "dir": r["dir"],
        }
        for r in d["runs"]
    ]
    wall = d.get("wall_time_s")
    return {
        "kind": "comparison" if d.get("kind") != "run" else "run",
        "scenario": d["scenario"],
        "strategies": names,
        "seeds": d["seeds"],
        "mode": d["mode"],
        "runs": d["runs"],
        "rendered_at": rendered_at,
        "confidence": d.get("confidence", 0.95),
        "alpha": d.get("alpha", 0.05),
        "test_name": "Mann-Whitney U" if d.get("test") == "mannwhitney" else "permutation test",
        "notes": notes,
        "columns": COLUMNS,
        "short": SHORT_LABELS,
        "labels": {**{m: m for m in COLUMNS}, **d.get("metric_labels", {})},
        "rows": rows,
        "reroute": d["reroute_definition"],
        "significant": significant,
        "outcomes": outcomes,
        "outcome_rows": outcome_rows,
        "charts": [
            {"file": f, "caption": CHARTS[f][1], "data": base64.b64encode(png).decode("ascii")}
            for f, png in charts.items()
        ],
        "run_rows": run_rows,
        "seed_derivation": d.get("seed_derivation", ""),
        "versions": d.get("versions", {}),
        "machine": d.get("machine", {}),
        "wall_time": f"{wall:.1f} s" if isinstance(wall, int | float) else None,
        "params": json.dumps(d["scenario_params"], indent=2, sort_keys=True, default=str)
        if d.get("scenario_params")
        else None,
    }


def render_report(data: dict[str, Any], base_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the charts, write them and ``report.html`` into ``out`` (default: ``base_dir``); returns the path.

    ``data`` is a comparison document (comparison.json); its runs' ``dir`` entries are relative to
    ``base_dir``. Raises ``FileNotFoundError`` naming a missing run file.
    """
    out_dir = Path(out) if out is not None else Path(base_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = load_runs(data, base_dir)
    charts = render_charts(runs, data["scenario"])
    for name, png in charts.items():
        (out_dir / name).write_bytes(png)
    # The one wall-clock read of the reports: a stamp for the reader, never used for behaviour.
    rendered_at = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    html = _ENV.get_template(TEMPLATE).render(**build_context(data, charts, rendered_at))
    path = out_dir / REPORT_NAME
    path.write_text(html, encoding="utf-8")
    return path


__all__ = ["COLUMNS", "REPORT_NAME", "TEMPLATE", "build_context", "load_runs", "render_report"]
