"""The ``faults`` section of a schema-valid scenario document, checked and turned into :class:`FaultSpec`s.

What the schema cannot say about a fault: that it starts and ends inside the run, that an instant kind takes no
duration, that its node and connection index exist, that its parameters do not overflow once in base units
(seconds, bytes, bytes per second) and that a capacity drop drops. Problems go to the caller's
:class:`~simulator.scenario_problems.ProblemLog`; :mod:`simulator.scenario_build` calls :func:`build_faults`.
"""

from __future__ import annotations

from typing import Any

from .fault_schema import FAULT_DEFAULTS, FAULT_PARAM_DEFAULTS
from .scenario import INSTANT_FAULT_KINDS, ConnectionGroup, FaultSpec, NodeSpec
from .scenario_problems import ProblemLog
from .units import format_duration, parse_byte_rate, parse_size

__all__ = ["build_faults", "fault_params"]

#: The keys every fault has; the others are the kind's parameters.
_COMMON = frozenset({"kind", "at", "duration", "node", "direction", "connection", "probability"})


def build_faults(
    log: ProblemLog,
    items: list[dict[str, Any]],
    nodes: tuple[NodeSpec, ...],
    groups: tuple[ConnectionGroup, ...],
    duration: float,
) -> tuple[FaultSpec, ...]:
    """The ``faults`` entries as specs (``duration`` filled in to the end of the run), problems recorded in ``log``.

    ``nodes`` and ``groups`` are the scenario's, already built: fault node ids and connection indexes refer to them.
    """
    by_id = {n.id: n for n in nodes}
    out: list[FaultSpec] = []
    for i, d in enumerate(items):
        path = f"faults[{i}]"
        kind = d["kind"]
        at = log.dur(d, "at", path)
        if duration > 0 and at >= duration:
            log.problem(f"{path}.at", f"{d['at']!r} is at or after the end of the run ({format_duration(duration)})")
        span: float | None
        if kind in INSTANT_FAULT_KINDS:
            span = None
            if "duration" in d:
                log.problem(f"{path}.duration", f"a {kind!r} fault happens once at 'at' and takes no duration")
        elif "duration" in d:
            span = log.dur(d, "duration", path, positive=True)
            if duration > 0 and at < duration and at + span > duration + 1e-9:
                log.problem(
                    f"{path}.duration",
                    f"the fault would end at {format_duration(at + span)}, after the end of the run "
                    f"({format_duration(duration)})",
                )
        else:
            span = max(duration - at, 0.0)
        node_id = d.get("node")
        targets = list(nodes)
        if node_id is not None:
            node = by_id.get(node_id)
            targets = [node] if node is not None else []
            if node is None:
                log.ref(node_id, list(by_id), f"{path}.node")
        connection = d.get("connection")
        if connection is not None:
            if node_id is None:
                log.problem(f"{path}.connection", "a connection index needs 'node' (it counts that node's connections)")
            elif node_id in by_id:
                n = sum(g.count for g in groups if g.node == node_id)
                if connection >= n:
                    log.problem(
                        f"{path}.connection",
                        f"index {connection} out of range: node {node_id!r} has {n} client connection(s)"
                        + (f" (0..{n - 1})" if n else ""),
                    )
        params = fault_params(log, kind, d, path, targets)
        out.append(
            FaultSpec(
                kind=kind,
                at_s=at,
                duration_s=span,
                node=node_id,
                direction=d.get("direction", FAULT_DEFAULTS["direction"]),
                connection=connection,
                probability=float(d.get("probability", FAULT_DEFAULTS["probability"])),
                params=params,
                index=i,
            )
        )
    return tuple(out)


def fault_params(log: ProblemLog, kind: str, d: dict[str, Any], path: str, targets: list[NodeSpec]) -> dict[str, Any]:
    """The kind's parameters in base units, defaults filled in (see the table in docs/scenarios.md)."""
    p: dict[str, Any] = {
        **FAULT_PARAM_DEFAULTS.get(kind, {}),
        **{k: v for k, v in d.items() if k not in _COMMON},
    }

    def size(key: str) -> int:
        return int(log.convert(parse_size, p[key], f"{path}.{key}", 0))

    def need_positive(key: str, value: float, original: Any) -> None:
        if value <= 0:
            log.problem(f"{path}.{key}", f"must be more than 0, got {original!r}")

    if kind == "latency":
        p["latency"] = log.dur(p, "latency", path, positive=True)
        p["jitter"] = log.dur(p, "jitter", path)
    elif kind == "latency_factor":
        p["factor"] = float(p["factor"])
    elif kind == "bandwidth":
        original = p["rate"]
        p["rate"] = float(log.convert(parse_byte_rate, original, f"{path}.rate", 1.0))
        need_positive("rate", p["rate"], original)
    elif kind == "slow_close":
        p["delay"] = log.dur(p, "delay", path, positive=True)
    elif kind == "timeout":
        p["timeout"] = log.dur(p, "timeout", path)
    elif kind == "slicer":
        original = p["average_size"]
        p["average_size"], p["size_variation"] = size("average_size"), size("size_variation")
        p["delay"] = log.dur(p, "delay", path)
        need_positive("average_size", p["average_size"], original)
        if p["average_size"] > 0 and p["size_variation"] >= p["average_size"]:
            log.problem(f"{path}.size_variation", "must be smaller than average_size")
    elif kind == "limit_data":
        original = p["bytes"]
        p["bytes"] = size("bytes")
        need_positive("bytes", p["bytes"], original)
    elif kind == "oversized":
        original = p["size"]
        p["size"] = size("size")
        need_positive("size", p["size"], original)
    elif kind == "connect_rate_limit":
        p["max_connects"] = int(p["max_connects"])
        p["window"] = log.dur(p, "window", path, positive=True)
    elif kind in ("error_reply", "reorder"):
        p = {k: int(v) if k in ("code", "gap") else float(v) for k, v in p.items()}
    elif kind == "capacity_drop":
        p["workers"] = int(p["workers"])
        for node in targets:
            if p["workers"] >= node.service.workers:
                log.problem(
                    f"{path}.workers",
                    f"must be fewer than node {node.id!r}'s {node.service.workers} worker(s) to be a drop",
                )
                break
    elif kind == "close":
        p["code"] = int(p["code"])
    if "rate" in p and kind != "bandwidth":
        p["rate"] = float(p["rate"])
    return p
