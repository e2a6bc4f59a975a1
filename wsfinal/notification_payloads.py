"""Notification payloads: what each channel sends, as pure functions of one :class:`Notification`.

:func:`webhook_payload` is Alertmanager's webhook body (version 4), :func:`slack_payload` a Slack incoming-webhook
message, :func:`discord_messages` Discord webhook messages within Discord's size limits, :func:`email_message` a
plain-text email, and :func:`sign_body` the HMAC signature header of a webhook body. No I/O here:
:mod:`wsfinal.notifications` delivers them.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

SEVERITY_RANK = {"info": 0, "warning": 1, "high": 2, "critical": 3}
SLACK_COLOURS = {"info": "#439FE0", "warning": "#FFA500", "high": "#FF5F00", "critical": "#D00000"}
DISCORD_COLOURS = {"info": 0x439FE0, "warning": 0xFFA500, "high": 0xFF5F00, "critical": 0xD00000}
RESOLVED_COLOUR = "#2EB67D"
#: Alertmanager's endsAt for an alert that has not ended.
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One alert as it is notified: a frozen snapshot (the live alert keeps changing). Times are loop times."""

    fingerprint: str
    status: str  # "firing" | "resolved"
    title: str
    message: str
    severity: str
    alert_type: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    ends_at: float | None = None
    value: float = math.nan
    generator_url: str = ""


@dataclass(frozen=True, slots=True)
class Notification:
    """What one group flush sends to every channel. ``epoch_offset`` turns loop times into Unix times."""

    group_key: str
    status: str
    alerts: tuple[AlertNotice, ...]
    group_labels: Mapping[str, str]
    created_at: float = 0.0
    notification_id: int = 0
    receiver: str = "wsfinal"
    external_url: str = ""
    epoch_offset: float = 0.0

    @property
    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    @property
    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])

    @property
    def severity(self) -> str:
        """The highest severity among the notice's alerts."""
        return max((a.severity for a in self.alerts), key=lambda s: SEVERITY_RANK.get(s, 0), default="info")

    def summary_line(self) -> str:
        firing = sum(a.status == "firing" for a in self.alerts)
        resolved = len(self.alerts) - firing
        parts = [f"{firing} firing"] if firing else []
        parts += [f"{resolved} resolved"] if resolved else []
        group = ", ".join(f"{k}={v}" for k, v in self.group_labels.items()) or "all"
        return f"[{self.status.upper()}] {', '.join(parts)} ({group})"


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = dict(maps[0])
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def rfc3339(loop_time: float | None, epoch_offset: float) -> str:
    if loop_time is None:
        return ZERO_TIME
    dt = datetime.fromtimestamp(loop_time + epoch_offset, UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- pure payload builders -------------------------------------------------------------------------------------


def webhook_payload(n: Notification, *, max_alerts: int = 0) -> dict[str, Any]:
    """The Alertmanager webhook body, version 4 (``max_alerts`` > 0 truncates, counting ``truncatedAlerts``)."""
    alerts = n.alerts if max_alerts <= 0 else n.alerts[:max_alerts]
    group = ", ".join(f'{k}="{v}"' for k, v in sorted(n.group_labels.items()))
    return {
        "version": "4",
        "groupKey": f"{{}}:{{{group}}}",
        "truncatedAlerts": len(n.alerts) - len(alerts),
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": dict(n.group_labels),
        "commonLabels": n.common_labels,
        "commonAnnotations": n.common_annotations,
        "externalURL": n.external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": rfc3339(a.starts_at, n.epoch_offset),
                "endsAt": rfc3339(a.ends_at, n.epoch_offset),
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            }
            for a in alerts
        ],
    }


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def slack_payload(n: Notification) -> dict[str, Any]:
    """Slack incoming-webhook body: ``text`` (fallback), ``blocks``, and an attachment coloured by severity."""
    colour = RESOLVED_COLOUR if n.status == "resolved" else SLACK_COLOURS.get(n.severity, SLACK_COLOURS["info"])
    alert_blocks: list[dict[str, Any]] = []
    for a in n.alerts[:45]:  # Slack allows 50 blocks per message
        icon = ":white_check_mark:" if a.status == "resolved" else ":rotating_light:"
        text = f"{icon} *{a.title}* ({a.severity}, {a.status})\n{a.message}"
        alert_blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, 3000)}})
    if len(n.alerts) > 45:
        more = f"... and {len(n.alerts) - 45} more"
        alert_blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {
        "text": _clip(n.summary_line(), 3000),
        "blocks": [{"type": "header", "text": {"type": "plain_text", "text": _clip(n.summary_line(), 150)}}],
        "attachments": [{"color": colour, "blocks": alert_blocks}],
    }


