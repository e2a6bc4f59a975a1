"""ManagedConnection, live on 127.0.0.1: reconnects, close codes, liveness, requests, bad frames, no stray tasks.

Most tests use :class:`FakeExchange`, a small Bitfinex-like server defined here whose every reaction the test
controls (silence, close codes, held or rejected orders, raw frames). The last tests run against the real
fake exchange (``simulator.server.ExchangeServer``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from simulator.faults import Fault
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.server import ExchangeServer, make_tls_context
from wsfinal import ConnectionConfig, ConnectionState, ConnectionType, InvalidTransitionError
from wsfinal.connection import ManagedConnection
from wsfinal.interface import ConnectionEvent
from wsfinal.requests import OutcomeKind
from wsfinal.store import InMemoryConnectionStore
from wsfinal.transport import WebsocketsTransport

pytestmark = pytest.mark.live
S = ConnectionState


class FakeExchange:
    """A Bitfinex-like server: info on open, subscribe/unsubscribe/conf/auth/ping, order acks by client id."""

    def __init__(self) -> None:
        self.conns: list[ServerConnection] = []
        self.opened_at: list[float] = []
        self.received: list[list[Any]] = []
        self.silent = False  # half-open: keep TCP (and WebSocket pongs) up, answer nothing
        self.order_mode = "ack"  # ack | reject | hold
        self.close_on_open: int | None = None
        self.auth_ok = True
        self.greet = True  # send the info event on open
        self.ignore_subscribes = 0  # swallow this many subscribe requests (lost on the way)
        self._chan = itertools.count(10)

    async def handler(self, ws: ServerConnection) -> None:
        self.conns.append(ws)
        self.opened_at.append(asyncio.get_running_loop().time())
        log: list[Any] = []
        self.received.append(log)
        try:
            if self.greet:
                await ws.send(json.dumps({"event": "info", "version": 2, "platform": {"status": 1}}))
            if self.close_on_open is not None:
                await ws.close(self.close_on_open, "go away")
                return
            async for raw in ws:
                msg = json.loads(raw)
                log.append(msg)
                if not self.silent:
                    await self.answer(ws, msg)
        except ConnectionClosed:
            pass

    async def answer(self, ws: ServerConnection, msg: Any) -> None:
        if isinstance(msg, dict):
            event = msg.get("event")
            if event == "subscribe" and self.ignore_subscribes > 0:
                self.ignore_subscribes -= 1
            elif event == "subscribe":
                reply = {k: v for k, v in msg.items() if k != "event"}
                await ws.send(json.dumps({"event": "subscribed", "chanId": next(self._chan), **reply}))
            elif event == "unsubscribe":
                await ws.send(json.dumps({"event": "unsubscribed", "status": "OK", "chanId": msg["chanId"]}))
            elif event == "auth":
                ok = {"event": "auth", "status": "OK", "chanId": 0, "userId": 1}
                bad = {"event": "auth", "status": "FAILED", "chanId": 0, "code": 10100, "msg": "apikey: invalid"}
                await ws.send(json.dumps(ok if self.auth_ok else bad))
            elif event == "ping":
                await ws.send(json.dumps({"event": "pong", "cid": msg.get("cid"), "ts": 0}))
            elif event == "conf":
                await ws.send(json.dumps({"event": "conf", "status": "OK", "flags": msg["flags"]}))
        elif isinstance(msg, list) and msg[1:2] == ["on"]:
            cid = msg[3]["cid"]
            if self.order_mode == "ack":
                await ws.send(notification(cid, True))
            elif self.order_mode == "reject":
                await ws.send(notification(cid, False, 10001, "unknown pair"))

    def subscribes(self, index: int) -> list[dict[str, Any]]:
        return [
            m for m in self.received[index] if isinstance(m, dict) and m.get("event") in ("subscribe", "unsubscribe")
        ]


def notification(cid: int, ok: bool, code: int | None = None, text: str = "") -> str:
    order = [1, None, cid, "tBTCUSD", 0, 0, 0.1, 0.1, "EXCHANGE LIMIT"]
    return json.dumps([0, "n", [0, "on-req", None, None, order, code, "SUCCESS" if ok else "ERROR", text]])


@asynccontextmanager
async def exchange() -> AsyncIterator[tuple[FakeExchange, str]]:
    fx = FakeExchange()
    async with serve(fx.handler, "127.0.0.1", 0, ping_interval=None) as srv:
        yield fx, f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/ws/2"


def cfg(url: str, **kw: Any) -> ConnectionConfig:
    kw.setdefault("reconnect_delay_seconds", 0.05)
    kw.setdefault("connection_timeout_seconds", 2.0)
    return ConnectionConfig(url=url, connection_type=kw.pop("connection_type", ConnectionType.TRADING), **kw)


def managed(
    config: ConnectionConfig, cid: str = "c1", seed: int = 1, **kw: Any
) -> tuple[ManagedConnection, list[ConnectionEvent], InMemoryConnectionStore]:
    store = InMemoryConnectionStore()
    store.register(cid, config)
    conn = ManagedConnection(config, connection_id=cid, rng=random.Random(seed), **kw)
    conn.bind(store)
    events: list[ConnectionEvent] = []
    conn.add_listener(events.append)
    return conn, events, store


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def kinds(events: list[ConnectionEvent], kind: str) -> list[ConnectionEvent]:
    return [e for e in events if e.kind == kind]


def states(events: list[ConnectionEvent]) -> list[str]:
    return [e.detail["new"] for e in kinds(events, "state_changed")]


def no_other_tasks() -> bool:
    """No task of wsfinal's left (every task the connection creates is named ``wsfinal-...``)."""
    return not [t for t in asyncio.all_tasks() if t.get_name().startswith("wsfinal-")]


# --- reconnection and close codes ----------------------------------------------------------------------------


def test_reconnects_and_resubscribes_after_a_server_close() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, events, store = managed(cfg(url))
            assert await conn.connect()
            conn.subscribe("book", symbol="tBTCUSD", prec="P0", len="25")
            conn.subscribe("ticker", symbol="tETHUSD")
            await until(lambda: conn.subscriptions.active == 2)
            await fx.conns[0].close(1001, "going away")
            await until(lambda: len(fx.conns) == 2 and conn.state is S.CONNECTED and conn.subscriptions.active == 2)
            again = {(m["channel"], m["symbol"]) for m in fx.subscribes(1)}
            assert again == {("book", "tBTCUSD"), ("ticker", "tETHUSD")}
            assert states(events) == ["connecting", "connected", "reconnecting", "connecting", "connected"]
            record = store.get("c1")
            assert record is not None and record.state is S.CONNECTED and record.reconnects == 1
            assert conn.metrics.reconnects == 1 and conn.metrics.connects == 2
            await conn.disconnect()
            assert store.get("c1").state is S.DISCONNECTED  # type: ignore[union-attr]
            assert no_other_tasks()

    asyncio.run(main())


@pytest.mark.parametrize("code", [1008, 1003])
def test_no_retry_after_a_policy_close(code: int) -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, events, store = managed(cfg(url))
            assert await conn.connect()
            await fx.conns[0].close(code, "refused")
            await until(lambda: conn.state is S.FAILED)
            await asyncio.sleep(0.3)  # six base delays: no new connection
            assert len(fx.conns) == 1
            (gave_up,) = kinds(events, "gave_up")
            assert gave_up.detail["code"] == code
            assert store.get("c1").state is S.FAILED  # type: ignore[union-attr]
            await conn.disconnect()
            assert no_other_tasks()

    asyncio.run(main())


