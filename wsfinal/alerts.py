"""The alert manager: rules evaluated against the store, the balancer and analytics; Alertmanager-style routing.

:class:`WebSocketAlertManager` evaluates every :class:`AlertRule` at each ``check_alerts(now)`` (pure: the caller
passes the time) through the state machine of :mod:`wsfinal.alert_rules`, then groups the firing and resolved
alerts (``group_by``, ``group_wait``, ``group_interval``), drops muted ones (silences, inhibition), applies the
repeat interval (the seed's cooldown) per alert, and returns the :class:`~wsfinal.notifications.Notification`
objects to send. ``await _check_alerts()`` is the asyncio shell: it reads the loop clock, calls
``check_alerts`` and delivers on every channel concurrently. See docs/alerts.md for the rules and their defaults.
The rule definitions (``AlertType``, ``AlertRule``, ``DEFAULT_RULES``, ``resolve_rules``, ``RouteConfig``) live in
:mod:`wsfinal.alert_config`, the records (``Alert``, ``AlertEvent``, ``fingerprint_of``) in
:mod:`wsfinal.alert_records`; both are importable from here too.

Values come from a narrow, duck-typed interface: ``store.all()`` records and ``store.list_nodes(now)``,
``balancer.get_strategy_performance()`` and ``balancer.panic_selections``, ``analytics.get_anomalies(severity,
hours)``, ``analytics.get_connection_health_score(id)`` and ``analytics.latency_quantile(id, q, window_s)``; any
of them may be ``None``. ``observe(rule, labels, value, now)`` feeds a value directly (tests, custom metrics).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .alert_config import (  # re-exported: they lived here
    ALERT_SEVERITIES,
    DEFAULT_INHIBIT_RULES,
    DEFAULT_RULES,
    AlertRule,
    AlertSeverity,
    AlertType,
    RouteConfig,
    parse_alert_severity,
    resolve_rules,
)
from .alert_records import Alert, AlertEvent, fingerprint_of  # re-exported: they lived here
from .alert_rules import (
    COMPARATORS,
    AlertState,
    InhibitRule,
    MetricSources,
    Sample,
    SeriesState,
    Silence,
    Transition,
    condition_of,
    parse_matchers,
    step,
)
from .config import NotificationConfig
from .exceptions import ConfigurationError
from .notifications import (
    DeliveryRecord,
    Notification,
    NotificationChannel,
    Notifier,
    build_notifiers,
    deliver_all,
)

__all__ = [
    "ALERT_SEVERITIES",
    "DEFAULT_INHIBIT_RULES",
    "DEFAULT_RULES",
    "Alert",
    "AlertEvent",
    "AlertRule",
    "AlertSeverity",
    "AlertType",
    "RouteConfig",
    "WebSocketAlertManager",
    "fingerprint_of",
    "parse_alert_severity",
    "resolve_rules",
]

logger = logging.getLogger("wsfinal.alerts")

_INACTIVE = AlertState.INACTIVE


class _Fmt(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def _render(template: str, ctx: Mapping[str, Any]) -> str:
    try:
        return template.format_map(_Fmt(ctx))
    except (ValueError, TypeError, IndexError, AttributeError):
        return template  # a format spec that does not fit the value: show the raw template, never crash


@dataclass(slots=True)
class _Series:
    labels: dict[str, str]
    fingerprint: str
    state: SeriesState = field(default_factory=SeriesState)
    observed: float | bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    seen_at: float = -math.inf
    alert: Alert | None = None


@dataclass(slots=True)
class _Group:
    key: tuple[str, ...]
    labels: dict[str, str]
    next_flush: float
    alerts: dict[str, Alert] = field(default_factory=dict)


Clock = Callable[[], float]


def _loop_clock() -> float:
    return asyncio.get_running_loop().time()


class WebSocketAlertManager:
    """Evaluates alert rules and routes their notifications (see the module docstring).

    Pure entry points take ``now``: :meth:`check_alerts`, :meth:`observe`, :meth:`add_silence`. The asyncio
    shell: ``await _check_alerts()`` (evaluate now and deliver), ``await _send_notifications(alert, channels)``.
    After ``check_alerts(now)`` the caller must deliver the returned notifications (``_check_alerts`` does).
    """

    def __init__(
        self,
        notification_config: NotificationConfig | None = None,
        *,
        store: Any = None,
        analytics: Any = None,
        balancer: Any = None,
        clock: Clock | None = None,
        rules: Mapping[str, Any] | Sequence[AlertRule] | None = None,
        channels: Sequence[NotificationChannel | Notifier] | None = None,
        route: RouteConfig | None = None,
        inhibit_rules: Sequence[InhibitRule] | None = None,
        epoch_offset: float | None = None,
        external_url: str = "",
        history: int = 10_000,
    ) -> None:
        self.notification_config = notification_config
        self.sources = MetricSources(store, analytics, balancer)
        self._clock = clock or _loop_clock
        self.rules: dict[str, AlertRule] = {r.name: r for r in resolve_rules(rules)}
        self.route = route or RouteConfig()
        self.inhibit_rules = tuple(DEFAULT_INHIBIT_RULES if inhibit_rules is None else inhibit_rules)
        self.notifiers = build_notifiers(notification_config, channels)
        self.epoch_offset = epoch_offset
        self.external_url = external_url
        self._series: dict[str, dict[tuple[tuple[str, str], ...], _Series]] = {n: {} for n in self.rules}
        self._active: dict[str, Alert] = {}
        self._groups: dict[tuple[str, ...], _Group] = {}
        self._silences: dict[str, Silence] = {}
        self._listeners: list[Callable[[AlertEvent], None]] = []
        self._next_id = 0
        self.deliveries: deque[DeliveryRecord] = deque(maxlen=history)
        self.notifications: deque[Notification] = deque(maxlen=history)
        self.events: deque[AlertEvent] = deque(maxlen=history)
        self.source_errors = 0
        self._last_now: float | None = None
        self._inflight: set[asyncio.Task[list[DeliveryRecord]]] = set()
        self._update_windows()

    def __repr__(self) -> str:
        chans = ", ".join(repr(n) for n in self.notifiers)
        return f"WebSocketAlertManager(rules={len(self.rules)}, active={len(self._active)}, notifiers=[{chans}])"

    def _update_windows(self) -> None:
        windows = [float(r.params.get("window_s", 0.0)) for r in self.rules.values()]
        self.sources.max_window_s = max([300.0, *windows])

    # --- rules and silences -----------------------------------------------------------------------------------

    def add_rule(self, rule: AlertRule) -> None:
        """Add or replace a rule (by name); its series start over and the old rule's alerts are dropped unsent."""
        self.rules[rule.name] = rule
        self._series[rule.name] = {}
        self._active = {fp: a for fp, a in self._active.items() if a.rule != rule.name}
        for key, group in list(self._groups.items()):
            group.alerts = {fp: a for fp, a in group.alerts.items() if a.rule != rule.name}
            if not group.alerts:
                del self._groups[key]
        self._update_windows()

    def add_silence(
        self, matchers: Any, ends_at: float, comment: str = "", *, starts_at: float | None = None, created_by: str = ""
    ) -> str:
        """Mute alerts matching every matcher until ``ends_at`` (loop time); return the silence id.

        ``matchers``: a ``{label: value}`` dict or a list of ``'label=~"re"'`` strings / :class:`Matcher`.
        """
        parsed = parse_matchers(matchers, "silence.matchers")
        if not parsed:
            raise ConfigurationError("silence.matchers", matchers, "needs at least one matcher")
        start = starts_at if starts_at is not None else -math.inf
        if not ends_at > start:
            raise ConfigurationError("silence.ends_at", ends_at, "must be after starts_at")
        self._next_id += 1
        sid = f"silence-{self._next_id}"
        self._silences[sid] = Silence(sid, parsed, start, ends_at, comment, created_by)
        return sid

    def expire_silence(self, silence_id: str, now: float) -> bool:
        s = self._silences.get(silence_id)
        if s is None:
            return False
        self._silences[silence_id] = replace(s, ends_at=min(s.ends_at, now))
        return True

    def get_silences(self, now: float | None = None) -> list[Silence]:
        """All silences, or only those active at ``now``."""
        return [s for s in self._silences.values() if now is None or s.is_active(now)]

    def add_listener(self, callback: Callable[[AlertEvent], None]) -> None:
        """``callback(event)`` is called synchronously for every transition, notification and delivery."""
        self._listeners.append(callback)

    def _emit(self, event: AlertEvent) -> None:
        self.events.append(event)
        for cb in self._listeners:
            try:
                cb(event)
            except Exception:  # a listener's bug must not stop alerting
                logger.exception("alert listener failed")

    # --- evaluation -------------------------------------------------------------------------------------------

    def observe(
        self, rule_name: str, labels: Mapping[str, str], value: float | bool | None, now: float
    ) -> list[Transition]:
        """Feed one value (or condition) for one series of ``rule_name`` and step it at once. The value stays
        until the next ``observe`` of that series (a gauge); ``None`` withdraws it (the series reads "no data")."""
        rule = self.rules.get(rule_name)
        if rule is None:
            raise ConfigurationError("rule", rule_name, f"unknown rule; known: {', '.join(sorted(self.rules))}")
        key = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
        series = self._series_for(rule, key, dict(labels))
        series.observed = value
        num = float(value) if value is not None else math.nan
        tr = self._step(rule, series, condition_of(value, rule.op, rule.threshold), num, now)
        return [tr] if tr is not None else []

    def _series_for(self, rule: AlertRule, key: tuple[tuple[str, str], ...], labels: dict[str, str]) -> _Series:
        table = self._series[rule.name]
        series = table.get(key)
        if series is None:
            full = {**labels, **rule.labels, "alertname": rule.name, "alert_type": rule.alert_type.value}
            full["severity"] = rule.severity.value
            series = table[key] = _Series(full, fingerprint_of(full))
        return series

    def _context(self, rule: AlertRule, series: _Series, value: float) -> dict[str, Any]:
        return {
            **series.labels, **rule.params, **series.extra, "value": value, "threshold": rule.threshold,
            "for_s": rule.for_s, "op": rule.op, "rule": rule.name,
        }  # fmt: skip

    def _step(self, rule: AlertRule, series: _Series, cond: bool, value: float, now: float) -> Transition | None:
        tr = step(series.state, cond, now, for_s=rule.for_s, keep_firing_for_s=rule.keep_firing_for_s, value=value)
        alert = series.alert
        if alert is not None and alert.state is AlertState.FIRING and not math.isnan(value):
            alert.value = value
        if tr is None:
            return None
        if tr.new is AlertState.FIRING:
            ctx = self._context(rule, series, value)
            fired = series.state.fired_at if series.state.fired_at is not None else now
            alert = Alert(
                rule.alert_type, rule.name, _render(rule.title, ctx), rule.severity, _render(rule.message, ctx),
                dict(series.labels), {"summary": _render(rule.title, ctx), "description": _render(rule.message, ctx)},
                series.fingerprint, fired, series.state.active_at or now, value=value,
                generator_url=f"{self.external_url}#rule={rule.name}" if self.external_url else "",
            )  # fmt: skip
            series.alert = alert
            self._active[series.fingerprint] = alert
            self._add_to_group(alert, now)
        elif tr.new is AlertState.RESOLVED and alert is not None:
            alert.state = AlertState.RESOLVED
            alert.ends_at = now
            self._active.pop(series.fingerprint, None)
            series.alert = None
        self._emit(AlertEvent(f"alert_{tr.new.value}", now, rule.name, series.fingerprint, series.labels,
                              {"old": tr.old.value, "value": value}))  # fmt: skip
        return tr

    def _add_to_group(self, alert: Alert, now: float) -> None:
        key = tuple(alert.labels.get(name, "") for name in self.route.group_by)
        group = self._groups.get(key)
        if group is None:
            labels = {n: v for n, v in zip(self.route.group_by, key, strict=True) if v}
            group = self._groups[key] = _Group(key, labels, now + self.route.group_wait_s)
        previous = group.alerts.get(alert.fingerprint)
        if previous is not None:
            # It resolved and fired again between two flushes: to the receiver it never stopped (Alertmanager
            # dedups the same way), so the repeat interval keeps counting from the last notification.
            alert.last_notified_at = previous.last_notified_at
        group.alerts[alert.fingerprint] = alert

    def _evaluate_sources(self, now: float) -> None:
        try:
            self.sources.tick(now)
        except Exception:
            self.source_errors += 1
            logger.exception("reading the store failed; connection metrics read as no data")
        cache: dict[tuple[str, tuple[tuple[str, Any], ...]], list[Sample]] = {}
        for rule in self.rules.values():
            table = self._series[rule.name]
            seen = 0
            if rule.metric is not None:
                ckey = (rule.metric, tuple(sorted((k, repr(v)) for k, v in rule.params.items())))
                samples = cache.get(ckey)
                if samples is None:
                    try:
                        samples = self.sources.samples(rule.metric, rule.params, now)
                    except Exception:
                        self.source_errors += 1
                        logger.exception("metric %s failed; its series read as no data", rule.metric)
                        samples = []
                    cache[ckey] = samples
                cmp, threshold = COMPARATORS[rule.op], rule.threshold
                for key, labels, value, extra in samples:
                    series = table.get(key)
                    if series is None:
                        series = self._series_for(rule, key, labels)
                    series.seen_at = now
                    # value == value is False for NaN ("no data"); an inactive series that stays false has
                    # nothing to do, and that is nearly every series: skip the state machine for it.
                    cond = value == value and cmp(value, threshold)
                    if cond or series.state.state is not _INACTIVE:
                        series.extra = extra
                        self._step(rule, series, cond, value, now)
                seen = len(samples)
            if seen == len(table):
                continue
            stale: list[tuple[tuple[str, str], ...]] = []
            for key, series in table.items():
                if series.seen_at == now:
                    continue
                obs = series.observed
                num = float(obs) if obs is not None else math.nan
                self._step(rule, series, condition_of(obs, rule.op, rule.threshold), num, now)
                if series.state.state is AlertState.INACTIVE and obs is None:
                    stale.append(key)
            for key in stale:
                del table[key]

    def _update_suppression(self, now: float) -> None:
        silences = [s for s in self._silences.values() if s.is_active(now)]
        # per inhibit rule: equal-label values -> fingerprints of the firing alerts that match its source
        sources: list[dict[tuple[str | None, ...], set[str]]] = []
        for rule in self.inhibit_rules:
            found: dict[tuple[str | None, ...], set[str]] = {}
            for a in self._active.values():
                if all(m.matches(a.labels) for m in rule.source):
                    found.setdefault(tuple(a.labels.get(n) for n in rule.equal), set()).add(a.fingerprint)
            sources.append(found)
        for alert in self._active.values():
            why = [s.silence_id for s in silences if s.mutes(alert.labels, now)]
            for rule, found in zip(self.inhibit_rules, sources, strict=True):
                fps = found.get(tuple(alert.labels.get(n) for n in rule.equal)) if found else None
                # an alert never inhibits itself
                if fps and fps != {alert.fingerprint} and all(m.matches(alert.labels) for m in rule.target):
                    why.append("inhibited")
                    break
            alert.suppressed_by = tuple(why)

    def _flush(self, group: _Group, now: float) -> Notification | None:
        repeat = self.route.repeat_interval_s
        out: list[Alert] = []
        for fp, alert in list(group.alerts.items()):
            if alert.state is AlertState.FIRING:
                if alert.suppressed:
                    continue
                if alert.last_notified_at is None or now - alert.last_notified_at >= repeat:
                    alert.last_notified_at = now
                    out.append(alert)
            else:
                # A resolved alert is announced once, and only if its firing was announced (Alertmanager's
                # dedup: the receiver never heard of an alert that fired and cleared between two flushes).
                if alert.last_notified_at is not None and not alert.resolved_notified and self.route.send_resolved:
                    alert.resolved_notified = True
                    out.append(alert)
                del group.alerts[fp]
        group.next_flush = now + self.route.group_interval_s
        if not group.alerts:
            del self._groups[group.key]
        if not out:
            return None
        self._next_id += 1
        status = "firing" if any(a.state is AlertState.FIRING for a in out) else "resolved"
        n = Notification(
            group_key="{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group.labels.items())) + "}",
            status=status, alerts=tuple(a.notice() for a in out), group_labels=dict(group.labels), created_at=now,
            notification_id=self._next_id, receiver=self.route.receiver, external_url=self.external_url,
            epoch_offset=self.epoch_offset or 0.0,
        )  # fmt: skip
        self.notifications.append(n)
        self._emit(AlertEvent("notification", now, detail={"status": status, "id": n.notification_id,
                              "alerts": [(a.fingerprint, a.status) for a in n.alerts]}))  # fmt: skip
        return n

    def check_alerts(self, now: float) -> list[Notification]:
        """Evaluate every rule at ``now``, update suppression, flush the groups that are due. Pure (no I/O, no
        clock): the caller must deliver the returned notifications (see :meth:`_check_alerts`)."""
        self._last_now = now
        self._evaluate_sources(now)
        self._update_suppression(now)
        out: list[Notification] = []
        for group in sorted(self._groups.values(), key=lambda g: g.key):
            if now >= group.next_flush:
                n = self._flush(group, now)
                if n is not None:
                    out.append(n)
        return out

    # --- queries ----------------------------------------------------------------------------------------------

    def get_active_alerts(self, *, include_suppressed: bool = True) -> list[Alert]:
        """Firing alerts, most severe first (then oldest). Suppressed ones carry ``suppressed_by``."""
        alerts = [a for a in self._active.values() if include_suppressed or not a.suppressed]
        return sorted(alerts, key=lambda a: (-a.severity.rank, a.starts_at, a.fingerprint))

    def get_pending(self) -> list[tuple[str, dict[str, str], float]]:
        """(rule, labels, active_at) of every series whose condition holds but whose ``for`` has not elapsed."""
        return [
            (name, s.labels, s.state.active_at or 0.0)
            for name, table in self._series.items()
            for s in table.values()
            if s.state.state is AlertState.PENDING
        ]

    def get_alert_summary(self) -> dict[str, Any]:
        alerts = self.get_active_alerts()
        by_sev = {s.value: 0 for s in ALERT_SEVERITIES}
        by_type = {t.value: 0 for t in AlertType}
        for a in alerts:
            by_sev[a.severity.value] += 1
            by_type[a.alert_type.value] += 1
        failed = sum(1 for d in self.deliveries if not d.ok)
        return {
            "total_active_alerts": len(alerts),
            "critical_alerts": by_sev["critical"],
            "high_alerts": by_sev["high"],
            "warning_alerts": by_sev["warning"],
            "info_alerts": by_sev["info"],
            "suppressed_alerts": sum(1 for a in alerts if a.suppressed),
            "pending_alerts": len(self.get_pending()),
            "by_severity": by_sev,
            "by_type": by_type,
            "active_silences": len(self.get_silences(self._last_now)) if self._last_now is not None else 0,
            "notifications_sent": len(self.notifications),
            "delivery_attempts": len(self.deliveries),
            "delivery_failures": failed,
        }

    # --- asyncio shell ----------------------------------------------------------------------------------------

    async def _check_alerts(self) -> list[Notification]:
        """Evaluate at the clock's time and start delivering every due notification on every channel, in
        background tasks (a slow channel never delays the next evaluation). ``await drain()`` to wait for them;
        outcomes land in :attr:`deliveries`. Returns the notifications started."""
        now = self._clock()
        if self.epoch_offset is None:
            self.epoch_offset = time.time() - now  # the one wall-clock read: timestamps in payloads
        notes = self.check_alerts(now)
        loop = asyncio.get_running_loop()
        for n in notes:
            task = loop.create_task(self._deliver(n, self.notifiers))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return notes

    async def drain(self) -> None:
        """Wait for the deliveries in flight (each is bounded by its channel's attempts x timeout + backoff)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight))

    async def aclose(self) -> None:
        """Finish the deliveries in flight; the manager holds no other resources (HTTP clients are per send)."""
        await self.drain()

    async def _deliver(self, n: Notification, notifiers: Sequence[Notifier]) -> list[DeliveryRecord]:
        records = await deliver_all(n, notifiers)
        for r in records:
            self.deliveries.append(r)
            detail = {"channel": r.channel, "attempt": r.attempt, "ok": r.ok, "status": r.status, "error": r.error}
            self._emit(AlertEvent("delivery", r.time, detail={**detail, "id": r.notification_id}))
        return records

    async def _send_notifications(
        self, alert: Alert | Notification, channels: Iterable[NotificationChannel | str | Notifier] | None = None
    ) -> list[DeliveryRecord]:
        """Send one alert (or a built notification) now on ``channels`` (default: every configured channel),
        bypassing grouping and the repeat interval. Returns one record per attempt."""
        if isinstance(alert, Alert):
            self._next_id += 1
            n = Notification(
                group_key=f"{{}}:{{alertname=\"{alert.rule}\"}}", status=alert.status, alerts=(alert.notice(),),
                group_labels={"alertname": alert.rule}, created_at=self._clock(), notification_id=self._next_id,
                receiver=self.route.receiver, external_url=self.external_url, epoch_offset=self.epoch_offset or 0.0,
            )  # fmt: skip
        else:
            n = alert
        notifiers = self.notifiers
        if channels is not None:
            wanted = list(channels)
            extra = [c for c in wanted if isinstance(c, Notifier)]
            names = {
                c.value if isinstance(c, NotificationChannel) else str(c).lower()
                for c in wanted
                if not isinstance(c, Notifier)
            }
            notifiers = [nt for nt in self.notifiers if nt.channel.value in names or nt.name in names] + extra
        return await self._deliver(n, notifiers)

    async def run(self, interval_s: float, stop: asyncio.Event | None = None) -> None:
        """Call :meth:`_check_alerts` every ``interval_s`` until ``stop`` is set or the task is cancelled. A
        failing evaluation is logged and the loop goes on."""
        while stop is None or not stop.is_set():
            try:
                await self._check_alerts()
            except Exception:
                logger.exception("alert check failed; continuing")
            await asyncio.sleep(interval_s)
