"""Parameter sweeps: a grid of scenarios x strategies x seeds x scenario parameters, run through an Executor.

A sweep file (YAML, validated with :data:`SWEEP_SCHEMA`) names scenario files, strategies, seeds, fixed
overrides (``set``) and swept ``parameters``. Parameters are addressed by a key path into the scenario's YAML
(``clients.workload[0].rate``, ``faults[0].duration``; ``workload[...]`` and ``connections[...]`` are short for
``clients.workload[...]`` / ``clients.connections[...]``). Each value is written into the raw YAML mapping and
the result is validated by the scenario loader, so a bad value is reported with the sweep file, the key path
and the scenario loader's reason, before anything runs.

Runs go through a ``concurrent.futures.Executor`` (a process pool by default, a Dask cluster's executor with a
scheduler address). Workers return the :class:`~simulator.results.RunResult`; this process writes it under
``OUT/runs/<key>/`` as each run finishes (written to a temporary directory, renamed when complete) and appends a
line to ``OUT/index.jsonl``. ``<key>`` is a hash of everything that determines the run (the scenario document
after overrides, strategy, seed, mode), so rerunning an interrupted sweep skips the runs already complete.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from simulator.results import RunResult
from simulator.runner import MODES
from simulator.scenario import ScenarioError, load_scenario, parse_scenario, safe_load_yaml, yaml_problem
from simulator.scenario_problems import format_path, problem_lines, schema_problems
from wsfinal.config import LoadBalancingStrategy
from wsfinal.exceptions import ConfigurationError, UsageError
from wsfinal.manager import derive_seeds

__all__ = [
    "METRICS",
    "SWEEP_SCHEMA",
    "RunSpec",
    "Sweep",
    "SweepError",
    "SweepOutcome",
    "SweepStore",
    "apply_overrides",
    "expand",
    "load_sweep",
    "make_executor",
    "parse_key_path",
    "parse_sweep",
    "run_key",
    "run_sweep",
]

#: Metrics a sweep report can plot (keys of :func:`benchmarks.compare.run_metrics`).
METRICS: tuple[str, ...] = (
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "p99_9_ms",
    "mean_ms",
    "success_rate",
    "reconnects",
    "reroute_s",
    "alerts_fired",
    "alert_delay_s",
)
_STRATEGIES = [s.value for s in LoadBalancingStrategy]
KEY_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*(\[[0-9]+\]|\.[A-Za-z_][A-Za-z0-9_-]*)*$"
#: The keys of ``set`` and ``parameters`` (and of a suite's ``set``): key paths into a scenario file.
KEY_PATH_NAME: dict[str, Any] = {
    "pattern": KEY_PATH_PATTERN,
    "x-message": "not a key path like clients.workload[0].rate (names and [index] joined by dots)",
}

SWEEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "wsfinal sweep",
    "type": "object",
    "additionalProperties": False,
    "required": ["scenarios", "strategies"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "name of the sweep (default: the file name)"},
        "description": {"type": "string"},
        "scenarios": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1},
            "description": "scenario files, relative to the sweep file",
        },
        "strategies": {
            "oneOf": [
                {"const": "all"},
                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            ],
            "description": "'all' or a list of strategy names",
        },
        "seeds": {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 1000},
                {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
            ],
            "description": "a count (seeds derived from base_seed with SeedSequence.spawn) or explicit seeds",
        },
        "base_seed": {"type": "integer", "minimum": 0},
        "mode": {"enum": list(MODES)},
        "set": {
            "type": "object",
            "propertyNames": KEY_PATH_NAME,
            "description": "overrides applied to every scenario before the swept parameters (key path -> value)",
        },
        "parameters": {
            "type": "object",
            "propertyNames": KEY_PATH_NAME,
            "additionalProperties": {"type": "array", "minItems": 1},
            "description": "swept parameters: key path -> list of values",
        },
        "report": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "x": {
                    "type": "string",
                    "pattern": KEY_PATH_PATTERN,
                    "x-message": "{value} is not a key path like clients.workload[0].rate",
                },
                "metrics": {"type": "array", "minItems": 1, "items": {"enum": list(METRICS)}},
            },
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SWEEP_SCHEMA)


class SweepError(UsageError, ValueError):
    """A sweep file (or a suite file) is invalid; ``str()`` names the file, the key path and the reason."""


# -- key paths and overrides --------------------------------------------------------------------------------

_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[([0-9]+)\]")
#: Short forms: the first part of a key path that lives under ``clients`` in a scenario file.
_UNDER_CLIENTS = ("workload", "connections")


def parse_key_path(text: str) -> list[str | int]:
    """``"faults[0].duration"`` -> ``["faults", 0, "duration"]``. Raises :class:`SweepError` if malformed."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or (pos == 0 and text.startswith(".")):
            raise SweepError(f"key path {text!r}: cannot read it from character {pos + 1} (write a.b[0].c)")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts or not isinstance(parts[0], str):
        raise SweepError(f"key path {text!r}: must start with a key name")
    return parts


