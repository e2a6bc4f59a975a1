"""ManagedConnection against the simulator's fake exchange: live over loopback (``simulator.server``, with TLS)
and in virtual time over the in-memory transport (``simulator.node``): books, faults, pings, and a property test of
random fault timelines.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any

import pytest
from _connection_helpers import (
    KEY,
    ORDER,
    SECRET,
    Recorder,
    cfg,
    fault,
    kinds,
    managed,
    no_other_tasks,
    real,
    real_exchange,
    until,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.scenario import NodeSpec, ServiceSpec
from simulator.server import ExchangeServer, make_tls_context
from wsfinal import ConnectionState
from wsfinal.requests import OutcomeKind
from wsfinal.transport import WebsocketsTransport

pytestmark = pytest.mark.live
S = ConnectionState


# --- live, over loopback (simulator.server) -------------------------------------------------------------------------


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


# --- virtual time: the same connection over the in-memory transport -------------------------------------------------


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


# --- every fault kind of the exchange: the connection survives and its books balance --------------------------------

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


# --- property: random fault timelines in virtual time never break the request accounting ----------------------------


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
