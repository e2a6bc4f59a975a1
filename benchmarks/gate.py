"""The CI regression gate: a fixed suite of scenarios x strategies in virtual time, compared with a baseline.

``benchmarks/suite.yaml`` names scenario files (each shortened with key-path overrides, as in sweeps), the
strategies, the seed and a tolerance per metric; ``benchmarks/baseline.json`` holds the metrics of the last
accepted run. :func:`run_suite` runs every entry, :func:`compare` checks each metric against its baseline value:
a change in the metric's bad direction (``worse: higher`` for latency, ``lower`` for success rate) larger than
``max(absolute, relative * |baseline|)`` is a regression; a change as large the other way is an improvement
(reported, not failed; accept it with ``--update``). A baseline recorded for a different suite entry (the
scenario's overrides, strategy or seed changed) is stale and fails until the baseline is updated.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from simulator.results import RunResult, software_versions
from simulator.scenario import ScenarioError, load_scenario, parse_scenario, safe_load_yaml, yaml_problem
from simulator.scenario_problems import problem_lines, schema_problems
from wsfinal.config import LoadBalancingStrategy
from wsfinal.exceptions import ConfigurationError

from .sweep import KEY_PATH_NAME, SweepError, apply_overrides, execute, run_key

__all__ = [
    "DEFAULT_METRICS",
    "SUITE_SCHEMA",
    "Check",
    "GateReport",
    "Suite",
    "SuiteEntry",
    "Tolerance",
    "compare",
    "load_baseline",
    "load_suite",
    "markdown",
    "metrics_of",
    "run_suite",
    "table",
    "write_baseline",
]

BASELINE_VERSION = 1
#: Metrics a suite may gate on (see :func:`metrics_of`).
GATE_METRICS = ("success_rate", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms", "mean_ms", "max_ms", "reconnects",
                "alerts_fired")  # fmt: skip

_TOLERANCE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["worse"],
    "properties": {
        "worse": {"enum": ["higher", "lower"], "description": "the direction that is a regression"},
        "relative": {"type": "number", "minimum": 0, "description": "allowed change as a fraction of the baseline"},
        "absolute": {"type": "number", "minimum": 0, "description": "allowed change in the metric's unit"},
    },
}
SUITE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "wsfinal gate suite",
    "type": "object",
    "additionalProperties": False,
    "required": ["scenarios", "strategies", "metrics"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "seed": {"type": "integer", "minimum": 0},
        "strategies": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "scenarios": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path"],
                "properties": {
                    "path": {"type": "string", "minLength": 1},
                    "set": {"type": "object", "propertyNames": KEY_PATH_NAME},
                },
            },
        },
        "metrics": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"enum": list(GATE_METRICS)},
            "additionalProperties": _TOLERANCE,
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SUITE_SCHEMA)
#: Tolerances used when a suite does not list its own (the bundled suite lists them explicitly).
DEFAULT_METRICS: dict[str, dict[str, Any]] = {
    "success_rate": {"worse": "lower", "absolute": 0.002},
    "p50_ms": {"worse": "higher", "relative": 0.05, "absolute": 0.1},
    "p99_ms": {"worse": "higher", "relative": 0.10, "absolute": 0.5},
    "mean_ms": {"worse": "higher", "relative": 0.05, "absolute": 0.1},
    "reconnects": {"worse": "higher", "absolute": 0},
}


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move in its bad direction: ``max(absolute, relative * |baseline|)``."""

    worse: str  # "higher" | "lower"
    relative: float = 0.0
    absolute: float = 0.0

    def slack(self, baseline: float) -> float:
        return max(self.absolute, self.relative * abs(baseline))

    def describe(self) -> str:
        parts = [f"{self.relative:.0%}" if self.relative else "", f"{self.absolute:g}" if self.absolute else ""]
        text = " or ".join(p for p in parts if p) or "0"
        return f"{'+' if self.worse == 'higher' else '-'}{text}"


@dataclass
class SuiteEntry:
    """One scenario x strategy of the suite; ``name`` is ``scenario/strategy``."""

    name: str
    scenario: str
    strategy: str
    seed: int
    key: str
    document: dict[str, Any]
    base_dir: str


