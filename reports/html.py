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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from reports.charts import CHARTS, draw_charts
from simulator.results import RunResult, percent_text

REPORT_NAME = "report.html"

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "report.html.j2"

# autoescape=True for every template whatever its file name (.j2 would not match select_autoescape's defaults).
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True, undefined=jinja2.StrictUndefined
)

#: Column headings of the summary table: (name, unit); the full labels are in the legend under it.
HEADINGS: dict[str, tuple[str, str]] = {
    "p50_ms": ("p50", "ms"),
    "p95_ms": ("p95", "ms"),
    "p99_ms": ("p99", "ms"),
    "p99_9_ms": ("p99.9", "ms"),
    "mean_ms": ("mean", "ms"),
    "success_rate": ("success", "%"),
    "reconnects": ("reconnects", "per run"),
    "reroute_s": ("reroute", "s"),
    "alerts_fired": ("alerts", "per run"),
    "alert_delay_s": ("alert delay", "s"),
}
SHORT_LABELS = {m: f"{name} ({unit})" for m, (name, unit) in HEADINGS.items()}
COLUMNS = tuple(HEADINGS)
#: The metrics the verdict answers for, in the order it lists them (each is ranked in comparison.json).
VERDICT_METRICS = ("p99_ms", "p50_ms", "mean_ms", "success_rate", "reroute_s")


def _pct(value: float) -> str:
    """A percentage of a 0..1 rate that only reads 100.00 when nothing failed."""
    return percent_text(value * 100)


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "success_rate":
        return _pct(value)
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


