"""The report of a sweep: each metric against the swept parameter, one line per strategy, with confidence bands.

Reads only what :func:`benchmarks.sweep.run_sweep` wrote (``sweep.json`` and ``index.jsonl``), so it can be
rebuilt at any time, also from a partial sweep. For every metric it draws one panel per scenario (and per value
of the other swept parameters), the mean across seeds as a line per strategy (in the strategy's fixed colour
and line style, as in every comparison report) and a percentile-bootstrap 95% interval across seeds as a band.
It writes ``sweep-<metric>.png`` and a self-contained ``sweep-report.html`` (the PNGs embedded, every text from
files escaped, the main report's Content-Security-Policy) into the sweep's directory; failed and missing runs
are listed first.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # charts are files; no display

import numpy as np
from matplotlib.figure import Figure

from benchmarks.statistics import Interval, bootstrap_ci
from reports.style import strategy_style
from simulator.units import UnitError, parse_duration, parse_rate, parse_size

__all__ = ["SweepTable", "build_table", "chart_title", "numeric_value", "render_sweep_report", "run_problems"]

#: The main report's policy (reports/templates/report.html.j2): no scripts, no fetches, images only inline.
CSP = "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'"
#: Seed of the bootstrap resampling (the report is a pure function of the results).
REPORT_SEED = 20260
LABELS = {
    "p50_ms": "p50 latency (ms)",
    "p95_ms": "p95 latency (ms)",
    "p99_ms": "p99 latency (ms)",
    "p99_9_ms": "p99.9 latency (ms)",
    "mean_ms": "mean latency (ms)",
    "success_rate": "success rate",
    "reconnects": "reconnects",
    "reroute_s": "time to stop routing to the faulty node (s)",
    "alerts_fired": "alerts fired",
    "alert_delay_s": "first alert after fault (s)",
}


def numeric_value(value: Any) -> float | None:
    """A swept value as a number in base units (``"500/s"`` -> 500.0, ``"2s"`` -> 2.0), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    for parse in (parse_duration, parse_rate, parse_size):
        try:
            return float(parse(value))
        except (UnitError, TypeError, ValueError):
            continue
    return None


@dataclass
class SweepTable:
    """Aggregated results: ``cells[(panel, x_label, strategy, metric)] = Interval`` across seeds."""

    x: str | None
    x_values: list[Any]
    panels: list[str]
    strategies: list[str]
    metrics: list[str]
    cells: dict[tuple[str, str, str, str], Interval]
    numeric_x: bool


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


#: Metrics that are fractions of requests: their axis never goes above 1.
RATE_METRICS = frozenset({"success_rate"})


def build_table(sweep: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> SweepTable:
    """Group ``records`` by panel (scenario + the other swept parameters), x value and strategy; reduce the
    values of each metric across seeds to a mean with a bootstrap interval."""
    x = (sweep.get("report") or {}).get("x")
    metrics = list((sweep.get("report") or {}).get("metrics") or ["p99_ms", "success_rate"])
    parameters: dict[str, list[Any]] = dict(sweep.get("parameters") or {})
    x_values = list(parameters.get(x, [])) if x else [None]
    others = [k for k in parameters if k != x]
    strategies = list(sweep.get("strategies") or sorted({r["strategy"] for r in records}))
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    panels: list[str] = []
    for r in records:
        params = r.get("params") or {}
        panel = r["scenario_name"] + "".join(f", {k} = {_label(params.get(k))}" for k in others)
        if panel not in panels:
            panels.append(panel)
        groups.setdefault((panel, _label(params.get(x)) if x else "-", r["strategy"]), []).append(r)
    rng = np.random.default_rng(REPORT_SEED)
    cells: dict[tuple[str, str, str, str], Interval] = {}
    for (panel, xl, strategy), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r["seed"])
        for metric in metrics:
            values = [(r.get("metrics") or {}).get(metric) for r in rows]
            cells[(panel, xl, strategy, metric)] = bootstrap_ci([v for v in values if isinstance(v, int | float)], rng)
    numeric = bool(x) and all(numeric_value(v) is not None for v in x_values)
    return SweepTable(x, x_values, panels, strategies, metrics, cells, numeric)


