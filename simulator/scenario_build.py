"""Semantic checks of a scenario document and construction of the :class:`~simulator.scenario.Scenario`.

Runs after the JSON Schema has accepted the document's structure, so every value has the right type; what is left
is what a schema cannot say: references between sections (node ids, api keys, symbols, fault indexes), times
inside the run, unit values that overflow, and the empirical CSV. Every problem is recorded with its key path
(the builder is a :class:`~simulator.scenario_problems.ProblemLog`); building goes on so that one run reports them
all. The ``faults`` section is built by :mod:`simulator.fault_build`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from wsfinal.config import ConnectionType, LoadBalancingStrategy

from .fault_build import build_faults
from .scenario import (
    ConnectionGroup,
    ExpectSpec,
    ManagerSpec,
    NodeSpec,
    Scenario,
    ServiceSpec,
    SubscriptionSpec,
    WorkloadSpec,
)
from .scenario_problems import ProblemLog, did_you_mean
from .scenario_schema import DEFAULTS
from .service_csv import ServiceCsvError, read_service_csv
from .units import UnitError, format_duration, parse_duration, parse_rate, parse_size

_EMPIRICAL_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
_SHARE_METRICS = frozenset({"success_rate", "error_rate", "timeout_rate"})


def build_scenario(document: dict[str, Any], source: str, base_dir: Path) -> tuple[Scenario, list[tuple[str, str]]]:
    """The scenario built from a schema-valid ``document`` and the semantic problems found (empty: valid)."""
    builder = _Builder(source, base_dir)
    return builder.build(document), builder.problems


def _param_value(value: Any) -> Any:
    """A rule parameter: a duration string becomes seconds; anything else is passed on as is."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except UnitError:
            return value
    return value


