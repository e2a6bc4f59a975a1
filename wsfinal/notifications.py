"""Notification channels: each turns one :class:`Notification` into a real delivery, with retries and records.

The payload builders (:func:`webhook_payload`, :func:`slack_payload`, :func:`discord_messages`,
:func:`email_message`) are pure; they live in :mod:`wsfinal.notification_payloads` and are importable from here.
A :class:`Notifier` adds the I/O: one attempt at a time under a timeout, bounded retries with exponential backoff
(a 429's ``retry_after`` / ``Retry-After`` overrides the backoff), and one :class:`DeliveryRecord` per attempt.
:func:`deliver_all` runs every channel concurrently, so a dead endpoint costs only its own timeouts. Secrets
(passwords, webhook URLs, HMAC keys) never reach logs, reprs or records: notifiers show ``scheme://host/***`` and
every error text is scrubbed of the configured secret strings.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import smtplib
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from .config import NotificationConfig
from .exceptions import ConfigurationError
from .notification_payloads import (  # noqa: F401  (re-exported: they were defined here)
    DISCORD_COLOURS,
    DISCORD_LIMITS,
    RESOLVED_COLOUR,
    SEVERITY_RANK,
    SLACK_COLOURS,
    ZERO_TIME,
    AlertNotice,
    Notification,
    discord_embed,
    discord_messages,
    email_message,
    rfc3339,
    sign_body,
    slack_payload,
    webhook_payload,
)

logger = logging.getLogger("wsfinal.notifications")


class NotificationChannel(enum.Enum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    SLACK = "slack"
    DISCORD = "discord"
    LOG = "log"
    CONSOLE = "console"


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
