"""Virtual-time speed in machine instructions (``wsfinal bench instructions``): issue #6's figure without the noise.

``wsfinal bench virtual`` times the full manager, a SimPy model, a plain callback chain and the wire floor in one
process; on a shared machine those wall ratios scatter by a quarter. This command runs each of the same models
(:mod:`benchmarks.virtual_bench`) in a child process under valgrind's callgrind with ``PYTHONHASHSEED=0``, once for a
short and once for a long simulated duration, and divides the difference of instructions by the difference of
requests: interpreter start, imports and set-up cancel, what is left is the cost of one more request. Counts do not
depend on machine load. With ``--baseline`` it is a CI gate on the manager's instructions per request.
Docs: docs/instructions.md and docs/virtual_speed.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = Path(__file__).resolve().parent / "instructions_baseline.json"
#: What the JSON document and the baseline are, and the version of their layout (bump when it changes).
SCHEMA = "wsfinal bench instructions"
FORMAT = 1
#: The models, in the order they are run and printed: key -> label (as ``bench virtual`` prints them).
MODELS = {"simpy": "SimPy model", "chain": "callback chain", "floor": "wire floor", "manager": "full manager"}
#: Names of the models in the ratios.
SHORT_NAMES = {"simpy": "SimPy", "chain": "chain", "floor": "floor", "manager": "manager"}
#: The ratios printed, as (numerator, denominator): requests per instruction of one over the other's, so they read
#: like ``bench virtual``'s ratios of requests per wall second (higher is faster).
RATIOS: tuple[tuple[str, str, str], ...] = (
    ("manager", "simpy", "goal 1.0"),
    ("chain", "simpy", "the virtual loop itself"),
    ("floor", "simpy", "the most any manager speaking the protocol could reach"),
    ("manager", "floor", "what the manager's own work costs"),
)
#: The model the gate (``--baseline``, ``--max-growth``) is about.
GATED = "manager"
#: The short run simulates this fraction of ``--duration``.
SHORT_FRACTION = 1.0 / 3.0
#: Environment set for every child (what the counts are reproducible under).
HASH_SEED = "0"
#: Thread-pool sizes set to 1 in every child (no BLAS worker threads; see :func:`child_env`).
SINGLE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Wall-time limit of one child run (callgrind runs about 50x slower than native).
CHILD_TIMEOUT_S = 3600.0
#: Lines of a failed child's stderr shown.
STDERR_TAIL = 15
#: The child prints this before the number of requests its model completed.
REQUESTS_TAG = "wsfinal-instructions requests"
#: Said with every result: what the figures are, and what they are not.
CAVEAT = (
    "These are instruction counts (callgrind), a proxy for time: equal instructions are not equal time (cache "
    "misses, branches and C against Python code differ), but they do not depend on the machine's load: two runs "
    "agree to within about 0.3% per model (bench virtual's wall ratios scatter by 25%)."
)
VALGRIND_MISSING = (
    "valgrind not found on PATH: it counts the instructions. Install it (Debian/Ubuntu: apt-get install valgrind)"
)


class InstructionsUsageError(Exception):
    """A bad command line or baseline file, or no valgrind (exit code 2); the message names what was wrong."""


class ChildRunError(Exception):
    """A child run failed or printed no count (exit code 1); the message names the model and run and ends with the
    tail of the child's stderr."""


@dataclass(frozen=True)
class Setup:
    """The queueing system every model simulates, and the two simulated durations."""

    nodes: int
    utilisation: float
    mu: float
    short_s: float
    long_s: float
    seed: int = 1


@dataclass(frozen=True)
class Count:
    """One child run: the model, its simulated seconds, instructions executed (the whole process) and requests."""

    model: str
    duration_s: float
    instructions: int
    requests: int


# -- pure: parsing and arithmetic ---------------------------------------------------------------------------------


