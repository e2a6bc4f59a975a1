"""Notification channels: each turns one :class:`Notification` into a real delivery, with retries and records.

The payload builders (:func:`webhook_payload`, :func:`slack_payload`, :func:`discord_messages`,
:func:`email_message`) are pure. A :class:`Notifier` adds the I/O: one attempt at a time under a timeout, bounded
retries with exponential backoff (a 429's ``retry_after`` / ``Retry-After`` overrides the backoff), and one
:class:`DeliveryRecord` per attempt. :func:`deliver_all` runs every channel concurrently, so a dead endpoint costs
only its own timeouts. Secrets (passwords, webhook URLs, HMAC keys) never reach logs, reprs or records: notifiers
show ``scheme://host/***`` and every error text is scrubbed of the configured secret strings.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import json
import logging
import math
import smtplib
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from .config import NotificationConfig
from .exceptions import ConfigurationError

logger = logging.getLogger("wsfinal.notifications")


class NotificationChannel(enum.Enum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    SLACK = "slack"
    DISCORD = "discord"
    LOG = "log"
    CONSOLE = "console"


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


# --- delivery -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery attempt and its outcome. ``time`` is the loop time the attempt ended; no secrets inside."""

    channel: str
    attempt: int
    ok: bool
    status: int | None
    error: str | None
    time: float
    group_key: str = ""
    notification_id: int = 0
    duration_s: float = 0.0


@dataclass(slots=True)
class _Outcome:
    ok: bool
    status: int | None = None
    error: str | None = None
    retry: bool = True
    retry_after: float | None = None


class _ScrubFilter(logging.Filter):
    """Rewrites log records that contain a registered secret (httpx logs every request URL at INFO)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            if any(s in text for s in self.secrets):
                for s in sorted(self.secrets, key=len, reverse=True):
                    text = text.replace(s, "***")
                record.msg, record.args = text, None
        return True


_SCRUB = _ScrubFilter()
logging.getLogger("httpx").addFilter(_SCRUB)


def redact_url(url: str) -> str:
    """``scheme://host:port/***``: webhook URLs carry their token in the path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/***"


