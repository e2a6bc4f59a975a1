"""PNG charts of a comparison (or of one run), drawn with matplotlib's Agg backend from saved results only.

Each ``*_chart`` function takes the loaded runs grouped by strategy (``{strategy: [RunResult, ...]}``, one per
seed) and the scenario block of the comparison (for the fault timeline and the warm-up), and returns a
``Figure``, or a string saying why there is nothing to draw (no acknowledged request, no alert fired, no
series recorded...): an empty chart would look like a finding. :func:`draw_charts` draws them all and returns
the PNG bytes by file name plus the omitted charts with their reasons; the caller embeds the drawn ones, notes
the others, and writes :meth:`ChartSet.files` (a small "not drawn" card stands in for each omitted chart).
Latencies are those of acknowledged requests intended after the warm-up, pooled over seeds (the distributions
a reader wants to see; the statistics across seeds are in the summary table). Colours and line styles come
from :mod:`reports.style` (fixed per strategy, colour-blind safe). Nothing here reads the wall clock or a RNG.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: charts are files

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from reports.style import (
    FAULT_COLOUR,
    HEALTH_CMAP,
    OUTCOME_COLOURS,
    OUTCOME_HATCHES,
    STATE_COLOURS,
    fault_timeline,
    fault_windows,
    latency_axis,
    shade_faults,
    shade_warmup,
    strategy_colours,
    strategy_style,
)
from simulator.results import OUTCOMES, STATES, RunResult, percent_text

Runs = Mapping[str, Sequence[RunResult]]
ChartResult = Figure | str
DPI = 100


def _legend(ax: Any, **kwargs: Any) -> None:
    """A legend only when something is labelled (matplotlib warns otherwise, and tests turn warnings into errors)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _ok_latency(run: RunResult, warmup: float) -> tuple[np.ndarray, np.ndarray]:
    """(intended time, latency ms) of acknowledged requests intended after the warm-up."""
    cols = run.requests.columns
    mask = run.requests.outcome_mask("acknowledged") & (cols["intended"] >= warmup)
    return cols["intended"][mask], run.requests.latency_ms[mask]


def _pooled_latency(group: Sequence[RunResult], warmup: float) -> tuple[np.ndarray, np.ndarray]:
    pairs = [_ok_latency(r, warmup) for r in group]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _duration(scenario: Mapping[str, Any]) -> float:
    return max(float(scenario.get("duration_s") or 1.0), 1e-3)


NO_ACKNOWLEDGED = "no request was acknowledged after the warm-up, so there is no latency to show"


def latency_cdf_chart(runs: Runs, scenario: Mapping[str, Any]) -> ChartResult:
    """Empirical CDF of latency per strategy (quantile points, so size does not grow with data)."""
    warmup = float(scenario.get("warmup_s") or 0.0)
    q = np.concatenate([np.linspace(0, 0.99, 400), 1 - np.logspace(-2, -5, 200)])
    curves = {}
    for name, group in runs.items():
        lat = _pooled_latency(group, warmup)[1]
        lat = lat[lat > 0]
        if lat.size:
            curves[name] = np.quantile(lat, q)
    if not curves:
        return NO_ACKNOWLEDGED
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    for name, x in curves.items():
        ax.plot(x, q, label=name, lw=1.8, **strategy_style(name, list(runs)))
    log = latency_axis(ax.xaxis, np.concatenate(list(curves.values())))
    ax.set_xlabel("latency from intended send time (ms" + (", log scale)" if log else ")"))
    ax.set_ylabel("fraction of requests at or below")
    ax.set_ylim(0, 1.02)
    ax.set_title("Latency CDF per strategy (acknowledged requests after warm-up, all seeds pooled)")
    ax.grid(True, which="major", alpha=0.3)
    for level, text in ((0.5, "p50"), (0.99, "p99")):
        ax.axhline(level, color="grey", lw=0.7, ls=":")
        ax.annotate(text, (0, level), xycoords=("axes fraction", "data"), xytext=(3, 2), textcoords="offset points")
        ax.texts[-1].set_fontsize(7)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="strategy", title_fontsize=8)
    return fig