@pytest.mark.parametrize("code", [1012, 1013])
def test_retry_later_after_a_restart_close(code: int) -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, events, _ = managed(cfg(url, reconnect_delay_seconds=0.2))
            assert await conn.connect()
            await fx.conns[0].close(code, "restart")
            await until(lambda: len(fx.conns) == 2 and conn.state is S.CONNECTED)
            (planned,) = kinds(events, "reconnect_scheduled")
            assert planned.detail["policy"] == "retry_later"
            assert (planned.detail["low"], planned.detail["high"]) == (0.1, 0.2)
            waited = fx.opened_at[1] - planned.detail["lost_at"]
            assert 0.1 <= waited <= 0.2 + 0.3  # never immediate (upper bound: allowance for a loaded machine)
            await conn.disconnect()

    asyncio.run(main())


def test_reconnect_delays_lie_in_their_jitter_windows_then_it_gives_up() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            fx.close_on_open = 1011
            config = cfg(url, reconnect_delay_seconds=0.05, max_reconnect_attempts=4)
            conn, events, _ = managed(config, seed=7, backoff_cap_s=0.2)
            await conn.connect()
            await until(lambda: conn.state is S.FAILED, timeout=5.0)
            planned = kinds(events, "reconnect_scheduled")
            assert len(planned) == 4 and len(fx.conns) == 5
            replay = random.Random(7)
            for n, (event, opened) in enumerate(zip(planned, fx.opened_at[1:], strict=True), start=1):
                high = min(0.2, 0.05 * 2 ** (n - 1))
                assert (event.detail["attempt"], event.detail["low"], event.detail["high"]) == (n, 0.0, high)
                assert event.detail["delay"] == replay.uniform(0.0, high)  # the seeded draw, nothing else
                waited = opened - event.detail["lost_at"]
                assert event.detail["delay"] <= waited <= event.detail["delay"] + 0.25  # + handshake on a busy box
                assert 0.0 <= waited <= high + 0.25
            assert kinds(events, "gave_up")[0].detail["attempts"] == 4
            await conn.disconnect()
            assert no_other_tasks()

    asyncio.run(main())


def test_info_20051_reconnects_at_once_with_small_jitter_without_using_an_attempt() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, events, _ = managed(cfg(url, reconnect_delay_seconds=0.1, max_reconnect_attempts=1))
            assert await conn.connect()
            for i in range(2):  # twice: with one attempt allowed, only a free reconnect can happen twice
                await fx.conns[i].send(json.dumps({"event": "info", "code": 20051, "msg": "restart"}))
                await until(lambda i=i: len(fx.conns) == i + 2 and conn.state is S.CONNECTED)
                planned = kinds(events, "reconnect_scheduled")[-1]
                assert planned.detail["policy"] == "retry_now" and 0.0 <= planned.detail["delay"] <= 0.1
                assert fx.conns[i].close_code == 1000  # we closed it politely
            await conn.disconnect()

    asyncio.run(main())


def test_no_reconnection_when_max_reconnect_attempts_is_zero() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, events, _ = managed(cfg(url, max_reconnect_attempts=0))
            assert await conn.connect()
            await fx.conns[0].close(1011, "oops")
            await until(lambda: conn.state is S.DISCONNECTED)
            await asyncio.sleep(0.2)
            assert len(fx.conns) == 1 and kinds(events, "disconnected")
            assert no_other_tasks()

    asyncio.run(main())


# --- liveness ------------------------------------------------------------------------------------------------


def test_half_open_connection_is_detected_within_the_staleness_bound() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            config = cfg(url, heartbeat_interval_seconds=0.1, message_timeout_seconds=1.0)
            conn, events, store = managed(config, stale_multiplier=3.0)
            assert conn.stale_bound_s == pytest.approx(0.3)
            loop = asyncio.get_running_loop()
            assert await conn.connect()
            await asyncio.sleep(0.6)  # twice the bound: the pong answers to our app pings keep it alive
            assert conn.state is S.CONNECTED and not kinds(events, "stale")
            assert conn.metrics.last_ping_latency_ms is not None  # app-level pings get their pongs
            fx.silent = True
            silenced = loop.time()
            await until(lambda: bool(kinds(events, "stale")), timeout=2.0)
            (stale,) = kinds(events, "stale")
            assert stale.detail["silent_for"] >= 0.3
            assert stale.time - silenced <= 0.3 + 0.15  # detected within the bound (plus loop latency)
            fx.silent = False
            await until(lambda: len(fx.conns) == 2 and conn.state is S.CONNECTED)
            assert conn.metrics.errors_by_kind["stale"] == 1
            record = store.get("c1")
            assert record is not None and record.ping_rtt_ms == record.ping_rtt_ms  # a ping RTT, not NaN
            assert math.isnan(record.latency_ewma_ms)  # and no request latency: pings are not requests
            await conn.disconnect()
            assert no_other_tasks()

    asyncio.run(main())


