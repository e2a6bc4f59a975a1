"""``wsfinal demo``: the main job on bundled material, for a first look at what the project does.

Compares every load-balancing strategy on the bundled ``scenarios/demo.yaml`` (a short latency spike on one of
three exchange nodes) over 7 seeds in virtual time, with bootstrap confidence intervals and Holm-corrected
pairwise tests (7 seeds is the fewest with which 10 strategies can show significant differences), writes the
HTML report with its PNG charts, and prints the summary table and the report's path. About a minute on two cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .compare_commands import compare_main

DEMO_SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "demo.yaml"


def run(args: argparse.Namespace) -> int:
    if not DEMO_SCENARIO.exists():
        print(f"wsfinal demo: the bundled scenario is missing: {DEMO_SCENARIO}", file=sys.stderr)
        return 2
    print(
        f"wsfinal demo: every strategy x {args.seeds} seeds on {DEMO_SCENARIO.name} in virtual time, "
        f"{args.workers} worker processes",
        flush=True,
    )
    start = time.perf_counter()
    compare_args = argparse.Namespace(
        scenario=str(DEMO_SCENARIO),
        strategies="all",
        seeds=args.seeds,
        base_seed=None,
        mode="virtual",
        workers=args.workers,
        test="mannwhitney",
        out=args.out,
        check=False,
        quiet=args.quiet,
    )
    code = compare_main(compare_args)
    if code not in (2, 130):  # not after bad input or Ctrl-C (compare said what it left)
        print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return code


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="first look: compare every strategy on a bundled fault scenario",
        description=(
            "Compare every load-balancing strategy on scenarios/demo.yaml (a latency spike on one of three nodes) "
            "over several seeds in virtual time (about a minute on two cores); print the summary table and write "
            "report.html under --out. The same as `wsfinal compare scenarios/demo.yaml --seeds 7 --out "
            "results/demo`. Exit codes: 0 ok, 1 a run failed, 2 bad arguments or the bundled scenario is missing, "
            "130 interrupted (Ctrl-C)."
        ),
    )
    p.add_argument("--seeds", type=int, default=7, help="seeds per strategy (default 7)")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument("--out", default="results/demo", help="output directory (default results/demo)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
