"""``wsfinal compare SCENARIO`` and ``wsfinal report RESULT_DIR``: strategy comparisons and their HTML reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchmarks.compare import (
    ComparisonResult,
    aggregate,
    compare,
    comparison_from_run,
    derive_seeds,
    parse_strategies,
)
from benchmarks.statistics import ALPHA, TESTS, min_seeds
from simulator.results import percent_text
from simulator.runner import MODES
from simulator.scenario import ScenarioError, load_scenario
from simulator.scenario_problems import strategy_hint
from wsfinal.config import LoadBalancingStrategy
from wsfinal.exceptions import ConfigurationError

#: Columns of the terminal table: metric, heading, width.
TABLE: tuple[tuple[str, str, int], ...] = (
    ("p50_ms", "p50 ms", 21),
    ("p99_ms", "p99 ms", 23),
    ("mean_ms", "mean ms", 21),
    ("success_rate", "success %", 25),
    ("reroute_s", "reroute s", 19),
    ("alerts_fired", "alerts", 17),
)


#: Significant pairs printed per metric in the terminal table; the rest are counted (all are in the report).
SIGNIFICANT_PER_METRIC = 5


def _num(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    if metric == "success_rate":
        return percent_text(v * 100)  # the report's rule: only a run without failures reads 100.00
    return f"{v:.1f}" if metric == "alerts_fired" else f"{v:.2f}"


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


def _worse(test: dict[str, Any]) -> str:
    return str(test["b"] if test["better"] == test["a"] else test["a"])


def format_summary(data: dict[str, Any]) -> str:
    """The comparison as a terminal table: mean across seeds [95% CI], marks ^ best tier / v worse than best.

    With one strategy (or a single run's document) there is nothing to compare: the table has no marks and the
    lines about tests and significance are left out.
    """
    order = {e["strategy"]: e["rank"] for e in data["rankings"].get("p99_ms", {}).get("entries", [])}
    names = sorted(data["strategies_order"], key=lambda n: order.get(n, 10**6))
    s = data["scenario"]
    compared = data.get("kind") != "run" and len(names) > 1
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
            text += _mark(data, m, name) if compared else ""
            cells.append(f" {text:>{w - 1}}")
        lines.append(f"{order.get(name, '-') if compared else '':>2} {name:<22}" + "".join(cells))
    if not compared:
        if len(data["seeds"]) > 1:
            lines.append("cells: mean across seeds [bootstrap 95% CI]")
        lines.append("one strategy: nothing to compare (name two or more with --strategies a,b)")
        return "\n".join(lines)
    lines.append("cells: mean across seeds [bootstrap 95% CI]; ^ best tier and significantly better than another,")
    lines.append(f"v significantly worse than the best ({data['test']}, Holm-corrected, alpha {data['alpha']});")
    lines.append("reroute s: time until the faulty node's share of requests halved, - never (see report.html)")
    sig = [t for r in data["rankings"].values() for t in r["tests"] if t["significant"]]
    for ranking in data["rankings"].values():
        # The strongest first; among equal p (common: every pair of separated samples gets the same exact p),
        # the best strategy's wins first, as the report's table lists them.
        rank = {e["strategy"]: e["rank"] for e in ranking.get("entries", [])}
        tests = sorted(
            (t for t in ranking["tests"] if t["significant"]),
            key=lambda t: (t["p_adjusted"], t["p"], rank.get(t["better"], 10**6), rank.get(_worse(t), 10**6)),
        )
        for t in tests[:SIGNIFICANT_PER_METRIC]:
            lines.append(
                f"  {t['metric']}: {t['better']} better than {_worse(t)} (p={t['p']:.3g}, Holm p={t['p_adjusted']:.3g})"
            )
        if len(tests) > SIGNIFICANT_PER_METRIC:
            lines.append(
                f"  {tests[0]['metric']}: ... and {len(tests) - SIGNIFICANT_PER_METRIC} more significant pairs "
                "(all in comparison.json and report.html)"
            )
    if not sig:
        lines.append("  no significant differences")
    lines.extend(f"note: {n}" for n in data["rankings"].get("p99_ms", {}).get("notes", []))
    return "\n".join(lines)


def format_checks(checks: dict[str, Any]) -> str:
    """Failed runs and ``expect`` assertions (as :func:`reports.html.run_checks` finds them) for the terminal.

    Empty when the scenario has no ``expect`` and every run succeeded; otherwise every failure on its own line,
    so a CI log shows what failed without opening the report.
    """
    lines = []
    if checks["failed_runs"]:
        lines.append(f"FAILED runs: {len(checks['failed_runs'])} of {checks['runs_total']}")
        lines.extend(f"  {r['strategy']} seed {r['seed']}: {r['error']}" for r in checks["failed_runs"])
    if checks["failed_expect"]:
        lines.append(
            f"FAILED expect: {checks['expect_passed']} of {checks['expect_total']} checks passed "
            "(one check = one assertion in one run)"
        )
        for c in checks["failed_expect"]:
            lines.append(f"  expect[{c['index']}] {c['description']}: failed for")
            lines.extend(f"    {failure}" for failure in c["failures"])
    elif checks["expect_total"]:
        lines.append(f"expect: all {checks['expect_total']} checks passed")
    return "\n".join(lines)


def _checks(result: ComparisonResult) -> dict[str, Any]:
    from reports.html import load_runs, run_checks

    return run_checks(result.data, load_runs(result.data, result.out))


def compare_main(args: argparse.Namespace) -> int:
    from reports.html import render_report

    try:
        scenario = load_scenario(args.scenario)
        strategies = parse_strategies(args.strategies)
    except ScenarioError as exc:  # every problem, as `wsfinal scenario check` lists them, not only the first
        for line in exc.lines():
            print(f"wsfinal compare: {line}", file=sys.stderr)
        return 2
    except ConfigurationError as exc:
        print(f"wsfinal compare: {exc}{strategy_hint(args.strategies)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"wsfinal compare: {exc}", file=sys.stderr)
        return 2
    if args.seeds < 1 or args.workers < 1:
        print("wsfinal compare: --seeds and --workers must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("results") / f"compare-{scenario.name}-{args.mode}"
    try:  # before the runs, not after them
        (out / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"wsfinal compare: --out {out}: cannot write there ({exc.strerror or exc})", file=sys.stderr)
        return 2
    try:
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
    except KeyboardInterrupt:
        seeds = derive_seeds(scenario.seed if args.base_seed is None else args.base_seed, args.seeds)
        done = sum((out / "runs" / f"{n}-seed{seed}" / "summary.json").is_file() for n in strategies for seed in seeds)
        each = " (each has its own summary: `wsfinal report` its directory)" if done else ""
        print(
            f"wsfinal compare: interrupted; {done} of {len(strategies) * args.seeds} runs finished in "
            f"{out / 'runs'}{each}; no comparison was written: run the command again for one",
            file=sys.stderr,
        )
        return 130
    report = render_report(result.data, result.out)
    checks = _checks(result)
    print(format_summary(result.data))
    if text := format_checks(checks):
        print(text)
    print(f"results in {result.out} (comparison.json, comparison.csv, runs/); report {report}")
    if checks["failed_runs"]:
        print(f"wsfinal compare: {len(checks['failed_runs'])} run(s) failed; see their summary.json", file=sys.stderr)
        return 1
    return 3 if checks["failed_expect"] and args.check else 0


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
    if not d.exists():
        raise FileNotFoundError(f"{d}: no such directory")
    if not d.is_dir():
        raise NotADirectoryError(f"{d}: a file; give the run or comparison directory it belongs to")
    if (d / "sweep.json").is_file():
        raise FileNotFoundError(
            f"{d}: a sweep directory; its report is sweep-report.html "
            "(`wsfinal sweep SWEEP.yaml --report-only` rebuilds it), or `wsfinal report` one of its runs"
        )
    runs = _finished_runs(d)
    hint = (
        f"; its runs/ holds {runs} run directory(ies): did `wsfinal compare` stop early? "
        "Run it again for the comparison, or `wsfinal report` one run"
        if runs
        else ""
    )
    raise FileNotFoundError(f"{d}: no comparison.json or summary.json (not a comparison or run directory){hint}")


def _finished_runs(out: Path) -> int:
    """Run directories under ``out/runs`` that have a ``summary.json`` (what an interrupted compare left)."""
    return sum(1 for _ in out.glob("runs/*/summary.json"))


def report_main(args: argparse.Namespace) -> int:
    from reports.html import render_report
    from simulator.results import RunResult
    from simulator.runner import describe

    try:
        result = load_result(args.result_dir)
        path = render_report(result.data, result.out, args.out)
        if result.data.get("kind") == "run":  # one run: its own summary, as `wsfinal run` printed it
            text = describe(RunResult.load(result.out))
        else:
            text = "\n".join(filter(None, (format_summary(result.data), format_checks(_checks(result)))))
    except OSError as exc:  # a file of the result that cannot be read, or a report that cannot be written
        text = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        print(f"wsfinal report: {text}", file=sys.stderr)
        return 2
    except (ValueError, KeyError) as exc:
        print(f"wsfinal report: {exc}", file=sys.stderr)
        return 2
    print(text)
    print(f"report {path}")
    return 0


def _seeds_help() -> str:
    """``--seeds`` help: how many seeds significance needs, from the bound behind the report's note on power."""
    need: dict[int, list[int]] = {}
    for k in range(2, len(LoadBalancingStrategy) + 1):
        need.setdefault(min_seeds(k), []).append(k)
    parts = [f"{n} for {ks[0]}" if len(ks) == 1 else f"{n} for {ks[0]}-{ks[-1]}" for n, ks in need.items()]
    parts[0] = parts[0].replace(" for ", " seeds for ") + " strategies"
    return (
        f"seeds per strategy (default 5); a difference can be significant (alpha {ALPHA}, Holm) only with "
        f"at least {', '.join(parts)}"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser(
        "report",
        help="summary and HTML report of a saved run or comparison",
        description=(
            "Print the summary of RESULT_DIR and write report.html with its PNG charts: RESULT_DIR is a run "
            "directory (summary.json, as written by `wsfinal run`) or a comparison directory (comparison.json, "
            "as written by `wsfinal compare`). Nothing is re-run. Exit codes: 0 ok, 2 bad arguments or "
            "RESULT_DIR is not a readable run or comparison directory."
        ),
    )
    r.add_argument("result_dir", help="run or comparison directory")
    r.add_argument("--out", help="where to write the report (default: RESULT_DIR)")
    r.set_defaults(func=report_main)

    p = sub.add_parser(
        "compare",
        help="compare strategies over seeds: CIs, tests, HTML report",
        description=(
            "Run every chosen strategy on SCENARIO over N seeds (derived with numpy SeedSequence.spawn from "
            "--base-seed, default the scenario's seed; the same seeds for every strategy), in parallel. Writes "
            "comparison.json, comparison.csv, one result directory per run and report.html (with its PNG charts) "
            "under --out, and prints the summary table with every failed run and failed expect assertion. "
            "Exit codes: 0 ok, 1 a run failed, 2 bad arguments or scenario, 3 (with --check) an expect "
            "assertion failed in some run."
        ),
    )
    p.add_argument("scenario", help="scenario file (YAML)")
    p.add_argument("--strategies", default="all", help="'all' (default) or a comma-separated list")
    p.add_argument("--seeds", type=int, default=5, help=_seeds_help())
    p.add_argument("--base-seed", type=int, help="root of the seed derivation (default: the scenario's seed)")
    p.add_argument("--mode", choices=MODES, default="virtual", help="virtual time (default) or live sockets")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2; 1 runs in-process)")
    p.add_argument("--test", choices=TESTS, default="mannwhitney", help="pairwise test (default mannwhitney)")
    p.add_argument("--out", help="output directory (default results/compare-SCENARIO-MODE)")
    p.add_argument("--check", action="store_true", help="exit 3 when an expect assertion fails in any run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=compare_main)


__all__ = ["format_checks", "format_summary", "load_result", "register"]