class Notifier:
    """Base of every channel. Subclasses implement :meth:`_attempt`; callers only call :meth:`deliver`."""

    channel: NotificationChannel = NotificationChannel.LOG

    def __init__(
        self,
        *,
        name: str | None = None,
        timeout_s: float = 5.0,
        max_attempts: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_retry_after_s: float = 60.0,
    ) -> None:
        if timeout_s <= 0 or max_attempts < 1 or backoff_s < 0:
            raise ConfigurationError(
                f"{self.channel.value} delivery",
                (timeout_s, max_attempts, backoff_s),
                "need timeout > 0, attempts >= 1",
            )
        self.name = name or self.channel.value
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self._secrets: list[str] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, attempts={self.max_attempts}, timeout_s={self.timeout_s})"

    def _scrub(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            if s:
                text = text.replace(s, "***")
        return text

    async def _attempt(self, n: Notification) -> _Outcome:
        raise NotImplementedError

    async def deliver(self, n: Notification) -> list[DeliveryRecord]:
        """Try up to ``max_attempts`` times; return one record per attempt. Never raises (except cancellation)."""
        loop = asyncio.get_running_loop()
        records: list[DeliveryRecord] = []
        for attempt in range(1, self.max_attempts + 1):
            t0 = loop.time()
            try:
                out = await asyncio.wait_for(self._attempt(n), self.timeout_s)
            except TimeoutError:
                out = _Outcome(False, error=f"timeout after {self.timeout_s:g}s")
            except Exception as exc:  # a channel's failure is recorded, never propagated
                out = _Outcome(False, error=self._scrub(f"{type(exc).__name__}: {exc}"))
            t1 = loop.time()
            rec = DeliveryRecord(
                self.name, attempt, out.ok, out.status, out.error, t1, n.group_key, n.notification_id, t1 - t0
            )
            records.append(rec)
            if out.ok:
                logger.debug("%s delivered notification %d (attempt %d)", self.name, n.notification_id, attempt)
                break
            logger.warning("%s delivery attempt %d failed: %s", self.name, attempt, out.error)
            if not out.retry or attempt == self.max_attempts:
                break
            delay = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
            if out.retry_after is not None:
                if out.retry_after > self.max_retry_after_s:
                    break
                delay = out.retry_after
            await asyncio.sleep(delay)
        return records


async def deliver_all(n: Notification, notifiers: Sequence[Notifier]) -> list[DeliveryRecord]:
    """Deliver ``n`` on every channel concurrently; one channel's failure or slowness never affects another."""
    results = await asyncio.gather(*(nt.deliver(n) for nt in notifiers))
    return [r for rs in results for r in rs]


class LogNotifier(Notifier):
    """Writes each alert to the ``wsfinal.notifications`` logger (ERROR for critical/high, WARNING otherwise)."""

    channel = NotificationChannel.LOG

    def __init__(self, *, logger_name: str = "wsfinal.notifications", **kw: Any) -> None:
        super().__init__(**kw)
        self._logger = logging.getLogger(logger_name)

    async def _attempt(self, n: Notification) -> _Outcome:
        for a in n.alerts:
            level = logging.INFO if a.status == "resolved" else logging.WARNING
            if a.status == "firing" and SEVERITY_RANK.get(a.severity, 0) >= 2:
                level = logging.ERROR
            self._logger.log(level, "[%s] %s: %s (%s)", a.status.upper(), a.title, a.message, a.severity)
        return _Outcome(True)


class ConsoleNotifier(Notifier):
    """Prints the notification to ``stream`` (stderr by default)."""

    channel = NotificationChannel.CONSOLE

    def __init__(self, *, stream: IO[str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self._stream = stream

    async def _attempt(self, n: Notification) -> _Outcome:
        out = self._stream if self._stream is not None else sys.stderr
        lines = [n.summary_line()] + [f"  [{a.status}] {a.title}: {a.message}" for a in n.alerts]
        print("\n".join(lines), file=out, flush=True)
        return _Outcome(True)


class RecordingNotifier(Notifier):
    """Keeps every notification in memory (tests, virtual time). ``fail_first`` attempts fail on purpose."""

    channel = NotificationChannel.LOG

    def __init__(self, *, name: str = "recording", fail_first: int = 0, delay_s: float = 0.0, **kw: Any) -> None:
        super().__init__(name=name, **kw)
        self.received: list[Notification] = []
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.attempts = 0

    async def _attempt(self, n: Notification) -> _Outcome:
        self.attempts += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.attempts <= self.fail_first:
            return _Outcome(False, error="injected failure")
        self.received.append(n)
        return _Outcome(True)


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        body = resp.json()
        if isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
            return float(body["retry_after"])
    except (ValueError, UnicodeDecodeError):
        pass
    header = resp.headers.get("retry-after")
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


class _HttpNotifier(Notifier):
    """POSTs JSON with httpx; 2xx is success, 408/429/5xx and network errors are retried, other 4xx are not."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"{self.channel.value}_config.url", redact_url(url), "must be an http(s) URL")
        self._url = url
        self._headers = dict(headers or {})
        self._transport = transport
        self._secrets += [url, parts.path, parts.query]
        # the path (and query) carry the token; the filter hides them from httpx's own request log
        _SCRUB.secrets.update(s for s in (parts.path, parts.query) if len(s) > 1)
        self._secrets += [v for k, v in self._headers.items() if k.lower() in ("authorization", "x-api-key")]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url={redact_url(self._url)!r}, attempts={self.max_attempts})"

    async def _post(self, body: bytes, headers: Mapping[str, str]) -> _Outcome:
        hdrs = {"Content-Type": "application/json", **self._headers, **headers}
        async with httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport) as client:
            try:
                resp = await client.post(self._url, content=body, headers=hdrs)
            except httpx.HTTPError as exc:
                return _Outcome(False, error=self._scrub(f"{type(exc).__name__}: {exc}"))
        if 200 <= resp.status_code < 300:
            return _Outcome(True, status=resp.status_code)
        retry = resp.status_code in (408, 429) or resp.status_code >= 500
        after = _retry_after(resp) if resp.status_code == 429 else None
        err = self._scrub(f"HTTP {resp.status_code}: {resp.text[:200]}")
        return _Outcome(False, status=resp.status_code, error=err, retry=retry, retry_after=after)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookNotifier(_HttpNotifier):
    """Alertmanager webhook v4; with ``secret``, adds ``signature_header: sha256=<hmac hex of the body>``."""

    channel = NotificationChannel.WEBHOOK

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        signature_header: str = "X-Wsfinal-Signature",
        max_alerts: int = 0,
        **kw: Any,
    ) -> None:
        super().__init__(url, **kw)
        self._secret = secret
        self.signature_header = signature_header
        self.max_alerts = max_alerts
        if secret:
            self._secrets.append(secret)

    async def _attempt(self, n: Notification) -> _Outcome:
        body = _dumps(webhook_payload(n, max_alerts=self.max_alerts))
        headers = {self.signature_header: sign_body(self._secret, body)} if self._secret else {}
        return await self._post(body, headers)


class SlackNotifier(_HttpNotifier):
    channel = NotificationChannel.SLACK

    def __init__(self, url: str, *, channel_name: str | None = None, username: str | None = None, **kw: Any) -> None:
        super().__init__(url, **kw)
        self._extra = {k: v for k, v in (("channel", channel_name), ("username", username)) if v}

    async def _attempt(self, n: Notification) -> _Outcome:
        return await self._post(_dumps({**slack_payload(n), **self._extra}), {})


class DiscordNotifier(_HttpNotifier):
    """Posts one or more messages (embeds packed within Discord's limits); a retry resumes at the failed one."""

    channel = NotificationChannel.DISCORD

    def __init__(self, url: str, *, username: str | None = None, **kw: Any) -> None:
        super().__init__(url, **kw)
        self._username = username
        self._sent: dict[int, int] = {}

    async def _attempt(self, n: Notification) -> _Outcome:
        messages = discord_messages(n)
        start = self._sent.get(n.notification_id, 0)
        out = _Outcome(True)
        for i in range(start, len(messages)):
            body = {**messages[i], **({"username": self._username} if self._username else {})}
            out = await self._post(_dumps(body), {})
            if not out.ok:
                self._sent[n.notification_id] = i
                return out
        self._sent.pop(n.notification_id, None)
        return out

    async def deliver(self, n: Notification) -> list[DeliveryRecord]:
        try:
            return await super().deliver(n)
        finally:
            self._sent.pop(n.notification_id, None)


class EmailNotifier(Notifier):
    """SMTP with stdlib ``smtplib`` in a worker thread: STARTTLS when ``starttls`` (default: when a username is
    set), implicit TLS when ``use_ssl``, LOGIN/PLAIN when ``username`` is set."""

    channel = NotificationChannel.EMAIL

    def __init__(
        self,
        *,
        host: str,
        from_addr: str,
        to_addrs: Sequence[str],
        port: int = 587,
        username: str | None = None,
        password: str | None = None,
        starttls: bool | None = None,
        use_ssl: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        subject_prefix: str = "[wsfinal] ",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        if not to_addrs:
            raise ConfigurationError("email_config.to_addrs", to_addrs, "needs at least one recipient")
        self.host, self.port, self.from_addr, self.to_addrs = host, port, from_addr, list(to_addrs)
        self._username, self._password = username, password
        self.starttls = bool(username) if starttls is None else starttls
        self.use_ssl = use_ssl
        self._ctx = ssl_context
        self.subject_prefix = subject_prefix
        self._secrets += [s for s in (password,) if s]

    def __repr__(self) -> str:
        user = "***" if self._username else None
        return f"EmailNotifier(host={self.host!r}, port={self.port}, username={user!r}, starttls={self.starttls})"

    def _send_sync(self, msg: EmailMessage) -> None:
        ctx = self._ctx or ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=ctx)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with smtp:
            smtp.ehlo()
            if self.starttls and not self.use_ssl:
                smtp.starttls(context=ctx)
                smtp.ehlo()
            if self._username:
                smtp.login(self._username, self._password or "")
            smtp.send_message(msg, from_addr=self.from_addr, to_addrs=self.to_addrs)

    async def _attempt(self, n: Notification) -> _Outcome:
        msg = email_message(n, from_addr=self.from_addr, to_addrs=self.to_addrs, subject_prefix=self.subject_prefix)
        try:
            await asyncio.to_thread(self._send_sync, msg)
        except smtplib.SMTPAuthenticationError as exc:
            return _Outcome(
                False, status=exc.smtp_code, error=f"SMTP authentication failed ({exc.smtp_code})", retry=False
            )
        except smtplib.SMTPResponseException as exc:
            transient = 400 <= exc.smtp_code < 500
            return _Outcome(False, status=exc.smtp_code, error=self._scrub(f"SMTP {exc.smtp_code}"), retry=transient)
        except smtplib.SMTPRecipientsRefused:
            return _Outcome(False, error="SMTP recipients refused", retry=False)
        except (OSError, smtplib.SMTPException) as exc:
            return _Outcome(False, error=self._scrub(f"{type(exc).__name__}: {exc}"))
        return _Outcome(True, status=250)


# --- construction from NotificationConfig ----------------------------------------------------------------------

_COMMON_KEYS = ("timeout_s", "max_attempts", "backoff_s", "max_backoff_s", "max_retry_after_s", "name")


def _common_kw(cfg: Mapping[str, Any]) -> dict[str, Any]:
    kw = {k: cfg[k] for k in _COMMON_KEYS if k in cfg}
    if "timeout" in cfg:
        kw["timeout_s"] = cfg["timeout"]
    return kw


def _require(cfg: Mapping[str, Any], key: str, where: str, *aliases: str) -> Any:
    for k in (key, *aliases):
        if cfg.get(k):
            return cfg[k]
    raise ConfigurationError(f"notification_config.{where}.{key}", None, "is required")


def notifier_for(channel: NotificationChannel, config: NotificationConfig | None) -> Notifier:
    """Build the notifier of ``channel`` from its section of ``config``; raise naming the missing key."""
    cfg = config or NotificationConfig()
    if channel is NotificationChannel.LOG:
        return LogNotifier()
    if channel is NotificationChannel.CONSOLE:
        return ConsoleNotifier()
    section = {
        NotificationChannel.EMAIL: ("email_config", cfg.email_config),
        NotificationChannel.WEBHOOK: ("webhook_config", cfg.webhook_config),
        NotificationChannel.SLACK: ("slack_config", cfg.slack_config),
        NotificationChannel.DISCORD: ("discord_config", cfg.discord_config),
    }[channel]
    where, c = section
    if c is None:
        raise ConfigurationError(f"notification_config.{where}", None, f"channel {channel.value} needs this section")
    kw = _common_kw(c)
    if channel is NotificationChannel.EMAIL:
        to = c.get("to_addrs") or c.get("to")
        to_list = [to] if isinstance(to, str) else list(to or [])
        return EmailNotifier(
            host=_require(c, "host", where, "smtp_host", "smtp_server"),
            port=int(c.get("port", c.get("smtp_port", 587))),
            from_addr=_require(c, "from_addr", where, "from"),
            to_addrs=to_list,
            username=c.get("username"),
            password=c.get("password"),
            starttls=c.get("starttls"),
            use_ssl=bool(c.get("use_ssl", False)),
            ssl_context=c.get("ssl_context"),
            subject_prefix=c.get("subject_prefix", "[wsfinal] "),
            **kw,
        )
    url = _require(c, "url", where, "webhook_url")
    if channel is NotificationChannel.WEBHOOK:
        return WebhookNotifier(
            url,
            secret=c.get("secret") or c.get("hmac_secret"),
            signature_header=c.get("signature_header", "X-Wsfinal-Signature"),
            max_alerts=int(c.get("max_alerts", 0)),
            headers=c.get("headers"),
            **kw,
        )
    if channel is NotificationChannel.SLACK:
        return SlackNotifier(url, channel_name=c.get("channel"), username=c.get("username"), **kw)
    return DiscordNotifier(url, username=c.get("username"), **kw)


def build_notifiers(
    config: NotificationConfig | None, channels: Sequence[NotificationChannel | Notifier] | None = None
) -> list[Notifier]:
    """The notifiers to use: ``channels`` when given (enum members are built from ``config``), else LOG plus
    every channel ``config`` configures."""
    if channels is not None:
        return [c if isinstance(c, Notifier) else notifier_for(c, config) for c in channels]
    out: list[Notifier] = [LogNotifier()]
    if config is not None:
        pairs = (
            (NotificationChannel.EMAIL, config.email_config),
            (NotificationChannel.WEBHOOK, config.webhook_config),
            (NotificationChannel.SLACK, config.slack_config),
            (NotificationChannel.DISCORD, config.discord_config),
        )
        out += [notifier_for(ch, config) for ch, section in pairs if section is not None]
    return out


__all__ = [
    "AlertNotice",
    "ConsoleNotifier",
    "DeliveryRecord",
    "DiscordNotifier",
    "EmailNotifier",
    "LogNotifier",
    "Notification",
    "NotificationChannel",
    "Notifier",
    "RecordingNotifier",
    "SlackNotifier",
    "WebhookNotifier",
    "build_notifiers",
    "deliver_all",
    "discord_messages",
    "email_message",
    "slack_payload",
    "webhook_payload",
]