def _bins(scenario: Mapping[str, Any]) -> np.ndarray:
    """Bin edges over the scenario: a round width (0.1, 0.2, 0.25, 0.5, 1, 2, 5 ... s) giving 60 to 150 bins.

    The last edge is the scenario's end, so no bin reaches past it (a half-empty last bin looks like a drop).
    """
    duration = _duration(scenario)
    target = duration / 80
    width = next((w for w in (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0) if w >= target), 60.0)
    edges = np.arange(0.0, duration, width)
    return np.append(edges, duration) if edges.size else np.array([0.0, duration])


def _show_x_labels(axes: Any, used: int, cols: int) -> None:
    """Tick labels and the time label on every used panel with no used panel below it (sharex hides them)."""
    for i in range(used):
        if i + cols >= used:
            axes[i].xaxis.set_tick_params(labelbottom=True)
            axes[i].set_xlabel("scenario time (s)", fontsize=9)


def _alert_times(group: Sequence[RunResult]) -> list[float]:
    return [float(a["time"]) for r in group for a in r.summary.get("alerts_fired", [])]


def percentiles_over_time_chart(runs: Runs, scenario: Mapping[str, Any]) -> ChartResult:
    """p50 and p99 per time bin per strategy, with the fault timeline and the alerts below on the same axis."""
    edges = _bins(scenario)
    centres = (edges[:-1] + edges[1:]) / 2
    warmup = float(scenario.get("warmup_s") or 0.0)
    lines: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, group in runs.items():
        t, lat = _pooled_latency(group, warmup)
        if not t.size:
            continue
        order = np.argsort(t, kind="stable")
        t, lat = t[order], lat[order]
        cut = np.searchsorted(t, edges)
        pct = np.full((2, centres.size), np.nan)
        for i in range(centres.size):
            chunk = lat[cut[i] : cut[i + 1]]
            if chunk.size:
                pct[:, i] = np.percentile(chunk, (50, 99))
        lines[name] = (pct[0], pct[1])
    if not lines:
        return NO_ACKNOWLEDGED
    faults = fault_windows(scenario)
    alert_rows = [name for name in runs if _alert_times(runs[name])]
    timeline_rows = len(faults) + len(alert_rows)
    heights = [3.0, 3.0] + ([0.5 + 0.22 * timeline_rows] if timeline_rows else [])
    fig = _figure(9, 6 + (0.5 + 0.22 * timeline_rows if timeline_rows else 0))
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    for k, (ax, level) in enumerate(zip(axes[:2], (50, 99), strict=True)):
        for name, values in lines.items():
            ax.plot(centres, values[k], label=name, lw=1.4, **strategy_style(name, list(runs)))
        shade_faults(ax, scenario)
        shade_warmup(ax, scenario, label=k == 0)
        log = latency_axis(ax.yaxis, np.concatenate([v[k] for v in lines.values()]))
        ax.set_ylabel(f"p{level} latency (ms{', log' if log else ''})")
        ax.grid(True, which="major", alpha=0.3)
    if timeline_rows:
        ax = axes[2]
        fault_timeline(ax, scenario)
        labels = [w[0] for w in faults]
        for j, name in enumerate(alert_rows):
            y = len(faults) + j
            ax.scatter(_alert_times(runs[name]), [y] * len(_alert_times(runs[name])), marker="|", s=80, lw=1.5,
                       color=strategy_style(name, list(runs))["color"])  # fmt: skip
            labels.append(f"alerts: {name}")
        ax.set_yticks(range(timeline_rows), labels, fontsize=7)
        ax.set_ylim(timeline_rows - 0.5, -0.5)
        ax.set_ylabel("faults, alerts", fontsize=8)
    axes[-1].set_xlim(0, _duration(scenario))
    axes[-1].set_xlabel("scenario time (s)")
    width = float(edges[1] - edges[0])
    fig.suptitle(f"Latency p50 and p99 per {width:g} s bin (all seeds pooled); fault windows shaded and listed below")
    handles, labels_ = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="outside lower center", ncol=min(len(labels_), 6), fontsize=8)
    return fig