#: Discord's documented embed limits.
DISCORD_LIMITS = {
    "title": 256,
    "description": 4096,
    "fields": 25,
    "field_name": 256,
    "field_value": 1024,
    "footer": 2048,
    "total": 6000,
    "embeds": 10,
    "content": 2000,
}


def _embed_size(e: Mapping[str, Any]) -> int:
    size = len(e.get("title", "")) + len(e.get("description", "")) + len(e.get("footer", {}).get("text", ""))
    return size + sum(len(f["name"]) + len(f["value"]) for f in e.get("fields", []))


def discord_embed(a: AlertNotice, epoch_offset: float) -> dict[str, Any]:
    lim = DISCORD_LIMITS
    colour = int(RESOLVED_COLOUR[1:], 16) if a.status == "resolved" else DISCORD_COLOURS.get(a.severity, 0)
    fields = [
        {"name": _clip(k, lim["field_name"]), "value": _clip(v or "-", lim["field_value"]), "inline": True}
        for k, v in sorted(a.labels.items())
    ][: lim["fields"]]
    embed: dict[str, Any] = {
        "title": _clip(f"[{a.status.upper()}] {a.title}", lim["title"]),
        "description": _clip(a.message, lim["description"]),
        "color": colour,
        "fields": fields,
        "footer": {"text": _clip(f"fingerprint {a.fingerprint}", lim["footer"])},
        "timestamp": rfc3339(a.ends_at if a.status == "resolved" else a.starts_at, epoch_offset),
    }
    # One embed alone must fit in a message: drop fields, then shorten the description.
    while _embed_size(embed) > lim["total"] and embed["fields"]:
        embed["fields"].pop()
    excess = _embed_size(embed) - lim["total"]
    if excess > 0:
        embed["description"] = _clip(embed["description"], len(embed["description"]) - excess)
    return embed


def discord_messages(n: Notification) -> list[dict[str, Any]]:
    """Discord webhook bodies: one embed per alert, packed at most 10 embeds and 6000 characters a message."""
    messages: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for a in n.alerts:
        embed = discord_embed(a, n.epoch_offset)
        es = _embed_size(embed)
        if current and (len(current) >= DISCORD_LIMITS["embeds"] or size + es > DISCORD_LIMITS["total"]):
            messages.append({"embeds": current})
            current, size = [], 0
        current.append(embed)
        size += es
    if current or not messages:
        messages.append({"embeds": current})
    for m in messages:
        m["content"] = _clip(n.summary_line(), DISCORD_LIMITS["content"])
        m["allowed_mentions"] = {"parse": []}
    return messages


def email_message(
    n: Notification, *, from_addr: str, to_addrs: Sequence[str], subject_prefix: str = ""
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = _clip(f"{subject_prefix}{n.summary_line()}", 200)
    msg["From"] = from_addr
    msg["To"] = ", ".join(to_addrs)
    lines = [n.summary_line(), ""]
    for a in n.alerts:
        lines.append(f"[{a.status.upper()}] {a.title} (severity {a.severity})")
        lines.append(f"  {a.message}")
        lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items())))
        lines.append(f"  started: {rfc3339(a.starts_at, n.epoch_offset)}")
        if a.status == "resolved":
            lines.append(f"  ended: {rfc3339(a.ends_at, n.epoch_offset)}")
        lines.append("")
    msg.set_content("\n".join(lines))
    return msg


def sign_body(secret: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