def _resolve(document: Mapping[str, Any], parts: list[str | int]) -> list[str | int]:
    if parts and parts[0] in _UNDER_CLIENTS and parts[0] not in document:
        return ["clients", *parts]
    return parts


def apply_overrides(document: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``document`` with each ``key path -> value`` of ``overrides`` written in.

    The path must exist up to its last part (a list index must be in range); the last key of a mapping may be
    new (the scenario loader then says whether it is allowed). Raises :class:`SweepError` naming the path.
    Validate the result with :func:`simulator.scenario.parse_scenario`.
    """
    out: dict[str, Any] = copy.deepcopy(dict(document))
    for text, value in overrides.items():
        parts = _resolve(out, parse_key_path(text))
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = format_path(parts[:i]) or "the document"
            if isinstance(part, int):
                if not isinstance(node, list):
                    raise SweepError(f"{text}: {where} is not a list, cannot take [{part}]")
                if part >= len(node):
                    raise SweepError(f"{text}: {where} has {len(node)} item(s), there is no [{part}]")
            elif not isinstance(node, dict):
                raise SweepError(f"{text}: {where} is not a mapping, cannot take .{part}")
            elif not last and part not in node:
                raise SweepError(f"{text}: {where} has no key {part!r}")
            if last:
                node[part] = copy.deepcopy(value)
            else:
                node = node[part]
    return out


# -- the sweep file -----------------------------------------------------------------------------------------


@dataclass
class Sweep:
    """A validated sweep file. Scenario paths are resolved; ``documents`` holds each scenario's raw mapping."""

    source: str
    name: str
    description: str
    scenarios: list[Path]
    strategies: list[str]
    seeds: list[int]
    mode: str = "virtual"
    fixed: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, list[Any]] = field(default_factory=dict)
    report_x: str | None = None
    report_metrics: list[str] = field(default_factory=lambda: ["p99_ms", "success_rate"])
    documents: dict[Path, dict[str, Any]] = field(default_factory=dict)


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file (and every scenario variant it describes). Raises :class:`SweepError`."""
    path = Path(path)
    try:
        document = safe_load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SweepError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SweepError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except (yaml.YAMLError, RecursionError) as exc:  # one line, as a scenario file's: FILE: YAML syntax error at ...
        raise SweepError(f"{path}: {yaml_problem(exc)}") from None
    return parse_sweep(document, str(path), base_dir=path.parent)


def parse_sweep(document: Any, source: str = "<string>", *, base_dir: str | Path = ".") -> Sweep:
    """Validate an already-parsed sweep document; check every scenario x parameter combination loads."""
    if not isinstance(document, dict):
        raise SweepError(f"{source}: the document must be a mapping (scenarios, strategies, ...)")
    problems = schema_problems(_VALIDATOR, document)
    if problems:
        raise SweepError("\n".join(problem_lines(source, problems)))
    base = Path(base_dir)
    strategies: list[str] = []
    raw_strategies = _STRATEGIES if document["strategies"] == "all" else document["strategies"]
    for i, name in enumerate(raw_strategies):
        try:
            strategies.append(LoadBalancingStrategy.parse(name).value)
        except ConfigurationError:
            raise SweepError(
                f"{source}: strategies[{i}]: unknown strategy {name!r}; expected one of {', '.join(_STRATEGIES)}"
            ) from None
    seeds_value = document.get("seeds", 1)
    seeds = (
        derive_seeds(int(document.get("base_seed", 0)), seeds_value)
        if isinstance(seeds_value, int)
        else [int(s) for s in seeds_value]
    )
    parameters = {str(k): list(v) for k, v in (document.get("parameters") or {}).items()}
    report = document.get("report") or {}
    x = report.get("x") or (next(iter(parameters)) if parameters else None)
    if x is not None and x not in parameters:
        raise SweepError(f"{source}: report.x: {x!r} is not one of the swept parameters ({', '.join(parameters)})")
    if document.get("mode") == "live" and (document.get("set") or document.get("parameters")):
        raise SweepError(
            f"{source}: mode: live runs the exchange from the scenario file itself, so 'set' and 'parameters' "
            "cannot apply there; sweep parameters in virtual mode, or write one scenario file per variant"
        )
    sweep = Sweep(
        source=source,
        name=document.get("name") or Path(source).stem,
        description=document.get("description", ""),
        scenarios=[],
        strategies=list(dict.fromkeys(strategies)),
        seeds=list(dict.fromkeys(seeds)),
        mode=document.get("mode", "virtual"),
        fixed=dict(document.get("set") or {}),
        parameters=parameters,
        report_x=x,
        report_metrics=list(report.get("metrics") or ["p99_ms", "success_rate"]),
    )
    for i, name in enumerate(document["scenarios"]):
        scenario_path = Path(os.path.normpath(base / name))
        try:
            load_scenario(scenario_path)  # the file alone must be valid before any override
            raw = safe_load_yaml(scenario_path.read_text(encoding="utf-8"))
        except (ScenarioError, OSError, yaml.YAMLError) as exc:
            raise SweepError(f"{source}: scenarios[{i}]: {exc}") from None
        sweep.scenarios.append(scenario_path)
        sweep.documents[scenario_path] = raw
    for _ in expand(sweep):  # validates every variant now, so errors come before any run
        pass
    return sweep


# -- the grid -----------------------------------------------------------------------------------------------


@dataclass
class RunSpec:
    """One run of the grid. ``document`` is the scenario mapping after overrides; ``key`` identifies the run."""

    key: str
    scenario: str
    scenario_name: str
    strategy: str
    seed: int
    mode: str
    params: dict[str, Any]
    document: dict[str, Any]
    base_dir: str

    def describe(self) -> dict[str, Any]:
        """What the index records about this run (everything but the document)."""
        return {
            "key": self.key,
            "scenario": self.scenario,
            "scenario_name": self.scenario_name,
            "strategy": self.strategy,
            "seed": self.seed,
            "mode": self.mode,
            "params": self.params,
        }


def run_key(document: Mapping[str, Any], strategy: str, seed: int, mode: str) -> str:
    """A stable hash of what determines a run: the scenario document, strategy, seed and mode."""
    blob = json.dumps(
        {"scenario": document, "strategy": strategy, "seed": seed, "mode": mode},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _variant(sweep: Sweep, path: Path, combo: dict[str, Any]) -> dict[str, Any]:
    raw = sweep.documents[path]
    try:
        document = apply_overrides(apply_overrides(raw, sweep.fixed), combo)
    except SweepError as exc:
        where = "set" if any(str(exc).startswith(f"{k}:") for k in sweep.fixed) else "parameters"
        raise SweepError(f"{sweep.source}: {where}: {exc} (in scenario {path})") from None
    try:
        parse_scenario(document, str(path), base_dir=path.parent)
    except ScenarioError as exc:
        culprits = [
            f"{k} = {v!r}"
            for k, v in {**sweep.fixed, **combo}.items()
            if exc.path == _display(document, k) or exc.path.startswith(_display(document, k))
        ]
        given = ", ".join(culprits) or ", ".join(f"{k} = {v!r}" for k, v in {**sweep.fixed, **combo}.items())
        raise SweepError(
            f"{sweep.source}: with {given}: scenario {path} is invalid: {exc.path or 'document'}: {exc.reason}"
        ) from None
    return document


def _display(document: Mapping[str, Any], key: str) -> str:
    return format_path(_resolve(document, parse_key_path(key)))


def expand(sweep: Sweep) -> Iterator[RunSpec]:
    """Every run of the grid: scenario, then parameter values, then strategy, then seed (file order)."""
    names = list(sweep.parameters)
    for path in sweep.scenarios:
        for values in itertools.product(*(sweep.parameters[n] for n in names)):
            combo = dict(zip(names, values, strict=True))
            document = _variant(sweep, path, combo)
            for strategy in sweep.strategies:
                for seed in sweep.seeds:
                    yield RunSpec(
                        key=run_key(document, strategy, seed, sweep.mode),
                        scenario=str(path),
                        scenario_name=str(document.get("name", path.stem)),
                        strategy=strategy,
                        seed=seed,
                        mode=sweep.mode,
                        params=combo,
                        document=document,
                        base_dir=str(path.parent),
                    )


# -- running ------------------------------------------------------------------------------------------------


def execute(document: dict[str, Any], source: str, base_dir: str, strategy: str, seed: int, mode: str) -> RunResult:
    """Run one variant (in a worker process or on a Dask worker) and return its result to the caller."""
    from simulator.runner import run

    scenario = parse_scenario(document, source, base_dir=base_dir)
    return run(scenario, strategy=strategy, seed=seed, mode=mode)


def _metrics(result: RunResult) -> dict[str, Any]:
    from benchmarks.compare import run_metrics

    return run_metrics(result)


class SweepStore:
    """The output directory of a sweep: ``runs/<key>/`` per complete run and ``index.jsonl`` (one line each).

    A run is complete when ``runs/<key>/record.json`` exists: results are written to ``runs/<key>.partial/``
    and renamed, so a sweep killed mid-write leaves no half run behind (leftovers are removed on open).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.runs = self.directory / "runs"
        self.index_path = self.directory / "index.jsonl"
        self.runs.mkdir(parents=True, exist_ok=True)
        for leftover in self.runs.glob("*.partial"):
            shutil.rmtree(leftover, ignore_errors=True)
        indexed = {r["key"] for r in self.records()}
        for record_file in sorted(self.runs.glob("*/record.json")):
            record = json.loads(record_file.read_text())
            if record["key"] not in indexed:  # renamed but killed before the index line was written
                self._append(record)

    def is_complete(self, key: str) -> bool:
        return (self.runs / key / "record.json").is_file()

    def records(self) -> list[dict[str, Any]]:
        """Index lines of complete runs (the last line per key wins; a torn last line is ignored)."""
        out: dict[str, dict[str, Any]] = {}
        if self.index_path.exists():
            for line in self.index_path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    record = json.loads(line)
                    if self.is_complete(record.get("key", "")):
                        out[record["key"]] = record
        return list(out.values())

    def save(self, spec: RunSpec, result: RunResult) -> dict[str, Any]:
        """Write ``result`` for ``spec`` and index it; returns the index record."""
        final = self.runs / spec.key
        partial = self.runs / f"{spec.key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        result.save(partial)
        record = {
            **spec.describe(),
            "status": result.summary.get("status"),
            "metrics": _metrics(result),
            "wall_time_s": result.timing.get("wall_time_s"),
            "dir": f"runs/{spec.key}",
        }
        (partial / "record.json").write_text(json.dumps(record, sort_keys=True, default=str))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        self._append(record)
        return record

    def _append(self, record: dict[str, Any]) -> None:
        with self.index_path.open("a") as fh:
            fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: runs in the grid, skipped as already complete, executed now, failed."""

    total: int
    skipped: int
    executed: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    records: list[dict[str, Any]] = field(default_factory=list)  # the records of every run of this grid


@contextlib.contextmanager
def make_executor(workers: int = 1, scheduler: str | None = None) -> Iterator[Executor]:
    """A process pool of ``workers``, or the executor of a Dask cluster at ``scheduler`` (``distributed``
    must be installed: ``pip install 'wsfinal[dask]'``; the cluster's workers must have wsfinal installed)."""
    if scheduler is not None:
        try:
            import distributed
        except ImportError:
            raise SweepError(
                "--scheduler needs the 'distributed' package (Dask): pip install 'wsfinal[dask]'"
            ) from None
        client = distributed.Client(scheduler)
        try:
            yield client.get_executor(pure=False)
        finally:
            client.close()
        return
    if workers < 1:
        raise SweepError(f"--workers {workers}: need at least one worker")
    import multiprocessing

    context = multiprocessing.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["simulator.runner", "benchmarks.sweep"])
        _start_forkserver_ignoring_sigint()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=ignore_sigint)
    try:
        _start_workers(pool, workers)
        yield pool
    except BaseException:
        # Ctrl-C (or an error) in the parent: the workers ignore SIGINT (no traceback from each of them), so
        # stop the runs they are in rather than wait for them; what finished is saved, the next call resumes.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
        raise
    pool.shutdown(wait=True)


