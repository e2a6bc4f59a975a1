"""``wsfinal sweep SWEEP.yaml``: run a parameter grid (resuming where a previous call stopped) and report it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .sweep import SweepError, SweepStore, grid_size, load_sweep, make_executor, run_sweep


def main(args: argparse.Namespace) -> int:
    try:
        sweep = load_sweep(args.sweep)
    except SweepError as exc:
        print(f"wsfinal sweep: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("results") / "sweeps" / sweep.name
    print(f"sweep {sweep.name}: {grid_size(sweep)} runs, results in {out}", file=sys.stderr)
    if args.check:
        return 0
    failed = False
    if not args.report_only:
        try:
            with make_executor(args.workers, args.scheduler) as executor:
                outcome = run_sweep(sweep, out, executor, progress=not args.quiet, limit=args.max_runs)
        except SweepError as exc:
            print(f"wsfinal sweep: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # an unreachable --scheduler (after distributed's 30 s), or --out not writable
            where = f"--scheduler {args.scheduler}" if args.scheduler else f"--out {out}"
            text = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
            print(f"wsfinal sweep: {where}: {text}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            done = len(SweepStore(out).records()) if (out / "index.jsonl").is_file() else 0
            print(
                f"wsfinal sweep: interrupted; {done} of {grid_size(sweep)} runs complete in {out}: run the same "
                "command again to resume (or --report-only for a report of what is there)",
                file=sys.stderr,
            )
            return 130
        print(
            f"{outcome.executed} runs executed, {outcome.skipped} already complete, {len(outcome.failed)} failed; "
            f"{len(outcome.records)} of {outcome.total} complete"
        )
        for key, reason in outcome.failed:
            print(f"  failed {key}: {reason}", file=sys.stderr)
        failed = bool(outcome.failed)
    if not args.no_report:
        from .sweep_report import render_sweep_report

        if not (out / "sweep.json").is_file():
            print(f"wsfinal sweep: no sweep results in {out}", file=sys.stderr)
            return 2
        print(f"report: {render_sweep_report(out)}")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid of scenarios x strategies x seeds x parameters",
        description=(
            "Run every run of SWEEP.yaml that is not yet complete in --out (so an interrupted sweep resumes), "
            "on a process pool (--workers) or a Dask cluster (--scheduler), then write sweep-report.html with "
            "a chart per metric against the swept parameter. Exit codes: 0 ok, 1 some runs failed, 2 bad "
            "arguments or sweep file (or, with --report-only, no results in --out)."
        ),
    )
    p.add_argument("sweep", help="sweep file (YAML); see sweeps/example.yaml and docs/sweeps_and_gates.md")
    p.add_argument("--out", help="output directory (default: results/sweeps/NAME)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786): run on that cluster instead")
    p.add_argument("--max-runs", type=int, help="run at most this many of the missing runs, then stop")
    p.add_argument("--check", action="store_true", help="validate the sweep file and print the grid size only")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the results, run nothing")
    p.add_argument("--no-report", action="store_true", help="do not write the report")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
