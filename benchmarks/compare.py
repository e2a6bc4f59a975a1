"""Compare load-balancing strategies on one scenario over several seeds, with confidence intervals and tests.

:func:`compare` runs every strategy on every seed (the same seeds for every strategy: common random numbers),
in parallel through a ``concurrent.futures.Executor`` (a process pool unless one is handed in, so a Dask
``Client.get_executor()`` works too), saves each run's result directory, reduces each run to a few numbers
(:func:`run_metrics`), and aggregates them across seeds (:func:`aggregate`): bootstrap 95% intervals of the
mean across seeds, pairwise tests with Holm correction, and a ranking. ``comparison.json`` holds everything
the report needs besides the run directories; ``comparison.csv`` holds one row per run for spreadsheets.

Time to stop routing (``reroute_s``): for each fault that targets a node, the node's *pre-fault share* is its
fraction of the requests intended in the :data:`REROUTE_BASELINE_S` seconds before the fault (not before the
warm-up ends). After the fault starts, a window of :data:`REROUTE_WINDOW_S` slides in steps of
:data:`REROUTE_STEP_S`; the metric is the end of the first window whose share is below
:data:`REROUTE_THRESHOLD` times the pre-fault share, minus the fault start. It is ``None`` when the share
never drops that low before the fault ends (the strategy kept routing to the node), and when the node had no
pre-fault share. A run's value is the mean over its node faults that have one.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import statistics as st
from simulator.results import OUTCOMES, RunResult, machine_info, software_versions
from simulator.run_summary import scenario_block
from simulator.scenario import Scenario
from wsfinal.config import LoadBalancingStrategy
from wsfinal.manager import derive_seeds

COMPARISON_SCHEMA = 1
REROUTE_WINDOW_S = 1.0
REROUTE_STEP_S = 0.1
REROUTE_THRESHOLD = 0.5
REROUTE_BASELINE_S = 5.0

#: Metrics aggregated across seeds: name -> (label, lower is better).
METRICS: dict[str, tuple[str, bool]] = {
    "p50_ms": ("p50 latency (ms)", True),
    "p95_ms": ("p95 latency (ms)", True),
    "p99_ms": ("p99 latency (ms)", True),
    "p99_9_ms": ("p99.9 latency (ms)", True),
    "mean_ms": ("mean latency (ms)", True),
    "success_rate": ("success rate", False),
    "reconnects": ("reconnects", True),
    "reroute_s": ("time to stop routing to faulty node (s)", True),
    "alerts_fired": ("alerts fired", False),
    "alert_delay_s": ("first alert after fault (s)", True),
}
#: Metrics that get pairwise tests and a ranking.
RANKED: tuple[str, ...] = ("p50_ms", "p99_ms", "mean_ms", "success_rate", "reroute_s")


def parse_strategies(text: str | Sequence[str]) -> list[str]:
    """``"all"`` or a comma-separated list (or a sequence) of strategy names -> canonical values, in order."""
    if isinstance(text, str):
        if text.strip().lower() == "all":
            return [s.value for s in LoadBalancingStrategy]
        text = [t for t in text.split(",") if t.strip()]
    out = []
    for name in text:
        value = LoadBalancingStrategy.parse(name).value
        if value not in out:
            out.append(value)
    if not out:
        raise ValueError("strategies: none given")
    return out


def time_to_stop_routing(
    intended: np.ndarray,
    node: np.ndarray,
    node_index: int,
    fault_start: float,
    fault_end: float,
    *,
    window_s: float = REROUTE_WINDOW_S,
    step_s: float = REROUTE_STEP_S,
    threshold: float = REROUTE_THRESHOLD,
    baseline_s: float = REROUTE_BASELINE_S,
) -> float | None:
    """Seconds from ``fault_start`` until the node's share first drops below ``threshold`` x its pre-fault share.

    ``intended`` and ``node`` are the request columns (requests with no node, ``-1``, are ignored). See the
    module docstring for the exact definition; ``None`` when it never happens before ``fault_end``.
    """
    routed = node >= 0
    t, n = intended[routed], node[routed]
    before = (t >= fault_start - baseline_s) & (t < fault_start)
    if not before.any():
        return None
    share0 = float(np.mean(n[before] == node_index))
    if share0 <= 0:
        return None
    order = np.argsort(t, kind="stable")
    t, hit = t[order], (n[order] == node_index).astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(hit)])
    steps = max(0, math.floor((fault_end - fault_start - window_s) / step_s + 1e-9) + 1)
    starts = fault_start + step_s * np.arange(steps)
    lo = np.searchsorted(t, starts, side="left")
    hi = np.searchsorted(t, starts + window_s, side="left")
    count = hi - lo
    share = np.where(count > 0, (cum[hi] - cum[lo]) / np.maximum(count, 1), np.nan)
    below = np.flatnonzero((count > 0) & (share < threshold * share0))
    if below.size == 0:
        return None
    return float(starts[below[0]] + window_s - fault_start)


def run_metrics(result: RunResult) -> dict[str, Any]:
    """One run reduced to the numbers compared across seeds (measured after warm-up, acknowledged latencies)."""
    s = result.summary
    block = s["requests"]["all"]
    lat = block["latency"]
    faults = s["scenario"].get("faults", [])
    duration = float(s["scenario"].get("duration_s") or s.get("simulated_s") or 0.0)
    reroutes = []
    table = result.requests
    for f in faults:
        if f.get("node") is None or f["node"] not in table.nodes:
            continue
        end = f["at_s"] + f["duration_s"] if f.get("duration_s") is not None else duration
        reroutes.append(
            time_to_stop_routing(
                table.columns["intended"], table.columns["node"], table.nodes.index(f["node"]), f["at_s"], end
            )
        )
    found = [r for r in reroutes if r is not None]
    alerts = s.get("alerts_fired", [])
    delay = None
    if faults:
        start = min(f["at_s"] for f in faults)
        after = [a["time"] - start for a in alerts if a["time"] >= start]
        delay = min(after) if after else None
    return {
        "strategy": s["strategy"],
        "seed": s["seed"],
        "status": s["status"],
        "submitted": block["submitted"],
        "outcomes": dict(block["outcomes"]),
        "success_rate": block["success_rate"],
        "p50_ms": lat.get("p50_ms"),
        "p95_ms": lat.get("p95_ms"),
        "p99_ms": lat.get("p99_ms"),
        "p99_9_ms": lat.get("p99_9_ms"),
        "mean_ms": lat.get("mean_ms"),
        "reconnects": s["reconnects"]["total"],
        "reroute_s": float(np.mean(found)) if found else None,
        "reroute_by_fault": reroutes,
        "alerts_fired": len(alerts),
        "alert_delay_s": delay,
        "wall_time_s": result.timing.get("wall_time_s"),
    }


def _run_one(scenario: Scenario, strategy: str, seed: int, mode: str, directory: str) -> dict[str, Any]:
    """Worker body (top level so it pickles): run, save the result directory, return the run's metrics."""
    from simulator.runner import run

    result = run(scenario, strategy=strategy, seed=seed, mode=mode)
    result.save(directory)
    metrics = run_metrics(result)
    metrics["dir"] = directory
    return metrics


