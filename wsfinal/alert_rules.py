"""Alert rules, pure: the per-series state machine, the matchers of silences and inhibition, and the rule inputs.

No clock, no I/O: everything takes ``now``. The alert manager (:mod:`wsfinal.alerts`) keeps one
:class:`SeriesState` per rule and label set, calls :func:`step` with the rule's condition at each evaluation and
acts on the returned :class:`Transition` (creates the alert on ``-> FIRING``, queues the resolved notification on
``-> RESOLVED``). :class:`Matcher`, :class:`Silence` and :class:`InhibitRule` are Alertmanager's.
:class:`MetricSources` turns the store, balancer and analytics into the series the rules compare.

Rules (Prometheus' ``rules/alerting.go`` semantics, stated here once)::

    - A series whose condition is true and that is INACTIVE (or RESOLVED) becomes active at ``now``
      (``active_at = now``): PENDING, or FIRING at once when ``for`` is 0.
    - PENDING becomes FIRING at the first evaluation where the condition is still true and
      ``now - active_at >= for``. Any evaluation with the condition false while PENDING drops it to INACTIVE:
      ``for`` needs the condition true at every evaluation in between.
    - FIRING with the condition false stays FIRING while ``now - keep_firing_since < keep_firing_for``
      (``keep_firing_since`` is the first false evaluation; a true evaluation clears it), then RESOLVED.
    - RESOLVED is reported once; the next false evaluation makes it INACTIVE, a true one starts a new episode.

The inputs are classified into four observations and the table ``TRANSITIONS`` maps (state, observation) to the
next state. Every transition the manager can see is in that table.
"""

from __future__ import annotations

import bisect
import enum
import inspect
import math
import operator
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ConfigurationError
from .states import ConnectionState