@dataclass
class Suite:
    source: str
    name: str
    seed: int
    entries: list[SuiteEntry]
    tolerances: dict[str, Tolerance]


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file (each scenario with its overrides must load). Raises :class:`SweepError`."""
    path = Path(path)
    source = str(path)
    try:
        document = safe_load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SweepError(f"{source}: cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SweepError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except (yaml.YAMLError, RecursionError) as exc:  # one line, as a scenario file's: FILE: YAML syntax error at ...
        raise SweepError(f"{source}: {yaml_problem(exc)}") from None
    if not isinstance(document, dict):
        raise SweepError(f"{source}: the document must be a mapping (scenarios, strategies, metrics)")
    problems = schema_problems(_VALIDATOR, document)
    if problems:
        raise SweepError("\n".join(problem_lines(source, problems)))
    strategies = []
    for i, name in enumerate(document["strategies"]):
        try:
            strategies.append(LoadBalancingStrategy.parse(name).value)
        except ConfigurationError as exc:
            raise SweepError(f"{source}: strategies[{i}]: {exc}") from None
    seed = int(document.get("seed", 1))
    entries = []
    for i, item in enumerate(document["scenarios"]):
        scenario_path = Path(os.path.normpath(path.parent / item["path"]))
        try:
            load_scenario(scenario_path)
            raw = safe_load_yaml(scenario_path.read_text(encoding="utf-8"))
            doc = apply_overrides(raw, item.get("set") or {})
            scenario = parse_scenario(doc, str(scenario_path), base_dir=scenario_path.parent)
        except (ScenarioError, SweepError, OSError) as exc:
            raise SweepError(f"{source}: scenarios[{i}]: {exc}") from None
        for strategy in strategies:
            entries.append(
                SuiteEntry(
                    name=f"{scenario.name}/{strategy}",
                    scenario=str(scenario_path),
                    strategy=strategy,
                    seed=seed,
                    key=run_key(doc, strategy, seed, "virtual"),
                    document=doc,
                    base_dir=str(scenario_path.parent),
                )
            )
    tolerances = {name: Tolerance(**spec) for name, spec in document["metrics"].items()}
    return Suite(source, document.get("name") or path.stem, seed, entries, tolerances)


def metrics_of(summary: Mapping[str, Any]) -> dict[str, float | None]:
    """The gate's metrics from a run summary (all requests after warm-up; latency of acknowledged ones)."""
    block = summary["requests"]["all"]
    lat = block["latency"]
    out: dict[str, float | None] = {k: lat.get(k) for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms")}
    out.update(
        mean_ms=lat.get("mean_ms"),
        max_ms=lat.get("max_ms"),
        success_rate=block.get("success_rate"),
        reconnects=float(summary["reconnects"]["total"]),
        alerts_fired=float(len(summary.get("alerts_fired", []))),
    )
    return out


def run_suite(suite: Suite, executor: Executor | None = None) -> dict[str, dict[str, Any]]:
    """Run every entry (in this process when ``executor`` is None); returns ``{entry name: result record}``."""
    results: dict[str, RunResult] = {}
    if executor is None:
        for e in suite.entries:
            results[e.name] = execute(e.document, e.scenario, e.base_dir, e.strategy, e.seed, "virtual")
    else:
        futures = {
            e.name: executor.submit(execute, e.document, e.scenario, e.base_dir, e.strategy, e.seed, "virtual")
            for e in suite.entries
        }
        results = {name: fut.result() for name, fut in futures.items()}
    out = {}
    for e in suite.entries:
        summary = results[e.name].summary
        out[e.name] = {
            "scenario": summary["scenario"]["name"],
            "strategy": e.strategy,
            "seed": e.seed,
            "key": e.key,
            "status": summary["status"],
            "error": summary.get("error"),
            "metrics": {k: v for k, v in metrics_of(summary).items() if k in suite.tolerances},
        }
    return out


def write_baseline(path: str | Path, suite: Suite, current: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``current`` as the new baseline (stable formatting, so its diff in review is readable)."""
    data = {
        "version": BASELINE_VERSION,
        "suite": suite.name,
        "versions": {k: v for k, v in software_versions().items() if k in ("python", "numpy")},
        "entries": {name: dict(current[name]) for name in sorted(current)},
    }
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_baseline(path: str | Path) -> dict[str, dict[str, Any]]:
    """The baseline's entries. Raises :class:`SweepError` if unreadable (a missing file: run with --update)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SweepError(f"{path}: no baseline yet; create it with --update") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SweepError(f"{path}: cannot read the baseline: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != BASELINE_VERSION or "entries" not in data:
        raise SweepError(f"{path}: not a baseline of version {BASELINE_VERSION}; recreate it with --update")
    return dict(data["entries"])


@dataclass
class Check:
    """One metric of one entry against its baseline. ``status``: ok, regression, improved, missing, stale,
    failed (the run itself failed)."""

    entry: str
    metric: str
    baseline: float | None
    current: float | None
    tolerance: Tolerance | None
    status: str
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline


@dataclass
class GateReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status in ("regression", "missing", "stale", "failed")]

    @property
    def passed(self) -> bool:
        return not self.failures


def _check(entry: str, metric: str, base: float | None, cur: float | None, tol: Tolerance) -> Check:
    if base is None and cur is None:
        return Check(entry, metric, base, cur, tol, "ok")
    if base is None or cur is None:
        bad = cur is None
        note = "no value now (no successful request?)" if bad else "had no value in the baseline"
        return Check(entry, metric, base, cur, tol, "regression" if bad else "improved", note)
    if not (math.isfinite(base) and math.isfinite(cur)):
        return Check(entry, metric, base, cur, tol, "ok" if base == cur else "regression")
    change = cur - base if tol.worse == "higher" else base - cur  # > 0: worse
    slack = tol.slack(base)
    if change > slack + 1e-12:
        return Check(entry, metric, base, cur, tol, "regression", f"worse by more than {slack:.4g}")
    if -change > slack + 1e-12:
        return Check(entry, metric, base, cur, tol, "improved", "better than the baseline: accept with --update")
    return Check(entry, metric, base, cur, tol, "ok")


def compare(suite: Suite, current: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, Any]) -> GateReport:
    """Check every metric of every entry of ``current`` against ``baseline`` under the suite's tolerances."""
    report = GateReport()
    for e in suite.entries:
        cur = current[e.name]
        base = baseline.get(e.name)
        if cur["status"] != "ok":
            report.checks.append(Check(e.name, "status", None, None, None, "failed", str(cur.get("error"))))
            continue
        if base is None:
            report.checks.append(Check(e.name, "-", None, None, None, "missing", "not in the baseline: --update"))
            continue
        if base.get("key") != e.key:
            note = "the suite entry changed since the baseline was written (overrides, seed): --update"
            report.checks.append(Check(e.name, "-", None, None, None, "stale", note))
            continue
        for metric, tol in suite.tolerances.items():
            report.checks.append(_check(e.name, metric, base["metrics"].get(metric), cur["metrics"].get(metric), tol))
    return report


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _delta(c: Check) -> str:
    d = c.delta
    if d is None:
        return "-"
    rel = f" ({d / c.baseline:+.1%})" if c.baseline else ""
    return f"{d:+.4g}{rel}"