def aggregate(
    runs: Sequence[dict[str, Any]], strategies: Sequence[str], *, rng_seed: int = 0, test: str = "mannwhitney"
) -> dict[str, Any]:
    """Per-strategy intervals and per-metric rankings from the runs' metrics (pure; seeded bootstrap)."""
    rng = np.random.default_rng(np.random.SeedSequence(rng_seed))
    per: dict[str, Any] = {}
    for name in strategies:
        mine = [r for r in runs if r["strategy"] == name]
        outcomes = {o: sum(int(r["outcomes"].get(o, 0)) for r in mine) for o in OUTCOMES}
        per[name] = {
            "runs": len(mine),
            "seeds": [r["seed"] for r in mine],
            "metrics": {m: st.bootstrap_ci([r.get(m) for r in mine], rng).to_dict() for m in METRICS},
            "values": {m: [r.get(m) for r in mine] for m in METRICS},
            "outcomes": outcomes,
            "submitted": sum(int(r["submitted"]) for r in mine),
            "rerouted_runs": sum(1 for r in mine if r.get("reroute_s") is not None),
            "failed_runs": sum(1 for r in mine if r.get("status") != "ok"),
        }
    rankings = {}
    for m in RANKED:
        samples = {name: per[name]["values"][m] for name in strategies}
        rankings[m] = st.rank(samples, m, rng, lower_is_better=METRICS[m][1], test=test).to_dict()
    return {"strategies": per, "rankings": rankings}