def _actual(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "none" if value is None else str(value)


def _range(values: Sequence[Any]) -> str:
    nums = sorted(v for v in values if isinstance(v, int | float))
    if not nums:
        return "actual: none"
    if nums[0] == nums[-1]:
        return f"actual {_actual(nums[0])}"
    return f"actual {_actual(nums[0])} to {_actual(nums[-1])}"


def run_checks(d: dict[str, Any], runs: Mapping[str, Sequence[RunResult]] | None) -> dict[str, Any]:
    """What must be seen first: failed runs (with their error) and failed ``expect`` assertions.

    ``expect`` has one entry per assertion of the scenario: how many of the runs it applies to passed, and
    per strategy where it failed, in how many seeds and the range of measured values. Without the loaded runs
    only the statuses recorded in the comparison document are known.
    """
    summaries = [r.summary for group in (runs or {}).values() for r in group]
    if not summaries:
        summaries = [{"strategy": r["strategy"], "seed": r["seed"], "status": r["status"]} for r in d["runs"]]
    failed_runs = [
        {"strategy": s.get("strategy"), "seed": s.get("seed"), "error": s.get("error") or "(no error recorded)"}
        for s in summaries
        if s.get("status") != "ok"
    ]
    seeds_of: dict[str, int] = {}
    for s in summaries:
        seeds_of[str(s.get("strategy"))] = seeds_of.get(str(s.get("strategy")), 0) + 1
    checks: dict[int, dict[str, Any]] = {}
    for s in summaries:
        for e in s.get("expect", []):
            c = checks.setdefault(
                int(e["index"]),
                {"index": int(e["index"]), "description": str(e["description"]), "runs": 0, "passed": 0},
            )
            if e.get("passed") is None:  # does not apply to this run (names another strategy)
                continue
            c["runs"] += 1
            if e["passed"]:
                c["passed"] += 1
            else:
                c.setdefault("failed", {}).setdefault(str(s.get("strategy")), []).append(e.get("actual"))
    expect = []
    for _i, c in sorted(checks.items()):
        failed = c.pop("failed", {})
        c["failures"] = [
            f"{name} in {len(actuals)} of {seeds_of[name]} seed{'' if seeds_of[name] == 1 else 's'} ({_range(actuals)})"
            for name, actuals in failed.items()
        ]
        expect.append(c)
    return {
        "failed_runs": failed_runs,
        "expect": expect,
        "failed_expect": [c for c in expect if c["failures"]],
        "expect_total": sum(c["runs"] for c in expect),
        "expect_passed": sum(c["passed"] for c in expect),
        "runs_total": len(summaries),
    }


def _value(metric: str, value: float | None) -> str:
    unit = HEADINGS[metric][1]
    text = _fmt(metric, value)
    return text if value is None else f"{text} %" if unit == "%" else f"{text} {unit}"


def verdict(d: dict[str, Any]) -> dict[str, Any]:
    """The answer to "which strategy is better, and is the difference significant?", per ranked metric.

    ``headline`` is one sentence about p99 latency; ``rows`` say for each metric who is best, by how much
    over the runner-up, and whether that is significant after Holm's correction (or cannot be, with these seeds).
    """
    names = list(d["strategies_order"])
    if d.get("kind") == "run" or len(names) < 2:
        what = "one run" if d.get("kind") == "run" else f"one strategy ({names[0] if names else '-'})"
        return {
            "headline": f"This report shows {what}: there is nothing to compare. To compare strategies over "
            f"seeds: wsfinal compare {d.get('scenario', {}).get('source') or 'SCENARIO'} --strategies a,b --seeds 5",
            "rows": [],
        }
    labels = {**{m: m for m in COLUMNS}, **d.get("metric_labels", {})}
    rows = []
    for m in VERDICT_METRICS:
        ranking = d.get("rankings", {}).get(m)
        if not ranking or not ranking["entries"]:
            continue
        entries = [e for e in ranking["entries"] if e["estimate"] is not None]
        if not entries:
            rows.append(
                {"metric": labels[m], "best": "-", "detail": "no strategy has a value", "verdict": "-", "kind": "none"}
            )
            continue
        best = entries[0]
        tied = [e["strategy"] for e in entries if e["estimate"] == best["estimate"]]
        missing = [e["strategy"] for e in ranking["entries"] if e["estimate"] is None]
        if len(tied) == len(names):
            rows.append(
                {
                    "metric": labels[m],
                    "best": "all equal",
                    "detail": _value(m, best["estimate"]),
                    "verdict": "no difference",
                    "kind": "none",
                }
            )
            continue
        runner = next((e for e in entries if e["strategy"] not in tied), None)
        detail = f"{_value(m, best['estimate'])}"
        if runner is not None:
            rel = ""
            if m == "success_rate":  # a difference of rates reads best in percentage points
                rel = f", {(runner['estimate'] - best['estimate']) * 100:+.3g} percentage points"
            elif best["estimate"]:
                pct = (runner["estimate"] - best["estimate"]) / abs(best["estimate"]) * 100
                rel = f", {pct:+.1f}%" if abs(pct) < 10 else f", {pct:+.0f}%"
            detail += f"; next: {runner['strategy']} {_value(m, runner['estimate'])}{rel}"
        if missing:
            detail += f"; no value for {', '.join(missing)}"
        beaten = list(best["better_than"])
        tests = [t for t in ranking["tests"] if best["strategy"] in (t["a"], t["b"])]
        if beaten:
            ps = [t["p_adjusted"] for t in tests if t["better"] == best["strategy"]]
            text = (
                f"significantly better than {', '.join(beaten)} (Holm p {'<=' if len(ps) > 1 else '='} {max(ps):.3g})"
            )
            peers = [e["strategy"] for e in entries if e["tier"] == 1 and e["strategy"] not in tied]
            if peers:  # in the best tier: the data cannot tell them apart from the best
                text += f"; not distinguishable from {', '.join(peers)}"
            kind = "sig"
        elif ranking.get("notes"):
            text = "cannot be significant with this many seeds (see the note below)"
            kind = "power"
        else:
            p = min((t["p_adjusted"] for t in tests), default=None)
            text = "not significant" + (f" (smallest Holm p = {p:.3g})" if p is not None else "")
            kind = "none"
        rows.append({"metric": labels[m], "best": " = ".join(tied), "detail": detail, "verdict": text, "kind": kind})
    first = rows[0] if rows else None
    headline = "No ranked metric."
    if first is not None:
        if first["best"] in ("all equal", "-"):
            headline = f"{first['metric']}: {first['detail']} for every strategy."
        else:
            headline = f"Best {first['metric']}: {first['best']} ({first['detail']}); {first['verdict']}."
    return {"headline": headline, "rows": rows}


def build_context(
    d: dict[str, Any],
    charts: dict[str, bytes],
    rendered_at: str,
    *,
    runs: Mapping[str, Sequence[RunResult]] | None = None,
    omitted: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The template's variables from a comparison document (every string reaches the page through autoescaping).

    ``runs`` (the loaded run directories) adds the runs' errors and ``expect`` results; ``omitted`` names the
    charts not drawn and why.
    """
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
    notes: list[str] = list(rankings.get("p99_ms", {}).get("notes", [])) if len(names) > 1 else []
    for ranking in rankings.values():
        rank = {e["strategy"]: e["rank"] for e in ranking.get("entries", [])}
        pairs = []
        for t in ranking["tests"]:
            if t["significant"]:
                worse = t["b"] if t["better"] == t["a"] else t["a"]
                pairs.append({**t, "worse": worse})
        # Per metric, the best strategy's wins first, then the runner-up's...: the table reads as the ranking.
        significant.extend(sorted(pairs, key=lambda t: (rank.get(t["better"], 10**6), rank.get(t["worse"], 10**6))))
    outcomes = list(next(iter(d["strategies"].values()))["outcomes"]) if d["strategies"] else []
    outcome_rows = []
    for n in names:
        block = d["strategies"][n]
        submitted = int(block["submitted"])
        counts = []
        for o in outcomes:
            c = int(block["outcomes"][o])
            share = f"{c / submitted * 100:.3g}%" if submitted and c and o != "acknowledged" else None
            counts.append({"text": f"{c:,}", "share": share, "bad": bool(c) and o != "acknowledged"})
        outcome_rows.append({"name": n, "submitted": f"{submitted:,}", "counts": counts})
    expect_by_run: dict[tuple[str, Any], str] = {}
    for group in (runs or {}).values():
        for r in group:
            evaluated = [e for e in r.summary.get("expect", []) if e.get("passed") is not None]
            bad = sum(1 for e in evaluated if not e["passed"])
            text = f"{bad} of {len(evaluated)} failed" if bad else f"{len(evaluated)} passed" if evaluated else "-"
            expect_by_run[(str(r.summary.get("strategy")), r.summary.get("seed"))] = text
    run_rows = [
        {
            "strategy": r["strategy"],
            "seed": r["seed"],
            "status": r["status"],
            "submitted": f"{int(r['submitted']):,}",
            "success": _fmt("success_rate", r.get("success_rate")),
            "p99": _fmt("p99_ms", r.get("p99_ms")),
            "expect": expect_by_run.get((r["strategy"], r["seed"]), "-"),
            "dir": r["dir"],
        }
        for r in d["runs"]
    ]
    wall = d.get("wall_time_s")
    kind = "comparison" if d.get("kind") != "run" else "run"
    return {
        "kind": kind,
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
        "checks": run_checks(d, runs),
        "verdict": verdict(d),
        "compared": kind == "comparison" and len(names) > 1,
        "columns": COLUMNS,
        "headings": HEADINGS,
        "short": SHORT_LABELS,
        "labels": {**{m: m for m in COLUMNS}, **d.get("metric_labels", {})},
        "rows": rows,
        "reroute": d["reroute_definition"],
        "significant": significant,
        "outcomes": outcomes,
        "outcome_rows": outcome_rows,
        "charts": [
            {
                "file": f,
                "caption": CHARTS[f][1],
                "alt": f"{CHARTS[f][2]} Strategies: {', '.join(names)}.",
                "data": base64.b64encode(png).decode("ascii"),
            }
            for f, png in charts.items()
        ],
        "omitted": [{"file": f, "caption": CHARTS[f][1], "reason": why} for f, why in (omitted or {}).items()],
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
    ``base_dir``. Raises ``FileNotFoundError`` naming a missing run file. A chart without data is not drawn:
    the report says why, and its PNG file is a card saying the same (so every chart file always exists).
    """
    out_dir = Path(out) if out is not None else Path(base_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = load_runs(data, base_dir)
    charts = draw_charts(runs, data["scenario"])
    for name, png in charts.files().items():  # an omitted chart's file is a card saying why (not embedded)
        (out_dir / name).write_bytes(png)
    # The one wall-clock read of the reports: a stamp for the reader, never used for behaviour.
    rendered_at = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    context = build_context(data, charts.png, rendered_at, runs=runs, omitted=charts.omitted)
    html = _ENV.get_template(TEMPLATE).render(**context)
    path = out_dir / REPORT_NAME
    path.write_text(html, encoding="utf-8")
    return path


__all__ = [
    "COLUMNS",
    "HEADINGS",
    "REPORT_NAME",
    "TEMPLATE",
    "build_context",
    "load_runs",
    "render_report",
    "run_checks",
    "verdict",
]