def parse_callgrind_totals(text: str) -> int:
    """Instructions (``Ir``) of a callgrind output file: its ``totals:`` line (``summary:`` in older files).

    Raises ValueError when the file counts no ``Ir`` first or has neither line (a run that did not finish).
    """
    events = re.search(r"^events:\s*(\S+)", text, re.MULTILINE)
    if events is None or events.group(1) != "Ir":
        found = events.group(1) if events else "none"
        raise ValueError(f"not a callgrind file counting instructions first (events: {found})")
    for key in ("totals", "summary"):
        m = re.search(rf"^{key}:\s*(\d+)", text, re.MULTILINE)
        if m:
            return int(m.group(1))
    raise ValueError("callgrind file has no totals: or summary: line (did the run finish?)")


def parse_collected(stderr: str) -> int | None:
    """The ``Collected : N`` count valgrind prints on exit (the last one), or None."""
    found = re.findall(r"Collected\s*:\s*(\d+)", stderr)
    return int(found[-1]) if found else None


def parse_requests(stdout: str) -> int:
    """Requests completed, from the child's :data:`REQUESTS_TAG` line (the last one). Raises ValueError if none."""
    found = re.findall(rf"^{REQUESTS_TAG} (\d+)\s*$", stdout, re.MULTILINE)
    if not found:
        raise ValueError(f"the child printed no {REQUESTS_TAG!r} line")
    return int(found[-1])


def per_request(short: Count, long: Count) -> float:
    """Instructions per request: (long - short instructions) / (long - short requests); set-up cancels.

    Raises ValueError when the long run completed no more requests than the short one (durations too close or too
    small for the load).
    """
    extra = long.requests - short.requests
    if extra <= 0:
        raise ValueError(
            f"{short.model}: the {long.duration_s:g} s run completed {long.requests} requests, the {short.duration_s:g}"
            f" s run {short.requests}: no difference to divide by (use a longer --duration or more load)"
        )
    return (long.instructions - short.instructions) / extra


def ratios(per_req: dict[str, float]) -> dict[str, float]:
    """The :data:`RATIOS` whose two models were measured, by ``"a/b"``: ``per_req[b] / per_req[a]`` (requests per
    instruction of ``a`` over those of ``b``; above 1 means ``a`` needs fewer instructions per request)."""
    return {f"{a}/{b}": per_req[b] / per_req[a] for a, b, _ in RATIOS if a in per_req and b in per_req}


def growth_percent(current: float, baseline: float) -> float:
    """Change from ``baseline`` to ``current`` in percent (positive: more instructions per request, slower)."""
    return 100.0 * (current - baseline) / baseline


def compare(current: dict[str, float], baseline: dict[str, float], max_growth: float) -> tuple[list[str], bool]:
    """Lines comparing instructions per request with a baseline, per model in both, and whether the gate failed:
    the :data:`GATED` model's figure grew by more than ``max_growth`` percent."""
    lines = []
    failed = False
    for model, label in MODELS.items():
        if model not in current or model not in baseline:
            continue
        change = growth_percent(current[model], baseline[model])
        verdict = ""
        if model == GATED:
            failed = change > max_growth
            verdict = f"  FAIL: grew more than {max_growth:g}%" if failed else f"  ok (at most +{max_growth:g}%)"
        lines.append(
            f"  {label:<16}{baseline[model]:>12,.0f} -> {current[model]:>10,.0f} instructions per request"
            f"  {change:+6.2f}%{verdict}"
        )
    return lines, failed


# -- the document (JSON output and baseline file) -----------------------------------------------------------------


