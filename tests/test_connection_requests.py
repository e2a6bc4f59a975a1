"""ManagedConnection's request path, live on 127.0.0.1 against a scripted server: outcomes and their accounting,
maintenance, authentication, ``on_done`` callbacks, the writer task and the timeout heap.

The pure core of the request path (wsfinal.traffic) is tested without sockets in test_connection_traffic.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from _connection_helpers import Recorder, cfg, exchange, kinds, managed, no_other_tasks, until

from wsfinal import ConnectionConfig, ConnectionState, ConnectionType
from wsfinal.requests import OutcomeKind
from wsfinal.transport import WebsocketsTransport

pytestmark = pytest.mark.live
S = ConnectionState


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


# --- the writer task and the timeout heap ---------------------------------------------------------------------------


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
