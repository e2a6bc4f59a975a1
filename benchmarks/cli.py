"""The ``wsfinal`` command: one entry point, one subcommand per job.

Each subcommand lives in the module that owns the job; that module exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed arguments, returning the exit code). Modules are listed in
:data:`COMMAND_MODULES` and imported only when the command line is parsed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules that contribute subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "benchmarks.demo",
    "benchmarks.strategy_table",
    "benchmarks.sweep_commands",
    "benchmarks.gate_commands",
    "benchmarks.digest",
    "simulator.run_commands",
    "simulator.exchange_commands",
    "simulator.scenario_commands",
    "benchmarks.compare_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsfinal",
        description=(
            "wsfinal: a WebSocket connection manager and its testbed. Run a subcommand with --help for details."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