def environment() -> dict[str, str]:
    """What the counts depend on besides the code: Python, valgrind, the machine type."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "valgrind": valgrind_version(),
        "hash_seed": HASH_SEED,
    }


def valgrind_version() -> str:
    exe = shutil.which("valgrind")
    if exe is None:
        return "none"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def build_document(setup: Setup, counts: dict[str, tuple[Count, Count]], env: dict[str, str]) -> dict[str, Any]:
    """The JSON document: setup, environment, per model both runs and instructions per request, the ratios."""
    per_req = {m: per_request(*counts[m]) for m in MODELS if m in counts}
    models = {
        m: {
            "instructions_per_request": per_req[m],
            "runs": [
                {"duration_s": c.duration_s, "instructions": c.instructions, "requests": c.requests} for c in counts[m]
            ],
        }
        for m in per_req
    }
    return {
        "schema": SCHEMA,
        "format": FORMAT,
        "about": "instructions per request = (long - short run instructions) / (long - short run requests), each "
        "run a child process under valgrind --tool=callgrind with PYTHONHASHSEED=0 (docs/instructions.md). " + CAVEAT,
        "setup": asdict(setup),
        "environment": env,
        "models": models,
        "ratios": ratios(per_req),
    }


def load_baseline(path: Path) -> dict[str, Any]:
    """A baseline document. Raises :class:`InstructionsUsageError` naming the file and key when it cannot be read,
    is not JSON, not this command's document, or of another format."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InstructionsUsageError(f"baseline {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InstructionsUsageError(f"baseline {path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise InstructionsUsageError(f"baseline {path}: not a {SCHEMA!r} document (key 'schema')")
    if doc.get("format") != FORMAT:
        raise InstructionsUsageError(
            f"baseline {path}: format {doc.get('format')!r}, this wsfinal writes format {FORMAT} (re-record it with "
            "--update)"
        )
    if not isinstance(doc.get("setup"), dict) or not isinstance(doc.get("models"), dict):
        raise InstructionsUsageError(f"baseline {path}: expected objects 'setup' and 'models'")
    for model, entry in doc["models"].items():
        value = entry.get("instructions_per_request") if isinstance(entry, dict) else None
        if not isinstance(value, int | float) or not value > 0:
            raise InstructionsUsageError(
                f"baseline {path}: models.{model}.instructions_per_request: expected a positive number, got {value!r}"
            )
    return doc


def check_baseline_setup(path: Path, doc: dict[str, Any], setup: Setup, models: list[str]) -> None:
    """Raises :class:`InstructionsUsageError` when the baseline was measured on another setup (the counts would not
    compare) or lacks the gated model."""
    if GATED not in models:
        raise InstructionsUsageError(f"--baseline gates the {GATED!r} model: include it in --models")
    if GATED not in doc["models"]:
        raise InstructionsUsageError(f"baseline {path}: no models.{GATED} entry (re-record it with --update)")
    differ = [
        f"{k} {doc['setup'].get(k)!r} (this run {v!r})" for k, v in asdict(setup).items() if doc["setup"].get(k) != v
    ]
    if differ:
        raise InstructionsUsageError(
            f"baseline {path} was measured with another setup: {', '.join(differ)}; run with its --duration, "
            "--nodes, --utilisation and --mu, or re-record with --update"
        )