class AlertState(enum.Enum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Observation(enum.Enum):
    """What one evaluation says, once the timers are taken into account."""

    #: Condition true, ``for`` not yet elapsed since ``active_at``.
    TRUE_WAITING = "true_waiting"
    #: Condition true and ``for`` elapsed (always the case when ``for`` is 0 and the series just became active).
    TRUE_HELD = "true_held"
    #: Condition false, but a firing alert is kept firing by ``keep_firing_for``.
    FALSE_KEPT = "false_kept"
    #: Condition false.
    FALSE = "false"


_A = AlertState
_O = Observation

#: (state, observation) -> next state. The single place that says what may follow what.
TRANSITIONS: dict[tuple[AlertState, Observation], AlertState] = {
    (_A.INACTIVE, _O.TRUE_WAITING): _A.PENDING,
    (_A.INACTIVE, _O.TRUE_HELD): _A.FIRING,
    (_A.INACTIVE, _O.FALSE): _A.INACTIVE,
    (_A.PENDING, _O.TRUE_WAITING): _A.PENDING,
    (_A.PENDING, _O.TRUE_HELD): _A.FIRING,
    (_A.PENDING, _O.FALSE): _A.INACTIVE,
    (_A.FIRING, _O.TRUE_WAITING): _A.FIRING,
    (_A.FIRING, _O.TRUE_HELD): _A.FIRING,
    (_A.FIRING, _O.FALSE_KEPT): _A.FIRING,
    (_A.FIRING, _O.FALSE): _A.RESOLVED,
    (_A.RESOLVED, _O.TRUE_WAITING): _A.PENDING,
    (_A.RESOLVED, _O.TRUE_HELD): _A.FIRING,
    (_A.RESOLVED, _O.FALSE): _A.INACTIVE,
}


@dataclass(slots=True)
class SeriesState:
    """The mutable state of one (rule, label set) series. Only :func:`step` writes it."""

    state: AlertState = AlertState.INACTIVE
    #: When the current episode's condition first became true (Prometheus' ActiveAt).
    active_at: float | None = None
    #: When the episode started firing (Prometheus' FiredAt; the alert's ``starts_at``).
    fired_at: float | None = None
    #: First false evaluation while firing (Prometheus' KeepFiringSince).
    keep_firing_since: float | None = None
    resolved_at: float | None = None
    #: Last value seen (NaN when fed a bare condition).
    value: float = math.nan
    last_eval: float | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of one series at ``at``; ``value`` is the value that caused it."""

    old: AlertState
    new: AlertState
    at: float
    value: float


def classify(series: SeriesState, condition: bool, now: float, for_s: float, keep_firing_for_s: float) -> Observation:
    """Turn a condition and the series' timers into one :class:`Observation` (pure; reads, never writes)."""
    if condition:
        active_at = series.active_at if series.state in (_A.PENDING, _A.FIRING) else now
        assert active_at is not None
        return _O.TRUE_HELD if now - active_at >= for_s else _O.TRUE_WAITING
    if series.state is _A.FIRING and keep_firing_for_s > 0:
        since = series.keep_firing_since if series.keep_firing_since is not None else now
        if now - since < keep_firing_for_s:
            return _O.FALSE_KEPT
    return _O.FALSE


def step(
    series: SeriesState,
    condition: bool,
    now: float,
    *,
    for_s: float = 0.0,
    keep_firing_for_s: float = 0.0,
    value: float = math.nan,
) -> Transition | None:
    """Feed one evaluation to ``series``; return the transition it caused, or ``None`` when the state held.

    Evaluations must come in non-decreasing ``now``; an evaluation older than the last one is ignored (returns
    ``None``) so a late sample never rewinds a timer. The caller acts on the returned transition.
    """
    if series.last_eval is not None and now < series.last_eval:
        return None
    obs = classify(series, condition, now, for_s, keep_firing_for_s)
    old = series.state
    new = TRANSITIONS.get((old, obs))
    if new is None:  # FALSE_KEPT only arises in FIRING; anything else is a bug in classify()
        raise AssertionError(f"no transition for {old.value} on {obs.value}")
    series.last_eval = now
    series.value = value
    if condition:
        series.keep_firing_since = None
        if old not in (_A.PENDING, _A.FIRING):
            series.active_at = now
            series.fired_at = None
            series.resolved_at = None
        if new is _A.FIRING and old is not _A.FIRING:
            series.fired_at = now
    elif obs is _O.FALSE_KEPT:
        if series.keep_firing_since is None:
            series.keep_firing_since = now
    else:
        series.keep_firing_since = None
        if new is _A.RESOLVED:
            series.resolved_at = now
        elif new is _A.INACTIVE:
            series.active_at = None
    series.state = new
    if new is old:
        return None
    return Transition(old, new, now, value)


# --- conditions --------------------------------------------------------------------------------------------

#: Comparison operators a rule may use, by their PromQL spelling.
COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def condition_of(value: float | bool | None, op: str, threshold: float) -> bool:
    """Whether ``value op threshold`` holds. ``None`` and NaN are "no data": never true (PromQL drops them).

    A ``bool`` is taken as the condition itself.
    """
    if isinstance(value, bool):
        return value
    if value is None or math.isnan(value):
        return False
    return COMPARATORS[op](value, threshold)


def check_operator(op: str, where: str) -> None:
    """Raise :class:`ConfigurationError` naming ``where`` unless ``op`` is a known comparator."""
    if op not in COMPARATORS:
        raise ConfigurationError(where, op, f"unknown comparison; expected one of {', '.join(COMPARATORS)}")


@dataclass(slots=True)
class RuleSeries:
    """A convenience bundle: one series' state with the rule timings it is stepped with (used by tests)."""

    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    state: SeriesState = field(default_factory=SeriesState)

    def feed(self, condition: bool, now: float, value: float = math.nan) -> Transition | None:
        return step(self.state, condition, now, for_s=self.for_s, keep_firing_for_s=self.keep_firing_for_s, value=value)


# --- matchers, silences, inhibition (Alertmanager's, pure) ---------------------------------------------------

_MATCH_OPS = ("=~", "!~", "!=", "=")


@dataclass(frozen=True, slots=True)
class Matcher:
    """A label matcher as Alertmanager writes it: ``name op value`` with op ``=``, ``!=``, ``=~`` or ``!~``.

    Regular expressions are fully anchored, as in Alertmanager. A missing label matches as the empty string.
    """

    name: str
    op: str
    value: str
    _re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op not in _MATCH_OPS:
            raise ConfigurationError(f"matcher {self.name!r}", self.op, "op must be one of =, !=, =~, !~")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_re", re.compile(f"(?:{self.value})\\Z"))
            except re.error as exc:
                raise ConfigurationError(f"matcher {self.name!r}", self.value, f"bad regex: {exc}") from None

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        assert self._re is not None
        hit = self._re.match(got) is not None
        return hit if self.op == "=~" else not hit

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse ``name="value"``, ``name=~"regex"`` and friends (quotes optional)."""
        for op in _MATCH_OPS:
            name, sep, value = text.partition(op)
            if sep and name.strip():
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                return cls(name.strip(), op, value)
        raise ConfigurationError("matcher", text, 'expected name="value" (ops =, !=, =~, !~)')


MatcherSpec = Matcher | str | tuple[str, str] | tuple[str, str, str]


def parse_matchers(spec: object, where: str = "matchers") -> tuple[Matcher, ...]:
    """Accept a ``{name: value}`` dict (equality), or a list of :class:`Matcher`, ``'name=~"x"'`` strings or
    ``(name, value)`` / ``(name, op, value)`` tuples. Raise :class:`ConfigurationError` naming ``where``."""
    out: list[Matcher] = []
    if isinstance(spec, dict):
        out = [Matcher(str(k), "=", str(v)) for k, v in spec.items()]
    elif isinstance(spec, list | tuple):
        for i, item in enumerate(spec):
            if isinstance(item, Matcher):
                out.append(item)
            elif isinstance(item, str):
                out.append(Matcher.parse(item))
            elif isinstance(item, tuple) and len(item) == 2:
                out.append(Matcher(str(item[0]), "=", str(item[1])))
            elif isinstance(item, tuple) and len(item) == 3:
                out.append(Matcher(str(item[0]), str(item[1]), str(item[2])))
            else:
                raise ConfigurationError(f"{where}[{i}]", item, "not a matcher")
    else:
        raise ConfigurationError(where, spec, "expected a dict or a list of matchers")
    return tuple(out)


def matches_all(matchers: tuple[Matcher, ...], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes every alert whose labels match all ``matchers`` while ``starts_at <= now < ends_at``."""

    silence_id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    comment: str = ""
    created_by: str = ""

    def is_active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: dict[str, str], now: float) -> bool:
        return self.is_active(now) and matches_all(self.matchers, labels)


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """Alertmanager's inhibit rule: a firing alert matching ``source`` mutes alerts matching ``target`` whose
    ``equal`` labels have the same values as the source's (a label missing on both counts as equal)."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def inhibits(self, source_labels: dict[str, str], target_labels: dict[str, str]) -> bool:
        return (
            matches_all(self.target, target_labels)
            and matches_all(self.source, source_labels)
            and all(source_labels.get(n) == target_labels.get(n) for n in self.equal)
        )


# --- rule inputs: series read from the store, the balancer and analytics (pure: ``now`` is passed in) ----------

#: One series of one metric: (key, labels, value, extra template fields). ``key`` identifies the series.
Sample = tuple[tuple[tuple[str, str], ...], dict[str, str], float, dict[str, Any]]

#: States that count as "not connected" for the connection-failure rule (its `for` keeps start-up quiet).
_FAILING_STATES = frozenset({ConnectionState.FAILED, ConnectionState.RECONNECTING, ConnectionState.CONNECTING})


def _enum_value(x: Any) -> str:
    return str(getattr(x, "value", x))


class CounterWindow:
    """Recent snapshots of a few counters, for deltas over a trailing window (times kept apart for bisect)."""

    __slots__ = ("rows", "times")

    def __init__(self) -> None:
        self.times: deque[float] = deque()
        self.rows: deque[tuple[int, ...]] = deque()

    def push(self, now: float, row: tuple[int, ...], keep_s: float) -> None:
        self.times.append(now)
        self.rows.append(row)
        times = self.times
        while len(times) >= 2 and times[1] <= now - keep_s:
            times.popleft()
            self.rows.popleft()

    def delta(self, now: float, window_s: float, col: int) -> float:
        """Counter increase over the last ``window_s`` (over the history kept, when that is shorter)."""
        i = bisect.bisect_right(self.times, now - window_s)
        base = self.rows[i - 1] if i > 0 else self.rows[0]
        return float(self.rows[-1][col] - base[col])


class MetricSources:
    """Turns the manager's collaborators into per-metric series. Call :meth:`tick` once per evaluation (it
    snapshots the store and advances the counter windows), then :meth:`samples` for each rule's metric.

    Collaborators are duck-typed and optional: ``store.all()``, ``store.list_nodes(now)``,
    ``balancer.get_strategy_performance()``, ``balancer.panic_selections`` (a mapping type -> count),
    ``analytics.get_anomalies(severity=, hours=)``, ``analytics.get_connection_health_score(id)``.
    A collaborator that raises is logged by the manager and its metrics read as "no data".
    """

    METRICS = frozenset(
        {
            "connection_failed", "latency_quantile_ms", "latency_ms", "peak_latency_ms", "error_rate", "reconnects",
            "health_score", "system_health", "node_down", "balancer_success_rate", "balancer_panics", "latency_ratio",
            "capacity_ratio", "anomalies", "capacity_anomalies",
        }
    )  # fmt: skip

    def __init__(self, store: Any = None, analytics: Any = None, balancer: Any = None) -> None:
        self.store = store
        self.analytics = analytics
        self.balancer = balancer
        #: How much counter history to keep (the manager sets it to the longest window among its rules).
        self.max_window_s = 300.0
        self._records: list[Any] = []
        self._live_records: list[Any] = []
        self._history: dict[str, CounterWindow] = {}
        self._panics: dict[str, CounterWindow] = {}
        self._baseline: dict[str, tuple[float, float]] = {}
        self._labels: dict[str, tuple[tuple[tuple[str, str], ...], dict[str, str]]] = {}
        self._takes_now: dict[str, bool] = {}

    def _call(self, fn: Callable[..., Any], now: float, *args: Any, **kw: Any) -> Any:
        """Call an analytics method, passing ``now`` when it accepts one (so virtual time reaches it)."""
        takes = self._takes_now.get(fn.__name__)
        if takes is None:
            try:
                takes = "now" in inspect.signature(fn).parameters
            except (TypeError, ValueError):
                takes = False
            self._takes_now[fn.__name__] = takes
        return fn(*args, now=now, **kw) if takes else fn(*args, **kw)

    def tick(self, now: float) -> None:
        self._records = list(self.store.all()) if self.store is not None else []
        self._live_records = [r for r in self._records if r.state is not ConnectionState.CLOSED]
        keep = self.max_window_s
        hist = self._history
        for r in self._records:
            win = hist.get(r.connection_id)
            if win is None:
                win = hist[r.connection_id] = CounterWindow()
            win.push(now, (r.requests_ok, r.requests_failed, r.reconnects), keep)
        if len(hist) > len(self._records):
            alive = {r.connection_id for r in self._records}
            for cid in [c for c in hist if c not in alive]:
                del hist[cid]
                self._labels.pop(cid, None)
        panics = getattr(self.balancer, "panic_selections", None) if self.balancer is not None else None
        if isinstance(panics, Mapping):
            for ctype, count in panics.items():
                self._panics.setdefault(_enum_value(ctype), CounterWindow()).push(now, (int(count),), keep)

    def _conn_labels(self, r: Any) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
        hit = self._labels.get(r.connection_id)
        if hit is None:
            labels = {
                "connection_id": r.connection_id,
                "connection_type": _enum_value(r.connection_type),
                "node": r.cluster_node or r.endpoint,
                "endpoint": r.endpoint,
            }
            hit = self._labels[r.connection_id] = (tuple(sorted(labels.items())), labels)
        return hit

    def _health(self, r: Any, now: float) -> float:
        fn = getattr(self.analytics, "get_connection_health_score", None) if self.analytics is not None else None
        if fn is not None:
            score = self._call(fn, now, r.connection_id)
            if isinstance(score, int | float):
                return float(score)
        return float(r.health_score)

    def samples(self, metric: str, params: Mapping[str, Any], now: float) -> list[Sample]:
        """The series of ``metric`` at ``now`` (call :meth:`tick` first). NaN values mean "no data"."""
        return getattr(self, f"_m_{metric}")(params, now)  # type: ignore[no-any-return]

    def _live(self) -> list[Any]:
        return self._live_records

    def _m_connection_failed(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        out: list[Sample] = []
        for r in self._live():
            key, labels = self._conn_labels(r)
            out.append((key, labels, 1.0 if r.state in _FAILING_STATES else 0.0, {"state": r.state.value}))
        return out

    def _m_latency_quantile_ms(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        """The ``quantile`` of each connection's latency samples over the last ``window_s`` (analytics'
        ``latency_quantile``); no data below ``min_samples``. Without analytics: the record's latency EWMA."""
        q = float(p.get("quantile", 0.9))
        window = p.get("window_s")
        min_n = int(p.get("min_samples", 5))
        fn = getattr(self.analytics, "latency_quantile", None) if self.analytics is not None else None
        out: list[Sample] = []
        for r in self._live():
            if fn is None:
                extra = {"stat": "EWMA", "quantile": q, "samples": 0, "window_s": 0.0}
                out.append((*self._conn_labels(r), r.latency_ewma_ms, extra))
                continue
            value, n, _, used = self._call(fn, now, r.connection_id, q, window)
            stat = f"p{100.0 * q:g} of {n} samples over the last {used:g}s"
            extra = {"stat": stat, "quantile": q, "samples": n, "window_s": used}
            out.append((*self._conn_labels(r), value if n >= min_n else math.nan, extra))
        return out

    def _m_latency_ms(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        return [(*self._conn_labels(r), r.latency_ewma_ms, {}) for r in self._live()]

    def _m_peak_latency_ms(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        return [(*self._conn_labels(r), r.peak_ewma_at(now), {}) for r in self._live()]

    def _m_error_rate(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        window, min_req = float(p.get("window_s", 60.0)), float(p.get("min_requests", 20))
        out: list[Sample] = []
        for r in self._live():
            win = self._history.get(r.connection_id)
            if win is None:
                continue
            ok, failed = win.delta(now, window, 0), win.delta(now, window, 1)
            rate = failed / (ok + failed) if ok + failed >= max(min_req, 1) else math.nan
            out.append((*self._conn_labels(r), rate, {"window_s": window, "requests": ok + failed}))
        return out

    def _m_reconnects(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        window = float(p.get("window_s", 300.0))
        out: list[Sample] = []
        for r in self._live():
            win = self._history.get(r.connection_id)
            if win is not None:
                out.append((*self._conn_labels(r), win.delta(now, window, 2), {"window_s": window}))
        return out

    def _m_health_score(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        return [(*self._conn_labels(r), self._health(r, now), {}) for r in self._live()]

    def _m_system_health(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        live = self._live()
        value = sum(self._health(r, now) for r in live) / len(live) if live else math.nan
        return [((), {}, value, {"connections": len(live)})]

    def _m_capacity_ratio(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        cap = float(p.get("max_connections", 1000))
        n = len(self._live())
        return [((), {}, n / cap if cap > 0 else math.nan, {"connections": n, "max_connections": cap})]

    def _m_node_down(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        list_nodes = getattr(self.store, "list_nodes", None) if self.store is not None else None
        out: list[Sample] = []
        for node in list_nodes(now) if list_nodes is not None else ():
            labels = {"node": node.node_id}
            out.append(((("node", node.node_id),), labels, 0.0 if node.up else 1.0, {"address": node.address}))
        return out

    def _m_balancer_success_rate(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        if self.balancer is None:
            return []
        min_n = float(p.get("min_selections", 20))
        out: list[Sample] = []
        for strategy, m in self.balancer.get_strategy_performance().items():
            name = _enum_value(strategy)
            n = float(m.get("requests", m.get("selections", 0.0)))
            value = float(m.get("success_rate", math.nan)) if n >= min_n else math.nan
            out.append(((("strategy", name),), {"strategy": name}, value, {"selections": n}))
        return out

    def _m_balancer_panics(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        window = float(p.get("window_s", 60.0))
        return [
            ((("connection_type", ct),), {"connection_type": ct}, win.delta(now, window, 0), {"window_s": window})
            for ct, win in self._panics.items()
        ]

    def _m_latency_ratio(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        tau = float(p.get("baseline_tau_s", 600.0))
        per_type: dict[str, list[float]] = {}
        for r in self._records:
            if r.state is ConnectionState.CONNECTED and not math.isnan(r.latency_ewma_ms):
                per_type.setdefault(_enum_value(r.connection_type), []).append(r.latency_ewma_ms)
        out: list[Sample] = []
        for ct, values in per_type.items():
            current = sum(values) / len(values)
            base, stamp = self._baseline.get(ct, (current, now))
            w = math.exp(-max(now - stamp, 0.0) / tau)
            base = base * w + current * (1.0 - w) if now > stamp else base
            self._baseline[ct] = (base, now)
            ratio = current / base if base > 0 else math.nan
            extra = {"current_ms": current, "baseline_ms": base}
            out.append(((("connection_type", ct),), {"connection_type": ct}, ratio, extra))
        return out

    def _anomaly_series(self, p: Mapping[str, Any], now: float, capacity: bool) -> list[Sample]:
        get = getattr(self.analytics, "get_anomalies", None) if self.analytics is not None else None
        if get is None:
            return []
        window = float(p.get("window_s", 300.0))
        found = self._call(get, now, severity=p.get("min_severity", "high"), hours=window / 3600.0)
        groups: dict[tuple[str, str], list[Any]] = {}
        for a in found:
            kind = _enum_value(a.anomaly_type)
            t = getattr(a, "time", None)
            if ("capacity" in kind) != capacity or (isinstance(t, int | float) and t < now - window):
                continue
            subject = getattr(a, "connection_id", None) or getattr(a, "connection_type", None) or "system"
            groups.setdefault((kind, str(subject)), []).append(a)
        out: list[Sample] = []
        for (kind, subject), items in groups.items():
            labels = {"anomaly_type": kind, "subject": subject}
            extra = {"description": str(getattr(items[-1], "description", kind)), "count": len(items)}
            out.append((tuple(sorted(labels.items())), labels, float(len(items)), extra))
        return out

    def _m_anomalies(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        return self._anomaly_series(p, now, capacity=False)

    def _m_capacity_anomalies(self, p: Mapping[str, Any], now: float) -> list[Sample]:
        return self._anomaly_series(p, now, capacity=True)
