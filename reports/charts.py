"""PNG charts of a comparison (or of one run), drawn with matplotlib's Agg backend from saved results only.

Each ``*_chart`` function takes the loaded runs grouped by strategy (``{strategy: [RunResult, ...]}``, one per
seed) and the scenario block of the comparison (for the fault timeline and the warm-up), and returns a
``Figure``; :func:`render_charts` draws them all and returns PNG bytes by file name. Latencies are those of
acknowledged requests intended after the warm-up, pooled over seeds (the distributions a reader wants to see;
the statistics across seeds are in the summary table). Nothing here reads the wall clock or a global RNG.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: charts are files

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from simulator.results import OUTCOMES, STATES, RunResult

Runs = Mapping[str, Sequence[RunResult]]
DPI = 100
FAULT_COLOUR = "#d62728"
STATE_COLOURS = ("#bbbbbb", "#fdd835", "#4caf50", "#ff9800", "#d32f2f", "#616161")
OUTCOME_COLOURS = ("#4caf50", "#ff9800", "#d32f2f", "#9c27b0", "#795548", "#607d8b")


def strategy_colours(names: Sequence[str]) -> dict[str, Any]:
    """One stable colour per strategy (tab10 in the comparison's order)."""
    cmap = matplotlib.colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def _shade_faults(ax: Any, scenario: Mapping[str, Any], *, label: bool = True) -> None:
    duration = float(scenario.get("duration_s") or 0.0)
    for i, f in enumerate(scenario.get("faults", [])):
        start = float(f["at_s"])
        end = start + float(f["duration_s"]) if f.get("duration_s") is not None else duration
        text = f"fault: {f['kind']}" + (f" on {f['node']}" if f.get("node") else "")
        ax.axvspan(
            start, max(end, start + 0.05), color=FAULT_COLOUR, alpha=0.12, label=text if label and i < 3 else None
        )


def _legend(ax: Any, **kwargs: Any) -> None:
    """A legend only when something is labelled (matplotlib warns otherwise, and tests turn warnings into errors)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _ok_latency(run: RunResult, warmup: float) -> tuple[np.ndarray, np.ndarray]:
    """(intended time, latency ms) of acknowledged requests intended after the warm-up."""
    cols = run.requests.columns
    mask = run.requests.outcome_mask("acknowledged") & (cols["intended"] >= warmup)
    return cols["intended"][mask], run.requests.latency_ms[mask]


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def latency_cdf_chart(runs: Runs, scenario: Mapping[str, Any]) -> Figure:
    """Empirical CDF of latency per strategy on a log axis (quantile points, so size does not grow with data)."""
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    colours = strategy_colours(list(runs))
    warmup = float(scenario.get("warmup_s") or 0.0)
    q = np.concatenate([np.linspace(0, 0.99, 400), 1 - np.logspace(-2, -5, 200)])
    for name, group in runs.items():
        lat = np.concatenate([_ok_latency(r, warmup)[1] for r in group]) if group else np.zeros(0)
        lat = lat[lat > 0]
        if lat.size == 0:
            continue
        ax.plot(np.quantile(lat, q), q, label=name, color=colours[name], lw=1.6)
    if ax.lines:
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no acknowledged requests", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency from intended send time (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Latency CDF per strategy (acknowledged requests, all seeds)")
    ax.grid(True, which="both", alpha=0.3)
    for level in (0.5, 0.99):
        ax.axhline(level, color="grey", lw=0.6, ls=":")
    _legend(ax, loc="lower right", fontsize=8)
    return fig


def _bins(scenario: Mapping[str, Any]) -> np.ndarray:
    duration = max(float(scenario.get("duration_s") or 1.0), 1e-3)
    width = max(duration / 80, 0.1) if duration < 60 else 1.0 if duration < 600 else duration / 300
    return np.arange(0.0, duration + width, width)


def percentiles_over_time_chart(runs: Runs, scenario: Mapping[str, Any]) -> Figure:
    """p50 and p99 per time bin per strategy, fault windows shaded."""
    fig = _figure(9, 6)
    axes = fig.subplots(2, 1, sharex=True)
    colours = strategy_colours(list(runs))
    edges = _bins(scenario)
    centres = (edges[:-1] + edges[1:]) / 2
    warmup = float(scenario.get("warmup_s") or 0.0)
    for name, group in runs.items():
        pairs = [_ok_latency(r, warmup) for r in group]
        t = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0)
        lat = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0)
        order = np.argsort(t, kind="stable")
        t, lat = t[order], lat[order]
        cut = np.searchsorted(t, edges)
        for ax, level in zip(axes, (50, 99), strict=True):
            values = np.full(centres.size, np.nan)
            for i in range(centres.size):
                chunk = lat[cut[i] : cut[i + 1]]
                if chunk.size:
                    values[i] = np.percentile(chunk, level)
            ax.plot(centres, values, label=name, color=colours[name], lw=1.3)
    for ax, level in zip(axes, (50, 99), strict=True):
        _shade_faults(ax, scenario, label=level == 50)
        if any(np.isfinite(line.get_ydata()).any() for line in ax.lines):
            ax.set_yscale("log")
        ax.set_ylabel(f"p{level} latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("Latency percentiles over time (fault windows shaded)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), fontsize=8)
    axes[1].set_xlabel("scenario time (s)")
    return fig


def _grid(n: int, per_row: int = 2) -> tuple[int, int]:
    cols = min(per_row, max(n, 1))
    return (n + cols - 1) // cols, cols


def load_share_chart(runs: Runs, scenario: Mapping[str, Any]) -> Figure:
    """Each node's share of the requests over time, one panel per strategy (stacked areas), faults shaded."""
    names = list(runs)
    rows, cols = _grid(len(names))
    fig = _figure(9, 2.6 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    edges = _bins(scenario)
    centres = (edges[:-1] + edges[1:]) / 2
    nodes = list(scenario.get("nodes") or [])
    for group in runs.values():
        for r in group:
            nodes += [n for n in r.requests.nodes if n not in nodes]
    cmap = matplotlib.colormaps["Set2"]
    for ax, name in zip(axes, names, strict=False):
        counts = np.zeros((len(nodes), centres.size))
        for r in runs[name]:
            cols_ = r.requests.columns
            for j, node in enumerate(r.requests.nodes):
                sel = cols_["node"] == j
                counts[nodes.index(node)] += np.histogram(cols_["intended"][sel], bins=edges)[0]
        total = counts.sum(axis=0)
        share = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
        if nodes:
            ax.stackplot(centres, share, labels=nodes, colors=[cmap(i % 8) for i in range(len(nodes))], alpha=0.9)
        for f in scenario.get("faults", []):  # lines, not shading: shading would tint the node colours
            ax.axvline(float(f["at_s"]), color=FAULT_COLOUR, lw=1.2)
            if f.get("duration_s") is not None:
                ax.axvline(float(f["at_s"]) + float(f["duration_s"]), color=FAULT_COLOUR, lw=1.2, ls="--")
        ax.set_title(name, fontsize=10)
        ax.set_ylim(0, 1)
        ax.set_xlim(edges[0], edges[-1])
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    _legend(axes[0], fontsize=7, loc="lower left")
    fig.suptitle("Load share per node over time (fault start: red line, end: dashed)")
    fig.supxlabel("scenario time (s)", fontsize=9)
    return fig


def outcome_chart(runs: Runs, scenario: Mapping[str, Any]) -> Figure:
    """Share of requests that did not succeed, by outcome, per strategy (after warm-up, all seeds)."""
    names = list(runs)
    fig = _figure(9, 0.45 * len(names) + 1.6)
    ax = fig.add_subplot()
    warmup = float(scenario.get("warmup_s") or 0.0)
    left = np.zeros(len(names))
    totals = []
    shares = np.zeros((len(OUTCOMES), len(names)))
    for k, name in enumerate(names):
        counts = np.zeros(len(OUTCOMES))
        for r in runs[name]:
            cols = r.requests.columns
            sel = cols["intended"] >= warmup
            counts += np.bincount(cols["outcome"][sel].astype(np.int64), minlength=len(OUTCOMES))[: len(OUTCOMES)]
        totals.append(counts.sum())
        shares[:, k] = counts / counts.sum() * 100 if counts.sum() else 0
    y = np.arange(len(names))
    for i, outcome in enumerate(OUTCOMES):
        if i == 0:
            continue  # acknowledged: shown as the success rate in the labels
        ax.barh(y, shares[i], left=left, color=OUTCOME_COLOURS[i], label=outcome)
        left += shares[i]
    ax.set_yticks(y, [f"{n}  ({shares[0, k]:.2f}% ok)" for k, n in enumerate(names)], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("% of requests that did not succeed")
    ax.set_xlim(0, max(1.0, float(left.max()) * 1.15))
    ax.set_title("Outcome breakdown (failures only; success rate in the labels)")
    _legend(ax, fontsize=7, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def _matrix_panels(
    runs: Runs,
    scenario: Mapping[str, Any],
    title: str,
    values: Callable[[RunResult], np.ndarray | None],
    draw: Callable[[Any, np.ndarray, np.ndarray, list[str]], Any],
) -> Figure:
    names = list(runs)
    k = max((len(g[0].series.get("connections", [])) for g in runs.values() if g and g[0].series), default=1)
    rows, cols = _grid(len(names))
    fig = _figure(9, rows * (0.22 * k + 1.2) + 0.7)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).ravel()
    mappable = None
    for ax, name in zip(axes, names, strict=False):
        group = runs[name]
        run = group[0] if group else None
        if run is None or not run.series or values(run) is None:
            ax.text(0.5, 0.5, "no series recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(name, fontsize=10)
            continue
        matrix = values(run)
        assert matrix is not None
        conns = [str(c) for c in run.series["connections"]]
        times = np.asarray(run.series["time"], dtype=float)
        mappable = draw(ax, times, matrix, conns)
        for f in scenario.get("faults", []):
            ax.axvline(float(f["at_s"]), color=FAULT_COLOUR, lw=1.2)
        ax.set_title(f"{name} (seed {run.summary.get('seed')})", fontsize=10)
        ax.set_xlim(0, float(scenario.get("duration_s") or times[-1] + 1))
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.supxlabel("scenario time (s)", fontsize=9)
    fig._wsfinal_mappable = mappable  # type: ignore[attr-defined]
    return fig


def _extent(times: np.ndarray, k: int) -> list[float]:
    step = float(times[1] - times[0]) if times.size > 1 else 1.0
    return [float(times[0]) if times.size else 0.0, float(times[-1]) + step if times.size else 1.0, k - 0.5, -0.5]


def connection_state_chart(runs: Runs, scenario: Mapping[str, Any]) -> Figure:
    """Each connection's state over time (first seed of each strategy)."""
    cmap = ListedColormap(STATE_COLOURS)
    norm = BoundaryNorm(np.arange(-0.5, len(STATES) + 0.5), cmap.N)

    def draw(ax: Any, times: np.ndarray, m: np.ndarray, conns: list[str]) -> Any:
        im = ax.imshow(
            m.T, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm, extent=_extent(times, len(conns))
        )
        ax.set_yticks(range(len(conns)), conns, fontsize=7)
        return im

    fig = _matrix_panels(
        runs, scenario, "Connection state timeline (fault start marked)", lambda r: r.series.get("state"), draw
    )
    handles = [Patch(color=c, label=s) for s, c in zip(STATES, STATE_COLOURS, strict=True)]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    return fig


def health_heatmap_chart(runs: Runs, scenario: Mapping[str, Any]) -> Figure:
    """Health score (0-100) per connection over time (first seed of each strategy)."""

    def draw(ax: Any, times: np.ndarray, m: np.ndarray, conns: list[str]) -> Any:
        im = ax.imshow(
            m.T,
            aspect="auto",
            interpolation="nearest",
            cmap="RdYlGn",
            vmin=0,
            vmax=100,
            extent=_extent(times, len(conns)),
        )
        ax.set_yticks(range(len(conns)), conns, fontsize=7)
        return im

    fig = _matrix_panels(
        runs, scenario, "Health score heatmap (connection x time)", lambda r: r.series.get("health"), draw
    )
    mappable = getattr(fig, "_wsfinal_mappable", None)
    if mappable is not None:
        fig.colorbar(mappable, ax=fig.axes, label="health score", shrink=0.8)
    return fig


def alerts_chart(runs: Runs, scenario: Mapping[str, Any]) -> Figure:
    """When alerts fired, one row per strategy and seed, colour and marker per rule, faults shaded."""
    names = list(runs)
    rows: list[tuple[str, RunResult]] = [(n, r) for n in names for r in runs[n]]
    fig = _figure(9, 0.28 * len(rows) + 1.8)
    ax = fig.add_subplot()
    points: dict[str, tuple[list[float], list[int]]] = {}
    for y, (_name, run) in enumerate(rows):
        for a in run.summary.get("alerts_fired", []):
            xs, ys = points.setdefault(str(a.get("rule")), ([], []))
            xs.append(float(a["time"]))
            ys.append(y)
    markers = "ov^s<>dPX*"
    cmap = matplotlib.colormaps["tab10"]
    for i, (rule, (xs, ys)) in enumerate(points.items()):  # one call per rule: colour and marker name the rule
        ax.scatter(
            xs,
            ys,
            marker=markers[i % len(markers)],
            color=cmap(i % 10),
            s=36,
            label=rule,
            edgecolors="black",
            linewidths=0.4,
        )
    plotted = bool(points)
    _shade_faults(ax, scenario)
    ax.set_yticks(range(len(rows)), [f"{n} / seed {r.summary.get('seed')}" for n, r in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, float(scenario.get("duration_s") or 1.0))
    ax.set_xlabel("scenario time (s)")
    ax.set_title(
        "Alerts fired (one row per strategy and seed; fault windows shaded)" + ("" if plotted else ": none fired")
    )
    ax.grid(True, axis="x", alpha=0.3)
    _legend(ax, fontsize=7, loc="upper right")
    return fig


#: File name -> (chart function, caption), in the order the report shows them.
CHARTS: dict[str, tuple[Callable[[Runs, Mapping[str, Any]], Figure], str]] = {
    "latency_cdf.png": (latency_cdf_chart, "Latency CDF per strategy (log axis)"),
    "percentiles_over_time.png": (percentiles_over_time_chart, "Latency percentiles over time, fault timeline shaded"),
    "load_share.png": (load_share_chart, "Load share per node over time, per strategy"),
    "outcomes.png": (outcome_chart, "Outcome breakdown"),
    "connection_states.png": (connection_state_chart, "Connection state timeline"),
    "alerts.png": (alerts_chart, "Alerts timeline"),
    "health_heatmap.png": (health_heatmap_chart, "Health-score heatmap (connection x time)"),
}


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def render_charts(runs: Runs, scenario: Mapping[str, Any]) -> dict[str, bytes]:
    """Every chart of :data:`CHARTS` as PNG bytes, keyed by file name; the caller writes or embeds them."""
    return {name: figure_png(fn(runs, scenario)) for name, (fn, _caption) in CHARTS.items()}


__all__ = ["CHARTS", "figure_png", "render_charts", "strategy_colours"]
