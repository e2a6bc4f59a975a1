"""Scenario files: the dataclasses a YAML scenario becomes, and the loader that validates it.

A scenario is data: it is read with a ``yaml.SafeLoader`` and nothing in it is evaluated. Loading parses the YAML,
checks the raw document (plain data, bounded size), validates its structure against the declared JSON Schema
(:mod:`simulator.scenario_schema`), then runs the semantic checks of :mod:`simulator.scenario_build` (references
between sections, ranges, times inside the run). Every problem becomes a :class:`ScenarioError` naming the file,
the key path (``faults[2].latency``) and the reason. All values in the dataclasses are in base units: seconds,
bytes, per-second rates. The file format is documented in docs/scenarios.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wsfinal.config import ConnectionType, LoadBalancingStrategy
from wsfinal.exceptions import UsageError

from .fault_vocabulary import INSTANT_KINDS
from .scenario_problems import format_problem, problem_lines
from .scenario_schema import ALERT_NAMES, FAULT_KINDS, METRIC_NAMES, document_problems, structural_problems

__all__ = [
    "ALERT_NAMES",
    "FAULT_KINDS",
    "INSTANT_FAULT_KINDS",
    "METRIC_NAMES",
    "ConnectionGroup",
    "ExpectSpec",
    "FaultSpec",
    "ManagerSpec",
    "NodeSpec",
    "Scenario",
    "ScenarioError",
    "ServiceSpec",
    "SubscriptionSpec",
    "WorkloadSpec",
    "load_scenario",
    "loads_scenario",
    "parse_scenario",
    "yaml_problem",
]

#: Kinds that happen once at ``at`` and have no duration (their ``FaultSpec.duration_s`` is ``None``).
INSTANT_FAULT_KINDS: frozenset[str] = INSTANT_KINDS  # the engine's set: the two must never disagree


class ScenarioError(UsageError, ValueError):
    """A scenario file is invalid. ``str()`` is ``"FILE: key.path: reason"`` for the first problem found.

    ``source`` is the file (or ``"<string>"``), ``path`` the key path of the first problem (``""`` for the whole
    document), ``reason`` what is wrong with it; ``problems`` lists every ``(path, reason)`` found, the first
    one included, in document order as far as it is known. Fix the file and load it again.
    """

    def __init__(self, source: str, path: str, reason: str, problems: tuple[tuple[str, str], ...] = ()) -> None:
        self.source = source
        self.path = path
        self.reason = reason
        self.problems: tuple[tuple[str, str], ...] = problems or ((path, reason),)
        super().__init__(format_problem(source, path, reason))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across process pools (sweeps load in workers)
        return (type(self), (self.source, self.path, self.reason, self.problems))

    def lines(self) -> list[str]:
        """Every problem as one ``"FILE: path: reason"`` line (what ``wsfinal scenario check`` prints)."""
        return problem_lines(self.source, self.problems)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A node's service model: ``workers`` servers taking service times from ``distribution``.

    ``params`` by distribution, times in seconds: constant ``{value}``; exponential ``{mean}``; lognormal
    ``{median, sigma}`` (sigma of the underlying normal); empirical ``{csv (absolute path), column, unit, scale}``
    whose samples are already read into ``samples`` (seconds, scale applied). Empty ``samples`` otherwise.
    """

    distribution: str
    workers: int
    params: dict[str, float | str] = field(default_factory=dict)
    samples: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One fake exchange node. ``port`` 0 lets the OS choose. Latencies are one-way, per direction, seconds."""

    id: str
    host: str = "127.0.0.1"
    port: int = 0
    service: ServiceSpec = field(default_factory=lambda: ServiceSpec("exponential", 1, {"mean": 0.002}))
    queue_limit: int = 1000
    network_latency_s: float = 0.0
    network_jitter_s: float = 0.0
    heartbeat_interval_s: float = 15.0
    symbols: tuple[str, ...] = ("tBTCUSD",)
    api_keys: dict[str, str] = field(default_factory=dict)
    # added beyond CONTRACTS.md (documented in docs/scenarios.md)
    max_subscriptions: int = 25
    max_frame_bytes: int = 1 << 20
    market_update_interval_s: float = 0.1
    platform_status: int = 1


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """One public channel subscription a market-data connection makes after connecting."""

    channel: str  # ticker | trades | book
    symbol: str
    prec: str | None = None  # book only: P0..P4 (default P0)
    length: int | None = None  # book only: 1, 25, 100 or 250 (default 25)
    freq: str | None = None  # book only: F0 or F1 (default F0)


@dataclass(frozen=True, slots=True)
class ConnectionGroup:
    """``count`` client connections of one type to one node.

    Connections on a node are numbered 0, 1, ... in the order of the groups in the file, then within a group;
    ``FaultSpec.connection`` uses this numbering (see :meth:`Scenario.connections_on`).
    """

    connection_type: ConnectionType
    node: str
    count: int = 1
    api_key: str | None = None
    subscriptions: tuple[SubscriptionSpec, ...] = ()
    # added beyond CONTRACTS.md: the client-side ConnectionConfig values for these connections
    weight: float = 1.0
    max_reconnect_attempts: int = 5
    reconnect_delay_s: float = 1.0
    heartbeat_interval_s: float = 30.0
    connection_timeout_s: float = 10.0
    #: ``ConnectionConfig.latency_stale_after_seconds``: see docs/connections.md, *Latency signals*.
    latency_stale_after_s: float = 10.0
    #: ``ConnectionConfig.latency_probe_budget``: see docs/connections.md, *Latency signals*.
    latency_probe_budget: int = 1


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """The requests sent on connections of one type (orders for ``trading``), from ``start_s`` to ``stop_s``.

    ``arrival``: ``constant`` (evenly spaced at ``rate_per_s``), ``poisson`` (exponential gaps, mean rate
    ``rate_per_s``), ``bursty`` (Poisson at ``rate_per_s`` during ``on_s``, silent during ``off_s``, repeating,
    starting with on), ``schedule`` (Poisson whose rate steps to ``rate`` at each ``at_s`` of ``schedule``; 0
    before the first step), ``closed_loop`` (``concurrency`` requests outstanding, each sent ``think_s`` after
    the previous one finished; labelled closed-loop in results). Open-loop latency is measured from the intended
    send time.
    """

    connection_type: ConnectionType
    arrival: str
    rate_per_s: float | None = None
    on_s: float | None = None
    off_s: float | None = None
    schedule: tuple[tuple[float, float], ...] = ()  # (at_s, rate_per_s), at strictly increasing
    concurrency: int | None = None
    think_s: float = 0.0
    start_s: float = 0.0
    stop_s: float = 0.0  # filled with the scenario duration when omitted
    symbol: str | None = None  # order symbol; None = the first symbol of the target node


@dataclass(frozen=True, slots=True)
class ManagerSpec:
    """Manager settings for the run.

    ``alert_rules`` maps rule names of ``wsfinal.alerts.DEFAULT_RULES`` to overrides in the form
    ``resolve_rules`` takes: ``threshold`` (the rule's unit; latency in ms), ``for_s``, ``keep_firing_for_s``,
    ``enabled``, ``params``. ``thresholds`` is the same rules' thresholds alone (name -> threshold).
    """

    strategy: LoadBalancingStrategy = LoadBalancingStrategy.ROUND_ROBIN
    health_check_interval_s: float = 1.0
    analytics_interval_s: float = 1.0
    alert_check_interval_s: float = 1.0
    request_timeout_s: float = 5.0
    # added beyond CONTRACTS.md
    max_connections: int = 1000
    enable_analytics: bool = True
    enable_alerts: bool = True
    enable_load_balancing: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)
    alert_rules: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault on the timeline.

    ``node`` None = every node; ``connection`` None = every connection of the node(s), else the index of one
    client connection on ``node`` (numbering in :class:`ConnectionGroup`). ``duration_s`` is None only for the
    instant kinds (:data:`INSTANT_FAULT_KINDS`); for the others an omitted duration is filled in as "until the
    end of the run". ``probability`` is the chance each affected connection is affected (Toxiproxy's toxicity).
    ``params`` per kind are in docs/scenarios.md, already converted to seconds / bytes / bytes per second.
    """

    kind: str
    at_s: float
    duration_s: float | None = None
    node: str | None = None
    direction: str = "both"  # up = client->exchange, down = exchange->client
    connection: int | None = None
    probability: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    # added beyond CONTRACTS.md: the fault's position in the file (what expect's after_fault refers to)
    index: int = 0

    @property
    def end_s(self) -> float:
        """When the fault stops (``at_s`` for instant kinds)."""
        return self.at_s + (self.duration_s or 0.0)


@dataclass(frozen=True, slots=True)
class ExpectSpec:
    """An assertion about the run, checked after it (evaluation is not done here).

    ``kind == "metric"``: ``metric op value`` over the run (after warm-up), optionally restricted to
    ``connection_type`` / ``node`` / ``strategy``. ``*_ms`` values are milliseconds.
    ``kind == "alert"``: alert ``alert`` fires within ``within_s`` of the start of fault ``after_fault`` (or of
    the start of the run when None); with ``never`` it must not fire at all. ``node`` narrows either kind.
    """

    kind: str  # "metric" | "alert"
    metric: str | None = None
    op: str | None = None  # >=, <=, >, <, ==
    value: float | None = None
    alert: str | None = None
    within_s: float | None = None
    after_fault: int | None = None
    never: bool = False
    connection_type: ConnectionType | None = None
    node: str | None = None
    strategy: LoadBalancingStrategy | None = None
    index: int = 0  # position in the file's expect list


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario. Times in seconds. ``source`` is the file it came from (or ``"<string>"``)."""

    name: str
    description: str
    seed: int
    duration_s: float
    warmup_s: float
    nodes: tuple[NodeSpec, ...]
    connections: tuple[ConnectionGroup, ...]
    workload: tuple[WorkloadSpec, ...]
    manager: ManagerSpec
    faults: tuple[FaultSpec, ...]
    expect: tuple[ExpectSpec, ...]
    source: str = "<string>"

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id (KeyError if none; ids were checked at load time)."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def connections_on(self, node_id: str) -> list[tuple[ConnectionGroup, int]]:
        """The client connections on ``node_id`` as ``(group, index within group)``, in fault-index order."""
        return [(g, i) for g in self.connections if g.node == node_id for i in range(g.count)]


# --- loading -----------------------------------------------------------------------------------------------------

#: Larger files are refused unread.
MAX_FILE_BYTES = 4 << 20


def parse_scenario(mapping: Any, source: str = "<string>", *, base_dir: str | Path | None = None) -> Scenario:
    """Validate an already-parsed document and build the :class:`Scenario`.

    ``base_dir`` is where relative paths (an empirical service CSV) are looked up; default: the current
    directory. Raises :class:`ScenarioError` listing every problem found; nothing else escapes.
    """
    from .scenario_build import build_scenario  # it imports this module's dataclasses

    if mapping is None:
        raise ScenarioError(source, "", "the document is empty")
    if not isinstance(mapping, dict):
        raise ScenarioError(
            source, "", f"the document must be a mapping (name, duration, nodes, ...), got {_kind(mapping)}"
        )
    for check in (document_problems, structural_problems):
        problems = check(mapping)
        if problems:
            raise ScenarioError(source, *problems[0], problems=tuple(problems))
    scenario, problems = build_scenario(mapping, source, Path(base_dir) if base_dir is not None else Path.cwd())
    if problems:
        raise ScenarioError(source, *problems[0], problems=tuple(problems))
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read, parse and validate a YAML scenario file; raises :class:`ScenarioError` naming the file.

    The YAML is read as data only (a ``yaml.SafeLoader`` with YAML 1.2 booleans, so ``on``/``off`` stay strings,
    and duplicate keys refused); relative paths inside it are relative to the file's directory.
    """
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()[: MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise ScenarioError(source, "", f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(source, "", f"the file is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(source, "", f"not UTF-8 text (byte {exc.start})") from None
    return parse_scenario(_parse_yaml(text, source), source, base_dir=path.parent)


def loads_scenario(text: str, source: str = "<string>", *, base_dir: str | Path | None = None) -> Scenario:
    """Like :func:`load_scenario` for YAML text already in memory."""
    return parse_scenario(_parse_yaml(text, source), source, base_dir=base_dir)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return safe_load_yaml(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ScenarioError(source, "", yaml_problem(exc)) from None


def yaml_problem(exc: yaml.YAMLError | RecursionError) -> str:
    """One line for a YAML file that does not parse, ``"YAML syntax error at line L, column C: reason"`` (not
    PyYAML's several lines about ``<unicode string>``); the caller prefixes the file name (``"FILE: ..."``)."""
    if isinstance(exc, RecursionError):
        return "the YAML is nested too deeply"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = exc.problem or exc.context or "invalid YAML"
        return f"YAML syntax error at {where}{what}"
    return f"YAML error: {exc}"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (``on``/``off``/``yes``/``no`` stay strings), dates kept as strings,
    and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, "found an unhashable key", key_node.start_mark
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def safe_load_yaml(text: str) -> Any:
    """Parse YAML as data only (no tags that build objects). Raises ``yaml.YAMLError`` or ``RecursionError``."""
    # _Loader derives from SafeLoader: the same safe constructors as yaml.safe_load, nothing is evaluated.
    return yaml.load(text, Loader=_Loader)


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
