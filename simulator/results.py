"""Results of one run as plain data: per-request records (columnar numpy), an event log and a summary.

Files a run writes in its directory (schema :data:`SCHEMA_VERSION`, documented in docs/results.md):

- ``summary.json``: scenario, strategy, seed, mode, versions, machine, counts and latency percentiles per type
  and node, outcome counts, reconnects, alerts fired, ``expect`` results, the accounting check;
- ``requests.npz``: one row per request: ``intended``, ``sent``, ``completed`` (seconds from the run's start),
  ``connection`` and ``node`` (indexes into the name tables stored beside them), ``ctype``, ``outcome``
  (index into :data:`OUTCOMES`), ``code`` (exchange error code or 0);
- ``requests.csv``: the same rows for spreadsheets;
- ``events.jsonl``: faults applied, connection state changes, alerts and notifications, balancer ejections;
- ``series.npz``: per-connection samples each :data:`SAMPLE_INTERVAL_S` (health score, state, outstanding);
- ``timing.json``: wall-clock figures of the run on this machine (not part of the deterministic data).

Reports and gates read only these files, so a report can be rebuilt without re-running.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1

OUTCOMES: tuple[str, ...] = ("acknowledged", "rejected", "timed_out", "connection_lost", "not_sent", "no_connection")
_OUTCOME_INDEX = {name: i for i, name in enumerate(OUTCOMES)}
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)
#: Connection states in the order ``series["state"]`` indexes them.
STATES: tuple[str, ...] = ("disconnected", "connecting", "connected", "reconnecting", "failed", "closed")


#: Rows :class:`RequestRecorder` buffers as tuples before writing them into its numpy columns in one step.
FLUSH_ROWS = 1024


class RequestRecorder:
    """Collects request rows in growing numpy columns (amortised O(1) per row, at most :data:`FLUSH_ROWS` row
    objects kept).

    :meth:`add` runs once per request, so it only checks the outcome name and appends a tuple to a buffer (a
    numpy item assignment per column and a name lookup per name column cost several times more). The buffer goes
    into the columns every ``flush_rows`` rows and before anything reads them (:meth:`arrays`, ``len``, the name
    tables), names interned in row order: the same columns and tables as writing each row at once.
    """

    COLUMNS: tuple[tuple[str, Any], ...] = (
        ("intended", np.float64),
        ("sent", np.float64),
        ("completed", np.float64),
        ("connection", np.int32),
        ("node", np.int32),
        ("ctype", np.int8),
        ("outcome", np.int8),
        ("code", np.int32),
    )

    def __init__(self, capacity: int = 4096, flush_rows: int = FLUSH_ROWS) -> None:
        self._n = 0
        self._cols = {name: np.zeros(max(1, capacity), dtype=dtype) for name, dtype in self.COLUMNS}
        self._pending: list[tuple[Any, ...]] = []
        self._flush_rows = max(1, flush_rows)
        self._connections: list[str] = []
        self._nodes: list[str] = []
        self._ctypes: list[str] = []
        # None (no connection, no node) is row index -1 and takes no place in the tables.
        self._conn_index: dict[str | None, int] = {None: -1}
        self._node_index: dict[str | None, int] = {None: -1}
        self._ctype_index: dict[str | None, int] = {None: -1}

    def __len__(self) -> int:
        return self._n + len(self._pending)

    @property
    def connections(self) -> list[str]:
        """Connection names; the ``connection`` column indexes this list (-1: none)."""
        self._flush()
        return self._connections

    @property
    def nodes(self) -> list[str]:
        """Node names; the ``node`` column indexes this list (-1: none)."""
        self._flush()
        return self._nodes

    @property
    def ctypes(self) -> list[str]:
        """Connection type names; the ``ctype`` column indexes this list."""
        self._flush()
        return self._ctypes

    def add(
        self,
        intended: float,
        sent: float,
        completed: float,
        connection: str | None,
        node: str | None,
        ctype: str,
        outcome: str,
        code: int | None = None,
    ) -> None:
        """One request row (times in seconds from the run's start). Raises ``KeyError`` for an outcome not in
        :data:`OUTCOMES`; values numpy cannot store raise when the buffer is written (at the latest at
        :meth:`arrays`)."""
        pending = self._pending
        pending.append((intended, sent, completed, connection, node, ctype, _OUTCOME_INDEX[outcome], code))
        if len(pending) >= self._flush_rows:
            self._flush()

    def _flush(self) -> None:
        """Write the buffered rows into the columns (growing them if needed) and empty the buffer."""
        rows = self._pending
        if not rows:
            return
        self._pending = []
        n = self._n
        end = n + len(rows)
        cols = self._cols
        capacity = len(cols["intended"])
        if end > capacity:
            capacity = max(2 * capacity, end)
            for name in cols:
                cols[name] = np.resize(cols[name], capacity)
        intended, sent, completed, conns, nodes, ctypes, outcomes, codes = zip(*rows, strict=True)
        cols["intended"][n:end] = intended
        cols["sent"][n:end] = sent
        cols["completed"][n:end] = completed
        cols["connection"][n:end] = _intern_all(self._connections, self._conn_index, conns)
        cols["node"][n:end] = _intern_all(self._nodes, self._node_index, nodes)
        cols["ctype"][n:end] = _intern_all(self._ctypes, self._ctype_index, ctypes)
        cols["outcome"][n:end] = outcomes
        cols["code"][n:end] = [code or 0 for code in codes]
        self._n = end

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns, trimmed to the rows recorded (copies)."""
        self._flush()
        return {name: col[: self._n].copy() for name, col in self._cols.items()}


def _intern_all(table: list[str], index: dict[str | None, int], names: tuple[str | None, ...]) -> list[int]:
    """The index of each name in ``table`` (``index`` maps name to index), appending new names in order."""
    try:
        return list(map(index.__getitem__, names))  # the usual case: every name seen before
    except KeyError:
        for name in names:
            if name not in index:
                index[name] = len(table)
                table.append(name)  # type: ignore[arg-type]  # None is always in index
        return list(map(index.__getitem__, names))


@dataclass
class RequestTable:
    """Loaded request rows: columns plus the name tables their indexes refer to."""

    columns: dict[str, np.ndarray]
    connections: list[str]
    nodes: list[str]
    ctypes: list[str]

    def __len__(self) -> int:
        return len(self.columns["intended"])

    @property
    def latency_ms(self) -> np.ndarray:
        """Completion minus intended send time, ms (coordinated-omission free for open-loop runs)."""
        return (self.columns["completed"] - self.columns["intended"]) * 1000.0

    def outcome_mask(self, name: str) -> np.ndarray:
        return self.columns["outcome"] == _OUTCOME_INDEX[name]

    @classmethod
    def from_recorder(cls, rec: RequestRecorder) -> RequestTable:
        return cls(rec.arrays(), list(rec.connections), list(rec.nodes), list(rec.ctypes))


def latency_stats(latency_ms: np.ndarray) -> dict[str, float | int | None]:
    """count, mean, max and the :data:`PERCENTILES` of a latency sample (ms); ``None`` values when empty."""
    out: dict[str, float | int | None] = {"count": int(latency_ms.size)}
    if latency_ms.size == 0:
        out.update({"mean_ms": None, "max_ms": None})
        out.update({_pname(p): None for p in PERCENTILES})
        return out
    out["mean_ms"] = float(np.mean(latency_ms))
    out["max_ms"] = float(np.max(latency_ms))
    for p, v in zip(PERCENTILES, np.percentile(latency_ms, PERCENTILES), strict=True):
        out[_pname(p)] = float(v)
    return out


def _pname(p: float) -> str:
    return f"p{p:g}_ms".replace(".", "_")


def outcome_counts(table: RequestTable, mask: np.ndarray | None = None) -> dict[str, int]:
    col = table.columns["outcome"] if mask is None else table.columns["outcome"][mask]
    counts = np.bincount(col.astype(np.int64), minlength=len(OUTCOMES)) if col.size else np.zeros(len(OUTCOMES))
    return {name: int(counts[i]) for i, name in enumerate(OUTCOMES)}


def summarize_requests(table: RequestTable, warmup_s: float) -> dict[str, Any]:
    """Counts and latency percentiles overall, per connection type and per node (requests intended after warm-up)."""
    measured = table.columns["intended"] >= warmup_s
    ok = table.outcome_mask("acknowledged")
    latency = table.latency_ms

    def block(mask: np.ndarray) -> dict[str, Any]:
        m = mask & measured
        counts = outcome_counts(table, m)
        total = int(m.sum())
        return {
            "submitted": total,
            "outcomes": counts,
            "success_rate": counts["acknowledged"] / total if total else None,
            "latency": latency_stats(latency[m & ok]),
        }

    everything = np.ones(len(table), dtype=bool)
    per_type = {name: block(table.columns["ctype"] == i) for i, name in enumerate(table.ctypes)}
    per_node = {name: block(table.columns["node"] == i) for i, name in enumerate(table.nodes)}
    return {"all": block(everything), "by_type": per_type, "by_node": per_node}


def software_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for pkg in ("wsfinal", "websockets", "numpy", "scipy", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def machine_info() -> dict[str, Any]:
    import os

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python_implementation": platform.python_implementation(),
    }


@dataclass
class RunResult:
    """Everything a run produced. ``summary`` is JSON-ready; ``requests`` and ``events`` are the raw data."""

    summary: dict[str, Any]
    requests: RequestTable
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Wall-clock figures of this run on this machine (timing.json): never part of the deterministic summary.
    timing: dict[str, float] = field(default_factory=dict)
    #: Per-connection samples over time (series.npz): ``time`` (n,), ``connections`` (names, k), and (n, k)
    #: arrays ``health``, ``state`` (index into :data:`STATES`) and ``outstanding``.
    series: dict[str, np.ndarray] = field(default_factory=dict)
    #: Set by ``run(..., interruptible=True)`` when a SIGINT ended the run early (not saved: the summary says
    #: ``status: failed`` with the reason).
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.summary.get("status") == "ok")

    def save(self, directory: str | Path) -> Path:
        """Write summary.json, requests.npz, requests.csv and events.jsonl into ``directory`` (created)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(self.summary, indent=2, sort_keys=True, default=_json_default))
        cols = self.requests.columns
        np.savez_compressed(
            out / "requests.npz",
            **cols,
            connection_names=np.array(self.requests.connections, dtype=str),
            node_names=np.array(self.requests.nodes, dtype=str),
            ctype_names=np.array(self.requests.ctypes, dtype=str),
        )
        with (out / "requests.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                ["intended_s", "sent_s", "completed_s", "latency_ms", "connection", "node", "type", "outcome", "code"]
            )
            conns, nodes, ctypes = self.requests.connections, self.requests.nodes, self.requests.ctypes
            lat = self.requests.latency_ms
            for i in range(len(self.requests)):
                c, n, t = int(cols["connection"][i]), int(cols["node"][i]), int(cols["ctype"][i])
                w.writerow(
                    [
                        f"{cols['intended'][i]:.9f}",
                        f"{cols['sent'][i]:.9f}",
                        f"{cols['completed'][i]:.9f}",
                        f"{lat[i]:.6f}",
                        conns[c] if c >= 0 else "",
                        nodes[n] if n >= 0 else "",
                        ctypes[t] if t >= 0 else "",
                        OUTCOMES[int(cols["outcome"][i])],
                        int(cols["code"][i]),
                    ]
                )
        with (out / "events.jsonl").open("w") as fh:
            for event in self.events:
                fh.write(json.dumps(event, sort_keys=True, default=_json_default) + "\n")
        if self.timing:
            (out / "timing.json").write_text(json.dumps(self.timing, indent=2, sort_keys=True))
        if self.series:
            np.savez_compressed(out / "series.npz", **self.series)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> RunResult:
        """Read a result written by :meth:`save`. Raises ``FileNotFoundError``/``ValueError`` naming the file."""
        d = Path(directory)
        summary_path = d / "summary.json"
        try:
            summary = json.loads(summary_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{summary_path}: not valid JSON: {exc}") from None
        if not isinstance(summary, dict):
            raise ValueError(
                f"{summary_path}: not a run summary (a JSON {_json_kind(summary)}; expected an object with "
                "schema_version, scenario, requests, ...)"
            )
        version = summary.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"{summary_path}: schema_version {version!r}, this wsfinal reads {SCHEMA_VERSION}")
        with np.load(d / "requests.npz") as data:
            columns = {name: data[name] for name, _ in RequestRecorder.COLUMNS}
            table = RequestTable(
                columns,
                [str(x) for x in data["connection_names"]],
                [str(x) for x in data["node_names"]],
                [str(x) for x in data["ctype_names"]],
            )
        events = []
        events_path = d / "events.jsonl"
        if events_path.exists():
            events = [json.loads(line) for line in events_path.read_text().splitlines() if line.strip()]
        timing_path = d / "timing.json"
        timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
        series: dict[str, np.ndarray] = {}
        if (d / "series.npz").exists():
            with np.load(d / "series.npz") as data:
                series = {name: data[name] for name in data.files}
        return cls(summary, table, events, timing, series)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "value"):
        return obj.value
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def check_accounting(outcomes: dict[str, int], submitted: int) -> bool:
    """The invariant every result holds: submitted = sum of outcomes."""
    return sum(outcomes.values()) == submitted


def percent_text(percent: float) -> str:
    """A percentage (0..100) as text with as few decimals (2 to 5) as keep it from reading 100.00 when it is
    below 100: 99.997 stays 99.997, and only a run without failures reads 100.00. NaN reads "nan"."""
    if percent != percent:
        return "nan"
    for digits in (2, 3, 4, 5):
        text = f"{percent:.{digits}f}"
        if percent >= 100 or float(text) < 100:
            return text
    return ">99.999"
