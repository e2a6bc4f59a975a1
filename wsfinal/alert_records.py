"""The records of the alert manager (:mod:`wsfinal.alerts`): one alert episode (:class:`Alert`), what its
listeners hear (:class:`AlertEvent`), and the fingerprint that identifies a label set (:func:`fingerprint_of`).

Plain data: the manager creates and updates them; notifications (:class:`~wsfinal.notifications.AlertNotice`)
and summaries read them. All three are importable from :mod:`wsfinal.alerts` too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .alert_config import AlertSeverity, AlertType
from .alert_rules import AlertState
from .notifications import AlertNotice

__all__ = ["Alert", "AlertEvent", "fingerprint_of"]


@dataclass(eq=False)
class Alert:
    """One firing (or just resolved) episode of one series. ``severity.value`` is a string; times are loop times.

    ``title`` and ``message`` are rendered when it fires; ``value`` follows the latest evaluation.
    """

    alert_type: AlertType
    rule: str
    title: str
    severity: AlertSeverity
    message: str
    labels: dict[str, str]
    annotations: dict[str, str]
    fingerprint: str
    starts_at: float
    active_at: float
    ends_at: float | None = None
    state: AlertState = AlertState.FIRING
    value: float = math.nan
    #: Why it is muted right now: silence ids and/or "inhibited"; empty when it would be notified.
    suppressed_by: tuple[str, ...] = ()
    last_notified_at: float | None = None
    resolved_notified: bool = False
    generator_url: str = ""

    @property
    def suppressed(self) -> bool:
        return bool(self.suppressed_by)

    @property
    def status(self) -> str:
        return "resolved" if self.state is AlertState.RESOLVED else "firing"

    def notice(self) -> AlertNotice:
        return AlertNotice(
            self.fingerprint, self.status, self.title, self.message, self.severity.value, self.alert_type.value,
            dict(self.labels), dict(self.annotations), self.starts_at, self.ends_at, self.value, self.generator_url,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        value = None if math.isnan(self.value) else self.value
        return {
            "title": self.title, "severity": self.severity.value, "message": self.message,
            "type": self.alert_type.value, "rule": self.rule, "labels": dict(self.labels),
            "fingerprint": self.fingerprint, "state": self.state.value, "starts_at": self.starts_at,
            "ends_at": self.ends_at, "value": value, "suppressed_by": list(self.suppressed_by),
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """What listeners hear: ``alert_pending``/``alert_firing``/``alert_resolved``/``alert_inactive``,
    ``notification`` (detail: status, alerts) or ``delivery`` (detail: the DeliveryRecord fields)."""

    kind: str
    time: float
    rule: str = ""
    fingerprint: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """16 hex digits identifying a label set (Alertmanager uses a 64-bit hash of the sorted labels too)."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(labels):
        h.update(k.encode())
        h.update(b"\xff")
        h.update(str(labels[k]).encode())
        h.update(b"\xff")
    return h.hexdigest()