_COLUMNS = ("entry", "metric", "baseline", "current", "change", "tolerance", "status")


def _rows(checks: Sequence[Check]) -> list[tuple[str, ...]]:
    return [
        (
            c.entry,
            c.metric,
            _num(c.baseline),
            _num(c.current),
            _delta(c),
            c.tolerance.describe() if c.tolerance else "-",
            c.status.upper() + (f": {c.note}" if c.note and c.status != "ok" else ""),
        )
        for c in checks
    ]


def table(report: GateReport) -> str:
    """The checks as an aligned text table, then a one-line verdict."""
    rows = [_COLUMNS, *_rows(report.checks)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    return "\n".join([*lines, "", verdict(report)])


def verdict(report: GateReport) -> str:
    entries = len({c.entry for c in report.checks})
    if report.passed:
        improved = sum(c.status == "improved" for c in report.checks)
        return f"gate PASSED: {entries} entries, {len(report.checks)} checks" + (
            f", {improved} improved (accept with --update)" if improved else ""
        )
    bad = len({c.entry for c in report.failures})
    return f"gate FAILED: {len(report.failures)} of {len(report.checks)} checks, in {bad} of {entries} entries"


def markdown(report: GateReport, suite: Suite) -> str:
    """A Markdown summary for ``$GITHUB_STEP_SUMMARY``: verdict, the failures, then every check folded."""

    def md_table(checks: Sequence[Check]) -> list[str]:
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        out = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        out += ["| " + " | ".join(esc(cell) for cell in row) + " |" for row in _rows(checks)]
        return out

    lines = [f"## wsfinal gate: {suite.name}", "", f"**{verdict(report)}**", ""]
    if report.failures:
        lines += ["### Failures", "", *md_table(report.failures), ""]
    lines += ["<details><summary>All checks</summary>", "", *md_table(report.checks), "", "</details>", ""]
    return "\n".join(lines)
