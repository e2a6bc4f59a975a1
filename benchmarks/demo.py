"""``wsfinal demo``: the main job on bundled material, for a first look at what the project does.

Today it prints the strategy per-pick table (the part of the pipeline that runs end to end so far); when the
scenario runner lands it becomes a strategy comparison on a bundled fault scenario with an HTML report.
"""

from __future__ import annotations

import argparse

from .strategy_table import SIZES, format_table, measure


def run(args: argparse.Namespace) -> int:
    print("wsfinal demo: per-pick cost of every load-balancing strategy (random.choice as the yardstick)")
    table = measure(SIZES, number=args.number, repeat=5)
    print(format_table(table, SIZES))
    worst_1k = max(row[1_000] for name, row in table.items() if not name.startswith("random.choice"))
    flat = max(row[10_000] / row[10] for name, row in table.items() if not name.startswith("random.choice"))
    print(f"\nslowest strategy at 1,000 connections: {worst_1k:.2f} us per pick (target < 5 us)")
    print(f"largest 10,000 / 10 ratio: {flat:.2f} (target <= 2: selection does not scan the pool)")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the main job on bundled material and print the results")
    p.add_argument("--number", type=int, default=10_000, help="picks per timed batch (default 10000)")
    p.set_defaults(func=run)
