"""ManagedConnection, live on 127.0.0.1: reconnects, close codes, liveness, bad frames, reporting, no stray tasks.

Most tests use :class:`~_connection_helpers.FakeExchange`, a small Bitfinex-like server whose every reaction the
test controls (silence, close codes, held or rejected orders, raw frames). The request path is tested in
test_connection_requests.py, the connection against the simulator's exchange in test_connection_exchange.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from typing import Any

import pytest
from _connection_helpers import Recorder, cfg, exchange, kinds, managed, no_other_tasks, states, until

from wsfinal import ConnectionConfig, ConnectionState, ConnectionType, InvalidTransitionError
from wsfinal.connection import ManagedConnection
from wsfinal.requests import OutcomeKind
from wsfinal.store import InMemoryConnectionStore
from wsfinal.transport import WebsocketsTransport

pytestmark = pytest.mark.live
S = ConnectionState


# --- reconnection and close codes -----------------------------------------------------------------------------------


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


# --- liveness -------------------------------------------------------------------------------------------------------


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


# --- bad frames -----------------------------------------------------------------------------------------------------


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


# --- reporting and task hygiene -------------------------------------------------------------------------------------


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