def _plain(obj: Any) -> Any:
    """A JSON-ready copy of scenario dataclasses (enums -> values, tuples -> lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "value") and not isinstance(obj, int | float | str | bool):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    return obj


@dataclasses.dataclass
class ComparisonResult:
    """What :func:`compare` produced: ``data`` is comparison.json; ``out`` the directory it lives in."""

    data: dict[str, Any]
    out: Path

    @property
    def strategies(self) -> list[str]:
        return list(self.data["strategies_order"])

    @property
    def runs(self) -> list[dict[str, Any]]:
        return list(self.data["runs"])

    def run_dir(self, run: dict[str, Any]) -> Path:
        return self.out / str(run["dir"])

    def save(self) -> Path:
        """Write comparison.json and comparison.csv into :attr:`out`; returns the JSON path."""
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "comparison.json"
        path.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=_json_default))
        write_csv(self.data, self.out / "comparison.csv")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ComparisonResult:
        """Read ``DIR/comparison.json``. Raises ``FileNotFoundError`` or ``ValueError`` naming the file."""
        d = Path(directory)
        path = d / "comparison.json"
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
        if data.get("schema_version") != COMPARISON_SCHEMA:
            raise ValueError(f"{path}: schema_version {data.get('schema_version')!r}, expected {COMPARISON_SCHEMA}")
        return cls(data, d)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if math.isnan(obj) else float(obj)
    return str(obj)


CSV_COLUMNS = ("strategy", "seed", "status", "submitted", *METRICS, *(f"outcome_{o}" for o in OUTCOMES), "dir")


def write_csv(data: dict[str, Any], path: Path) -> None:
    """One row per run: its metrics and outcome counts."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for r in data["runs"]:
            row = [r["strategy"], r["seed"], r["status"], r["submitted"]]
            row += ["" if r.get(m) is None else r[m] for m in METRICS]
            row += [r["outcomes"].get(o, 0) for o in OUTCOMES]
            row.append(r["dir"])
            w.writerow(row)


def build_comparison(
    runs: Sequence[dict[str, Any]],
    strategies: Sequence[str],
    *,
    scenario: dict[str, Any],
    scenario_params: dict[str, Any] | None,
    mode: str,
    base_seed: int | None,
    seeds: Sequence[int],
    test: str = "mannwhitney",
    wall_time_s: float | None = None,
) -> dict[str, Any]:
    """The comparison.json document from run metrics (used by :func:`compare` and to rebuild a single run)."""
    # Sorted before aggregating, so the seeded bootstrap sees the same order however the runs finished.
    runs = sorted(runs, key=lambda r: (list(strategies).index(r["strategy"]), r["seed"]))
    return {
        "schema_version": COMPARISON_SCHEMA,
        "kind": "comparison",
        "scenario": scenario,
        "scenario_params": scenario_params,
        "mode": mode,
        "base_seed": base_seed,
        "seeds": list(seeds),
        "seed_derivation": (
            f"numpy.random.SeedSequence({base_seed}).spawn({len(seeds)}); seed i = child[i].generate_state(1)[0]"
            if base_seed is not None
            else "given"
        ),
        "strategies_order": list(strategies),
        "test": test,
        "confidence": st.CONFIDENCE,
        "alpha": st.ALPHA,
        "reroute_definition": {
            "window_s": REROUTE_WINDOW_S,
            "step_s": REROUTE_STEP_S,
            "threshold": REROUTE_THRESHOLD,
            "baseline_s": REROUTE_BASELINE_S,
        },
        "metric_labels": {k: v[0] for k, v in METRICS.items()},
        "runs": runs,
        **aggregate(runs, strategies, test=test),
        "versions": software_versions(),
        "machine": machine_info(),
        "wall_time_s": wall_time_s,
    }


