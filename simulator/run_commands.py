"""``wsfinal run SCENARIO``: one run of a scenario, its result written to a directory and summarised."""

from __future__ import annotations

import argparse
import errno
import shlex
import sys
from pathlib import Path

from simulator.runner import MODES, describe, run
from simulator.scenario import ScenarioError, load_scenario
from simulator.scenario_problems import strategy_hint
from wsfinal.config import LoadBalancingStrategy
from wsfinal.exceptions import ConfigurationError


def main(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
        strategy = LoadBalancingStrategy.parse(args.strategy) if args.strategy else None
    except ScenarioError as exc:  # every problem, as `wsfinal scenario check` lists them, not only the first
        for line in exc.lines():
            print(f"wsfinal run: {line}", file=sys.stderr)
        return 2
    except ConfigurationError as exc:
        print(f"wsfinal run: {exc}{strategy_hint(args.strategy or '')}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"wsfinal run: {exc}", file=sys.stderr)
        return 2
    parent = Path(args.out)
    try:  # before the run, not after it
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a file, not a directory: the run goes into a directory in it")
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"wsfinal run: --out {parent}: cannot write there ({exc.strerror or exc})", file=sys.stderr)
        return 2
    result = run(
        scenario, strategy=strategy, seed=args.seed, mode=args.mode, progress=not args.quiet, interruptible=True
    )
    out = parent / f"{scenario.name}-{result.summary['strategy']}-seed{result.summary['seed']}-{args.mode}"
    try:
        result.save(out)
    except OSError as exc:
        print(f"wsfinal run: {out}: cannot write the result ({exc.strerror or exc})", file=sys.stderr)
        return 130 if result.interrupted else 1
    print(describe(result))
    wall = result.timing.get("wall_time_s", 0.0)
    print(f"simulated {result.summary['simulated_s']:.1f}s in {wall:.1f}s wall; result in {out}")
    print(f"HTML report: wsfinal report {shlex.quote(str(out))}")
    if result.interrupted:
        print(f"wsfinal run: {result.summary.get('error') or 'interrupted'}; what it collected is in {out}",
              file=sys.stderr)  # fmt: skip
        return 130
    failed_expect = [e for e in result.summary.get("expect", []) if e["passed"] is False]
    if not result.ok:
        return 1
    return 3 if failed_expect and args.check else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run a scenario once; write and summarise its result",
        description=(
            "Run SCENARIO once: the fake exchange with its fault timeline, the full manager and the workload. "
            "Writes summary.json, requests.npz/.csv, events.jsonl and series.npz into "
            "OUT/SCENARIO-STRATEGY-seedN-MODE, prints a summary table with each expect assertion, and the "
            "`wsfinal report` command that writes its HTML report. Exit codes: 0 ok, 1 the run failed, "
            "2 bad arguments or scenario, 3 (with --check) an expect assertion failed, 130 interrupted "
            "(Ctrl-C: the run is written as failed, with the reason and what it collected; a second Ctrl-C "
            "stops at once)."
        ),
    )
    p.add_argument("scenario", help="scenario file (YAML)")
    p.add_argument("--strategy", help="load-balancing strategy (default: the scenario's)")
    p.add_argument("--seed", type=int, help="seed (default: the scenario's)")
    p.add_argument("--mode", choices=MODES, default="virtual", help="virtual time (default) or live sockets")
    p.add_argument(
        "--out",
        default="results",
        help="parent directory; the run goes into OUT/SCENARIO-STRATEGY-seedN-MODE (default: results)",
    )
    p.add_argument("--check", action="store_true", help="exit 3 when an expect assertion fails")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