# -- running the children -----------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment of every child: this one with :data:`HASH_SEED`, BLAS on one thread, no byte-code writes.

    numpy's OpenBLAS starts a worker thread per CPU at import; callgrind counts their idle spinning too, which
    depends on scheduling (it moved the difference of two runs by 5%). Byte-code files written by a run differ from
    one run to the next (marshal's output depends on reference counts), and so would what reads them: no child
    writes any, so every run reads the same installed files and compiles the rest from source.
    """
    return dict(os.environ, PYTHONHASHSEED=HASH_SEED, PYTHONDONTWRITEBYTECODE="1", **dict.fromkeys(SINGLE_THREAD, "1"))


def child_argv(model: str, setup: Setup, duration_s: float) -> list[str]:
    """The Python command line of one model run (what runs under valgrind)."""
    values = (setup.nodes, setup.utilisation, setup.mu, duration_s, setup.seed)
    return [sys.executable, "-m", "benchmarks.instructions", model, *(str(v) for v in values)]


def _tail(stderr: str) -> str:
    """The last :data:`STDERR_TAIL` lines of a child's stderr, without valgrind's own ``==pid==`` lines when
    anything else is there."""
    lines = stderr.rstrip().splitlines()
    own = [line for line in lines if not re.match(r"==\d+==", line)]
    return "\n".join((own or lines)[-STDERR_TAIL:])


def run_child(argv: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    """Run a child in the project root; raises :class:`ChildRunError` naming ``what`` when it fails."""
    try:
        proc = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise ChildRunError(f"{what}: no result after {CHILD_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise ChildRunError(f"{what}: cannot start {argv[0]} ({exc.strerror or exc})") from None
    if proc.returncode != 0:
        raise ChildRunError(f"{what}: exit code {proc.returncode}; its stderr ends:\n{_tail(proc.stderr)}")
    return proc


def count_run(valgrind: str, model: str, setup: Setup, duration_s: float, env: dict[str, str], what: str) -> Count:
    """One model run under callgrind: its instructions and requests. Raises :class:`ChildRunError`."""
    with tempfile.TemporaryDirectory(prefix="wsfinal-callgrind-") as tmp:
        out_file = Path(tmp) / "callgrind.out"
        argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out_file}", *child_argv(model, setup, duration_s)]
        proc = run_child(argv, env, what)
        try:
            requests = parse_requests(proc.stdout)
            try:
                instructions = parse_callgrind_totals(out_file.read_text(encoding="utf-8", errors="replace"))
            except (OSError, ValueError) as exc:
                collected = parse_collected(proc.stderr)
                if collected is None:
                    raise ValueError(f"no instruction count: {exc}") from None
                instructions = collected
        except ValueError as exc:
            raise ChildRunError(f"{what}: {exc}; its stderr ends:\n{_tail(proc.stderr)}") from None
    return Count(model, duration_s, instructions, requests)


def measure(
    valgrind: str, setup: Setup, models: list[str], jobs: int = 1, progress: bool = True
) -> dict[str, tuple[Count, Count]]:
    """Both runs of every model under callgrind, after one native run of each at the short duration (which stops
    early on a model that does not run). Progress goes to stderr. Raises :class:`ChildRunError` on the first failed
    run."""

    def say(text: str) -> None:
        if progress:
            print(f"bench instructions: {text}", file=sys.stderr, flush=True)

    env = child_env()
    for model in models:
        say(f"{MODELS[model]}: native check run ({setup.short_s:g} s simulated)")
        run_child(child_argv(model, setup, setup.short_s), env, f"{MODELS[model]}, native check run")
    plan = [(m, d) for m in models for d in (setup.short_s, setup.long_s)]

    def one(i: int) -> Count:
        model, duration = plan[i]
        what = f"[{i + 1}/{len(plan)}] {MODELS[model]}, {duration:g} s simulated under callgrind"
        say(f"{what}: started")
        started = time.perf_counter()  # progress only
        count = count_run(valgrind, model, setup, duration, env, what)
        say(
            f"{what}: {count.instructions:,} instructions, {count.requests:,} requests "
            f"({time.perf_counter() - started:.0f} s wall)"
        )
        return count

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        done = list(pool.map(one, range(len(plan))))
    return {m: (done[2 * i], done[2 * i + 1]) for i, m in enumerate(models)}


def child_main(argv: list[str]) -> int:
    """What a child runs: ``MODEL NODES RHO MU DURATION SEED``; prints :data:`REQUESTS_TAG` and the count."""
    from benchmarks import virtual_bench as vb

    model, nodes, rho, mu, duration, seed = argv
    n_, r_, m_, d_, s_ = int(nodes), float(rho), float(mu), float(duration), int(seed)
    if model == "simpy":
        requests = vb.simpy_rate(n_, r_, m_, d_, s_)[1]
    elif model == "chain":
        requests = vb.wire_floor_rate(n_, r_, m_, d_, s_, wire=False)[1]
    elif model == "floor":
        requests = vb.wire_floor_rate(n_, r_, m_, d_, s_)[1]
    elif model == "manager":
        requests = vb.manager_rate(n_, r_, m_, d_, s_)[1]
    else:
        print(f"unknown model {model!r} (one of {', '.join(MODELS)})", file=sys.stderr)
        return 2
    print(f"{REQUESTS_TAG} {requests}", flush=True)
    return 0


# -- the command --------------------------------------------------------------------------------------------------


def format_text(doc: dict[str, Any]) -> str:
    """The figures as ``bench virtual`` prints its wall figures, then the caveat."""
    s = doc["setup"]
    lines = [
        f"{s['nodes']} M/M/1 nodes at utilisation {s['utilisation']:g} (service rate {s['mu']:g}/s each), "
        f"{s['long_s']:g} s minus {s['short_s']:g} s simulated, PYTHONHASHSEED={doc['environment']['hash_seed']}:"
    ]
    for model, label in MODELS.items():
        entry = doc["models"].get(model)
        if entry:
            extra = entry["runs"][1]["requests"] - entry["runs"][0]["requests"]
            lines.append(
                f"  {label:<18}{entry['instructions_per_request']:>12,.0f} instructions per request "
                f"({extra:,} requests in the difference)"
            )
    notes = {f"{a}/{b}": note for a, b, note in RATIOS}
    for name, value in doc["ratios"].items():
        a, b = (SHORT_NAMES[m] for m in name.split("/"))
        lines.append(f"  {'ratio ' + a + '/' + b:<20}{value:>10.3f}  ({notes[name]})")
    if doc["ratios"]:
        lines.append("  (ratios of requests per instruction, so they read like bench virtual's: higher is faster)")
    lines.append(textwrap.fill(CAVEAT, 116))
    return "\n".join(lines)


def _validate(args: argparse.Namespace) -> tuple[Setup, list[str]]:
    """The setup and models of the command line; raises :class:`InstructionsUsageError` naming the option."""
    if not (math.isfinite(args.duration) and args.duration > 0):
        raise InstructionsUsageError(f"--duration {args.duration:g}: need a positive number of simulated seconds")
    if args.nodes < 1:
        raise InstructionsUsageError(f"--nodes {args.nodes}: need at least one")
    if not (0.0 < args.utilisation < 1.0):
        raise InstructionsUsageError(f"--utilisation {args.utilisation:g}: need 0 < R < 1 (a stable queue)")
    if not (math.isfinite(args.mu) and args.mu > 0):
        raise InstructionsUsageError(f"--mu {args.mu:g}: need a positive service rate")
    if args.jobs < 1:
        raise InstructionsUsageError(f"--jobs {args.jobs}: need at least one")
    if not (math.isfinite(args.max_growth) and args.max_growth >= 0):
        raise InstructionsUsageError(f"--max-growth {args.max_growth:g}: need a percentage of 0 or more")
    models = [m for m in MODELS if m in (args.models or MODELS)]
    setup = Setup(args.nodes, args.utilisation, args.mu, args.duration * SHORT_FRACTION, args.duration)
    return setup, models


def update_baseline(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Write ``doc`` as the baseline at ``path`` and return what was written. Models not run now are kept from the
    file already there when it is a baseline of the same setup (``--models`` updates only those)."""
    models = dict(doc["models"])
    try:
        old = load_baseline(path) if path.exists() else None
    except InstructionsUsageError:
        old = None  # unreadable or another format: replaced as a whole
    if old is not None and old["setup"] == doc["setup"]:
        models = {**old["models"], **models}
    models = {m: models[m] for m in MODELS if m in models}
    per_req = {m: float(e["instructions_per_request"]) for m, e in models.items()}
    out = {k: v for k, v in doc.items() if k != "baseline"} | {"models": models, "ratios": ratios(per_req)}
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return out


def main(args: argparse.Namespace) -> int:
    name = "wsfinal bench instructions"
    baseline_path = Path(args.baseline) if args.baseline is not None else None
    try:
        setup, models = _validate(args)
        baseline = None
        if baseline_path is not None and not args.update:
            baseline = load_baseline(baseline_path)
            check_baseline_setup(baseline_path, baseline, setup, models)
        valgrind = shutil.which("valgrind")
        if valgrind is None:
            raise InstructionsUsageError(VALGRIND_MISSING)
    except InstructionsUsageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    try:
        counts = measure(valgrind, setup, models, args.jobs, progress=True)
        doc = build_document(setup, counts, environment())
    except (ChildRunError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    code = 0
    report: list[str] = []
    if baseline is not None and baseline_path is not None:
        base = {m: float(e["instructions_per_request"]) for m, e in baseline["models"].items()}
        current = {m: float(e["instructions_per_request"]) for m, e in doc["models"].items()}
        lines, failed = compare(current, base, args.max_growth)
        code = 1 if failed else 0
        doc["baseline"] = {
            "file": str(baseline_path),
            "max_growth_percent": args.max_growth,
            "change_percent": {m: growth_percent(current[m], base[m]) for m in current if m in base},
            "failed": failed,
        }
        report = [f"Against the baseline {baseline_path} (the gate: {MODELS[GATED]}, at most +{args.max_growth:g}%):"]
        report += lines
        if failed:
            report.append(f"FAIL: the {MODELS[GATED]}'s instructions per request grew more than {args.max_growth:g}%")
        old_env = baseline.get("environment") or {}
        changed = [f"{k} {old_env.get(k)!r} -> {v!r}" for k, v in doc["environment"].items() if old_env.get(k) != v]
        if changed:
            report.append(f"note: the baseline was measured elsewhere ({'; '.join(changed)}): counts may differ")
    try:
        if args.update:
            path = baseline_path or DEFAULT_BASELINE
            update_baseline(path, doc)
            report.append(f"baseline {path}: recorded {', '.join(doc['models'])}")
        if args.out:
            Path(args.out).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"{name}: cannot write {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(doc, indent=2))
        if report:
            print("\n".join(report), file=sys.stderr)
    else:
        print(format_text(doc))
        if report:
            print("\n".join(report))
    return code


HELP = """\
Each model of `wsfinal bench virtual` (the SimPy model, the plain callback chain, the wire floor and the full
manager, on N M/M/1 nodes at utilisation R, strategy random, seed 1) runs in a child process under
`valgrind --tool=callgrind` with PYTHONHASHSEED=0, one BLAS thread and no byte-code writes, once for a third of
--duration and once for all of it. Instructions per request =
(long - short run instructions) / (long - short run requests): interpreter start, imports and set-up cancel. The
ratios are of requests per instruction (manager/SimPy = SimPy's instructions per request / the manager's), so they
read like bench virtual's wall ratios: higher is faster. Instruction counts are a proxy for time (equal
instructions are not equal time) but do not depend on machine load: the same tree, Python and valgrind give the
counts to within about 0.3%. Takes minutes (callgrind runs about 50x slower); progress goes to stderr.

--baseline [FILE] compares with a recorded run (default benchmarks/instructions_baseline.json) and fails when the
manager's instructions per request grew by more than --max-growth percent: a CI gate that machine load cannot
trip. --update records this run as the baseline.

Exit codes: 0 ok, 1 the gate failed or a child run failed (its stderr tail is shown), 2 bad arguments, an unusable
baseline or no valgrind (apt-get install valgrind). See docs/instructions.md.
"""


def register_instructions(bench_sub: Any) -> None:
    """Add ``instructions`` to ``wsfinal bench``'s subcommands."""
    p = bench_sub.add_parser(
        "instructions",
        help="virtual-time speed independent of load: instructions per request under callgrind",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--duration",
        type=float,
        default=1.5,
        metavar="S",
        help="simulated seconds of the long run; the short run is a third (default 1.5)",
    )
    p.add_argument("--nodes", type=int, default=100, metavar="N", help="single-worker nodes (default 100)")
    p.add_argument("--utilisation", type=float, default=0.5, metavar="R", help="utilisation, 0 < R < 1 (default 0.5)")
    p.add_argument("--mu", type=float, default=100.0, help="service rate per node, per second (default 100)")
    p.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS),
        metavar="MODEL",
        help=f"models to run (default all: {' '.join(MODELS)}); ratios need both of their models",
    )
    p.add_argument("--jobs", type=int, default=1, help="child runs at a time (default 1; counts do not depend on it)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON document (schema, format)")
    p.add_argument("--out", metavar="FILE", help="also write the JSON document to FILE")
    p.add_argument(
        "--baseline",
        nargs="?",
        const=str(DEFAULT_BASELINE),
        metavar="FILE",
        help="compare with this recorded run (default file benchmarks/instructions_baseline.json); exit 1 when the "
        "manager's instructions per request grew by more than --max-growth",
    )
    p.add_argument(
        "--max-growth",
        type=float,
        default=2.0,
        metavar="PCT",
        help="with --baseline: the manager's allowed growth in percent (default 2)",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="record this run as the baseline (--baseline FILE, default benchmarks/instructions_baseline.json)",
    )
    p.set_defaults(func=main)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
