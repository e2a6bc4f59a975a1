"""``wsfinal gate``: run the fixed suite in virtual time and fail on a regression against the baseline."""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from .gate import compare, load_baseline, load_suite, markdown, run_suite, table, write_baseline
from .sweep import SweepError, make_executor


def main(args: argparse.Namespace) -> int:
    try:
        suite = load_suite(args.suite)
        baseline = None if args.update else load_baseline(args.baseline)
    except SweepError as exc:
        print(f"wsfinal gate: {exc}", file=sys.stderr)
        return 2
    print(f"gate {suite.name}: {len(suite.entries)} runs in virtual time ({args.workers} workers)", file=sys.stderr)
    started = time.perf_counter()  # reporting only
    pool: Any = make_executor(args.workers) if args.workers > 1 else nullcontext(None)
    with pool as executor:
        current = run_suite(suite, executor)
    wall = time.perf_counter() - started
    if args.update:
        failed = [name for name, r in current.items() if r["status"] != "ok"]
        if failed:
            print(f"wsfinal gate: not updating, runs failed: {', '.join(failed)}", file=sys.stderr)
            return 1
        try:
            write_baseline(args.baseline, suite, current)
        except OSError as exc:
            print(f"wsfinal gate: baseline {args.baseline}: cannot write it ({exc.strerror or exc})", file=sys.stderr)
            return 2
        print(f"baseline written to {args.baseline} ({len(current)} entries, {wall:.1f}s)")
        return 0
    assert baseline is not None
    report = compare(suite, current, baseline)
    print(table(report))
    print(f"({wall:.1f}s wall)")
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        try:
            with Path(summary_file).open("a", encoding="utf-8") as fh:
                fh.write(markdown(report, suite))
        except OSError as exc:  # the verdict stands: a summary that cannot be written is only a warning
            print(
                f"wsfinal gate: warning: GITHUB_STEP_SUMMARY={summary_file}: cannot append ({exc.strerror or exc})",
                file=sys.stderr,
            )
    return 0 if report.passed else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gate",
        help="CI: fail when a metric regressed against the baseline",
        description=(
            "Run every scenario x strategy of --suite in virtual time (deterministic), compare each metric "
            "with --baseline under the suite's per-metric tolerances, print a table (and append Markdown to "
            "$GITHUB_STEP_SUMMARY when set). Exit codes: 0 pass, 1 regression (or a run failed, or the baseline "
            "is missing or stale for an entry), 2 bad arguments, suite or baseline file (unreadable, or with "
            "--update unwritable). --update rewrites the baseline."
        ),
    )
    p.add_argument("--suite", default="benchmarks/suite.yaml", help="suite file (default benchmarks/suite.yaml)")
    p.add_argument(
        "--baseline", default="benchmarks/baseline.json", help="baseline file (default benchmarks/baseline.json)"
    )
    p.add_argument("--update", action="store_true", help="run the suite and rewrite the baseline with its metrics")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2; 1 runs in this process)")
    p.set_defaults(func=main)