def _start_workers(pool: ProcessPoolExecutor, workers: int) -> None:
    """Start the pool's ``workers`` processes now, a Ctrl-C held back until they run: one that came while a
    process was being started left it half made (its start data gone with the parent: a traceback from it)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        for future in [pool.submit(int) for _ in range(workers)]:  # each submit starts a process while one is missing
            future.result()
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def _start_forkserver_ignoring_sigint() -> None:
    """Start the fork server (if it is not running) with SIGINT ignored from its first instruction: it ignores
    SIGINT itself only after its preload imports (a second or more), and a Ctrl-C before that printed its
    KeyboardInterrupt traceback. The workers it forks inherit the setting."""
    import threading
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through fork and exec
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def ignore_sigint() -> None:
    """Pool worker initializer: Ctrl-C is for the parent, which cancels the sweep and says what it kept."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_sweep(
    sweep: Sweep,
    out: str | Path,
    executor: Executor,
    *,
    progress: bool = False,
    limit: int | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> SweepOutcome:
    """Run every run of ``sweep`` not yet complete in ``out`` on ``executor``; save each as it finishes.

    ``limit`` runs at most that many of the missing runs (a slice of a large sweep). An interrupted call
    (Ctrl-C) cancels what has not started; what finished is kept and the next call resumes from there.
    Returns the counts; failed runs (the run raised) are listed and not saved, so the next call retries them.
    """
    store = SweepStore(out)
    specs = list(expand(sweep))
    (store.directory / "sweep.json").write_text(
        json.dumps(
            {
                "source": sweep.source,
                "name": sweep.name,
                "description": sweep.description,
                "scenarios": [str(p) for p in sweep.scenarios],
                "strategies": sweep.strategies,
                "seeds": sweep.seeds,
                "mode": sweep.mode,
                "set": sweep.fixed,
                "parameters": sweep.parameters,
                "report": {"x": sweep.report_x, "metrics": sweep.report_metrics},
                "keys": [s.key for s in specs],
            },
            indent=2,
            default=str,
        )
    )
    pending = [s for s in specs if not store.is_complete(s.key)]
    skipped = len(specs) - len(pending)
    if limit is not None:
        pending = pending[: max(0, limit)]
    outcome = SweepOutcome(total=len(specs), skipped=skipped, executed=0)
    bar = _progress_bar(len(specs), skipped, progress)
    futures: dict[Future[RunResult], RunSpec] = {}
    try:
        for spec in pending:
            fut = executor.submit(execute, spec.document, spec.scenario, spec.base_dir, spec.strategy, spec.seed,
                                  spec.mode)  # fmt: skip
            futures[fut] = spec
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # a broken run is reported and retried on the next call
                outcome.failed.append((spec.key, f"{type(exc).__name__}: {exc}"))
            else:
                record = store.save(spec, result)
                outcome.executed += 1
                if on_record is not None:
                    on_record(record)
            if bar is not None:
                bar.update(1)
    finally:
        for fut in futures:
            fut.cancel()
        if bar is not None:
            bar.close()
    keys = {s.key for s in specs}
    outcome.records = [r for r in store.records() if r["key"] in keys]
    return outcome


def _progress_bar(total: int, done: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="run", desc="sweep", file=sys.stderr, smoothing=0.1)


def grid_size(sweep: Sweep) -> int:
    """How many runs the grid has."""
    n = len(sweep.scenarios) * len(sweep.strategies) * len(sweep.seeds)
    for values in sweep.parameters.values():
        n *= len(values)
    return n
