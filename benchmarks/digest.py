"""``wsfinal digest``: prove that a change left every bundled scenario's results byte-identical.

Each run (every ``scenarios/*.yaml`` with its own strategy and seed, plus the queueing bench setup) is reduced to
three SHA-256 digests: the per-request records (every column's bytes, the name tables), the summary's outcome
accounting, and the summary minus the keys that describe the machine rather than the run
(:data:`EXCLUDED_SUMMARY_KEYS`). They are compared with a committed baseline (``benchmarks/digest_baseline.json``),
which also keeps the summary's values so a difference can be shown key by key. A difference means the results
changed: find out why, and if it is intended re-record with ``--update`` and say so in the commit (docs/digest.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCENARIO_DIR = ROOT / "scenarios"
DEFAULT_BASELINE = Path(__file__).resolve().parent / "digest_baseline.json"
#: The run that is not a scenario file: the queueing bench setup (simulator/queueing.py), RANDOM, seed 1.
QUEUEING = "queueing"
#: Version of the baseline file's layout (bump when the digests are computed differently).
FORMAT = 1
#: Summary keys (dotted paths) left out of the summary digest: they describe the machine, the installed software
#: or where the checkout lives, not what the run did. Wall-clock figures are not in the summary at all
#: (``RunResult.timing``).
EXCLUDED_SUMMARY_KEYS: tuple[str, ...] = ("versions", "machine", "scenario.source")
#: How many differing summary key paths a diff shows per scenario.
MAX_SUMMARY_PATHS = 5


class DigestUsageError(Exception):
    """A bad command line or baseline file (exit code 2); the message names the file or argument."""


@dataclass(frozen=True)
class RunSpec:
    """One run: its name (a scenario file's stem, or :data:`QUEUEING`) and the scenario file (None for queueing)."""

    name: str
    path: str | None


# -- digests (pure) -------------------------------------------------------------------------------------------


def records_digest(columns: dict[str, np.ndarray], connections: list[str], nodes: list[str], ctypes: list[str]) -> str:
    """SHA-256 of the request records: each column's name and C-order bytes, by column name, then the name tables.

    The first 16 hex digits equal those of the lead's earlier /work/tools/digest.py for the same records.
    """
    h = hashlib.sha256()
    for name, col in sorted(columns.items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(col).tobytes())
    h.update(json.dumps([connections, nodes, ctypes]).encode())
    return h.hexdigest()


def _plain(obj: Any) -> Any:
    """JSON-ready plain types (numpy scalars and arrays, enums by value); raises TypeError on anything else."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if hasattr(obj, "value"):
        return _plain(obj.value)
    raise TypeError(f"cannot digest a {type(obj).__name__} in a run summary")


def canonical(obj: Any) -> str:
    """The one text a JSON-ready value digests as: sorted keys, no spaces, floats by ``repr`` (NaN as NaN)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stable_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as plain JSON values without :data:`EXCLUDED_SUMMARY_KEYS` (the input is not changed)."""
    out = _plain(summary)
    for key in EXCLUDED_SUMMARY_KEYS:
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    assert isinstance(out, dict)
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a JSON value by key path (``requests.all.latency.p50_ms``, ``alerts_fired[0].rule``); empty
    dicts and lists are leaves."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k in sorted(value):
            out.update(flatten(value[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def entry_from_result(
    summary: dict[str, Any], columns: dict[str, np.ndarray], names: tuple[list[str], ...]
) -> dict[str, Any]:
    """One baseline entry: status, row count, the three digests and the stable summary's values by key path."""
    stable = stable_summary(summary)
    return {
        "status": str(summary.get("status")),
        "rows": len(columns["intended"]) if "intended" in columns else 0,
        "records": records_digest(columns, *names),
        "accounting": sha256_text(json.dumps(_plain(summary.get("accounting")), sort_keys=True)),
        "summary": sha256_text(canonical(stable)),
        "summary_values": flatten(stable),
    }


def run_entry(spec: RunSpec) -> dict[str, Any]:
    """Run ``spec`` in virtual time (its default strategy and seed; queueing: RANDOM, seed 1) and digest it.

    Called in pool workers: it imports the simulator itself and returns only plain data.
    """
    from simulator.runner import run

    if spec.path is None:
        from simulator.queueing import queueing_scenario

        result = run(queueing_scenario(100, 0.5, 2.0, mu=100.0, warmup_s=0.0), strategy="random", seed=1)
    else:
        from simulator.scenario import load_scenario

        result = run(load_scenario(spec.path), mode="virtual")
    t = result.requests
    return entry_from_result(result.summary, t.columns, (t.connections, t.nodes, t.ctypes))


# -- comparison (pure) ----------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return json.dumps(value)


def diff_entry(name: str, current: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    """Lines describing how ``current`` differs from ``baseline`` (none when equal). Each names the scenario and
    the part: status, records, accounting or summary (with the first differing key paths and both values)."""
    if baseline is None:
        return [f"{name}: not in the baseline (record it with --update)"]
    lines: list[str] = []
    if current["status"] != baseline.get("status"):
        lines.append(f"{name}: status: baseline {baseline.get('status')!r}, now {current['status']!r}")
    if current["records"] != baseline.get("records"):
        lines.append(
            f"{name}: records: digest {str(baseline.get('records'))[:16]} -> {current['records'][:16]} "
            f"(baseline {baseline.get('rows')} rows, now {current['rows']})"
        )
    old_values: dict[str, Any] = baseline.get("summary_values") or {}
    new_values: dict[str, Any] = current["summary_values"]
    if current["accounting"] != baseline.get("accounting"):
        acc = sorted(k for k in set(old_values) | set(new_values) if k.startswith("accounting."))
        shown = ", ".join(f"{k[11:]} {_show(old_values.get(k))} -> {_show(new_values.get(k))}" for k in acc)
        lines.append(
            f"{name}: accounting: digest {str(baseline.get('accounting'))[:16]} -> {current['accounting'][:16]}"
        )
        if shown:
            lines.append(f"    {shown}")
    if current["summary"] != baseline.get("summary"):
        lines.append(f"{name}: summary: digest {str(baseline.get('summary'))[:16]} -> {current['summary'][:16]}")
        changed = [
            k
            for k in sorted(set(old_values) | set(new_values))
            if k not in old_values or k not in new_values or canonical(old_values[k]) != canonical(new_values[k])
        ]
        for k in changed[:MAX_SUMMARY_PATHS]:
            old = _show(old_values[k]) if k in old_values else "(absent)"
            new = _show(new_values[k]) if k in new_values else "(absent)"
            lines.append(f"    {k}: baseline {old}, now {new}")
        if len(changed) > MAX_SUMMARY_PATHS:
            lines.append(f"    ... and {len(changed) - MAX_SUMMARY_PATHS} more key paths")
        if not changed:
            lines.append("    (the stored values are equal: the baseline was written by another digest format)")
    return lines


# -- files and scenarios --------------------------------------------------------------------------------------


def bundled_specs() -> list[RunSpec]:
    """Every bundled scenario file by name, then the queueing bench setup."""
    specs = [RunSpec(p.stem, str(p)) for p in sorted(SCENARIO_DIR.glob("*.yaml"))]
    return [*specs, RunSpec(QUEUEING, None)]


def resolve_specs(names: Iterable[str]) -> list[RunSpec]:
    """Runs for the command line's SCENARIO arguments: a bundled name (``demo``), ``queueing`` or a YAML file.

    Raises :class:`DigestUsageError` naming the argument when it is neither, or when the file is not a valid
    scenario; the caller exits 2.
    """
    from simulator.scenario import ScenarioError, load_scenario

    bundled = {s.name: s for s in bundled_specs()}
    specs: list[RunSpec] = []
    for arg in names:
        if arg in bundled:
            spec = bundled[arg]
        else:
            path = Path(arg)
            if not path.is_file():
                known = ", ".join(bundled)
                raise DigestUsageError(f"unknown scenario {arg!r}: no such file, and not a bundled name ({known})")
            spec = RunSpec(path.stem, str(path.resolve()))
        if spec.path is not None:
            try:
                load_scenario(spec.path)
            except (ScenarioError, OSError) as exc:
                raise DigestUsageError(f"scenario file {spec.path}: {exc}") from None
        if any(s.name == spec.name for s in specs):
            if spec not in specs:
                raise DigestUsageError(f"two scenarios named {spec.name!r}: {arg} and an earlier argument")
            continue
        specs.append(spec)
    return specs


def load_baseline(path: Path) -> dict[str, dict[str, Any]]:
    """The baseline's entries by run name. Raises :class:`DigestUsageError` naming the file when it is missing,
    unreadable or not a digest baseline."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DigestUsageError(f"baseline {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise DigestUsageError(f"baseline {path}: not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("runs"), dict):
        raise DigestUsageError(f"baseline {path}: not a digest baseline (expected an object with 'runs')")
    if document.get("format") != FORMAT:
        raise DigestUsageError(
            f"baseline {path}: format {document.get('format')!r}, this wsfinal writes format {FORMAT} "
            "(re-record it with --update)"
        )
    runs = document["runs"]
    for name, entry in runs.items():
        if not isinstance(entry, dict) or not all(k in entry for k in ("status", "records", "accounting", "summary")):
            raise DigestUsageError(f"baseline {path}: runs.{name}: expected status, records, accounting, summary")
    return runs


def write_baseline(path: Path, runs: dict[str, dict[str, Any]]) -> None:
    document = {
        "format": FORMAT,
        "about": "wsfinal digest baseline (docs/digest.md). Re-record with `wsfinal digest --update [SCENARIO ...]`"
        " only when results changed on purpose, and say why in the commit.",
        "excluded_summary_keys": list(EXCLUDED_SUMMARY_KEYS),
        "runs": {name: runs[name] for name in sorted(runs)},
    }
    path.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n", encoding="utf-8")


# -- running ----------------------------------------------------------------------------------------------------


def run_all(specs: list[RunSpec], jobs: int, progress: bool) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
    """Run ``specs`` (in a process pool of ``jobs`` when > 1) and yield (spec, entry) in completion order."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(specs), unit="run", desc="digest", file=sys.stderr, leave=False)
    try:
        if jobs <= 1 or len(specs) <= 1:
            for spec in specs:
                if bar is not None:
                    bar.set_postfix_str(spec.name)
                entry = run_entry(spec)
                if bar is not None:
                    bar.update()
                yield spec, entry
            return
        from benchmarks.sweep import make_executor

        with make_executor(min(jobs, len(specs))) as pool:
            futures = {pool.submit(run_entry, spec): spec for spec in specs}
            for future in as_completed(futures):
                if bar is not None:
                    bar.update()
                yield futures[future], future.result()
    finally:
        if bar is not None:
            bar.close()


def _line(name: str, entry: dict[str, Any], verdict: str, width: int) -> str:
    return (
        f"{name:<{width}}  {entry['status']:<7} records {entry['records'][:16]}  accounting {entry['accounting'][:16]}"
        f"  summary {entry['summary'][:16]}  {verdict}"
    )


def main(args: argparse.Namespace) -> int:
    try:
        if args.jobs < 1:
            raise DigestUsageError(f"--jobs {args.jobs}: need at least one")
        specs = resolve_specs(args.scenarios) if args.scenarios else bundled_specs()
        baseline_path = Path(args.baseline)
        # --update of named runs merges them into the baseline (a new file when there is none); --update of
        # every run replaces it.
        baseline: dict[str, dict[str, Any]] = {}
        if not args.update or (args.scenarios and baseline_path.exists()):
            baseline = load_baseline(baseline_path)
    except DigestUsageError as exc:
        print(f"wsfinal digest: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()  # reporting only
    current: dict[str, dict[str, Any]] = {}
    for spec, entry in run_all(specs, args.jobs, progress=len(specs) > 1):
        current[spec.name] = entry
    wall = time.perf_counter() - started
    width = max(len(s.name) for s in specs)
    if args.update:
        failed = [s.name for s in specs if current[s.name]["status"] != "ok"]
        if failed:
            print(f"wsfinal digest: not updating, runs failed: {', '.join(failed)}", file=sys.stderr)
            return 1
        runs = {**baseline, **current} if args.scenarios else current
        try:
            write_baseline(baseline_path, runs)
        except OSError as exc:
            print(f"wsfinal digest: baseline {baseline_path}: cannot write it ({exc.strerror or exc})", file=sys.stderr)
            return 2
        for s in specs:
            print(_line(s.name, current[s.name], "recorded", width))
        print(f"baseline {baseline_path}: {len(specs)} of {len(runs)} runs recorded ({wall:.1f}s wall)")
        return 0
    diffs: dict[str, list[str]] = {s.name: diff_entry(s.name, current[s.name], baseline.get(s.name)) for s in specs}
    stale = [] if args.scenarios else sorted(set(baseline) - set(current))
    if args.json:
        out = {
            "baseline": str(baseline_path),
            "equal": not stale and not any(diffs.values()),
            "runs": {
                s.name: {k: v for k, v in current[s.name].items() if k != "summary_values"}
                | {"equal": not diffs[s.name], "diff": diffs[s.name]}
                for s in specs
            },
            "stale": stale,
        }
        print(json.dumps(out, indent=2))
    else:
        for s in specs:
            verdict = "same" if not diffs[s.name] else ("NEW" if s.name not in baseline else "DIFFERS")
            print(_line(s.name, current[s.name], verdict, width))
        changed = [line for s in specs for line in diffs[s.name]]
        changed += [f"{name}: in the baseline but no longer run (re-record with --update)" for name in stale]
        if changed:
            print(f"\nresults differ from {baseline_path}:")
            print("\n".join(changed))
        else:
            print(f"all {len(specs)} runs equal to {baseline_path}")
        print(f"({wall:.1f}s wall)", file=sys.stderr)
    return 1 if stale or any(diffs.values()) else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "digest",
        help="CI: check that runs are byte-identical to the digest baseline",
        description=(
            "Run each scenario in virtual time with its own strategy and seed (default: every bundled "
            "scenarios/*.yaml and the queueing bench setup) and print one line per run: status and SHA-256 "
            "digests of the per-request records, the outcome accounting and the summary (without "
            f"{', '.join(EXCLUDED_SUMMARY_KEYS)}). Compare with --baseline. Exit codes: 0 all equal, 1 a "
            "difference (shown per scenario and part) or a failed run under --update, 2 bad arguments, unknown "
            "scenario or a baseline that cannot be read (or, with --update, written). See docs/digest.md."
        ),
    )
    p.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"a bundled scenario name (e.g. demo), {QUEUEING!r}, or a scenario YAML file (default: all bundled)",
    )
    p.add_argument(
        "--baseline",
        default=str(DEFAULT_BASELINE),
        help="baseline file (default benchmarks/digest_baseline.json)",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="rewrite the baseline with this run's digests (only the named scenarios when some are named)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=min(os.cpu_count() or 1, 4),
        help="scenarios run in this many processes (default: CPUs, at most 4; 1 runs in this process)",
    )
    p.add_argument("--json", action="store_true", help="print the digests and differences as JSON")
    p.set_defaults(func=main)
