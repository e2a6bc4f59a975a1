"""``wsfinal scenario check FILE...`` and ``wsfinal scenario schema``: validate scenario files, print the schema.

``check`` prints ``OK FILE (summary)`` per valid file and every problem of an invalid one as ``FILE: path:
reason`` lines; it exits 1 if any file is invalid. ``schema`` prints the JSON Schema the loader validates
against (point an editor's YAML language server at it).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .scenario import ScenarioError, load_scenario
from .scenario_schema import SCHEMA

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``scenario`` with its ``check`` and ``schema`` subcommands to the ``wsfinal`` parser."""
    parser = subparsers.add_parser(
        "scenario",
        help="validate scenario files or print their JSON Schema",
        description=(
            "Validate scenario files (check) or print the JSON Schema they are validated against (schema). "
            "See docs/scenarios.md. Exit codes: 0 ok, 1 (check) a file is invalid, 2 bad arguments or no ACTION."
        ),
    )
    sub = parser.add_subparsers(dest="scenario_command", metavar="ACTION")
    parser.set_defaults(func=lambda _args: _usage(parser))

    check = sub.add_parser(
        "check",
        help="validate scenario files",
        description=(
            "Validate scenario YAML files: 'OK FILE (summary)' per valid file, every problem of an invalid one "
            "as 'FILE: path: reason'. Exit codes: 0 every file valid, 1 a file is invalid, 2 bad arguments."
        ),
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="scenario YAML files")
    check.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    check.set_defaults(func=check_command)

    schema = sub.add_parser("schema", help="print the scenario JSON Schema", description="Print the JSON Schema.")
    schema.add_argument("--indent", type=int, default=2, help="JSON indentation (default 2)")
    schema.set_defaults(func=schema_command)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def check_command(args: argparse.Namespace) -> int:
    """Validate each file; 0 if all are valid, 1 otherwise."""
    failed = 0
    for name in args.files:
        try:
            scenario = load_scenario(name)
        except ScenarioError as exc:
            failed += 1
            for line in exc.lines():
                print(line)
            continue
        if not args.quiet:
            connections = sum(g.count for g in scenario.connections)
            print(
                f"OK {name} ({scenario.name}: {len(scenario.nodes)} node(s), {connections} connection(s), "
                f"{len(scenario.faults)} fault(s), {len(scenario.expect)} expectation(s), "
                f"{scenario.duration_s:g}s)"
            )
    if failed and len(args.files) > 1:
        print(f"{failed} of {len(args.files)} file(s) invalid", file=sys.stderr)
    return 1 if failed else 0


def schema_command(args: argparse.Namespace) -> int:
    """Print the JSON Schema of scenario files."""
    print(json.dumps(SCHEMA, indent=args.indent, ensure_ascii=False))
    return 0