def compare(
    scenario: Scenario,
    strategies: Sequence[str] | str = "all",
    seeds: int | Sequence[int] = 5,
    mode: str = "virtual",
    workers: int = 1,
    out: str | Path = "results/compare",
    *,
    base_seed: int | None = None,
    executor: cf.Executor | None = None,
    progress: bool = False,
    test: str = "mannwhitney",
) -> ComparisonResult:
    """Run ``strategies`` x ``seeds`` on ``scenario``, save everything under ``out``, and return the comparison.

    ``seeds`` is a count (seeds derived from ``base_seed``, default the scenario's seed, with
    :func:`derive_seeds`) or an explicit list. ``executor`` (for example a Dask ``Client.get_executor()``) is
    used as given and not shut down; otherwise a ``ProcessPoolExecutor(workers)`` is made (``workers=1``
    runs in this process). Run directories go to ``out/runs/STRATEGY-seedSEED``. The caller renders the report
    next (``reports.html.render_report(result.data, result.out)``).
    """
    names = parse_strategies(strategies)
    if isinstance(seeds, int):
        base = scenario.seed if base_seed is None else base_seed
        seed_list = derive_seeds(base, seeds)
    else:
        base = None
        seed_list = [int(s) for s in seeds]
    if workers < 1:
        raise ValueError(f"workers={workers!r}: must be >= 1")
    out_dir = Path(out)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    jobs = [(name, seed, f"runs/{name}-seed{seed}") for name in names for seed in seed_list]
    wall = time.perf_counter()  # reporting only
    results: list[dict[str, Any]] = []
    bar = None
    try:
        if executor is None and workers == 1:
            bar = _progress(len(jobs), progress)
            for name, seed, rel in jobs:
                results.append(_finish(_run_one(scenario, name, seed, mode, str(out_dir / rel)), rel))
                if bar:
                    bar.update(1)
        else:
            own = executor is None
            pool = executor if executor is not None else cf.ProcessPoolExecutor(max_workers=workers)
            try:
                futures = {
                    pool.submit(_run_one, scenario, name, seed, mode, str(out_dir / rel)): rel
                    for name, seed, rel in jobs
                }
                # The bar (and tqdm's monitor thread) only after the pool has forked its workers.
                bar = _progress(len(jobs), progress)
                for fut in cf.as_completed(futures):
                    results.append(_finish(fut.result(), futures[fut]))
                    if bar:
                        bar.update(1)
            finally:
                if own:
                    pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar:
            bar.close()
    data = build_comparison(
        results,
        names,
        scenario=scenario_block(scenario),
        scenario_params=_plain(scenario),
        mode=mode,
        base_seed=base,
        seeds=seed_list,
        test=test,
        wall_time_s=time.perf_counter() - wall,
    )
    result = ComparisonResult(data, out_dir)
    result.save()
    return result


def _finish(metrics: dict[str, Any], rel: str) -> dict[str, Any]:
    metrics["dir"] = rel  # relative, so the directory can be moved or attached as a CI artefact
    return metrics


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="run", desc="compare", dynamic_ncols=True)


def comparison_from_run(directory: str | Path) -> ComparisonResult:
    """A one-run "comparison" built from a single run directory (for ``wsfinal report RUN_DIR``)."""
    d = Path(directory)
    result = RunResult.load(d)
    metrics = run_metrics(result)
    metrics["dir"] = "."
    s = result.summary
    data = build_comparison(
        [metrics],
        [s["strategy"]],
        scenario=s["scenario"],
        scenario_params=None,
        mode=s["mode"],
        base_seed=None,
        seeds=[s["seed"]],
    )
    data["kind"] = "run"
    data["versions"], data["machine"] = s.get("versions", data["versions"]), s.get("machine", data["machine"])
    return ComparisonResult(data, d)


__all__ = [
    "METRICS",
    "RANKED",
    "ComparisonResult",
    "aggregate",
    "build_comparison",
    "compare",
    "comparison_from_run",
    "derive_seeds",
    "parse_strategies",
    "run_metrics",
    "time_to_stop_routing",
]