def test_connect_timeout_against_a_server_that_never_answers_the_handshake() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async def main() -> None:
        srv = await asyncio.start_server(silent, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/"
        conn, events, _ = managed(cfg(url, connection_timeout_seconds=0.2, max_reconnect_attempts=0))
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert not await conn.connect()
        assert 0.19 <= loop.time() - start < 1.0
        await until(lambda: conn.state is S.FAILED)
        await conn.disconnect()
        assert no_other_tasks()
        # disconnect() while connect() is still waiting for the handshake: the attempt gives up
        conn2, _, _ = managed(cfg(url, connection_timeout_seconds=5.0), cid="c2")
        attempt = asyncio.ensure_future(conn2.connect())
        await until(lambda: conn2.state is S.CONNECTING)
        await conn2.disconnect()
        assert conn2.state is S.DISCONNECTED
        assert await attempt is False
        assert conn2.state is S.DISCONNECTED and no_other_tasks()
        await asyncio.sleep(0.05)  # let the server side see the client's socket close
        srv.close()
        await srv.wait_closed()

    asyncio.run(main())


def test_a_server_that_never_greets_fails_the_attempt_unless_told_not_to_wait() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            fx.greet = False
            conn, events, _ = managed(cfg(url, connection_timeout_seconds=0.3, max_reconnect_attempts=0))
            assert not await conn.connect()
            await until(lambda: conn.state is S.FAILED)
            assert "no info event" in kinds(events, "gave_up")[0].detail["reason"]
            assert conn.metrics.errors_by_kind == {"connect_failed": 1}
            await conn.disconnect()
            quiet, _, _ = managed(cfg(url), cid="c2", await_info=False)
            assert await quiet.connect()
            await quiet.disconnect()
            assert no_other_tasks()

    asyncio.run(main())


def test_a_lost_subscribe_request_is_sent_again_after_the_message_timeout() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            fx.ignore_subscribes = 2
            conn, events, _ = managed(cfg(url, message_timeout_seconds=0.1))
            assert await conn.connect()
            sub = conn.subscribe("ticker", symbol="tBTCUSD")
            await until(lambda: sub.chan_id is not None)
            assert [e.detail["reason"] for e in kinds(events, "resubscribe")] == ["subscribe_timeout"] * 2
            assert conn.metrics.errors_by_kind == {"subscribe_timeout": 2}
            await asyncio.sleep(0.3)
            assert len(kinds(events, "resubscribe")) == 2  # confirmed: no more retries
            await conn.disconnect()

    asyncio.run(main())


# --- requests ------------------------------------------------------------------------------------------------


def test_request_accounting_adds_up_after_a_connection_loss_mid_flight() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, _, store = managed(cfg(url, message_timeout_seconds=2.0, reconnect_delay_seconds=0.2))
            assert await conn.connect()
            acked = await asyncio.gather(*[conn.submit({"symbol": "tBTCUSD", "amount": "0.1"}) for _ in range(10)])
            assert {o.kind for o in acked} == {OutcomeKind.ACKNOWLEDGED}
            assert all(o.latency_ms is not None and o.latency_ms >= 0 for o in acked)
            fx.order_mode = "hold"
            held = [conn.submit({"symbol": "tBTCUSD"}) for _ in range(10)]
            quick = await conn.request({"symbol": "tBTCUSD"}, timeout=0.05)
            assert quick.kind is OutcomeKind.TIMED_OUT
            await until(lambda: len(fx.received[0]) >= 21)  # the held orders reached the exchange
            await fx.conns[0].close(1011, "crash")
            lost = await asyncio.gather(*held)
            assert {o.kind for o in lost} == {OutcomeKind.CONNECTION_LOST}
            await until(lambda: conn.state is S.RECONNECTING)
            during = [await conn.request({"symbol": "tBTCUSD"}) for _ in range(3)]
            assert {o.kind for o in during} == {OutcomeKind.NO_CONNECTION}
            await until(lambda: conn.state is S.CONNECTED)
            fx.order_mode = "reject"
            rejected = await asyncio.gather(*[conn.submit({"symbol": "tXXXUSD"}) for _ in range(5)])
            assert {(o.kind, o.code) for o in rejected} == {(OutcomeKind.REJECTED, 10001)}
            summary = conn.ledger.summary()
            assert summary["submitted"] == 29 == summary["finished"] + summary["in_flight"]
            assert (summary["acknowledged"], summary["connection_lost"], summary["timed_out"]) == (10, 10, 1)
            assert (summary["no_connection"], summary["rejected"], summary["in_flight"]) == (3, 5, 0)
            record = store.get("c1")
            assert record is not None and record.outstanding == 0
            assert (record.requests_ok, record.requests_failed) == (10, 16)
            # the three submitted while reconnecting belong to no connection: the store counts them by type
            totals = store.request_totals(ConnectionType.TRADING)
            assert (totals["no_connection"], totals["submitted"]) == (3, summary["submitted"])
            assert len({o.cid for o in acked + lost + rejected + [quick]}) == 26  # every client id distinct
            await conn.disconnect()

    asyncio.run(main())


def test_maintenance_pauses_requests_and_resubscribes_when_it_ends() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, events, store = managed(cfg(url))
            analytics = Recorder()
            conn.bind(store, analytics)
            assert await conn.connect()
            conn.subscribe("ticker", symbol="tBTCUSD")
            await until(lambda: conn.subscriptions.active == 1)
            await fx.conns[0].send(json.dumps({"event": "info", "code": 20060, "msg": "maintenance"}))
            await until(lambda: conn.paused)
            record = store.get("c1")
            assert record is not None
            before = record.snapshot()
            outcome = await conn.request({"symbol": "tBTCUSD"})
            assert outcome.kind is OutcomeKind.NOT_SENT
            # it counts against this connection in the store: a failed request that was not sent, nothing else
            after = record.snapshot()
            assert {k for k in after if after[k] != before[k]} == {"requests_failed", "requests_not_sent"}
            assert (record.requests_failed, record.requests_not_sent, record.outstanding) == (1, 1, 0)
            errors = [args[2:] for name, args in analytics.calls if name == "record_error"]
            assert errors == [("not_sent", outcome.finished_at)]
            assert store.request_totals()["submitted"] == conn.ledger.submitted == 1
            await fx.conns[0].send(json.dumps({"event": "info", "code": 20061, "msg": "done"}))
            await until(lambda: not conn.paused and conn.subscriptions.active == 1 and len(fx.subscribes(0)) == 3)
            assert [m["event"] for m in fx.subscribes(0)] == ["subscribe", "unsubscribe", "subscribe"]
            assert (await conn.request({"symbol": "tBTCUSD"})).kind is OutcomeKind.ACKNOWLEDGED
            assert [e.detail["active"] for e in kinds(events, "maintenance")] == [True, False]
            assert kinds(events, "resubscribe")[0].detail["reason"] == "maintenance_end"
            assert len(fx.conns) == 1  # maintenance is no reason to reconnect
            await conn.disconnect()

    asyncio.run(main())


def test_authentication_before_connected_and_no_retry_when_refused() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            nonce = itertools.count(1000).__next__
            conn, _, _ = managed(cfg(url), api_key="k", api_secret="s", nonce=nonce)
            assert await conn.connect()
            auth = [m for m in fx.received[0] if isinstance(m, dict) and m.get("event") == "auth"]
            assert auth and auth[0]["apiKey"] == "k" and auth[0]["authNonce"] == 1000
            await conn.disconnect()
            fx.auth_ok = False
            conn, events, _ = managed(cfg(url), cid="c2", api_key="k", api_secret="bad", nonce=nonce)
            assert not await conn.connect()
            await until(lambda: conn.state is S.FAILED)
            assert "auth failed" in kinds(events, "gave_up")[0].detail["reason"]
            await conn.disconnect()
            assert no_other_tasks()

    asyncio.run(main())


# --- bad frames ----------------------------------------------------------------------------------------------


def test_oversized_and_malformed_frames_are_counted_and_the_reader_lives_on() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, events, store = managed(cfg(url, max_message_size_bytes=1000))
            assert await conn.connect()
            server = fx.conns[0]
            await server.send("x" * 2000)  # over our limit, under the transport's hard limit
            await server.send("{nope")
            await server.send(b'{"event":"pong","cid":1}')  # binary frames are fine
            await server.send(json.dumps([99, "hb"]))  # a channel we never subscribed to: ignored
            outcome = await conn.request({"symbol": "tBTCUSD"})
            assert outcome.kind is OutcomeKind.ACKNOWLEDGED  # the reader is alive
            m = conn.metrics
            assert m.errors_by_kind == {"oversized": 1, "malformed": 1}
            assert [e.detail["kind"] for e in kinds(events, "error")] == ["oversized", "malformed"]
            assert store.get("c1").errors == 2  # type: ignore[union-attr]
            assert conn.state is S.CONNECTED and m.reconnects == 0
            await server.send("y" * 5000)  # over the hard limit: websockets closes with 1009, we reconnect
            await until(lambda: len(fx.conns) == 2 and conn.state is S.CONNECTED)
            assert kinds(events, "reconnect_scheduled")[0].detail["code"] == 1009
            await conn.disconnect()

    asyncio.run(main())


def test_sequence_gap_is_counted_and_answered_by_resubscribing() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, events, _ = managed(cfg(url))
            assert await conn.connect()
            sub = conn.subscribe("trades", symbol="tBTCUSD")
            await until(lambda: sub.chan_id is not None)
            chan = sub.chan_id
            for seq in (1, 2, 4):  # 3 never arrives
                await fx.conns[0].send(json.dumps([chan, "te", [seq, 0, 0.1, 100.0], seq]))
            await until(lambda: conn.metrics.resubscribes == 1 and sub.chan_id is not None and sub.chan_id != chan)
            assert conn.metrics.sequence_gaps == 1 and conn.metrics.errors_by_kind["sequence_gap"] == 1
            assert [m["event"] for m in fx.subscribes(0)] == ["subscribe", "unsubscribe", "subscribe"]
            assert kinds(events, "resubscribe")[0].detail["reason"] == "sequence_gap"
            await conn.disconnect()

    asyncio.run(main())


# --- reporting and task hygiene ------------------------------------------------------------------------------


class Recorder:
    def __init__(self, *, answers: bool = True) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.answers = answers  # offers record_answer (else the connection uses record_message + record_latency)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("record_") or (name == "record_answer" and not self.answers):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


@pytest.mark.parametrize("answers", [True, False])
def test_metrics_reach_the_store_and_a_duck_typed_analytics_object(answers: bool) -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            config = cfg(url, heartbeat_interval_seconds=0.05)
            conn, _, store = managed(config)
            analytics = Recorder(answers=answers)
            conn.bind(store, analytics)
            assert await conn.connect()
            before = len(analytics.calls)
            outcome = await conn.request({"symbol": "tBTCUSD"})
            answer_calls = [(name, args[2:4]) for name, args in analytics.calls[before:] if name != "record_message"]
            if answers:  # the answer's frame and the request's latency in one call
                assert answer_calls[0][0] == "record_answer" and answer_calls[0][1][1] == outcome.latency_ms
            else:
                assert answer_calls[0] == ("record_latency", (outcome.latency_ms, outcome.finished_at))
            await until(lambda: conn.metrics.last_ping_latency_ms is not None)
            await fx.conns[0].close(1011)
            await until(lambda: len(fx.conns) == 2 and conn.state is S.CONNECTED)
            names = {name for name, _ in analytics.calls}
            assert names == {"record_message", "record_ping", "record_reconnect"} | (
                {"record_answer"} if answers else {"record_latency"}
            )
            # record_latency is the request's only: the pings' round trips went to record_ping
            assert [args[2] for name, args in analytics.calls if name == "record_latency"] == (
                [] if answers else [outcome.latency_ms]
            )
            for _, args in analytics.calls:
                assert args[:2] == ("c1", ConnectionType.TRADING)
            directions = {args[2] for name, args in analytics.calls if name == "record_message"}
            assert directions == {"in", "out"}
            # every received frame told once: as a message, or (an answer) with its request's latency
            received = [a for name, a in analytics.calls if name == "record_answer" or a[2:3] == ("in",)]
            assert len(received) == conn.metrics.messages_received
            record = store.get("c1")
            m = conn.metrics
            assert record is not None
            assert (record.messages_sent, record.messages_received) == (m.messages_sent, m.messages_received)
            assert (record.bytes_sent, record.bytes_received) == (m.bytes_sent, m.bytes_received)
            assert record.requests_ok == 1 and record.reconnects == 1
            await conn.disconnect()

    asyncio.run(main())


class StoreWithout:
    """A store written before some reporting methods existed: an InMemoryConnectionStore without ``missing``."""

    def __init__(self, inner: InMemoryConnectionStore, missing: set[str]) -> None:
        self.inner, self.missing = inner, missing

    def __getattr__(self, name: str) -> Any:
        if name in self.missing:
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_a_store_without_record_ping_and_record_timeout_keeps_working(caplog: pytest.LogCaptureFixture) -> None:
    """record_ping and record_timeout are in the ConnectionStore protocol, but the connection is duck-typed: on
    a store that lacks them, pings and timeouts are not reported to it, and nothing else changes."""

    async def main() -> None:
        async with exchange() as (fx, url):
            config = cfg(url, heartbeat_interval_seconds=0.05)
            conn, _, inner = managed(config)
            conn.bind(StoreWithout(inner, {"record_ping", "record_timeout"}))
            assert await conn.connect()
            assert (await conn.request({"symbol": "tBTCUSD"})).kind is OutcomeKind.ACKNOWLEDGED
            await until(lambda: conn.metrics.last_ping_latency_ms is not None)
            fx.order_mode = "hold"
            assert (await conn.request({"symbol": "tBTCUSD"}, timeout=0.05)).kind is OutcomeKind.TIMED_OUT
            record = inner.get("c1")
            assert record is not None
            # the request counters went through; the ping RTT and the censored sample did not
            assert (record.requests_ok, record.requests_failed, record.outstanding) == (1, 1, 0)
            assert math.isnan(record.ping_rtt_ms) and record.last_latency_ms == record.latency_ewma_ms
            fx.order_mode = "ack"
            assert (await conn.request({"symbol": "tBTCUSD"})).kind is OutcomeKind.ACKNOWLEDGED
            assert conn.state is S.CONNECTED
            conn.ledger.check()
            await conn.disconnect()

    with caplog.at_level(logging.WARNING, logger="wsfinal"):
        asyncio.run(main())
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_disconnect_leaves_no_task_behind_in_any_state() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            # connected, with heartbeat, subscriptions and requests in flight
            conn, _, store = managed(cfg(url, heartbeat_interval_seconds=0.05))
            assert await conn.connect()
            conn.subscribe("ticker", symbol="tBTCUSD")
            fx.order_mode = "hold"
            pending = [conn.submit({"symbol": "tBTCUSD"}) for _ in range(5)]
            names = sorted(t.get_name().split("-")[1] for t in conn.tasks)
            # no writer (every frame went out through send_nowait), no reader (the channel pushes its messages)
            assert names == ["ping", "sup"]
            await conn.disconnect()
            assert conn.tasks == [] and no_other_tasks()
            assert {f.result().kind for f in pending} <= {OutcomeKind.CONNECTION_LOST, OutcomeKind.NOT_SENT}
            assert store.get("c1").outstanding == 0  # type: ignore[union-attr]
            # waiting out a backoff delay
            conn2, _, _ = managed(cfg(url, reconnect_delay_seconds=5.0), cid="c2")
            assert await conn2.connect()
            await fx.conns[-1].close(1011)
            await until(lambda: conn2.state is S.RECONNECTING)
            await conn2.disconnect()
            assert conn2.state is S.DISCONNECTED and no_other_tasks()

    asyncio.run(main())


# --- against the real fake exchange (simulator.server) ------------------------------------------------------

KEY, SECRET = "demo-key", "demo-secret"
ORDER = {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "price": "30000"}


@asynccontextmanager
async def real_exchange(faults: Any = ()) -> AsyncIterator[str]:
    node = NodeSpec(
        id="node-a",
        service=ServiceSpec("constant", 2, {"value": 0.002}),
        queue_limit=100,
        symbols=("tBTCUSD",),
        api_keys={KEY: SECRET},
        market_update_interval_s=0.02,
    )
    async with ExchangeServer([node], faults=faults, seed=3) as server:
        yield server.urls["node-a"]


def real(url: str, **kw: Any) -> tuple[ManagedConnection, list[ConnectionEvent], InMemoryConnectionStore]:
    nonce = itertools.count(10**6).__next__
    return managed(cfg(url, **kw), api_key=KEY, api_secret=SECRET, nonce=nonce)


def fault(kind: str, at_s: float = 0.0, duration_s: float | None = 5.0, **params: Any) -> Any:
    return Fault(kind, at_s=at_s, duration_s=duration_s, params=params)


def test_fake_exchange_book_checksums_sequence_numbers_and_orders() -> None:
    async def main() -> None:
        async with real_exchange() as url:
            conn, _, store = real(url)
            assert await conn.connect()
            conn.subscribe("book", symbol="tBTCUSD", prec="P0", len="25")
            conn.subscribe("trades", symbol="tBTCUSD")
            await until(lambda: conn.protocol.checksums_verified >= 10)
            outcomes = await asyncio.gather(*[conn.submit(ORDER) for _ in range(20)])
            assert {o.kind for o in outcomes} == {OutcomeKind.ACKNOWLEDGED}
            assert conn.protocol.checksum_mismatches == 0 and conn.protocol.sequence.gaps == 0
            assert conn.metrics.errors == 0 and store.get("c1").requests_ok == 20  # type: ignore[union-attr]
            await conn.disconnect()
            assert conn.tasks == [] and no_other_tasks()

    asyncio.run(main())


def test_fake_exchange_stream_loss_is_seen_as_gaps_and_books_are_refreshed() -> None:
    async def main() -> None:
        async with real_exchange([fault("loss", direction="down", rate=0.2)]) as url:
            conn, events, _ = real(url)
            assert await conn.connect()
            book = conn.subscribe("book", symbol="tBTCUSD", prec="P0", len="25")
            await until(lambda: conn.metrics.sequence_gaps >= 3 and conn.metrics.resubscribes >= 3)
            assert conn.state is S.CONNECTED and conn.metrics.reconnects == 0
            assert {e.detail["reason"] for e in kinds(events, "resubscribe")} <= {"sequence_gap", "checksum_mismatch"}
            await until(lambda: book.chan_id is not None)
            await conn.disconnect()

    asyncio.run(main())


def test_fake_exchange_blackhole_is_detected_as_stale_and_reconnected() -> None:
    async def main() -> None:
        async with real_exchange([fault("timeout", at_s=0.3, duration_s=0.6, timeout=0.0)]) as url:
            conn, events, _ = real(url, heartbeat_interval_seconds=0.1)
            assert await conn.connect()
            await until(lambda: bool(kinds(events, "stale")), timeout=3.0)
            assert kinds(events, "stale")[0].detail["silent_for"] >= conn.stale_bound_s
            await until(lambda: conn.state is S.CONNECTED and conn.metrics.connects >= 2, timeout=5.0)
            assert (await conn.request(ORDER)).kind is OutcomeKind.ACKNOWLEDGED
            await conn.disconnect()

    asyncio.run(main())


def test_fake_exchange_over_loopback_the_ping_rtt_includes_the_injected_link_latency() -> None:
    # Live mode: the app-level pong crosses the server's faulty link (20 ms each way) like any frame; the WebSocket
    # pong, answered by the websockets library, would not. The same probe means the same thing in both modes.
    async def main() -> None:
        async with real_exchange([fault("latency", duration_s=None, latency=0.02, jitter=0.0)]) as url:
            conn, _, store = real(url, heartbeat_interval_seconds=0.1)
            assert await conn.connect()
            await until(lambda: conn.metrics.last_ping_latency_ms is not None)
            record = store.get("c1")
            assert record is not None and record.ping_rtt_ms >= 40.0
            assert conn.metrics.last_ping_latency_ms == record.ping_rtt_ms
            assert math.isnan(record.latency_ewma_ms)  # pings are no request latency
            outcome = await conn.request(ORDER)
            assert outcome.ok and record.latency_ewma_ms == outcome.latency_ms and outcome.latency_ms >= 40.0
            await conn.disconnect()

    asyncio.run(main())


def test_fake_exchange_error_replies_reconnect_request_and_maintenance() -> None:
    async def main() -> None:
        faults = [
            fault("error_reply", at_s=0.0, duration_s=0.3, code=10001, rate=1.0),
            fault("info_reconnect", at_s=0.4, duration_s=None),
            fault("maintenance", at_s=0.8, duration_s=0.3),
        ]
        async with real_exchange(faults) as url:
            conn, events, _ = real(url)
            assert await conn.connect()
            rejected = await conn.request(ORDER)
            assert (rejected.kind, rejected.code) == (OutcomeKind.REJECTED, 10001)
            conn.subscribe("ticker", symbol="tBTCUSD")
            await until(lambda: conn.metrics.connects == 2 and conn.state is S.CONNECTED)  # 20051
            assert kinds(events, "reconnect_scheduled")[0].detail["policy"] == "retry_now"
            await until(lambda: conn.paused, timeout=2.0)  # 20060
            assert (await conn.request(ORDER)).kind is OutcomeKind.NOT_SENT
            await until(lambda: not conn.paused, timeout=2.0)  # 20061
            await until(lambda: conn.subscriptions.active == 1)
            assert (await conn.request(ORDER)).kind is OutcomeKind.ACKNOWLEDGED
            assert any(e.detail["reason"] == "maintenance_end" for e in kinds(events, "resubscribe"))
            await conn.disconnect()

    asyncio.run(main())


class SlowPathTransport:
    """The live transport with the ``send_nowait`` fast path hidden: every frame goes through the writer task."""

    def __init__(self) -> None:
        self.inner = WebsocketsTransport()

    async def connect(self, url: str, config: ConnectionConfig) -> Any:
        channel = await self.inner.connect(url, config)

        class Plain:
            send = channel.send
            recv = channel.recv
            close = channel.close
            ping = channel.ping
            abort = channel.abort
            close_code = property(lambda _: channel.close_code)
            close_reason = property(lambda _: channel.close_reason)

        return Plain()


def test_on_done_gets_every_outcome_once_synchronously_before_the_future(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, _, _ = managed(cfg(url, message_timeout_seconds=2.0, reconnect_delay_seconds=0.2))
            seen: list[Any] = []  # (outcome, whether its future was already done when on_done ran)
            futures: list[asyncio.Future[Any]] = []

            def submit(order: dict[str, Any], **kw: Any) -> asyncio.Future[Any]:
                def on_done(outcome: Any) -> None:
                    seen.append((outcome, futures[index].done() if index < len(futures) else None))

                index = len(futures)
                fut = conn.submit(order, on_done=on_done, **kw)
                futures.append(fut)
                return fut

            # an outcome known at submit (not connected) reaches on_done before submit returns
            early = submit({"symbol": "tBTCUSD"})
            assert [(o.kind, done) for o, done in seen] == [(OutcomeKind.NO_CONNECTION, None)]
            assert early.result() is seen[0][0]
            assert await conn.connect()
            acked = await asyncio.gather(*[submit({"symbol": "tBTCUSD"}) for _ in range(5)])
            fx.order_mode = "reject"
            rejected = await submit({"symbol": "tXXXUSD"})
            fx.order_mode = "hold"
            timed_out = await submit({"symbol": "tBTCUSD"}, timeout=0.05)
            held = submit({"symbol": "tBTCUSD"})
            await until(lambda: len(fx.received[0]) >= 8)
            await fx.conns[0].close(1011, "crash")
            lost = await held
            kinds = [o.kind for o in acked] + [rejected.kind, timed_out.kind, lost.kind]
            assert kinds == [OutcomeKind.ACKNOWLEDGED] * 5 + [
                OutcomeKind.REJECTED,
                OutcomeKind.TIMED_OUT,
                OutcomeKind.CONNECTION_LOST,
            ]
            # each outcome exactly once, the very object its future holds, and before that future was resolved
            assert len(seen) == len(futures) == 9
            assert sorted(o.cid for o, _ in seen) == sorted(f.result().cid for f in futures)
            by_cid = {f.result().cid: f.result() for f in futures}
            assert all(by_cid[o.cid] is o for o, _ in seen)
            assert all(done is False for _, done in seen[1:])
            # a raising on_done is logged; the request still ends, its future still resolves
            await until(lambda: conn.state is S.CONNECTED)
            fx.order_mode = "ack"

            def broken(outcome: Any) -> None:
                raise RuntimeError("bug in the caller")

            with caplog.at_level("ERROR", logger="wsfinal.connection"):
                outcome = await conn.submit({"symbol": "tBTCUSD"}, on_done=broken)
            assert outcome.kind is OutcomeKind.ACKNOWLEDGED
            assert "on_done callback failed" in caplog.text
            conn.ledger.check()
            await conn.disconnect()

    asyncio.run(main())


def test_requests_through_the_writer_task_and_timeouts_in_any_order() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, _, _ = managed(cfg(url), transport=SlowPathTransport())
            assert await conn.connect()
            outcomes = await asyncio.gather(*[conn.submit({"symbol": "tBTCUSD"}) for _ in range(200)])
            assert {o.kind for o in outcomes} == {OutcomeKind.ACKNOWLEDGED}
            assert any(t.get_name().startswith("wsfinal-write-") for t in conn.tasks)
            fx.order_mode = "hold"
            loop = asyncio.get_running_loop()
            slow = conn.submit({"symbol": "tBTCUSD"}, timeout=1.0)
            start = loop.time()
            fast = await conn.request({"symbol": "tBTCUSD"}, timeout=0.05)  # an earlier deadline, submitted later
            assert fast.kind is OutcomeKind.TIMED_OUT and 0.05 <= loop.time() - start < 0.5
            assert not slow.done()
            assert (await slow).kind is OutcomeKind.TIMED_OUT
            conn.ledger.check()
            await conn.disconnect()
            assert no_other_tasks()

    asyncio.run(main())


def test_answered_requests_do_not_pile_up_in_the_timeout_heap() -> None:
    async def main() -> None:
        async with exchange() as (_, url):
            conn, _, _ = managed(cfg(url, message_timeout_seconds=30.0))
            assert await conn.connect()
            for _ in range(6):
                await asyncio.gather(*[conn.submit({"symbol": "tBTCUSD"}) for _ in range(500)])
            assert conn.ledger.in_flight == 0
            assert len(conn._deadlines) <= 1024 + 500  # compacted, not 3000 stale entries
            await conn.disconnect()

    asyncio.run(main())


def test_the_timeout_timer_skips_answered_requests_instead_of_firing_for_each() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, _, _ = managed(cfg(url, message_timeout_seconds=0.3))
            assert await conn.connect()
            fired = 0
            expire = conn._expire

            def counting() -> None:
                nonlocal fired
                fired += 1
                expire()

            conn._expire = counting  # type: ignore[method-assign]
            for _ in range(20):  # answered at once, each with its own deadline in the heap
                assert (await conn.request({"symbol": "tBTCUSD"})).kind is OutcomeKind.ACKNOWLEDGED
                await asyncio.sleep(0.01)
            fx.order_mode = "hold"
            held = conn.submit({"symbol": "tBTCUSD"})
            assert (await held).kind is OutcomeKind.TIMED_OUT  # still ends by its own deadline
            assert fired <= 3  # not once per answered request
            assert conn.ledger.in_flight == 0 and conn._deadlines == []
            conn.ledger.check()
            await conn.disconnect()

    asyncio.run(main())


def test_fake_exchange_over_tls_with_its_ca_file(tmp_path: Any) -> None:
    context, ca_path = make_tls_context(directory=tmp_path)
    node = NodeSpec(id="node-a", service=ServiceSpec("constant", 1, {"value": 0.001}), api_keys={KEY: SECRET})

    async def main() -> None:
        async with ExchangeServer([node], ssl=context, seed=1) as server:
            url = server.urls["node-a"]
            assert url.startswith("wss://")
            nonce = itertools.count(10**6).__next__
            transport = WebsocketsTransport(ca_file=str(ca_path))
            conn, _, _ = managed(cfg(url), transport=transport, api_key=KEY, api_secret=SECRET, nonce=nonce)
            assert await conn.connect()
            assert (await conn.request(ORDER)).kind is OutcomeKind.ACKNOWLEDGED
            await conn.disconnect()
            untrusted, events, _ = managed(cfg(url, max_reconnect_attempts=0), cid="c2")
            assert not await untrusted.connect()  # the system trust store does not know this CA
            await until(lambda: untrusted.state is S.FAILED)
            assert "TLS" in kinds(events, "gave_up")[0].detail["reason"]
            await untrusted.disconnect()

    asyncio.run(main())


def test_a_storm_of_simultaneous_disconnects_is_spread_by_jitter() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            rng = random.Random(11)  # one seeded generator shared by all, as a manager would hand out
            config = cfg(url, reconnect_delay_seconds=0.5, heartbeat_interval_seconds=30)
            conns = [ManagedConnection(config, connection_id=f"s{i}", rng=rng) for i in range(100)]
            planned: list[float] = []
            for c in conns:
                c.add_listener(lambda e: planned.append(e.detail["delay"]) if e.kind == "reconnect_scheduled" else None)
            assert all(await asyncio.gather(*[c.connect() for c in conns]))
            loop = asyncio.get_running_loop()
            dropped = loop.time()
            await asyncio.gather(*[ws.close(1011, "storm") for ws in list(fx.conns)])
            await until(lambda: all(c.state is S.CONNECTED and c.metrics.connects == 2 for c in conns), timeout=10.0)
            # the planned delays: uniform over [0, 0.5], every fifth of the window gets some, none gets most
            assert len(planned) == 100 and all(0.0 <= d <= 0.5 for d in planned)
            buckets = [0] * 5
            for d in planned:
                buckets[min(int(d / 0.1), 4)] += 1
            assert min(buckets) >= 5 and max(buckets) <= 45, buckets
            # and what the exchange saw: the reconnects arrive spread over the window, not in one instant
            # (loose on purpose: on a loaded machine handshakes queue up and bunch arrivals together)
            arrivals = sorted(t - dropped for t in fx.opened_at[100:])
            assert len(arrivals) == 100 and arrivals[-1] - arrivals[0] >= 0.25
            await asyncio.gather(*[c.disconnect() for c in conns])
            assert no_other_tasks()

    asyncio.run(main())


# --- virtual time: the same connection over the in-memory transport -----------------------------------------


def test_virtual_time_blackhole_is_detected_at_the_bound_and_the_run_is_deterministic() -> None:
    from simulator.memory import MemoryNetwork, MemoryTransport
    from simulator.node import ExchangeNode
    from simulator.virtual import run_virtual

    async def main() -> list[tuple[float, str, str]]:
        loop = asyncio.get_running_loop()
        network = MemoryNetwork()
        node_spec = NodeSpec(id="node-v", symbols=("tBTCUSD",), market_update_interval_s=0.1)
        node = ExchangeNode(node_spec, faults=[fault("timeout", at_s=100.0, duration_s=200.0, timeout=0.0)], seed=4)
        network.add("127.0.0.1:7001", node)
        node.start()
        start = loop.time()
        # WebSocket pings get no pong in the blackhole either; a ping timeout longer than the staleness bound
        # leaves the detection to the application-level watchdog, whose exact timing this test measures
        config = cfg(
            "ws://127.0.0.1:7001/ws/2",
            heartbeat_interval_seconds=30.0,
            message_timeout_seconds=100.0,
            reconnect_delay_seconds=1.0,
            max_reconnect_attempts=20,
        )
        conn, events, _ = managed(config, transport=MemoryTransport(network))
        assert await conn.connect()
        conn.subscribe("book", symbol="tBTCUSD", prec="P0", len="25")
        await asyncio.sleep(400.0)  # virtual seconds
        stale = kinds(events, "stale")
        assert stale, "the blackhole was not detected"
        first = stale[0]
        # detected exactly one staleness bound (3 x 30 s) after the last frame, which arrived at most one
        # market tick (0.1 s) before the fault began at 100 s
        assert first.detail["silent_for"] == pytest.approx(90.0, abs=1e-6)
        assert 90.0 - 0.1 - 1e-6 <= first.time - (start + 100.0) <= 90.0 + 1e-6
        assert conn.state is S.CONNECTED and conn.protocol.checksum_mismatches == 0
        verified = conn.protocol.checksums_verified
        await asyncio.sleep(5.0)
        assert conn.protocol.checksums_verified > verified  # the book streams again after the fault
        await conn.disconnect()
        node.stop()
        assert no_other_tasks()
        return [(round(e.time - start, 9), e.kind, str(e.detail.get("new", ""))) for e in events]

    first_run = run_virtual(main())
    assert first_run == run_virtual(main())  # same seeds, same clock: the same history, event for event


def test_ping_rtt_crosses_the_link_and_timeouts_are_censored_samples_in_virtual_time() -> None:
    # The app-level ping travels the exchange session and its link: with 10 ms of injected latency each way its
    # round trip is 20 ms (the WebSocket ping of the in-memory channel answers in 0 s), and with 1 s more each
    # way from t = 10 s, 2020 ms. It is kept apart from request latency. A request that times out is a censored
    # sample of its time to the timeout, for the EWMA (routing) and analytics' record_timeout (alerting) only.
    from simulator.memory import MemoryNetwork, MemoryTransport
    from simulator.node import ExchangeNode
    from simulator.virtual import run_virtual

    async def main() -> None:
        loop = asyncio.get_running_loop()
        network = MemoryNetwork()
        spec = NodeSpec(
            id="node-v",
            service=ServiceSpec("constant", 2, {"value": 0.002}),
            symbols=("tBTCUSD",),
            api_keys={KEY: SECRET},
            market_update_interval_s=0.1,
        )
        faults = [
            fault("latency", at_s=0.0, duration_s=None, latency=0.01, jitter=0.0),
            fault("latency", at_s=10.0, duration_s=None, latency=1.0, jitter=0.0),
        ]
        node = ExchangeNode(spec, faults=faults, seed=4)
        network.add("127.0.0.1:7001", node)
        node.start()
        start = loop.time()
        config = cfg("ws://127.0.0.1:7001/ws/2", heartbeat_interval_seconds=1.0, message_timeout_seconds=0.5)
        conn, _, store = managed(
            config,
            transport=MemoryTransport(network),
            api_key=KEY,
            api_secret=SECRET,
            nonce=itertools.count(1).__next__,
            stale_multiplier=10.0,  # the 3 s without a frame when the link slows down is no staleness
        )
        analytics = Recorder()
        conn.bind(store, analytics)
        assert await conn.connect()
        await asyncio.sleep(3.5)
        record = store.get("c1")
        assert record is not None
        assert conn.metrics.last_ping_latency_ms == pytest.approx(20.0, abs=0.01)
        assert record.ping_rtt_ms == pytest.approx(20.0, abs=0.01)
        assert math.isnan(record.latency_ewma_ms)  # no request yet: pings are no request latency
        pings = [args for name, args in analytics.calls if name == "record_ping"]
        assert len(pings) == 3 and all(a[2] == pytest.approx(20.0, abs=0.01) for a in pings)
        ok = await conn.request(ORDER)
        assert ok.kind is OutcomeKind.ACKNOWLEDGED and ok.latency_ms == pytest.approx(22.0, abs=0.01)
        assert record.latency_ewma_ms == pytest.approx(22.0, abs=0.01)
        await asyncio.sleep(start + 10.5 - loop.time())  # the link is 2 s slower now
        lost = await conn.request(ORDER)
        assert lost.kind is OutcomeKind.TIMED_OUT and lost.latency_ms is None
        assert record.last_latency_ms == pytest.approx(22.0, abs=0.01)  # answered requests only
        assert record.latency_stamp == lost.finished_at and record.latency_ewma_ms > 22.0  # the censored sample
        (timeout,) = [args for name, args in analytics.calls if name == "record_timeout"]
        assert timeout[2] == pytest.approx(500.0) and timeout[3] == lost.finished_at
        assert [args[3] for name, args in analytics.calls if name == "record_answer"] == [ok.latency_ms]
        assert conn.metrics.last_request_latency_ms == pytest.approx(22.0, abs=0.01)
        await asyncio.sleep(4.0)
        assert record.ping_rtt_ms == pytest.approx(2020.0, abs=0.01)  # the pings see the slower link
        assert conn.state is S.CONNECTED
        await conn.disconnect()
        node.stop()

    run_virtual(main())


# --- every fault kind of the exchange: the connection survives and its books balance ------------------------

FAULTS: dict[str, dict[str, Any]] = {
    "latency": {"latency": 0.05, "jitter": 0.01},
    "latency_factor": {"factor": 20.0},
    "bandwidth": {"rate": 20_000.0},
    "slow_close": {"delay": 0.2},
    "timeout": {"timeout": 0.1},
    "reset": {},
    "slicer": {"average_size": 16, "size_variation": 4, "delay": 0.001},
    "limit_data": {"bytes": 2000},
    "node_down": {},
    "close": {"code": 1012, "reason": "restart"},
    "loss": {"rate": 0.3},
    "duplicate": {"rate": 0.3},
    "reorder": {"rate": 0.3, "gap": 2},
    "error_reply": {"code": 10001, "rate": 0.5},
    "malformed": {"rate": 0.2},
    "oversized": {"size": 3000, "rate": 0.2},
    "binary": {"rate": 0.5},
    "info_reconnect": {},
    "maintenance": {},
    "connect_rate_limit": {"max_connects": 1, "window": 0.5},
    "capacity_drop": {"workers": 1},
}
INSTANT = {"reset", "close", "info_reconnect"}
#: Run by default (the ones that break the connection or its data); the rest are marked slow.
CORE_FAULTS = {"reset", "node_down", "connect_rate_limit", "close", "loss", "malformed", "info_reconnect"}


@pytest.mark.parametrize(
    "kind", [k if k in CORE_FAULTS else pytest.param(k, marks=pytest.mark.slow) for k in sorted(FAULTS)]
)
def test_the_connection_survives_every_fault_kind_of_the_exchange(kind: str) -> None:
    async def main() -> None:
        spec = fault(kind, at_s=0.3, duration_s=None if kind in INSTANT else 0.4, **FAULTS[kind])
        async with real_exchange([spec]) as url:
            conn, events, store = real(
                url, message_timeout_seconds=0.5, max_message_size_bytes=2000, max_reconnect_attempts=20
            )
            assert await conn.connect()
            book = conn.subscribe("book", symbol="tBTCUSD", prec="P0", len="25")
            loop = asyncio.get_running_loop()
            futures = []
            end = loop.time() + 1.0
            while loop.time() < end:  # orders throughout, before, during and after the fault
                futures.append(conn.submit(ORDER))
                await asyncio.sleep(0.02)
            await until(lambda: conn.state is S.CONNECTED and book.chan_id is not None, timeout=5.0)
            await asyncio.wait(futures, timeout=2.0)
            assert all(f.done() for f in futures)  # every request ended, one way or another
            conn.ledger.check()
            assert conn.ledger.in_flight == 0
            verified = conn.protocol.checksums_verified
            await until(lambda: conn.protocol.checksums_verified > verified, timeout=3.0)  # the book is sound
            assert (await conn.request(ORDER)).kind is OutcomeKind.ACKNOWLEDGED
            record = store.get("c1")
            assert record is not None and record.outstanding == 0 and record.state is S.CONNECTED
            await conn.disconnect()
            assert conn.tasks == [] and no_other_tasks()

    asyncio.run(main())


# --- the abstract interface ----------------------------------------------------------------------------------


def test_the_interface_is_abstract_and_its_listeners_cannot_break_a_connection() -> None:
    from wsfinal.interface import ConnectionMetrics, WebSocketConnectionInterface

    class Incomplete(WebSocketConnectionInterface):
        async def connect(self) -> bool:
            return True

    with pytest.raises(TypeError):
        Incomplete()  # type: ignore[abstract]

    class Mine(WebSocketConnectionInterface):
        def __init__(self) -> None:  # forgets super().__init__(): listeners still work
            self._config = cfg("ws://127.0.0.1:1/")

        async def connect(self) -> bool:
            self._emit("connected", 1.0, url=self._config.url)
            return True

        async def disconnect(self, reason: str = "manual") -> None:
            return None

        async def send_message(self, message: Any) -> bool:
            return True

        connection_id = property(lambda self: "mine")
        config = property(lambda self: self._config)
        state = property(lambda self: S.CONNECTED)
        metrics = property(lambda self: ConnectionMetrics())

    def broken(event: ConnectionEvent) -> None:
        raise RuntimeError("listener bug")

    seen: list[ConnectionEvent] = []
    conn = Mine()
    conn.add_listener(broken)
    conn.add_listener(seen.append)
    assert asyncio.run(conn.connect())
    assert [(e.kind, e.connection_id, e.detail) for e in seen] == [("connected", "mine", {"url": "ws://127.0.0.1:1/"})]
    conn.remove_listener(seen.append)
    conn.remove_listener(seen.append)  # unknown: ignored
    assert asyncio.run(conn.connect()) and len(seen) == 1
    assert conn.is_connected


class FlakyTransport:
    """The live transport whose channels raise a foreign exception from recv once ``broken`` is set."""

    def __init__(self) -> None:
        self.inner = WebsocketsTransport()
        self.broken = False

    async def connect(self, url: str, config: ConnectionConfig) -> Any:
        channel = await self.inner.connect(url, config)
        outer = self

        class Flaky:
            send = channel.send
            close = channel.close
            ping = channel.ping
            abort = channel.abort
            close_code = property(lambda _: channel.close_code)
            close_reason = property(lambda _: channel.close_reason)

            async def recv(self) -> str | bytes:
                data = await channel.recv()
                if outer.broken:
                    outer.broken = False
                    raise RuntimeError("transport bug")
                return data

        return Flaky()


def test_a_channel_that_raises_a_foreign_error_is_dropped_and_the_connection_recovers() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            transport = FlakyTransport()
            conn, events, _ = managed(cfg(url), transport=transport)
            assert await conn.connect()
            transport.broken = True
            lost = await conn.request({"symbol": "tBTCUSD"})  # the next frame read breaks the channel
            assert lost.kind in (OutcomeKind.CONNECTION_LOST, OutcomeKind.NOT_SENT)
            await until(lambda: conn.state is S.CONNECTED and len(fx.conns) == 2)
            assert "channel failure" in kinds(events, "reconnect_scheduled")[0].detail["reason"]
            assert (await conn.request({"symbol": "tBTCUSD"})).kind is OutcomeKind.ACKNOWLEDGED
            await conn.disconnect()
            assert no_other_tasks()

    asyncio.run(main())


def test_connect_again_after_disconnect_restores_subscriptions_and_close_is_final() -> None:
    async def main() -> None:
        async with exchange() as (fx, url):
            conn, events, store = managed(cfg(url))
            assert await conn.connect()
            assert await conn.connect()  # already connected: nothing happens
            conn.subscribe("ticker", symbol="tBTCUSD")
            await until(lambda: conn.subscriptions.active == 1)
            await conn.disconnect()
            assert conn.subscriptions.active == 0 and len(conn.subscriptions) == 1
            assert await conn.connect()
            await until(lambda: conn.subscriptions.active == 1)
            assert len(fx.conns) == 2 and [m["channel"] for m in fx.subscribes(1)] == ["ticker"]
            await conn.close()
            assert conn.state is S.CLOSED and store.get("c1").state is S.CLOSED  # type: ignore[union-attr]
            with pytest.raises(InvalidTransitionError):
                await conn.connect()
            assert not await conn.send_message({"event": "ping"})
            assert (await conn.request({"symbol": "tBTCUSD"})).kind is OutcomeKind.NO_CONNECTION
            assert no_other_tasks()

    asyncio.run(main())


# --- property: random fault timelines in virtual time never break the request accounting ---------------------


def _virtual_run(faults: list[Any]) -> dict[str, int]:
    from simulator.memory import MemoryNetwork, MemoryTransport
    from simulator.node import ExchangeNode

    async def main() -> dict[str, int]:
        network = MemoryNetwork()
        spec = NodeSpec(
            id="node-p",
            symbols=("tBTCUSD",),
            api_keys={KEY: SECRET},
            market_update_interval_s=0.1,
            service=ServiceSpec("constant", 2, {"value": 0.002}),
        )
        node = ExchangeNode(spec, faults=faults, seed=1)
        network.add("127.0.0.1:7002", node)
        node.start()
        config = cfg(
            "ws://127.0.0.1:7002/ws/2",
            message_timeout_seconds=1.0,
            heartbeat_interval_seconds=1.0,
            reconnect_delay_seconds=0.1,
            max_reconnect_attempts=50,
        )
        conn, _, store = managed(
            config,
            transport=MemoryTransport(network),
            api_key=KEY,
            api_secret=SECRET,
            nonce=itertools.count(1).__next__,
            backoff_cap_s=2.0,
        )
        conn.add_listener(lambda _: conn.ledger.check())  # at every event, not only at the end
        await conn.connect()
        conn.subscribe("book", symbol="tBTCUSD", prec="P0", len="25")
        futures = []
        for _ in range(300):  # 15 virtual seconds of orders, 20 per second
            futures.append(conn.submit(ORDER))
            conn.ledger.check()
            await asyncio.sleep(0.05)
        await asyncio.sleep(12.0)  # every fault is over by now (they end by 15 s + 4 s)
        assert all(f.done() for f in futures)
        conn.ledger.check()
        assert conn.ledger.in_flight == 0 and store.get("c1").outstanding == 0  # type: ignore[union-attr]
        assert conn.state is S.CONNECTED
        verified = conn.protocol.checksums_verified
        await asyncio.sleep(2.0)
        assert conn.protocol.checksums_verified > verified
        assert (await conn.request(ORDER)).kind is OutcomeKind.ACKNOWLEDGED
        await conn.disconnect()
        node.stop()
        return conn.ledger.summary()

    from simulator.virtual import run_virtual

    return run_virtual(main())


_RANDOM_FAULT_KINDS = sorted(FAULTS)


@st.composite
def fault_timelines(draw: st.DrawFn) -> list[Any]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(_RANDOM_FAULT_KINDS))
        params = dict(FAULTS[kind])
        if kind == "close":
            params["code"] = draw(st.sampled_from([1000, 1001, 1006, 1011, 1012, 1013]))
        at = draw(st.floats(0.5, 15.0))
        duration = None if kind in INSTANT else draw(st.floats(0.2, 4.0))
        out.append(fault(kind, at_s=at, duration_s=duration, **params))
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fault_timelines())
def test_random_fault_timelines_keep_the_books_balanced_and_the_connection_recovers(faults: list[Any]) -> None:
    summary = _virtual_run(faults)
    assert summary["submitted"] == summary["finished"] == 301