def _grid(n: int, per_row: int = 2) -> tuple[int, int]:
    cols = min(per_row, max(n, 1))
    return (n + cols - 1) // cols, cols


def load_share_chart(runs: Runs, scenario: Mapping[str, Any]) -> ChartResult:
    """Each node's share of the requests over time, one panel per strategy (stacked areas), faults marked."""
    names = [n for n in runs if any(len(r.requests) for r in runs[n])]
    if not names:
        return "no request was submitted in any run"
    rows, cols = _grid(len(names))
    fig = _figure(9, 2.6 * rows + 0.9)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    edges = _bins(scenario)
    centres = (edges[:-1] + edges[1:]) / 2
    nodes = list(scenario.get("nodes") or [])
    for group in runs.values():
        for r in group:
            nodes += [n for n in r.requests.nodes if n not in nodes]
    node_colours = ["#88CCEE", "#CC6677", "#DDCC77", "#117733", "#332288", "#AA4499", "#44AA99", "#999933"]
    for ax, name in zip(axes, names, strict=False):
        counts = np.zeros((len(nodes), centres.size))
        for r in runs[name]:
            cols_ = r.requests.columns
            for j, node in enumerate(r.requests.nodes):
                sel = cols_["node"] == j
                counts[nodes.index(node)] += np.histogram(cols_["intended"][sel], bins=edges)[0]
        total = counts.sum(axis=0)
        share = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0) * 100
        colours = [node_colours[i % len(node_colours)] for i in range(len(nodes))]
        ax.stackplot(centres, share, labels=nodes, colors=colours, alpha=0.9)
        for f in scenario.get("faults", []):  # lines, not shading: shading would tint the node colours
            ax.axvline(float(f["at_s"]), color="black", lw=1.1)
            if f.get("duration_s") is not None:
                ax.axvline(float(f["at_s"]) + float(f["duration_s"]), color="black", lw=1.1, ls="--")
        ax.set_title(name, fontsize=10)
        ax.set_ylim(0, 100)
        ax.set_xlim(0, _duration(scenario))
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    _show_x_labels(axes, len(names), cols)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 8), fontsize=8, title="node",
               title_fontsize=8)  # fmt: skip
    fig.suptitle("Share of requests sent to each node over time, all seeds (fault start: solid line, end: dashed)")
    fig.supylabel("% of requests", fontsize=9)
    return fig


