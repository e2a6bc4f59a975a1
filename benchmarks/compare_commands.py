"""``wsfinal compare SCENARIO`` and ``wsfinal report RESULT_DIR``: strategy comparisons and their HTML reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchmarks.compare import ComparisonResult, aggregate, compare, comparison_from_run, parse_strategies
from benchmarks.statistics import TESTS
from simulator.runner import MODES
from simulator.scenario import ScenarioError, load_scenario
from wsfinal.exceptions import ConfigurationError

#: Columns of the terminal table: metric, heading, width.
TABLE: tuple[tuple[str, str, int], ...] = (
    ("p50_ms", "p50 ms", 21),
    ("p99_ms", "p99 ms", 23),
    ("mean_ms", "mean ms", 21),
    ("success_rate", "success %", 24),
    ("reroute_s", "reroute s", 19),
    ("alerts_fired", "alerts", 17),
)


def _num(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 100:.2f}" if metric == "success_rate" else f"{v:.2f}" if metric != "alerts_fired" else f"{v:.1f}"


def _mark(data: dict[str, Any], metric: str, name: str) -> str:
    ranking = data.get("rankings", {}).get(metric)
    if not ranking:
        return ""
    for e in ranking["entries"]:
        if e["strategy"] == name:
            if e["tier"] > 1:
                return "v"
            if e["better_than"]:
                return "^"
    return ""


def format_summary(data: dict[str, Any]) -> str:
    """The comparison as a terminal table: mean across seeds [95% CI], marks ^ best tier / v worse than best."""
    order = {e["strategy"]: e["rank"] for e in data["rankings"].get("p99_ms", {}).get("entries", [])}
    names = sorted(data["strategies_order"], key=lambda n: order.get(n, 10**6))
    s = data["scenario"]
    lines = [
        f"scenario {s['name']}  mode {data['mode']}  seeds {len(data['seeds'])}: {', '.join(map(str, data['seeds']))}",
        f"{'#':>2} {'strategy':<22}" + "".join(f"{head:>{w}}" for _, head, w in TABLE),
    ]
    lines.append("-" * len(lines[-1]))
    for name in names:
        metrics = data["strategies"][name]["metrics"]
        cells = []
        for m, _head, w in TABLE:
            iv = metrics[m]
            text = _num(m, iv["estimate"])
            if iv["n"] > 1 and iv["low"] is not None and iv["low"] != iv["high"]:
                text += f" [{_num(m, iv['low'])},{_num(m, iv['high'])}]"
            text += _mark(data, m, name)
            cells.append(f" {text:>{w - 1}}")
        lines.append(f"{order.get(name, '-'):>2} {name:<22}" + "".join(cells))
    lines.append("cells: mean across seeds [bootstrap 95% CI]; ^ best tier and significantly better than another,")
    lines.append(f"v significantly worse than the best ({data['test']}, Holm-corrected, alpha {data['alpha']})")
    sig = [t for r in data["rankings"].values() for t in r["tests"] if t["significant"]]
    for t in sig:
        worse = t["b"] if t["better"] == t["a"] else t["a"]
        lines.append(
            f"  {t['metric']}: {t['better']} better than {worse} (p={t['p']:.3g}, Holm p={t['p_adjusted']:.3g})"
        )
    if not sig:
        lines.append("  no significant differences")
    lines.extend(f"note: {n}" for n in data["rankings"].get("p99_ms", {}).get("notes", []))
    return "\n".join(lines)


def compare_main(args: argparse.Namespace) -> int:
    from reports.html import render_report

    try:
        scenario = load_scenario(args.scenario)
        strategies = parse_strategies(args.strategies)
    except (ScenarioError, ConfigurationError, ValueError, OSError) as exc:
        print(f"wsfinal compare: {exc}", file=sys.stderr)
        return 2
    if args.seeds < 1 or args.workers < 1:
        print("wsfinal compare: --seeds and --workers must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("results") / f"compare-{scenario.name}-{args.mode}"
    result = compare(
        scenario,
        strategies,
        args.seeds,
        args.mode,
        args.workers,
        out,
        base_seed=args.base_seed,
        progress=not args.quiet,
        test=args.test,
    )
    report = render_report(result.data, result.out)
    print(format_summary(result.data))
    print(f"results in {result.out} (comparison.json, comparison.csv, runs/); report {report}")
    failed = sum(b["failed_runs"] for b in result.data["strategies"].values())
    if failed:
        print(f"wsfinal compare: {failed} run(s) failed; see their summary.json", file=sys.stderr)
        return 1
    return 0


def load_result(directory: str | Path) -> ComparisonResult:
    """A saved comparison directory, or a single run directory seen as a one-run comparison."""
    d = Path(directory)
    if (d / "comparison.json").exists():
        result = ComparisonResult.load(d)
        # Recompute the statistics from the saved per-run metrics (cheap, seeded, so identical unless the
        # statistics code changed); the runs themselves are not re-run.
        data = result.data
        data.update(aggregate(data["runs"], data["strategies_order"], test=data.get("test", "mannwhitney")))
        return result
    if (d / "summary.json").exists():
        return comparison_from_run(d)
    raise FileNotFoundError(f"{d}: no comparison.json or summary.json (not a comparison or run directory)")


def report_main(args: argparse.Namespace) -> int:
    from reports.html import render_report

    try:
        result = load_result(args.result_dir)
        path = render_report(result.data, result.out, args.out)
    except (OSError, ValueError, KeyError) as exc:
        print(f"wsfinal report: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result.data))
    print(f"report {path}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "compare",
        help="compare load-balancing strategies over several seeds, with CIs, tests and an HTML report",
        description=(
            "Run every chosen strategy on SCENARIO over N seeds (derived with numpy SeedSequence.spawn from "
            "--base-seed, default the scenario's seed; the same seeds for every strategy), in parallel. Writes "
            "comparison.json, comparison.csv, one result directory per run and report.html (with its PNG charts) "
            "under --out, and prints the summary table. Exit 0 ok, 1 a run failed, 2 bad arguments."
        ),
    )
    p.add_argument("scenario", help="scenario file (YAML)")
    p.add_argument("--strategies", default="all", help="'all' (default) or a comma-separated list")
    p.add_argument("--seeds", type=int, default=5, help="seeds per strategy (default 5; at least 4 for significance)")
    p.add_argument("--base-seed", type=int, help="root of the seed derivation (default: the scenario's seed)")
    p.add_argument("--mode", choices=MODES, default="virtual", help="virtual time (default) or live sockets")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2; 1 runs in-process)")
    p.add_argument("--test", choices=TESTS, default="mannwhitney", help="pairwise test (default mannwhitney)")
    p.add_argument("--out", help="output directory (default results/compare-SCENARIO-MODE)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=compare_main)

    r = sub.add_parser(
        "report",
        help="rebuild the HTML report of a saved comparison or run, without re-running",
        description=(
            "Rebuild report.html and its PNG charts from RESULT_DIR: a comparison directory (comparison.json) "
            "or a single run directory (summary.json, as written by `wsfinal run`). Nothing is re-run."
        ),
    )
    r.add_argument("result_dir", help="comparison or run directory")
    r.add_argument("--out", help="where to write the report (default: RESULT_DIR)")
    r.set_defaults(func=report_main)


__all__ = ["format_summary", "load_result", "register"]
