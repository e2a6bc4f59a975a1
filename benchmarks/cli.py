"""The ``wsfinal`` command: one entry point, one subcommand per job.

Each subcommand lives in the module that owns the job; that module exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed arguments, returning the exit code). Modules are listed in
:data:`COMMAND_MODULES` and imported only when the command line is parsed.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: Modules that contribute subcommands, in the order ``--help`` lists them: the order a user meets them (a first
#: look, one run and its report, comparisons, grids, CI checks, then the tools around them).
COMMAND_MODULES: tuple[str, ...] = (
    "benchmarks.demo",
    "simulator.run_commands",
    "benchmarks.compare_commands",  # report, compare
    "benchmarks.sweep_commands",
    "benchmarks.gate_commands",
    "benchmarks.digest",
    "benchmarks.strategy_table",  # bench
    "simulator.scenario_commands",
    "simulator.exchange_commands",
)

EPILOG = """\
a typical path:
  wsfinal run scenarios/latency-spike.yaml       one run; prints where its result is
  wsfinal report RESULT_DIR                      the summary and HTML report of a run or comparison
  wsfinal compare scenarios/latency-spike.yaml   strategies over seeds, with significance tests
  wsfinal sweep sweeps/example.yaml              a grid of scenarios x strategies x seeds x parameters
  wsfinal gate; wsfinal digest                   CI: performance regressions; byte-identical results

Exit codes: 0 ok, 2 bad arguments or input file, 130 interrupted (Ctrl-C); each command's --help lists its
others.
"""

#: Ranges of the numeric options, by destination name, enforced for every subcommand that has one (so a negative
#: seed or zero workers is a usage error, exit 2, naming the option, instead of a traceback after a long run):
#: ``(low, high, low is allowed)``. Counts are at least 1; seeds, indentation and durations at least 0.
OPTION_RANGES: dict[str, tuple[float, float | None, bool]] = {
    **dict.fromkeys(
        ("seeds", "workers", "max_runs", "sizes", "number", "repeat", "requests", "sequential", "connections"),
        (1, None, True),
    ),
    **dict.fromkeys(("rounds", "nodes"), (1, None, True)),
    **dict.fromkeys(("seed", "base_seed", "indent", "duration"), (0, None, True)),
    **dict.fromkeys(("rho", "mu"), (0, None, False)),
    "port": (0, 65535, True),
}


def _bounded(convert: Callable[[str], Any], low: float, high: float | None, closed: bool) -> Callable[[str], Any]:
    """``convert`` (``int`` or ``float``), then a range check that argparse reports as ``argument --x: ...``."""

    def check(text: str) -> Any:
        value = convert(text)  # a ValueError here reads "invalid int value: 'x'", as without the check
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < low or (value == low and not closed) or (high is not None and value > high):
            expected = f"between {low:g} and {high:g}" if high is not None else f"{'>=' if closed else '>'} {low:g}"
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
        return value

    check.__name__ = getattr(convert, "__name__", "value")
    return check


def _check_ranges(parser: argparse.ArgumentParser) -> None:
    """Wrap the ``type`` of every numeric option named in :data:`OPTION_RANGES`, in every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _check_ranges(sub)
        elif action.dest in OPTION_RANGES and action.type in (int, float):
            action.type = _bounded(action.type, *OPTION_RANGES[action.dest])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsfinal",
        description=(
            "wsfinal: a WebSocket connection manager and its testbed (a fake exchange with scripted faults).\n"
            "Start with `wsfinal demo`; each COMMAND has its own --help."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _check_ranges(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`wsfinal scenario schema | head`): no traceback. Point stdout at /dev/null so
        # the interpreter's final flush cannot fail again, and exit as a tool killed by SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