def outcome_chart(runs: Runs, scenario: Mapping[str, Any]) -> ChartResult:
    """Share of requests that did not succeed, by outcome, per strategy (after warm-up, all seeds)."""
    names = list(runs)
    warmup = float(scenario.get("warmup_s") or 0.0)
    counts = np.zeros((len(OUTCOMES), len(names)))
    for k, name in enumerate(names):
        for r in runs[name]:
            cols = r.requests.columns
            sel = cols["intended"] >= warmup
            counts[:, k] += np.bincount(cols["outcome"][sel].astype(np.int64), minlength=len(OUTCOMES))[: len(OUTCOMES)]
    totals = counts.sum(axis=0)
    if not totals.sum():
        return "no request was submitted after the warm-up"
    if not counts[1:].sum():
        return "every request after the warm-up was acknowledged in every run: there are no failures to break down"
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0) * 100
    fig = _figure(9, 0.45 * len(names) + 1.8)
    ax = fig.add_subplot()
    y = np.arange(len(names))
    left = np.zeros(len(names))
    for i, outcome in enumerate(OUTCOMES):
        if i == 0 or not counts[i].sum():
            continue  # acknowledged is the success rate in the labels; absent outcomes stay out of the legend
        ax.barh(y, shares[i], left=left, color=OUTCOME_COLOURS[i], hatch=OUTCOME_HATCHES[i], label=outcome,
                edgecolor="white", lw=0.5)  # fmt: skip
        left += shares[i]
    failed = counts[1:].sum(axis=0)
    for k in range(len(names)):
        ax.annotate(f" {left[k]:.3g}% ({int(failed[k]):,} of {int(totals[k]):,})", (left[k], y[k]), va="center",
                    fontsize=7)  # fmt: skip
    ax.set_yticks(y, [f"{n}  ({_pct_ok(shares[0, k])} ok)" for k, n in enumerate(names)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("% of requests after warm-up that did not succeed")
    ax.set_xlim(0, float(left.max()) * 1.35)
    ax.set_title("Requests that failed, by outcome (all seeds; success rate in the labels)")
    _legend(ax, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="outcome", title_fontsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def _pct_ok(share: float) -> str:
    """A success percentage that only reads 100% when nothing failed."""
    return percent_text(share) + "%"


def _matrix_panels(
    runs: Runs,
    scenario: Mapping[str, Any],
    title: str,
    key: str,
    draw: Callable[[Any, np.ndarray, np.ndarray, list[str]], Any],
) -> ChartResult:
    names = list(runs)
    if not any(g and g[0].series and g[0].series.get(key) is not None for g in runs.values()):
        return f"no per-connection {key} series was recorded in these runs"
    k = max((len(g[0].series.get("connections", [])) for g in runs.values() if g and g[0].series), default=1)
    rows, cols = _grid(len(names))
    fig = _figure(9, rows * (0.22 * k + 1.2) + 0.7)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).ravel()
    mappable = None
    for ax, name in zip(axes, names, strict=False):
        group = runs[name]
        run = group[0] if group else None
        matrix = run.series.get(key) if run is not None and run.series else None
        if run is None or matrix is None:
            ax.text(0.5, 0.5, "no series recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name, fontsize=10)
            continue
        conns = [str(c) for c in run.series["connections"]]
        times = np.asarray(run.series["time"], dtype=float)
        mappable = draw(ax, times, matrix, conns)
        for f in scenario.get("faults", []):
            ax.axvline(float(f["at_s"]), color=FAULT_COLOUR, lw=1.3)
            if f.get("duration_s") is not None:
                ax.axvline(float(f["at_s"]) + float(f["duration_s"]), color=FAULT_COLOUR, lw=1.3, ls="--")
        ax.set_title(f"{name} (seed {run.summary.get('seed')})", fontsize=10)
        ax.set_xlim(0, float(scenario.get("duration_s") or times[-1] + 1))
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    _show_x_labels(axes, len(names), cols)
    fig.suptitle(title)
    fig._wsfinal_mappable = mappable  # type: ignore[attr-defined]
    return fig


def _extent(times: np.ndarray, k: int) -> list[float]:
    step = float(times[1] - times[0]) if times.size > 1 else 1.0
    return [float(times[0]) if times.size else 0.0, float(times[-1]) + step if times.size else 1.0, k - 0.5, -0.5]


def connection_state_chart(runs: Runs, scenario: Mapping[str, Any]) -> ChartResult:
    """Each connection's state over time (first seed of each strategy)."""
    connected = STATES.index("connected")
    firsts = [g[0].series["state"] for g in runs.values() if g and g[0].series and g[0].series.get("state") is not None]
    if firsts and all(np.all(np.asarray(m)[1:] == connected) for m in firsts):
        return "every connection stayed connected for the whole run (first seed of each strategy)"
    cmap = ListedColormap(STATE_COLOURS)
    norm = BoundaryNorm(np.arange(-0.5, len(STATES) + 0.5), cmap.N)

    def draw(ax: Any, times: np.ndarray, m: np.ndarray, conns: list[str]) -> Any:
        im = ax.imshow(
            m.T, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm, extent=_extent(times, len(conns))
        )
        ax.set_yticks(range(len(conns)), conns, fontsize=7)
        return im

    fig = _matrix_panels(
        runs,
        scenario,
        "State of each connection over time, first seed (fault start: solid line, end: dashed)",
        "state",
        draw,
    )
    if isinstance(fig, Figure):
        handles = [Patch(facecolor=c, edgecolor="#444444", label=s) for s, c in zip(STATES, STATE_COLOURS, strict=True)]
        fig.legend(
            handles=handles, loc="outside lower center", ncol=len(STATES), fontsize=8, title="state", title_fontsize=8
        )
    return fig


def health_heatmap_chart(runs: Runs, scenario: Mapping[str, Any]) -> ChartResult:
    """Health score (0-100) per connection over time (first seed of each strategy)."""

    def draw(ax: Any, times: np.ndarray, m: np.ndarray, conns: list[str]) -> Any:
        im = ax.imshow(
            m.T,
            aspect="auto",
            interpolation="nearest",
            cmap=HEALTH_CMAP,
            vmin=0,
            vmax=100,
            extent=_extent(times, len(conns)),
        )
        ax.set_yticks(range(len(conns)), conns, fontsize=7)
        return im

    fig = _matrix_panels(
        runs,
        scenario,
        "Health score (0-100) of each connection over time, first seed (fault start: solid line, end: dashed)",
        "health",
        draw,
    )
    mappable = getattr(fig, "_wsfinal_mappable", None)
    if isinstance(fig, Figure) and mappable is not None:
        fig.colorbar(mappable, ax=fig.axes, label="health score (100 = healthy)", shrink=0.8)
    return fig


def _alert_label(alert: Mapping[str, Any]) -> str:
    rule = str(alert.get("rule"))
    kind = alert.get("labels", {}).get("anomaly_type")
    return f"{rule} ({kind})" if kind and kind != rule else rule


def alerts_chart(runs: Runs, scenario: Mapping[str, Any]) -> ChartResult:
    """When alerts fired, one row per strategy and seed, colour and marker per rule; the faults above."""
    names = list(runs)
    rows: list[tuple[str, RunResult]] = [(n, r) for n in names for r in runs[n]]
    points: dict[str, tuple[list[float], list[int]]] = {}
    for y, (_name, run) in enumerate(rows):
        for a in run.summary.get("alerts_fired", []):
            xs, ys = points.setdefault(_alert_label(a), ([], []))
            xs.append(float(a["time"]))
            ys.append(y)
    if not points:
        return "no alert fired in any run"
    faults = fault_windows(scenario)
    heights = ([0.4 + 0.22 * len(faults)] if faults else []) + [0.6 + 0.28 * len(rows)]
    fig = _figure(9, sum(heights) + 1.4)
    axes = np.atleast_1d(fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights}))
    if faults:
        fault_timeline(axes[0], scenario)
    ax = axes[-1]
    markers = "ov^s<>dPX*"
    palette = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#882255"]
    for i, (rule, (xs, ys)) in enumerate(sorted(points.items())):  # colour and marker name the rule
        ax.scatter(xs, ys, marker=markers[i % len(markers)], color=palette[i % len(palette)], s=36, label=rule,
                   edgecolors="black", linewidths=0.4)  # fmt: skip
    shade_faults(ax, scenario)
    ax.set_yticks(range(len(rows)), [f"{n} / seed {r.summary.get('seed')}" for n, r in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, _duration(scenario))
    ax.set_xlabel("scenario time (s)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle("Alerts fired: one row per strategy and seed (fault windows shaded and listed above)")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=7)
    return fig


#: File name -> (chart function, caption, what the chart encodes for a reader who cannot see it).
CHARTS: dict[str, tuple[Callable[[Runs, Mapping[str, Any]], ChartResult], str, str]] = {
    "latency_cdf.png": (
        latency_cdf_chart,
        "Latency CDF per strategy",
        "Line chart: x is latency in milliseconds (log scale when it spans decades), y the fraction of "
        "acknowledged requests at or below it; one line per strategy; further right means slower.",
    ),
    "percentiles_over_time.png": (
        percentiles_over_time_chart,
        "Latency percentiles over time, with the fault timeline and the alerts",
        "Two line charts sharing the time axis: p50 and p99 latency in milliseconds per time bin, one line "
        "per strategy, fault windows shaded; below them one bar per fault and the alert firing times.",
    ),
    "load_share.png": (
        load_share_chart,
        "Load share per node over time, per strategy",
        "Stacked area charts, one per strategy: the percentage of requests sent to each node over time; "
        "vertical lines mark fault starts (solid) and ends (dashed).",
    ),
    "outcomes.png": (
        outcome_chart,
        "Failed requests by outcome",
        "Horizontal stacked bars, one per strategy: the percentage of requests that timed out, were rejected "
        "or lost; the success rate is in each bar's label.",
    ),
    "connection_states.png": (
        connection_state_chart,
        "Connection state timeline",
        "One colour-coded row per connection over time (connected, reconnecting, failed...) for the first "
        "seed of each strategy; vertical lines mark fault starts (solid) and ends (dashed).",
    ),
    "alerts.png": (
        alerts_chart,
        "Alerts timeline",
        "Scatter chart: one row per strategy and seed, one marker per alert at the time it fired, marker "
        "shape and colour by rule; the faults are listed above on the same time axis.",
    ),
    "health_heatmap.png": (
        health_heatmap_chart,
        "Health-score heatmap (connection x time)",
        "Heatmap: one row per connection, time across; colour is the health score from 0 (dark blue) to 100 "
        "(yellow), first seed of each strategy; vertical lines mark fault starts (solid) and ends (dashed).",
    ),
}


@dataclass(frozen=True)
class ChartSet:
    """The drawn charts (PNG bytes by file name, in report order) and the omitted ones with the reason."""

    png: dict[str, bytes] = field(default_factory=dict)
    omitted: dict[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        """Every chart file in report order: the drawn PNGs, and for each omitted one a card saying why.

        The HTML embeds only the drawn charts (and says in text why the others are missing); the cards keep
        the set of files the same for every report, so a link or a CI artefact list never points at nothing.
        """
        return {name: self.png[name] if name in self.png else no_data_card(name, self.omitted[name]) for name in
                CHARTS if name in self.png or name in self.omitted}  # fmt: skip


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # No "Software" stamp: the bytes depend only on the data (and matplotlib's drawing).
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def no_data_card(name: str, reason: str) -> bytes:
    """A small PNG that says a chart was not drawn and why (written in place of an empty chart)."""
    fig = _figure(9, 1.2)
    caption = CHARTS[name][1] if name in CHARTS else name
    fig.text(0.5, 0.62, f"{caption}: not drawn", ha="center", va="center", fontsize=12, weight="bold")
    fig.text(0.5, 0.3, reason, ha="center", va="center", fontsize=9, wrap=True)
    return figure_png(fig)


def draw_charts(runs: Runs, scenario: Mapping[str, Any]) -> ChartSet:
    """Every chart of :data:`CHARTS` that has data, as PNG bytes; the others with the reason they are omitted."""
    out = ChartSet()
    for name, (fn, _caption, _alt) in CHARTS.items():
        result = fn(runs, scenario)
        if isinstance(result, Figure):
            out.png[name] = figure_png(result)
        else:
            out.omitted[name] = result
    return out


def render_charts(runs: Runs, scenario: Mapping[str, Any]) -> dict[str, bytes]:
    """Every chart file as PNG bytes keyed by file name: drawn charts, or a card saying why one was not drawn.

    :func:`draw_charts` tells the two apart (the report embeds only the drawn ones).
    """
    return draw_charts(runs, scenario).files()


__all__ = ["CHARTS", "ChartSet", "draw_charts", "figure_png", "no_data_card", "render_charts", "strategy_colours"]
