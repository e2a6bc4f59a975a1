"""The report of a sweep: each metric against the swept parameter, one line per strategy, with confidence bands.

Reads only what :func:`benchmarks.sweep.run_sweep` wrote (``sweep.json`` and ``index.jsonl``), so it can be
rebuilt at any time, also from a partial sweep. For every metric it draws one panel per scenario (and per value
of the other swept parameters), the mean across seeds as a line per strategy and a percentile-bootstrap 95%
interval across seeds as a band. It writes ``sweep-<metric>.png`` and a self-contained ``sweep-report.html``
(the PNGs embedded, every text from files escaped) into the sweep's directory.
"""

from __future__ import annotations

import base64
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
from simulator.units import UnitError, parse_duration, parse_rate, parse_size

__all__ = ["SweepTable", "build_table", "numeric_value", "render_sweep_report"]

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
    colours = matplotlib.colormaps["tab10"]
    labels = [_label(v) for v in table.x_values] if table.x else ["-"]
    xs = (
        np.array([numeric_value(v) for v in table.x_values], dtype=float)
        if table.numeric_x
        else np.arange(len(labels), dtype=float)
    )
    for i, panel in enumerate(table.panels):
        ax = axes[i // cols][i % cols]
        for j, strategy in enumerate(table.strategies):
            pts = [table.cells.get((panel, lab, strategy, metric)) for lab in labels]
            est = np.array([np.nan if p is None or p.estimate is None else p.estimate for p in pts], dtype=float)
            low = np.array([np.nan if p is None or p.low is None else p.low for p in pts], dtype=float)
            high = np.array([np.nan if p is None or p.high is None else p.high for p in pts], dtype=float)
            if np.all(np.isnan(est)):
                continue
            colour = colours(j % 10)
            ax.plot(xs, est, marker="o", color=colour, label=strategy)
            ax.fill_between(xs, low, high, color=colour, alpha=0.2, linewidth=0)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(table.x or "")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.set_xticks(xs, labels)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for k in range(len(table.panels), rows * cols):
        axes[k // cols][k % cols].set_visible(False)
    return fig


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
        images.append(
            f'<h2>{e(LABELS.get(metric, metric))}</h2><img alt="{e(metric)} against {e(table.x or "")}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
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
    params = "".join(f"<li><code>{e(k)}</code>: {e(', '.join(map(_label, v)))}</li>" for k, v in
                     (sweep.get("parameters") or {}).items())  # fmt: skip
    fixed = "".join(f"<li><code>{e(k)}</code> = {e(_label(v))}</li>" for k, v in (sweep.get("set") or {}).items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sweep {e(sweep.get("name", ""))}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}} img{{max-width:100%}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}
small{{color:#555}}
</style></head><body>
<h1>Sweep {e(sweep.get("name", ""))}</h1>
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
