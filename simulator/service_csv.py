"""Reading measured service times from a CSV file: the one reader behind scenario loading and ``from_csv``.

:func:`read_service_csv` returns every sample of one column, converted to seconds, or raises
:class:`ServiceCsvError` naming the file, the line, the column and the value that is wrong. Nothing is skipped
silently: the rules below are the whole format (docs/scenarios.md, *Service-time CSV files*, says the same).

- UTF-8 text, with or without a byte order mark; at most :data:`MAX_CSV_BYTES` bytes and :data:`MAX_CSV_ROWS` rows.
- Blank lines (every cell empty or spaces) and comment lines (the first cell starts with ``#``) are skipped
  wherever they are.
- ``column`` a name: the first remaining row is the header and must contain that name (cells are compared
  stripped). ``column`` an integer (0-based): the first remaining row is a header when its cell in that column is
  not a number, else it is data.
- Every data row must have the column, and its cell (stripped) must be a finite number >= 0 that stays finite
  once converted to seconds. Other columns are not read.
- At least one sample: an empty file, or a header alone, is an error.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wsfinal.exceptions import ConfigurationError

from .scenario_problems import did_you_mean

__all__ = ["MAX_CSV_BYTES", "MAX_CSV_ROWS", "ServiceCsvError", "read_service_csv"]

#: Larger files are refused unread.
MAX_CSV_BYTES = 64 << 20
#: Files with more rows (blank and comment lines included) are refused.
MAX_CSV_ROWS = 1_000_000


class ServiceCsvError(ConfigurationError):
    """A service-time CSV cannot be used. ``str()`` is ``"FILE line N: reason"`` (``"FILE: reason"`` when the
    problem is the whole file); the reason names the column and quotes the cell as written.

    ``key`` is the scenario key the problem belongs to (``"csv"`` or ``"column"``: ``field`` is ``service.<key>``),
    ``file`` the path read, ``line`` the 1-based line number (``None`` for the whole file), ``column`` the column
    asked for, ``value`` the offending cell (or the path). Fix the file, or the scenario's ``column``/``unit``.
    """

    def __init__(
        self,
        key: str,
        file: str | Path,
        reason: str,
        *,
        line: int | None = None,
        column: str | int | None = None,
        value: object = None,
    ) -> None:
        super().__init__(f"service.{key}", value, reason)
        self.key = key
        self.file = str(file)
        self.line = line
        self.column = column
        where = self.file if line is None else f"{self.file} line {line}"
        self.args = (f"{where}: {reason}",)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across process pools, like ScenarioError
        return (_rebuild, (self.key, self.file, self.reason, self.line, self.column, self.value))


def _rebuild(
    key: str, file: str, reason: str, line: int | None, column: str | int | None, value: object
) -> ServiceCsvError:
    return ServiceCsvError(key, file, reason, line=line, column=column, value=value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _skipped(row: list[str]) -> bool:
    """A blank line or a comment line."""
    return not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#")


def _rows(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` of every row that is not blank or a comment, at most MAX_CSV_ROWS read."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for row in itertools.islice(reader, MAX_CSV_ROWS):
            if not _skipped(row):
                yield reader.line_num, row
        if next(reader, None) is not None:
            raise ServiceCsvError("csv", path, f"more than {MAX_CSV_ROWS} rows", value=str(path))
    except csv.Error as exc:
        raise ServiceCsvError("csv", path, f"not readable as CSV: {exc}", line=reader.line_num) from None


def read_service_csv(path: str | Path, column: str | int = "value", *, factor: float = 1.0) -> tuple[float, ...]:
    """Every value of ``column`` times ``factor`` (the unit's length in seconds, times any scale), in file order.

    Raises :class:`ServiceCsvError` for the first problem (see the module docstring for the format); the caller
    reports it with its own context (the scenario key path) and must not retry with the same file.
    """
    path = Path(path)
    text = _read_text(path)
    rows = _rows(path, text)
    first = next(rows, None)
    if first is None:
        raise ServiceCsvError(
            "csv",
            path,
            "the file is empty: no samples (expected "
            + (f"a header row naming column {column!r}, then " if isinstance(column, str) else "")
            + "one service time per line)",
            column=column,
            value=str(path),
        )
    data: Iterator[tuple[int, list[str]]]
    if isinstance(column, str):
        line, row = first
        header = [cell.strip() for cell in row]
        if column not in header:
            hint = did_you_mean(column, header)
            raise ServiceCsvError(
                "column",
                path,
                f"no column {column!r} in the header{hint} (have: {header})",
                line=line,
                column=column,
                value=column,
            )
        index, data = header.index(column), rows
    else:
        index = column
        line, row = first
        header_row = index < len(row) and not _is_number(row[index].strip())
        data = rows if header_row else itertools.chain([first], rows)
    out: list[float] = []
    for line, row in data:
        out.append(_sample(path, line, row, index, column, factor))
    if not out:
        raise ServiceCsvError(
            "csv", path, f"no samples in column {column!r} (a header and nothing else)", column=column, value=str(path)
        )
    return tuple(out)


def _read_text(path: Path) -> str:
    try:
        if not path.is_file():
            raise ServiceCsvError("csv", path, "this path is not a file", value=str(path))
        if path.stat().st_size > MAX_CSV_BYTES:
            raise ServiceCsvError("csv", path, f"the file is larger than {MAX_CSV_BYTES} bytes", value=str(path))
        raw = path.read_bytes()[: MAX_CSV_BYTES + 1]
    except OSError as exc:
        raise ServiceCsvError("csv", path, f"cannot read: {exc.strerror or exc}", value=str(path)) from None
    try:
        # utf-8-sig: a byte order mark (spreadsheets write one) is not part of the first cell
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ServiceCsvError(
            "csv", path, f"not UTF-8 text (byte {exc.start})", line=line, value=raw[exc.start : exc.start + 1]
        ) from None


def _sample(path: Path, line: int, row: list[str], index: int, column: str | int, factor: float) -> float:
    if index >= len(row):
        raise ServiceCsvError(
            "column", path, f"no column {column!r} ({len(row)} cell(s) on this row)", line=line, column=column
        )
    cell = row[index].strip()

    def bad(detail: str) -> ServiceCsvError:
        return ServiceCsvError(
            "csv",
            path,
            f"{cell!r} is not a non-negative number (column {column!r}: {detail})",
            line=line,
            column=column,
            value=cell,
        )

    if not _is_number(cell):
        raise bad("empty cell" if not cell else "not a number")
    value = float(cell)
    if math.isnan(value) or math.isinf(value):
        raise bad("service times must be finite")
    if value < 0:
        raise bad("service times cannot be negative")
    seconds = value * factor
    if not math.isfinite(seconds):
        raise bad(f"too large: {value!r} x {factor!r} s is not finite")
    return seconds
