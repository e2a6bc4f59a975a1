"""Notification channels against real local servers: an asyncio HTTP server on 127.0.0.1 for webhook, Slack and
Discord; aiosmtpd for email (plain, and STARTTLS + AUTH with a trustme CA). Plus the pure payload builders."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfinal.config import NotificationConfig
from wsfinal.exceptions import ConfigurationError
from wsfinal.notifications import (
    DISCORD_LIMITS,
    ZERO_TIME,
    AlertNotice,
    ConsoleNotifier,
    DiscordNotifier,
    EmailNotifier,
    LogNotifier,
    Notification,
    NotificationChannel,
    RecordingNotifier,
    SlackNotifier,
    WebhookNotifier,
    build_notifiers,
    deliver_all,
    discord_messages,
    email_message,
    slack_payload,
    webhook_payload,
)

EPOCH = 1_700_000_000.0
TOKEN = "T0K3N-very-secret"


def notice(
    i: int = 0, status: str = "firing", severity: str = "critical", message: str = "latency 250 ms"
) -> AlertNotice:
    labels = {"alertname": "high_latency", "connection_id": f"c{i}", "node": "node-a", "severity": severity}
    return AlertNotice(
        fingerprint=f"{i:016x}", status=status, title=f"High latency on c{i}", message=message, severity=severity,
        alert_type="high_latency", labels=labels, annotations={"summary": "High latency", "description": message},
        starts_at=10.0, ends_at=25.0 if status == "resolved" else None, value=250.0,
    )  # fmt: skip


def notification(*alerts: AlertNotice, nid: int = 1) -> Notification:
    status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
    return Notification(
        group_key='{}:{alertname="high_latency"}', status=status, alerts=alerts,
        group_labels={"alertname": "high_latency"}, created_at=30.0, notification_id=nid,
        receiver="ops", external_url="http://wsfinal.local", epoch_offset=EPOCH,
    )  # fmt: skip


# --- a tiny HTTP/1.1 server -----------------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpServer:
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    discord_429s: int = 1

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(path, headers, body, asyncio.get_running_loop().time()))
            if path.startswith("/blackhole"):
                await asyncio.wait_for(reader.read(), 10)  # never answer; ends when the client gives up
                return
            status, extra, payload = self.route(path)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n{extra}\r\n".encode()
                + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def route(self, path: str) -> tuple[int, str, bytes]:
        if path.startswith("/discord"):
            if self.discord_429s > 0:
                self.discord_429s -= 1
                body = json.dumps({"message": "You are being rate limited.", "retry_after": 0.2, "global": False})
                return 429, "Retry-After: 5\r\nContent-Type: application/json\r\n", body.encode()
            return 204, "", b""
        if path.startswith("/fail500"):
            return 500, "", b"boom"
        if path.startswith("/bad400"):
            return 400, "", b"invalid_payload"
        return 200, "", b"ok"


@contextlib.asynccontextmanager
async def http_server() -> AsyncIterator[HttpServer]:
    state = HttpServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


# --- webhook, Slack, Discord ----------------------------------------------------------------------------------------


def test_webhook_posts_alertmanager_v4_payload_with_hmac_signature() -> None:
    async def main() -> None:
        async with http_server() as srv:
            nt = WebhookNotifier(f"{srv.base}/hook/{TOKEN}", secret="hmac-key", signature_header="X-Signature")
            n = notification(notice(1), notice(2, status="resolved"))
            records = await nt.deliver(n)
            assert [(r.ok, r.status, r.attempt) for r in records] == [(True, 200, 1)]
            (req,) = srv.requests
            assert req.path == f"/hook/{TOKEN}" and req.headers["content-type"] == "application/json"
            expected = "sha256=" + hmac.new(b"hmac-key", req.body, hashlib.sha256).hexdigest()
            assert req.headers["x-signature"] == expected
            body = req.json()
            assert set(body) == {
                "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
                "commonAnnotations", "externalURL", "alerts",
            }  # fmt: skip
            assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "ops"
            assert body["groupKey"] == '{}:{alertname="high_latency"}' and body["truncatedAlerts"] == 0
            assert body["commonLabels"] == {"alertname": "high_latency", "node": "node-a", "severity": "critical"}
            a1, a2 = body["alerts"]
            assert set(a1) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
            assert a1["startsAt"] == "2023-11-14T22:13:30.000Z" and a1["endsAt"] == ZERO_TIME
            assert a2["status"] == "resolved" and a2["endsAt"] == "2023-11-14T22:13:45.000Z"

    asyncio.run(main())


def test_webhook_truncates_to_max_alerts() -> None:
    body = webhook_payload(notification(*(notice(i) for i in range(5))), max_alerts=2)
    assert len(body["alerts"]) == 2 and body["truncatedAlerts"] == 3


def test_slack_text_blocks_and_colour_by_severity() -> None:
    async def main() -> None:
        async with http_server() as srv:
            nt = SlackNotifier(f"{srv.base}/slack/T000/B000/{TOKEN}", channel_name="#ops")
            assert (await nt.deliver(notification(notice(1, severity="warning"))))[0].ok
            body = srv.requests[0].json()
            assert body["text"].startswith("[FIRING] 1 firing") and body["channel"] == "#ops"
            assert body["blocks"][0]["type"] == "header"
            (att,) = body["attachments"]
            assert att["color"] == "#FFA500" and "High latency on c1" in att["blocks"][0]["text"]["text"]

    asyncio.run(main())
    assert slack_payload(notification(notice(1)))["attachments"][0]["color"] == "#D00000"
    resolved = slack_payload(notification(notice(1, status="resolved")))
    assert resolved["attachments"][0]["color"] == "#2EB67D"


def test_discord_honours_429_retry_after_and_splits_within_limits() -> None:
    async def main() -> None:
        async with http_server() as srv:
            nt = DiscordNotifier(f"{srv.base}/discord/123/{TOKEN}", backoff_s=3.0)
            n = notification(*(notice(i, message="x" * 100) for i in range(12)))
            records = await nt.deliver(n)
            assert [(r.attempt, r.ok, r.status) for r in records] == [(1, False, 429), (2, True, 204)]
            first, retry, second = srv.requests
            # the body's retry_after (0.2 s) wins over both the header (5 s) and the backoff (3 s)
            assert 0.2 <= retry.at - first.at < 2.0
            assert retry.json() == first.json()
            assert len(retry.json()["embeds"]) == 10 and len(second.json()["embeds"]) == 2
            assert retry.json()["allowed_mentions"] == {"parse": []}

    asyncio.run(main())


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(0, 30),
    msg_len=st.integers(0, 6000),
    title_len=st.integers(1, 400),
    n_labels=st.integers(0, 40),
)
def test_discord_messages_always_within_documented_limits(
    count: int, msg_len: int, title_len: int, n_labels: int
) -> None:
    alerts = []
    for i in range(count):
        base = notice(i, message="m" * msg_len)
        labels = {f"label{j}": "v" * 300 for j in range(n_labels)}
        alerts.append(AlertNotice(**{**_as_dict(base), "title": "t" * title_len, "labels": labels}))
    msgs = discord_messages(notification(*alerts))
    assert sum(len(m["embeds"]) for m in msgs) == count
    for m in msgs:
        assert len(m["embeds"]) <= DISCORD_LIMITS["embeds"] and len(m["content"]) <= DISCORD_LIMITS["content"]
        total = 0
        for e in m["embeds"]:
            assert len(e["title"]) <= 256 and len(e["description"]) <= 4096 and len(e["fields"]) <= 25
            assert all(len(f["name"]) <= 256 and len(f["value"]) <= 1024 for f in e["fields"])
            total += len(e["title"]) + len(e["description"]) + len(e["footer"]["text"])
            total += sum(len(f["name"]) + len(f["value"]) for f in e["fields"])
        assert total <= DISCORD_LIMITS["total"]


def _as_dict(a: AlertNotice) -> dict[str, Any]:
    return {k: getattr(a, k) for k in a.__dataclass_fields__}


def test_server_errors_are_retried_with_backoff_and_client_errors_are_not() -> None:
    async def main() -> None:
        async with http_server() as srv:
            retrying = WebhookNotifier(f"{srv.base}/fail500", max_attempts=3, backoff_s=0.05)
            records = await retrying.deliver(notification(notice(1)))
            assert [(r.attempt, r.ok, r.status) for r in records] == [(1, False, 500), (2, False, 500), (3, False, 500)]
            gaps = [b.at - a.at for a, b in zip(srv.requests, srv.requests[1:])]
            assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # exponential backoff
            srv.requests.clear()
            final = WebhookNotifier(f"{srv.base}/bad400", max_attempts=3)
            records = await final.deliver(notification(notice(1)))
            assert [(r.attempt, r.status) for r in records] == [(1, 400)] and "invalid_payload" in (
                records[0].error or ""
            )

    asyncio.run(main())


def test_a_dead_endpoint_does_not_delay_the_other_channels() -> None:
    async def main() -> None:
        async with http_server() as srv:
            with socket.socket() as closed:
                closed.bind(("127.0.0.1", 0))
                refused_port = closed.getsockname()[1]
            dead = WebhookNotifier(f"{srv.base}/blackhole/{TOKEN}", timeout_s=0.5, max_attempts=1, name="dead")
            refused = WebhookNotifier(
                f"http://127.0.0.1:{refused_port}/x", max_attempts=2, backoff_s=0.01, name="refused"
            )
            slack = SlackNotifier(f"{srv.base}/slack/{TOKEN}", name="slack")
            rec = RecordingNotifier()
            t0 = asyncio.get_running_loop().time()
            records = await deliver_all(notification(notice(1)), [dead, refused, slack, rec])
            by = {r.channel: r for r in records}
            assert by["slack"].ok and by["recording"].ok and not by["dead"].ok
            assert by["dead"].error == "timeout after 0.5s"
            assert [r.attempt for r in records if r.channel == "refused"] == [1, 2]
            assert "ConnectError" in (by["refused"].error or "")
            # the others finished while the dead endpoint was still inside its timeout
            assert by["slack"].time < by["dead"].time and by["slack"].time - t0 < 0.5
            assert by["dead"].duration_s >= 0.5

    asyncio.run(main())


def test_secrets_never_in_logs_reprs_or_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> tuple[int, list[Any]]:
        async with http_server() as srv:
            cfg = NotificationConfig(
                webhook_config={"url": f"{srv.base}/fail500/{TOKEN}", "secret": "hmac-" + TOKEN, "max_attempts": 2,
                                "backoff_s": 0.01},
                slack_config={"webhook_url": f"http://127.0.0.1:1/services/{TOKEN}", "max_attempts": 1},
                discord_config={"url": f"{srv.base}/bad400/{TOKEN}"},
                email_config={"host": "127.0.0.1", "port": 1, "from_addr": "a@x", "to_addrs": "b@x",
                              "username": "user", "password": TOKEN, "max_attempts": 1, "timeout": 1},
            )  # fmt: skip
            notifiers = build_notifiers(cfg)
            assert [n.channel for n in notifiers] == [
                NotificationChannel.LOG, NotificationChannel.EMAIL, NotificationChannel.WEBHOOK,
                NotificationChannel.SLACK, NotificationChannel.DISCORD,
            ]  # fmt: skip
            records = await deliver_all(notification(notice(1)), notifiers)
            assert TOKEN not in repr(cfg) and all(TOKEN not in repr(n) for n in notifiers)
            return srv.port, records

    port, records = asyncio.run(main())
    assert sum(not r.ok for r in records) >= 4
    assert all(TOKEN not in repr(r) for r in records)
    # httpx logs every request URL at INFO: the notifier's filter scrubs it
    assert f"POST http://127.0.0.1:{port}*** " in caplog.text
    assert TOKEN not in caplog.text and "delivery attempt" in caplog.text


def test_config_errors_name_the_missing_key() -> None:
    with pytest.raises(ConfigurationError, match=r"notification_config\.webhook_config\.url"):
        build_notifiers(NotificationConfig(webhook_config={"secret": "x"}))
    with pytest.raises(ConfigurationError, match=r"email_config\.from_addr"):
        build_notifiers(NotificationConfig(email_config={"host": "h", "to_addrs": ["a@b"]}))
    with pytest.raises(ConfigurationError, match="http"):
        WebhookNotifier("ftp://example.com/x")


def test_log_and_console_channels(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()

    async def main() -> None:
        n = notification(notice(1), notice(2, status="resolved", severity="warning"))
        assert (await LogNotifier().deliver(n))[0].ok
        assert (await ConsoleNotifier(stream=stream).deliver(n))[0].ok

    with caplog.at_level(logging.INFO, logger="wsfinal.notifications"):
        asyncio.run(main())
    levels = [(r.levelname, r.getMessage().split("]")[0]) for r in caplog.records if r.name == "wsfinal.notifications"]
    assert ("ERROR", "[FIRING") in levels and ("INFO", "[RESOLVED") in levels
    assert "[firing] High latency on c1" in stream.getvalue()


# --- email ------------------------------------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_email_over_plain_smtp() -> None:
    sink = Sink()
    ctl = Controller(sink, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        nt = EmailNotifier(host="127.0.0.1", port=ctl.port, from_addr="alerts@wsfinal", to_addrs=["ops@x", "dev@x"])
        records = asyncio.run(nt.deliver(notification(notice(1), notice(2, status="resolved"))))
    finally:
        ctl.stop()
    assert [(r.ok, r.status) for r in records] == [(True, 250)]
    (env,) = sink.envelopes
    assert env.mail_from == "alerts@wsfinal" and env.rcpt_tos == ["ops@x", "dev@x"]
    msg = message_from_bytes(env.content)
    assert msg["Subject"] == "[wsfinal] [FIRING] 1 firing, 1 resolved (alertname=high_latency)"
    body = msg.get_payload(decode=True).decode()
    assert "[FIRING] High latency on c1" in body and "ended: 2023-11-14T22:13:45.000Z" in body


def test_email_with_starttls_and_login() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    seen: list[tuple[str, bool]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"bot" and auth_data.password == b"pw-123"
        seen.append((mechanism, ok))
        return AuthResult(success=ok, handled=False)

    sink = Sink()
    ctl = Controller(
        sink, hostname="127.0.0.1", port=free_port(), tls_context=server_ctx, require_starttls=True,
        authenticator=authenticator, auth_required=True, auth_require_tls=True,
    )  # fmt: skip
    ctl.start()
    try:
        good = EmailNotifier(host="127.0.0.1", port=ctl.port, from_addr="a@x", to_addrs=["b@x"], username="bot",
                             password="pw-123", ssl_context=client_ctx)  # fmt: skip
        assert good.starttls
        ok = asyncio.run(good.deliver(notification(notice(1))))
        bad = EmailNotifier(host="127.0.0.1", port=ctl.port, from_addr="a@x", to_addrs=["b@x"], username="bot",
                            password="wrong-pw", ssl_context=client_ctx, max_attempts=3)  # fmt: skip
        failed = asyncio.run(bad.deliver(notification(notice(1))))
    finally:
        ctl.stop()
    assert [(r.ok, r.status) for r in ok] == [(True, 250)] and len(sink.envelopes) == 1
    assert [(r.ok, r.attempt) for r in failed] == [(False, 1)]  # authentication failures are not retried
    assert failed[0].error is not None and "authentication" in failed[0].error and "wrong-pw" not in failed[0].error
    assert (True in {s[1] for s in seen}) and (False in {s[1] for s in seen})


def test_email_message_is_plain_text_with_every_alert() -> None:
    msg = email_message(notification(notice(1), notice(2)), from_addr="a@x", to_addrs=["b@x", "c@x"])
    assert msg["To"] == "b@x, c@x" and "c1" in msg.get_content() and "c2" in msg.get_content()