def _chart(table: SweepTable, metric: str) -> Figure:
    n = max(1, len(table.panels))
    cols = min(2, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(6.4 * cols, 4.0 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    labels = [_label(v) for v in table.x_values] if table.x else ["-"]
    xs = (
        np.array([numeric_value(v) for v in table.x_values], dtype=float)
        if table.numeric_x
        else np.arange(len(labels), dtype=float)
    )
    for i, panel in enumerate(table.panels):
        ax = axes[i // cols][i % cols]
        for strategy in table.strategies:
            pts = [table.cells.get((panel, lab, strategy, metric)) for lab in labels]
            est = np.array([np.nan if p is None or p.estimate is None else p.estimate for p in pts], dtype=float)
            low = np.array([np.nan if p is None or p.low is None else p.low for p in pts], dtype=float)
            high = np.array([np.nan if p is None or p.high is None else p.high for p in pts], dtype=float)
            if np.all(np.isnan(est)):
                continue
            style = strategy_style(strategy, table.strategies)
            # A rate's markers stay whole at the axis' top (1): not clipped by the cap below.
            ax.plot(xs, est, marker="o", label=strategy, clip_on=metric not in RATE_METRICS, **style)
            ax.fill_between(xs, low, high, color=style["color"], alpha=0.15, linewidth=0)
        if metric in RATE_METRICS:  # autoscaling around a run of 1.0s shows impossible rates up to 1.04
            bottom, top = ax.get_ylim()
            if top > 1.0:
                ax.set_ylim(min(bottom, 0.99), 1.0)
        ax.set_title(f"scenario {panel}", fontsize=9)
        ax.set_xlabel(table.x or "")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.set_xticks(xs, labels)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for k in range(len(table.panels), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    fig.suptitle(f"{chart_title(table, metric)}\nline: mean across seeds; band: bootstrap 95% interval", fontsize=10)
    return fig


def chart_title(table: SweepTable, metric: str) -> str:
    """What a chart shows: the metric, per strategy, against the swept parameter."""
    return f"{LABELS.get(metric, metric)} per strategy" + (f" against {table.x}" if table.x else "")


def run_problems(sweep: Mapping[str, Any], records: Sequence[Mapping[str, Any]], directory: Path) -> list[str]:
    """One line per run that failed (saved with a status other than ok, with its error) and a line on the runs
    of the grid with no result (not run yet, or they raised: ``wsfinal sweep`` again retries them)."""
    lines = []
    for r in sorted(records, key=lambda r: (r["scenario_name"], r["strategy"], r["seed"], r["key"])):
        if r.get("status") == "ok":
            continue
        error = "(no error recorded)"
        summary = directory / str(r.get("dir", "")) / "summary.json"
        with contextlib.suppress(OSError, ValueError):
            error = json.loads(summary.read_text()).get("error") or error
        params = ", ".join(f"{k} = {_label(v)}" for k, v in (r.get("params") or {}).items())
        lines.append(
            f"run failed: {r['scenario_name']}, {r['strategy']}, seed {r['seed']}"
            + (f", {params}" if params else "")
            + f" ({r.get('dir')}): {error}"
        )
    missing = len(set(sweep.get("keys") or []) - {r["key"] for r in records})
    if missing:
        lines.append(
            f"{missing} run{'s' if missing != 1 else ''} of the grid ha{'ve' if missing != 1 else 's'} no result "
            "(not run yet, or the run raised): `wsfinal sweep` with the same --out runs them"
        )
    return lines


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


def render_sweep_report(directory: str | Path) -> Path:
    """Write the PNG charts and ``sweep-report.html`` for the sweep in ``directory``; returns the HTML path."""
    out = Path(directory)
    sweep = json.loads((out / "sweep.json").read_text())
    from benchmarks.sweep import SweepStore

    keys = set(sweep.get("keys") or [])
    records = [r for r in SweepStore(out).records() if not keys or r["key"] in keys]
    table = build_table(sweep, records)
    e = html.escape
    images = []
    for metric in table.metrics:
        png = _png(_chart(table, metric))
        (out / f"sweep-{metric}.png").write_bytes(png)
        title = chart_title(table, metric)
        images.append(
            f'<h2>{e(title)}</h2><img alt="{e(title)}, one panel per scenario; strategies: '
            f'{e(", ".join(table.strategies))}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        )
    head = "".join(f"<th>{e(h)}</th>" for h in ("panel", table.x or "x", "strategy", *table.metrics))
    rows = []
    labels = [_label(v) for v in table.x_values] if table.x else ["-"]
    for panel, lab, strategy in itertools.product(table.panels, labels, table.strategies):
        cells = [table.cells.get((panel, lab, strategy, m)) for m in table.metrics]
        if all(c is None for c in cells):
            continue
        tds = "".join(
            "<td>-</td>"
            if c is None
            else f"<td>{_fmt(c.estimate)} <small>[{_fmt(c.low)}, {_fmt(c.high)}] n={c.n}</small></td>"
            for c in cells
        )
        rows.append(f"<tr><td>{e(panel)}</td><td>{e(lab)}</td><td>{e(strategy)}</td>{tds}</tr>")
    total = len(sweep.get("keys") or [])
    problems = run_problems(sweep, records, out)
    failed_note = (
        "A failed run's metrics cover what it completed; they are included in the figures."
        if any(r.get("status") != "ok" for r in records)
        else ""
    )
    status = (
        '<div class="status fail"><b>Not every run of the grid has an ok result.</b><ul>'
        + "".join(f"<li>{e(p)}</li>" for p in problems)
        + f"</ul>{failed_note}</div>"
        if problems
        else f'<div class="status ok">All {total} runs complete and ok.</div>'
    )
    params = "".join(f"<li><code>{e(k)}</code>: {e(', '.join(map(_label, v)))}</li>" for k, v in
                     (sweep.get("parameters") or {}).items())  # fmt: skip
    fixed = "".join(f"<li><code>{e(k)}</code> = {e(_label(v))}</li>" for k, v in (sweep.get("set") or {}).items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">
<title>sweep {e(sweep.get("name", ""))}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}} img{{max-width:100%}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}
small{{color:#555}}
.status{{padding:.6em .9em;margin:.8em 0;border-left:6px solid}} .status ul{{margin:.3em 0}}
.status.fail{{background:#fdecea;border-color:#b3261e}} .status.ok{{background:#e8f4ea;border-color:#1b7f2a}}
</style></head><body>
<h1>Sweep {e(sweep.get("name", ""))}</h1>
{status}
<p>{e(sweep.get("description", ""))}</p>
<p>{len(records)} of {total} runs complete; strategies {e(", ".join(table.strategies))};
seeds {e(", ".join(str(s) for s in sweep.get("seeds", [])))}; mode {e(str(sweep.get("mode", "")))}.
Lines: mean across seeds; bands: percentile-bootstrap 95% interval across seeds (rough below ~5 seeds).</p>
<h3>Swept parameters</h3><ul>{params or "<li>none</li>"}</ul>
<h3>Fixed overrides</h3><ul>{fixed or "<li>none</li>"}</ul>
<h3>Scenarios</h3><ul>{"".join(f"<li>{e(s)}</li>" for s in sweep.get("scenarios", []))}</ul>
{"".join(images)}
<h2>Values</h2>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
</body></html>
"""
    path = out / "sweep-report.html"
    path.write_text(page, encoding="utf-8")
    return path