class _Builder(ProblemLog):
    """Turns a structurally valid document into a Scenario, recording every semantic problem on the way."""

    def __init__(self, source: str, base_dir: Path) -> None:
        super().__init__()
        self.source = source
        self.base_dir = base_dir

    def build(self, d: dict[str, Any]) -> Scenario:
        top = DEFAULTS["scenario"]
        duration = self.dur(d, "duration", "", positive=True)
        warmup = self.dur(d, "warmup", "", top["warmup"])
        if duration > 0 and warmup >= duration:
            self.problem(
                "warmup", f"must be shorter than the run ({format_duration(duration)}), got {d.get('warmup')!r}"
            )
        nodes = self.nodes(d["nodes"])
        node_ids = [n.id for n in nodes]
        manager = self.manager(d.get("manager", {}))
        clients = d["clients"]
        groups = self.connections(clients["connections"], nodes)
        total = sum(g.count for g in groups)
        if total > manager.max_connections:
            self.problem(
                "clients.connections",
                f"{total} connections in all, more than manager.max_connections ({manager.max_connections})",
            )
        workload = self.workloads(clients.get("workload", []), groups, nodes, duration)
        faults = build_faults(self, d.get("faults", []), nodes, groups, duration)
        expect = self.expectations(d.get("expect", []), node_ids, len(faults))
        return Scenario(
            name=d["name"],
            description=d.get("description", top["description"]),
            seed=int(d.get("seed", top["seed"])),
            duration_s=duration,
            warmup_s=warmup,
            nodes=nodes,
            connections=groups,
            workload=workload,
            manager=manager,
            faults=faults,
            expect=expect,
            source=self.source,
        )

    # --- nodes ---------------------------------------------------------------------------------------------------

    def nodes(self, items: list[dict[str, Any]]) -> tuple[NodeSpec, ...]:
        out: list[NodeSpec] = []
        first_seen: dict[str, int] = {}
        ports: dict[tuple[str, int], int] = {}
        nd = DEFAULTS["node"]
        for i, d in enumerate(items):
            path = f"nodes[{i}]"
            if d["id"] in first_seen:
                self.problem(f"{path}.id", f"duplicate node id {d['id']!r} (also nodes[{first_seen[d['id']]}])")
            first_seen.setdefault(d["id"], i)
            host, port = d.get("host", nd["host"]), int(d.get("port", nd["port"]))
            if port:
                if (host, port) in ports:
                    self.problem(f"{path}.port", f"port {port} on {host} is also used by nodes[{ports[host, port]}]")
                ports.setdefault((host, port), i)
            net = d.get("network", {})
            netd = DEFAULTS["network"]
            max_frame = self.convert(
                parse_size, d.get("max_frame_size", nd["max_frame_size"]), f"{path}.max_frame_size", 1
            )
            if max_frame <= 0:
                self.problem(f"{path}.max_frame_size", "must be larger than 0 bytes")
            out.append(
                NodeSpec(
                    id=d["id"],
                    host=host,
                    port=port,
                    service=self.service(d["service"], f"{path}.service"),
                    queue_limit=int(d.get("queue_limit", nd["queue_limit"])),
                    network_latency_s=self.dur(net, "latency", f"{path}.network", netd["latency"]),
                    network_jitter_s=self.dur(net, "jitter", f"{path}.network", netd["jitter"]),
                    heartbeat_interval_s=self.dur(
                        d, "heartbeat_interval", path, nd["heartbeat_interval"], positive=True
                    ),
                    symbols=tuple(d.get("symbols", nd["symbols"])),
                    api_keys=dict(d.get("api_keys", nd["api_keys"])),
                    max_subscriptions=int(d.get("max_subscriptions", nd["max_subscriptions"])),
                    max_frame_bytes=int(max_frame),
                    market_update_interval_s=self.dur(
                        d, "market_update_interval", path, nd["market_update_interval"], positive=True
                    ),
                    platform_status=int(d.get("platform_status", nd["platform_status"])),
                )
            )
        return tuple(out)

    def service(self, d: dict[str, Any], path: str) -> ServiceSpec:
        kind = d["distribution"]
        workers = int(d.get("workers", DEFAULTS["service"]["workers"]))
        params: dict[str, float | str] = {}
        samples: tuple[float, ...] = ()
        if kind == "constant":
            params["value"] = self.dur(d, "value", path, positive=True)
        elif kind == "exponential":
            params["mean"] = self.dur(d, "mean", path, positive=True)
        elif kind == "lognormal":
            params["median"] = self.dur(d, "median", path, positive=True)
            params["sigma"] = float(d["sigma"])
        else:
            ed = DEFAULTS["empirical"]
            column = d.get("column", ed["column"])
            unit = d.get("unit", ed["unit"])
            scale = float(d.get("scale", ed["scale"]))
            csv_path = self.base_dir / d["csv"]
            params.update(csv=str(csv_path), column=column, unit=unit, scale=scale)
            samples = self.read_samples(csv_path, column, _EMPIRICAL_UNITS[unit] * scale, path)
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                params["csv"] = str(csv_path.resolve())
        return ServiceSpec(kind, workers, params, samples)

    def read_samples(self, csv_path: Path, column: str | int, factor: float, path: str) -> tuple[float, ...]:
        """Service times in seconds from one column of a CSV (:mod:`simulator.service_csv` has the format).

        A bad file is recorded as a problem at ``path.csv`` or ``path.column`` (the reason names the CSV file,
        its line, the column and the value) and gives no samples.
        """
        try:
            return read_service_csv(csv_path, column, factor=factor)
        except ServiceCsvError as exc:
            self.problem(f"{path}.{exc.key}", str(exc))
            return ()

    # --- clients -------------------------------------------------------------------------------------------------

    def connections(self, items: list[dict[str, Any]], nodes: tuple[NodeSpec, ...]) -> tuple[ConnectionGroup, ...]:
        by_id = {n.id: n for n in nodes}
        cd = DEFAULTS["connection"]
        bd = DEFAULTS["book_subscription"]
        out: list[ConnectionGroup] = []
        for i, d in enumerate(items):
            path = f"clients.connections[{i}]"
            node = by_id.get(d["node"])
            if node is None:
                self.ref(d["node"], list(by_id), f"{path}.node")
            api_key = d.get("api_key")
            if node is not None and api_key is not None and api_key not in node.api_keys:
                known = ", ".join(node.api_keys) or "none"
                hint = did_you_mean(api_key, list(node.api_keys))
                self.problem(
                    f"{path}.api_key", f"node {node.id!r} has no api key {api_key!r}{hint} (its keys: {known})"
                )
            subs = []
            for j, sd in enumerate(d.get("subscriptions", [])):
                if node is not None and sd["symbol"] not in node.symbols:
                    self.ref(
                        sd["symbol"],
                        list(node.symbols),
                        f"{path}.subscriptions[{j}].symbol",
                        f"symbol on node {node.id!r}:",
                    )
                book = sd["channel"] == "book"
                subs.append(
                    SubscriptionSpec(
                        channel=sd["channel"],
                        symbol=sd["symbol"],
                        prec=sd.get("prec", bd["prec"]) if book else None,
                        length=int(sd.get("len", bd["len"])) if book else None,
                        freq=sd.get("freq", bd["freq"]) if book else None,
                    )
                )
            out.append(
                ConnectionGroup(
                    connection_type=ConnectionType(d["type"]),
                    node=d["node"],
                    count=int(d.get("count", cd["count"])),
                    api_key=api_key,
                    subscriptions=tuple(subs),
                    weight=float(d.get("weight", cd["weight"])),
                    max_reconnect_attempts=int(d.get("max_reconnect_attempts", cd["max_reconnect_attempts"])),
                    reconnect_delay_s=self.dur(d, "reconnect_delay", path, cd["reconnect_delay"]),
                    heartbeat_interval_s=self.dur(
                        d, "heartbeat_interval", path, cd["heartbeat_interval"], positive=True
                    ),
                    connection_timeout_s=self.dur(
                        d, "connection_timeout", path, cd["connection_timeout"], positive=True
                    ),
                    latency_stale_after_s=self.dur(
                        d, "latency_stale_after", path, cd["latency_stale_after"], positive=True
                    ),
                    latency_probe_budget=int(d.get("latency_probe_budget", cd["latency_probe_budget"])),
                )
            )
        return tuple(out)

    def workloads(
        self,
        items: list[dict[str, Any]],
        groups: tuple[ConnectionGroup, ...],
        nodes: tuple[NodeSpec, ...],
        duration: float,
    ) -> tuple[WorkloadSpec, ...]:
        out: list[WorkloadSpec] = []
        wd = DEFAULTS["workload"]
        symbols_of = {n.id: n.symbols for n in nodes}
        for i, d in enumerate(items):
            path = f"clients.workload[{i}]"
            ctype = ConnectionType(d["type"])
            carriers = [(k, g) for k, g in enumerate(groups) if g.connection_type is ctype]
            if not carriers:
                self.problem(
                    f"{path}.type", f"no connections of type {ctype.value!r} in clients.connections to carry it"
                )
            if ctype is ConnectionType.TRADING:
                for k, g in carriers:
                    if g.api_key is None:
                        self.problem(
                            f"clients.connections[{k}].api_key",
                            f"missing: trading connections send the order workload ({path}) and must authenticate",
                        )
            arrival = d.get("arrival", wd["arrival"])
            start = self.dur(d, "start", path, wd["start"])
            stop = self.dur(d, "stop", path) if "stop" in d else duration
            if "stop" in d and duration > 0 and stop > duration:
                self.problem(f"{path}.stop", f"{d['stop']!r} is after the end of the run ({format_duration(duration)})")
            if stop <= start and duration > 0:
                self.problem(f"{path}.start", f"the workload must start before it stops ({format_duration(stop)})")
            symbol = d.get("symbol")
            if symbol is not None:
                for _, g in carriers:
                    if g.node in symbols_of and symbol not in symbols_of[g.node]:
                        self.ref(symbol, list(symbols_of[g.node]), f"{path}.symbol", f"symbol on node {g.node!r}:")
                        break
            rate = on = off = None
            schedule: list[tuple[float, float]] = []
            if arrival in ("constant", "poisson", "bursty"):
                rate = self.rate(d["rate"], f"{path}.rate")
            if arrival == "bursty":
                on = self.dur(d, "on", path, positive=True)
                off = self.dur(d, "off", path, positive=True)
            if arrival == "schedule":
                previous = -1.0
                for j, step in enumerate(d["schedule"]):
                    at = self.dur(step, "at", f"{path}.schedule[{j}]")
                    r = self.convert(parse_rate, step["rate"], f"{path}.schedule[{j}].rate", 0.0)
                    if at <= previous:
                        self.problem(f"{path}.schedule[{j}].at", "steps must be in increasing time order")
                    elif duration > 0 and at >= duration:
                        self.problem(
                            f"{path}.schedule[{j}].at",
                            f"is at or after the end of the run ({format_duration(duration)})",
                        )
                    previous = max(previous, at)
                    schedule.append((at, float(r)))
                if schedule and all(r == 0 for _, r in schedule):
                    self.problem(f"{path}.schedule", "every step has rate 0: nothing would be sent")
            concurrency = int(d["concurrency"]) if arrival == "closed_loop" else None
            think = self.dur(d, "think", path, wd["think"]) if arrival == "closed_loop" else 0.0
            out.append(
                WorkloadSpec(
                    connection_type=ctype,
                    arrival=arrival,
                    rate_per_s=rate,
                    on_s=on,
                    off_s=off,
                    schedule=tuple(schedule),
                    concurrency=concurrency,
                    think_s=think,
                    start_s=start,
                    stop_s=stop,
                    symbol=symbol,
                )
            )
        return tuple(out)

    def manager(self, d: dict[str, Any]) -> ManagerSpec:
        md = DEFAULTS["manager"]
        rules = {
            name: self.alert_rule(spec, f"manager.alert_rules.{name}")
            for name, spec in d.get("alert_rules", {}).items()
        }
        return ManagerSpec(
            strategy=LoadBalancingStrategy(d.get("strategy", md["strategy"])),
            health_check_interval_s=self.dur(
                d, "health_check_interval", "manager", md["health_check_interval"], positive=True
            ),
            analytics_interval_s=self.dur(d, "analytics_interval", "manager", md["analytics_interval"], positive=True),
            alert_check_interval_s=self.dur(
                d, "alert_check_interval", "manager", md["alert_check_interval"], positive=True
            ),
            request_timeout_s=self.dur(d, "request_timeout", "manager", md["request_timeout"], positive=True),
            max_connections=int(d.get("max_connections", md["max_connections"])),
            enable_analytics=bool(d.get("enable_analytics", md["enable_analytics"])),
            enable_alerts=bool(d.get("enable_alerts", md["enable_alerts"])),
            enable_load_balancing=bool(d.get("enable_load_balancing", md["enable_load_balancing"])),
            thresholds={name: rule["threshold"] for name, rule in rules.items() if "threshold" in rule},
            alert_rules=rules,
        )

    def alert_rule(self, d: dict[str, Any], path: str) -> dict[str, Any]:
        """One rule override in the form ``wsfinal.alerts.resolve_rules`` takes (``for_s``, ms thresholds)."""
        out: dict[str, Any] = {}
        if "threshold" in d:
            value = d["threshold"]
            out["threshold"] = self.dur(d, "threshold", path) * 1000.0 if isinstance(value, str) else float(value)
        if "metric" in d:
            out["metric"] = str(d["metric"])
        if "for" in d:
            out["for_s"] = self.dur(d, "for", path)
        if "keep_firing_for" in d:
            out["keep_firing_for_s"] = self.dur(d, "keep_firing_for", path)
        if "enabled" in d:
            out["enabled"] = bool(d["enabled"])
        if "params" in d:
            out["params"] = {key: _param_value(v) for key, v in d["params"].items()}
        return out

    # --- expectations --------------------------------------------------------------------------------------------

    def expectations(self, items: list[dict[str, Any]], node_ids: list[str], n_faults: int) -> tuple[ExpectSpec, ...]:
        out: list[ExpectSpec] = []
        for i, d in enumerate(items):
            path = f"expect[{i}]"
            if "node" in d:
                self.ref(d["node"], node_ids, f"{path}.node")
            ctype = ConnectionType(d["connection_type"]) if "connection_type" in d else None
            if "metric" in d:
                metric = d["metric"]
                value = self.metric_value(metric, d["value"], f"{path}.value")
                strategy = LoadBalancingStrategy(d["strategy"]) if "strategy" in d else None
                out.append(
                    ExpectSpec(
                        "metric",
                        metric=metric,
                        op=d["op"],
                        value=value,
                        connection_type=ctype,
                        node=d.get("node"),
                        strategy=strategy,
                        index=i,
                    )
                )
                continue
            never = bool(d.get("never", False))
            within = None
            if never:
                for key in ("within", "after_fault"):
                    if key in d:
                        self.problem(f"{path}.{key}", "cannot be combined with never: true")
            elif "within" not in d:
                self.problem(f"{path}.within", "missing: an alert expectation needs 'within' (or 'never: true')")
            else:
                within = self.dur(d, "within", path, positive=True)
            after = d.get("after_fault")
            if after is not None and after >= n_faults:
                self.problem(
                    f"{path}.after_fault",
                    f"no fault {after}: the scenario has {n_faults} fault(s)"
                    + (f" (0..{n_faults - 1})" if n_faults else ""),
                )
            out.append(
                ExpectSpec(
                    "alert",
                    alert=d["alert"],
                    within_s=within,
                    after_fault=None if never else after,
                    never=never,
                    connection_type=ctype,
                    node=d.get("node"),
                    index=i,
                )
            )
        return tuple(out)

    def metric_value(self, metric: str, value: Any, path: str) -> float:
        if isinstance(value, str):
            if not metric.endswith("_ms"):
                self.problem(path, f"must be a number for {metric}, got {value!r}")
                return 0.0
            return float(self.convert(parse_duration, value, path, 0.0)) * 1000.0
        number = float(value)
        if metric in _SHARE_METRICS and not 0 <= number <= 1:
            self.problem(path, f"{metric} is a share between 0 and 1, got {value!r}")
        elif number < 0:
            self.problem(path, f"{metric} is never negative, got {value!r}")
        return number
