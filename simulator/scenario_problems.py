"""How problems in a document (a scenario, a sweep, a gate suite) are found and worded, as ``(key path, reason)``.

:func:`document_problems` catches what JSON Schema cannot see (non-string keys, NaN, absurd depth or size);
:func:`validation_problems` turns ``jsonschema`` errors into problems, the one place where that library's error
objects are translated, reading the annotations of :mod:`simulator.schema_fragments` (``x-message`` and
``x-context`` work in any schema); :func:`schema_problems` runs the two in order. All return problems
deduplicated, in document order, each reason naming the offending value where there is one.
:class:`ProblemLog` records the semantic problems found afterwards, while a scenario is built
(:mod:`simulator.scenario_build`). Unknown names get a "did you mean" when one is close. The caller raises the
problems, each worded by :func:`format_problem` as ``"FILE: key.path: reason"`` (:class:`simulator.scenario.
ScenarioError`; the sweep and gate files of :mod:`benchmarks` use the same functions and the same wording).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from .schema_fragments import UNIT_KINDS
from .units import UnitError, parse_duration, parse_rate

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "ProblemLog",
    "did_you_mean",
    "document_problems",
    "format_path",
    "format_problem",
    "problem_lines",
    "schema_problems",
    "strategy_hint",
    "validation_problems",
]


def format_problem(source: str, path: str, reason: str) -> str:
    """``"FILE: key.path: reason"``, or ``"FILE: reason"`` for the whole document (``path`` empty)."""
    return f"{source}: {path}: {reason}" if path else f"{source}: {reason}"


def problem_lines(source: str, problems: Iterable[tuple[str, str]]) -> list[str]:
    """Every ``(path, reason)`` as one :func:`format_problem` line, in the given order."""
    return [format_problem(source, path, reason) for path, reason in problems]


def format_path(parts: Iterable[str | int]) -> str:
    """``["faults", 2, "latency"]`` -> ``"faults[2].latency"``; odd keys are quoted: ``api_keys["a.b"]``."""
    out = ""
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, part)
    return out


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _join(path: str, key: object) -> str:
    if not isinstance(key, str):
        return f"{path}[{key!r}]"
    if not _PLAIN_KEY.match(key):
        return f"{path}[{json.dumps(key)}]"
    return f"{path}.{key}" if path else key


#: Characters typed for one another: a letter O for a zero (``p5O_ms``), l or I for a one.
_LOOKALIKE = str.maketrans({"o": "0", "l": "1", "i": "1"})


def _plain_form(text: str) -> str:
    return text.lower().replace("-", "_").translate(_LOOKALIKE)


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """``"; did you mean 'latency'?"`` when a choice is close to ``word``, else ``""``.

    A choice that differs only in case, ``-`` for ``_`` or look-alike characters (``p5O_ms`` for ``p50_ms``) is
    the answer; otherwise the closest choice by :func:`difflib.get_close_matches`.
    """
    if not isinstance(word, str):
        return ""
    options = [str(c) for c in choices]
    same = [c for c in options if _plain_form(c) == _plain_form(word)]
    if len(same) == 1:
        return f"; did you mean {same[0]!r}?"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def strategy_hint(text: str) -> str:
    """``"; did you mean 'peak_ewma'?"`` for the first name in ``text`` (one strategy, or several separated by
    commas, as ``--strategy`` and ``--strategies`` take them) that is not a strategy, else ``""``."""
    from wsfinal.config import LoadBalancingStrategy

    values = [s.value for s in LoadBalancingStrategy]
    for name in text.split(","):
        word = name.strip().lower().replace("-", "_")
        if word and word != "all" and word not in values:
            return did_you_mean(word, values)
    return ""


def _type_name(value: object) -> str:
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, int):
        return f"an integer ({value})"
    return f"a number ({value!r})"


_JSON_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _unit_reason(kind: str, value: object) -> str | None:
    try:
        UNIT_KINDS[kind][1](value)
    except UnitError as exc:
        return str(exc)
    return None


def _context(schema: Any) -> str:
    ctx = schema.get("x-context") if isinstance(schema, dict) else None
    return f" for {ctx}" if ctx else ""


def _short(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a whole mapping can be the offending value)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Keywords whose next schema path element is a name or index, not a keyword.
_NAMING_KEYWORDS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


def _about_a_key(err: ValidationError) -> bool:
    """Whether ``err`` comes from ``propertyNames``: its instance is a key of the mapping at its path."""
    parts = list(err.absolute_schema_path)
    i = 0
    while i < len(parts):
        if parts[i] in _NAMING_KEYWORDS:
            i += 2
            continue
        if parts[i] == "propertyNames":
            return True
        i += 1
    return False


def _translate_key(err: ValidationError, path: str, schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    key, validator, expected = err.instance, err.validator, err.validator_value
    where = _join(path, key)
    if "x-message" in schema:
        yield where, f"key {key!r}: {schema['x-message']}"
    elif validator == "enum":
        choices = ", ".join(str(c) for c in expected)
        yield where, f"unknown key {key!r}{_context(schema)}; expected one of: {choices}{did_you_mean(key, expected)}"
    elif validator == "pattern":
        yield where, f"key {key!r} is not valid here (expected to match {expected})"
    elif validator == "minLength" and key == "":
        yield where, "a key must not be empty"
    else:
        yield where, f"key {key!r}: {err.message}"


def _first_repeated(items: list[Any]) -> Any:
    seen: list[Any] = []  # a list: items may be unhashable (mappings)
    for item in items:
        if item in seen:
            return item
        seen.append(item)
    return None


def _branch(sub: ValidationError) -> Any:
    return sub.relative_schema_path[0] if sub.relative_schema_path else None


def _branch_problems(err: ValidationError) -> list[tuple[str, str]]:
    """For a failed ``oneOf``/``anyOf``: the problems of the branches whose shape fits the value (their root
    type, const and enum hold), so ``seeds: 0`` says "must be >= 1" rather than "not valid under any schema"."""
    unfit: set[Any] = set()
    for sub in err.context or ():
        if not sub.relative_path and sub.validator in ("type", "const", "enum"):
            unfit.add(_branch(sub))
    return [
        problem for sub in err.context or () if sub.relative_schema_path[0] not in unfit for problem in _translate(sub)
    ]


def _translate(err: ValidationError) -> Iterator[tuple[str, str]]:
    path = format_path(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    validator, expected, instance = err.validator, err.validator_value, err.instance
    if _about_a_key(err):
        yield from _translate_key(err, path, schema)
        return
    if "x-message" in schema:  # "{value}" in it stands for the offending value
        yield path, str(schema["x-message"]).replace("{value}", _short(instance))
        return
    if validator == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        conflicts = schema.get("x-conflicts", {})
        for key in instance:
            if key in conflicts:
                yield _join(path, key), str(conflicts[key])
            elif key not in allowed:
                hint = did_you_mean(key, allowed) or f"; allowed keys: {', '.join(allowed)}"
                yield _join(path, key), f"unknown key {key!r}{_context(schema)}{hint}"
        return
    if validator == "required":
        for key in expected:
            if key not in instance:
                yield _join(path, key), f"missing: this key is required{_context(schema)}"
        return
    unit = schema.get("x-unit")
    if unit and validator in ("type", "pattern", "minimum"):
        reason = _unit_reason(unit, instance)
        if reason:
            yield path, reason
            return
    if validator == "enum":
        choices = ", ".join(str(c) for c in expected)
        hint = did_you_mean(instance, [str(c) for c in expected])
        yield path, f"{instance!r} is not one of: {choices}{hint}"
    elif validator == "type":
        wanted = [expected] if isinstance(expected, str) else list(expected)
        names = " or ".join(_JSON_TYPE_NAMES.get(t, t) for t in wanted)
        yield path, f"must be {names}, got {_type_name(instance)}"
    elif validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[validator]
        yield path, f"must be {op} {expected}, got {instance!r}"
    elif validator in ("minItems", "maxItems"):
        word = "at least" if validator == "minItems" else "at most"
        yield path, f"must have {word} {expected} item(s), got {len(instance)}"
    elif validator in ("minLength", "maxLength"):
        if expected == 1 and validator == "minLength":
            yield path, "must not be empty"
        else:
            word = "at least" if validator == "minLength" else "at most"
            yield path, f"must have {word} {expected} character(s), got {len(instance)}"
    elif validator in ("minProperties", "maxProperties"):
        word = "at least" if validator == "minProperties" else "at most"
        yield path, f"must have {word} {expected} key(s), got {len(instance)}"
    elif validator == "uniqueItems":
        yield path, f"must not repeat items, got {_short(_first_repeated(instance))} more than once"
    elif validator == "pattern":
        yield path, f"{instance!r} is not a valid value here (expected to match {expected})"
    elif validator == "const":
        yield path, f"must be {expected!r}, got {_type_name(instance)}"
    elif validator in ("oneOf", "anyOf"):
        problems = _branch_problems(err)
        if problems:
            yield from problems
        else:
            desc = schema.get("description")
            wanted = f" (expected {desc})" if desc else ""
            yield path, f"{_short(instance)} is not valid here{wanted}"
    else:
        yield path, err.message


def _document_order(document: Any) -> dict[str, int]:
    """The position of every key path in the document, in reading order (iterative, bounded by the caller)."""
    order: dict[str, int] = {}
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        order.setdefault(path, len(order))
        if isinstance(value, dict):
            stack.extend((v, _join(path, k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
    return order


def _sorted(problems: Iterable[tuple[str, str]], document: Any) -> list[tuple[str, str]]:
    """Deduplicate and sort problems in document order; a missing key sorts right after its parent."""
    order = _document_order(document)

    def key(problem: tuple[str, str]) -> tuple[int, int]:
        path = problem[0]
        while path not in order:
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                return (len(order), 0)
            path = path[:cut]
        return (order[path], 0 if path == problem[0] else 1)

    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=key)


def validation_problems(validator: Validator, document: Any) -> list[tuple[str, str]]:
    """Every violation ``validator`` finds in ``document`` as ``(key path, reason)``, deduplicated, in document order.

    ``document`` must have passed :func:`document_problems` (plain data, bounded depth and size).
    """
    problems = [p for err in validator.iter_errors(document) for p in _translate(err)]
    return _sorted(problems, document)


def schema_problems(validator: Validator, document: Any) -> list[tuple[str, str]]:
    """:func:`document_problems`, then (when there are none) :func:`validation_problems`: every problem of a
    parsed YAML/JSON document against ``validator``'s schema as ``(key path, reason)``, in document order.

    Empty: the document is valid. Otherwise word each with :func:`format_problem` and raise.
    """
    return document_problems(document) or validation_problems(validator, document)


#: Bounds of a document: deeper or bigger is refused before the schema (or a recursive walk) sees it.
MAX_DEPTH = 40
MAX_NODES = 200_000


def document_problems(document: Any) -> list[tuple[str, str]]:
    """Problems JSON Schema cannot see: non-string keys, non-JSON values, NaN/inf, absurd depth or size.

    Run before :func:`validation_problems`; a document that passes is plain JSON-like data.
    """
    problems: list[tuple[str, str]] = []
    count = 0
    stack: list[tuple[Any, list[str | int], int]] = [(document, [], 0)]
    while stack:
        value, parts, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            return [("", f"the document is too large (more than {MAX_NODES} values)")]
        if depth > MAX_DEPTH:
            return [(format_path(parts), f"nested too deeply (more than {MAX_DEPTH} levels)")]
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    problems.append((format_path(parts), f"key {key!r} must be a string, got {_type_name(key)}"))
                    continue
                stack.append((item, [*parts, key], depth + 1))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                stack.append((item, [*parts, i], depth + 1))
        elif isinstance(value, float):
            if math.isnan(value) or math.isinf(value):
                problems.append((format_path(parts), f"must be a finite number, got {value!r}"))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**64:
            problems.append((format_path(parts), "the integer is too large"))
        elif not (value is None or isinstance(value, str | int | bool)):
            problems.append((format_path(parts), f"unsupported value of type {type(value).__name__}"))
    return _sorted(problems, document)


# --- semantic problems, found while building ----------------------------------------------------------------------


class ProblemLog:
    """The semantic problems found while building a scenario, each with its key path, in the order found.

    Its conversions record a problem and return a fallback instead of raising, so that building goes on and one
    run reports every problem: read :attr:`problems` at the end (empty: the document is valid).
    """

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def problem(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))

    # unit conversions: the schema checked the syntax; what remains is overflow to infinity
    def convert(self, parser: Any, value: Any, path: str, fallback: Any) -> Any:
        """``parser(value)``, or ``fallback`` with the parser's error recorded at ``path``."""
        try:
            return parser(value)
        except UnitError as exc:
            self.problem(path, str(exc))
            return fallback

    def dur(self, d: dict[str, Any], key: str, path: str, default: Any = None, *, positive: bool = False) -> float:
        """Seconds from ``d[key]`` (or ``default``); with ``positive``, 0 is a problem."""
        full = f"{path}.{key}" if path else key
        value = d.get(key, default)
        before = len(self.problems)
        seconds = float(self.convert(parse_duration, value, full, 0.0))
        if positive and seconds <= 0 and len(self.problems) == before:
            self.problem(full, f"must be longer than 0, got {value!r}")
        return seconds

    def rate(self, value: Any, path: str) -> float:
        """Requests per second from a rate such as ``"800/s"``; 0 is a problem."""
        rate = float(self.convert(parse_rate, value, path, 1.0))
        if rate <= 0:
            self.problem(path, f"must be more than 0 per second, got {value!r}")
        return rate

    def ref(self, value: str, known: list[str], path: str, what: str = "node") -> bool:
        """Whether ``value`` is one of ``known``; if not, a problem naming the close one and all the known ones."""
        if value in known:
            return True
        self.problem(path, f"unknown {what} {value!r}{did_you_mean(value, known)} (known: {', '.join(known)})")
        return False
