"""Colours, line styles and axis helpers shared by the charts: colour-blind-safe and stable across reports.

Every strategy has one fixed colour and line style keyed by its name (not by its position in a comparison), so
peak_ewma looks the same in every chart of every report. The palette is Okabe-Ito's (safe for the common forms
of colour blindness) extended with two of Paul Tol's colours; line styles repeat the distinction for readers
who cannot rely on colour at all. Connection states, outcomes and faults use the same palette family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

#: Okabe-Ito (without its yellow, too pale for lines on white) then Paul Tol's wine, olive and a mid grey.
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#882255",  # wine
    "#999933",  # olive
    "#777777",  # grey
)
LINE_STYLES: tuple[str, ...] = ("-", "--", "-.", ":")

FAULT_COLOUR = "#555555"  # dark grey: fault bars and lines (no hue, so it never looks like a strategy)
WARMUP_COLOUR = "#999999"
#: One per :data:`simulator.results.STATES`: greys for the idle states, black for failed (luminance, not hue).
STATE_COLOURS: tuple[str, ...] = ("#DDDDDD", "#F0E442", "#009E73", "#E69F00", "#000000", "#777777")
#: One per :data:`simulator.results.OUTCOMES` (the first, acknowledged, is never drawn as a bar).
OUTCOME_COLOURS: tuple[str, ...] = ("#009E73", "#E69F00", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
OUTCOME_HATCHES: tuple[str, ...] = ("", "//", "..", "xx", "\\\\", "--")
#: Perceptually uniform and colour-blind safe (unlike red-yellow-green): dark blue = 0, yellow = 100.
HEALTH_CMAP = "cividis"


#: Fixed style per known strategy: the strongest colours go to the strategies compared most often.
STRATEGY_STYLES: dict[str, tuple[str, str]] = {
    "round_robin": ("#0072B2", "-"),
    "peak_ewma": ("#D55E00", "--"),
    "power_of_two_choices": ("#009E73", "-."),
    "least_connections": ("#E69F00", ":"),
    "adaptive": ("#CC79A7", "-"),
    "least_latency": ("#56B4E9", "--"),
    "health_based": ("#882255", "-."),
    "least_load": ("#000000", ":"),
    "weighted_round_robin": ("#999933", "-"),
    "random": ("#777777", "--"),
}


def strategy_style(name: str, order: Sequence[str] = ()) -> dict[str, Any]:
    """Colour and line style of one strategy: fixed for the known ones, else by position in ``order``."""
    if name in STRATEGY_STYLES:
        colour, style = STRATEGY_STYLES[name]
        return {"color": colour, "linestyle": style}
    i = list(order).index(name) if name in order else 0
    return {"color": PALETTE[i % len(PALETTE)], "linestyle": LINE_STYLES[i % len(LINE_STYLES)]}


def strategy_colours(names: Sequence[str]) -> dict[str, str]:
    """One stable colour per strategy (the same in every chart and every report)."""
    return {name: strategy_style(name, names)["color"] for name in names}


def _plain_number(value: float, _pos: Any = None) -> str:
    return f"{value:g}"


def latency_axis(axis: Any, values: np.ndarray) -> bool:
    """Log scale with plain tick labels (1, 2, 5, 10 ...) when ``values`` span a decade or more, else linear.

    Returns whether the axis is logarithmic, so the caller can say so in its label.
    """
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size == 0 or float(finite.max()) / float(finite.min()) < 10.0:
        axis.set_major_formatter(FuncFormatter(_plain_number))
        return False
    axis.axes.set_xscale("log") if axis.axis_name == "x" else axis.axes.set_yscale("log")
    axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(_plain_number))
    axis.set_minor_formatter(NullFormatter())
    return True


def fault_windows(scenario: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """``(label, start, end)`` per fault of the scenario block; a fault without a duration lasts to the end."""
    duration = float(scenario.get("duration_s") or 0.0)
    out = []
    for i, f in enumerate(scenario.get("faults", [])):
        start = float(f["at_s"])
        end = start + float(f["duration_s"]) if f.get("duration_s") is not None else max(duration, start)
        label = f"#{i} {f['kind']}" + (f" on {f['node']}" if f.get("node") else " (all nodes)")
        out.append((label, start, max(end, start + 0.05)))
    return out


def shade_faults(ax: Any, scenario: Mapping[str, Any]) -> None:
    """Every fault window as a light band (overlaps look darker); the timeline panel names them."""
    for _label, start, end in fault_windows(scenario):
        ax.axvspan(start, end, color=FAULT_COLOUR, alpha=0.09, lw=0)


def shade_warmup(ax: Any, scenario: Mapping[str, Any], *, label: bool = False) -> None:
    """The warm-up (excluded from the statistics) as a hatched grey band."""
    warmup = float(scenario.get("warmup_s") or 0.0)
    if warmup > 0:
        ax.axvspan(
            0,
            warmup,
            facecolor="none",
            edgecolor=WARMUP_COLOUR,
            hatch="///",
            lw=0,
            alpha=0.5,
            label="warm-up (excluded)" if label else None,
        )


def fault_timeline(ax: Any, scenario: Mapping[str, Any]) -> None:
    """One labelled bar per fault (a Gantt row each), on the scenario's time axis."""
    windows = fault_windows(scenario)
    for y, (_label, start, end) in enumerate(windows):
        ax.barh(y, end - start, left=start, height=0.6, color=FAULT_COLOUR, alpha=0.8)
    ax.set_yticks(range(len(windows)), [w[0] for w in windows], fontsize=7)
    ax.set_ylim(len(windows) - 0.5, -0.5)
    ax.set_ylabel("faults", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)


__all__ = [
    "FAULT_COLOUR",
    "HEALTH_CMAP",
    "OUTCOME_COLOURS",
    "PALETTE",
    "STATE_COLOURS",
    "STRATEGY_STYLES",
    "fault_timeline",
    "fault_windows",
    "latency_axis",
    "shade_faults",
    "shade_warmup",
    "strategy_colours",
    "strategy_style",
]
