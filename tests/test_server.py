"""The live exchange over loopback, observed with a raw ``websockets`` client: protocol basics, robustness, and
the effect of every fault kind (short windows so each test stays well under a second or two)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from simulator.faults import Fault
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.server import LIVE_TIMER_SLACK_S, ExchangeServer, make_tls_context

pytestmark = pytest.mark.live

KEY, SECRET = "demo-key", "demo-secret"
#: Live nodes send a frame up to LIVE_TIMER_SLACK_S before its modelled time, in each direction: lower bounds on
#: measured delays allow for that.
EARLY = 2 * LIVE_TIMER_SLACK_S


def spec(**kw: Any) -> NodeSpec:
    base: dict[str, Any] = {
        "id": "node-a",
        "service": ServiceSpec("constant", 2, {"value": 0.005}),
        "queue_limit": 100,
        "symbols": ("tBTCUSD",),
        "api_keys": {KEY: SECRET},
        "market_update_interval_s": 0.02,
    }
    base.update(kw)
    return NodeSpec(**base)


@contextlib.asynccontextmanager
async def serving(faults: Sequence[Fault] = (), **kw: Any) -> AsyncIterator[ExchangeServer]:
    server = ExchangeServer([spec(**kw)], faults=faults, seed=1)
    async with server:
        yield server


def url(server: ExchangeServer) -> str:
    return server.urls["node-a"]


def client(server: ExchangeServer, **kw: Any) -> Any:
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", 2)
    kw.setdefault("close_timeout", 1)
    return connect(url(server), **kw)


async def recv(ws: ClientConnection, timeout: float = 1.0) -> Any:
    data = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(data)


async def recv_until(ws: ClientConnection, pred: Any, timeout: float = 1.5) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            m = json.loads(await ws.recv())
            if pred(m):
                return m


async def drain(ws: ClientConnection, seconds: float) -> list[str | bytes]:
    out: list[str | bytes] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                out.append(await ws.recv())
    return out


def is_event(name: str) -> Any:
    return lambda m: isinstance(m, dict) and m.get("event") == name


def is_order_reply(m: Any) -> bool:
    return isinstance(m, list) and m[:2] == [0, "n"] and m[2][1] == "on-req"


async def authenticate(ws: ClientConnection) -> None:
    payload = "AUTH1"
    sig = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha384).hexdigest()
    await ws.send(json.dumps({"event": "auth", "apiKey": KEY, "authNonce": 1, "authPayload": payload, "authSig": sig}))
    reply = await recv_until(ws, is_event("auth"))
    assert reply["status"] == "OK"


async def order(ws: ClientConnection, cid: int) -> None:
    body = {"cid": cid, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "price": "30000"}
    await ws.send(json.dumps([0, "on", None, body]))


async def ping_rtt(ws: ClientConnection, cid: int = 1) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await ws.send(json.dumps({"event": "ping", "cid": cid}))
    await recv_until(ws, lambda m: is_event("pong")(m) and m["cid"] == cid)
    return loop.time() - t0


async def close_code(ws: ClientConnection, timeout: float = 2.0) -> int | None:
    """Read until the connection closes; the close code received (None: no close frame, i.e. 1006)."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    assert ws.close_code is not None
    rcvd = ws.protocol.close_rcvd
    return rcvd.code if rcvd is not None else None


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


# -- protocol basics and robustness -------------------------------------------------------------------------------


def test_info_ping_subscribe_and_order() -> None:
    async def main() -> None:
        async with serving() as server, client(server) as ws:
            info = await recv(ws)
            assert info["event"] == "info" and info["version"] == 2 and info["platform"]["status"] == 1
            assert await ping_rtt(ws) < 0.5
            await ws.send(json.dumps({"event": "subscribe", "channel": "ticker", "symbol": "tBTCUSD"}))
            sub = await recv_until(ws, is_event("subscribed"))
            data = await recv_until(ws, lambda m: isinstance(m, list) and m[0] == sub["chanId"])
            assert len(data[1]) == 10  # a ticker array
            await authenticate(ws)
            await order(ws, 42)
            reply = await recv_until(ws, is_order_reply)
            assert reply[2][6] == "SUCCESS" and reply[2][4][2] == 42

    run(main())


def test_malformed_frames_get_error_events_and_the_server_survives() -> None:
    async def main() -> None:
        async with serving() as server, client(server) as ws:
            await recv(ws)
            for junk in [
                "{",
                "[1,2",
                "null",
                '{"event":"nope"}',
                '{"event":"subscribe"}',
                "\udcff".encode("utf-8", "surrogatepass")[:1],
            ]:
                await ws.send(junk)
            errors = [await recv_until(ws, is_event("error")) for _ in range(5)]
            assert all("code" in e for e in errors)
            assert await ping_rtt(ws) < 0.5
            async with client(server) as ws2:  # and still serves others
                assert (await recv(ws2))["event"] == "info"

    run(main())


def test_client_frame_over_the_limit_closed_with_1009() -> None:
    async def main() -> None:
        async with serving(max_frame_bytes=1000) as server, client(server) as ws:
            await recv(ws)
            await ws.send("x" * 2000)
            assert await close_code(ws) == 1009

    run(main())


def test_vanishing_client_leaves_no_task_behind() -> None:
    async def main() -> None:
        async with serving(service=ServiceSpec("constant", 1, {"value": 0.2})) as server:
            node = server.nodes["node-a"]
            await asyncio.sleep(0.05)
            baseline = len(asyncio.all_tasks())
            ws = await client(server)
            await recv(ws)
            await authenticate(ws)
            for cid in range(20):
                await order(ws, cid)
            await asyncio.sleep(0.05)
            assert node.connections
            ws.transport.abort()  # vanish mid-request, no close frame
            await ws.wait_closed()
            for _ in range(100):
                if not node.connections and len(asyncio.all_tasks()) <= baseline:
                    break
                await asyncio.sleep(0.02)
            assert not node.connections
            assert len(asyncio.all_tasks()) <= baseline
            # the node keeps serving
            async with client(server) as ws2:
                assert (await recv(ws2))["event"] == "info"

    run(main())


def test_tls_self_signed(tmp_path: Any) -> None:
    async def main() -> None:
        context, ca_path = make_tls_context(directory=tmp_path)
        assert ca_path is not None and ca_path.exists()
        server = ExchangeServer([spec()], ssl=context)
        async with server:
            assert url(server).startswith("wss://127.0.0.1:")
            trust = ssl.create_default_context(cafile=str(ca_path))
            async with connect(url(server), ssl=trust, open_timeout=2) as ws:
                assert (await recv(ws))["event"] == "info"

    run(main())


# -- every fault kind, observed from the client ---------------------------------------------------------------


def test_latency_fault() -> None:
    async def main() -> None:
        faults = [Fault("latency", at_s=0, duration_s=5, direction="down", params={"latency": 0.15})]
        async with serving(faults) as server, client(server) as ws:
            await recv(ws)
            assert await ping_rtt(ws) >= 0.15 - EARLY

    run(main())


def test_latency_factor_multiplies_network_latency() -> None:
    async def main() -> tuple[float, float]:
        async with serving(network_latency_s=0.01) as server, client(server) as ws:
            await recv(ws)
            plain = await ping_rtt(ws)
        faults = [Fault("latency_factor", at_s=0, duration_s=5, params={"factor": 10.0})]
        async with serving(faults, network_latency_s=0.01) as server, client(server) as ws:
            await recv(ws)
            slow = await ping_rtt(ws)
        return plain, slow

    plain, slow = run(main())
    assert plain >= 0.02 - EARLY and slow >= 0.2 - EARLY


def test_bandwidth_limit_paces_frames() -> None:
    async def main() -> float:
        faults = [Fault("bandwidth", at_s=0, duration_s=5, direction="down", params={"rate": 1000.0})]
        async with serving(faults) as server, client(server) as ws:
            await recv(ws)
            await asyncio.sleep(0.2)
            t0 = asyncio.get_running_loop().time()
            for cid in range(10):
                await ws.send(json.dumps({"event": "ping", "cid": cid}))
            await recv_until(ws, lambda m: is_event("pong")(m) and m["cid"] == 9)
            return asyncio.get_running_loop().time() - t0

    assert run(main()) >= 0.25  # ten ~35-byte pongs at 1000 B/s


def test_slow_close_delays_a_close_with_code() -> None:
    async def main() -> tuple[int | None, float]:
        faults = [
            Fault("slow_close", at_s=0, duration_s=5, params={"delay": 0.3}),
            Fault("close", at_s=0.1, params={"code": 1012, "reason": "restart"}),
        ]
        async with serving(faults) as server, client(server) as ws:
            loop = asyncio.get_running_loop()
            code = await close_code(ws)
            return code, loop.time() - server.nodes["node-a"].origin

    code, when = run(main())
    assert code == 1012 and when >= 0.4 - EARLY


@pytest.mark.parametrize("code", [1001, 1011, 1012, 1013, 1006])
def test_close_with_chosen_code(code: int) -> None:
    async def main() -> int | None:
        async with serving([Fault("close", at_s=0.05, params={"code": code})]) as server, client(server) as ws:
            return await close_code(ws)

    assert run(main()) == (None if code == 1006 else code)


def test_timeout_stalls_then_drops() -> None:
    async def main() -> tuple[list[Any], int | None]:
        faults = [Fault("timeout", at_s=0.1, duration_s=5, params={"timeout": 0.3})]
        async with serving(faults) as server, client(server) as ws:
            await recv(ws)
            await asyncio.sleep(0.15)
            await ws.send(json.dumps({"event": "ping", "cid": 1}))
            got = await drain(ws, 0.1)
            return got, await close_code(ws)

    got, code = run(main())
    assert got == [] and code is None


def test_blackhole_keeps_connection_half_open() -> None:
    async def main() -> tuple[list[Any], bool]:
        faults = [Fault("timeout", at_s=0.05, duration_s=5, params={"timeout": 0.0})]
        async with serving(faults) as server, client(server) as ws:
            await recv(ws)
            await asyncio.sleep(0.1)
            await ws.send(json.dumps({"event": "ping", "cid": 1}))
            pong = await ws.ping()  # a protocol ping goes unanswered too
            got = await drain(ws, 0.5)
            assert not pong.done()
            return got, server.nodes["node-a"].connections != set()

    got, still_open = run(main())
    assert got == [] and still_open


def test_blackhole_window_ends_and_the_link_recovers() -> None:
    async def main() -> None:
        faults = [Fault("timeout", at_s=0.05, duration_s=0.3, params={"timeout": 0.0})]
        async with serving(faults) as server, client(server) as ws:
            await recv(ws)
            await asyncio.sleep(0.1)
            pong = await ws.ping()
            await asyncio.sleep(0.1)
            assert not pong.done()
            await asyncio.sleep(0.3)
            await asyncio.wait_for(pong, 1)  # reading resumed at the end of the window
            assert await ping_rtt(ws, 5) < 0.5

    run(main())


def test_reset_aborts_without_close_frame() -> None:
    async def main() -> int | None:
        async with serving([Fault("reset", at_s=0.1)]) as server, client(server) as ws:
            return await close_code(ws)

    assert run(main()) is None


def test_slicer_sends_fragments() -> None:
    async def main() -> list[str | bytes]:
        faults = [Fault("slicer", at_s=0, duration_s=5, params={"average_size": 8, "size_variation": 2, "delay": 0.01})]
        async with serving(faults) as server, client(server) as ws:
            return [frag async for frag in ws.recv_streaming()]

    fragments = run(main())
    assert len(fragments) > 3
    assert json.loads("".join(str(f) for f in fragments))["event"] == "info"


def test_limit_data_drops_after_n_bytes() -> None:
    async def main() -> tuple[int, int | None]:
        faults = [Fault("limit_data", at_s=0, duration_s=5, direction="down", params={"bytes": 300})]
        async with serving(faults) as server, client(server) as ws:
            got = 0
            with contextlib.suppress(ConnectionClosed):
                await ws.recv()
                for cid in range(20):
                    await ws.send(json.dumps({"event": "ping", "cid": cid}))
                async with asyncio.timeout(2):
                    while True:
                        got += len(await ws.recv())
            return got, await close_code(ws)

    got, code = run(main())
    assert got <= 300 and code is None


def test_node_down_drops_refuses_then_recovers() -> None:
    async def main() -> None:
        async with serving([Fault("node_down", at_s=0.1, duration_s=0.4)]) as server:
            async with client(server) as ws:
                assert await close_code(ws) is None
            with pytest.raises(InvalidStatus) as info:
                await client(server)
            assert info.value.response.status_code == 503
            await asyncio.sleep(0.45)
            async with client(server) as ws:
                assert (await recv(ws))["event"] == "info"

    run(main())


def stream_arrays(msgs: list[str | bytes]) -> list[Any]:
    out = []
    for m in msgs:
        v = json.loads(m)
        if isinstance(v, list) and v[0] != 0:
            out.append(v)
    return out


async def subscribed_stream(faults: Sequence[Fault], seconds: float, flags: int = 0) -> list[str | bytes]:
    async with serving(faults) as server, client(server) as ws:
        await recv(ws)
        if flags:
            await ws.send(json.dumps({"event": "conf", "flags": flags}))
        await ws.send(json.dumps({"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"}))
        await ws.send(json.dumps({"event": "subscribe", "channel": "book", "symbol": "tBTCUSD"}))
        return await drain(ws, seconds)


def test_loss_drops_stream_messages() -> None:
    lossless = stream_arrays(run(subscribed_stream([], 0.4)))
    lossy = run(subscribed_stream([Fault("loss", at_s=0, duration_s=5, direction="down", params={"rate": 1.0})], 0.4))
    assert len(lossless) > 10
    assert stream_arrays(lossy) == [] and any(json.loads(m).get("event") == "subscribed" for m in lossy)


def test_duplicate_repeats_stream_messages() -> None:
    msgs = stream_arrays(run(subscribed_stream([Fault("duplicate", at_s=0, duration_s=5, params={"rate": 1.0})], 0.3)))
    assert len(msgs) > 10 and all(msgs[i] == msgs[i + 1] for i in range(0, len(msgs) - 1, 2))


def test_reorder_breaks_sequence_order() -> None:
    faults = [Fault("reorder", at_s=0, duration_s=5, direction="down", params={"rate": 0.3, "gap": 2})]
    msgs = stream_arrays(run(subscribed_stream(faults, 0.4, flags=65536)))  # SEQ_ALL: last element is the seq
    seqs = [m[-1] for m in msgs]
    assert len(seqs) > 10 and seqs != sorted(seqs)


def test_malformed_oversized_binary_frames() -> None:
    async def main(fault: Fault) -> list[str | bytes]:
        async with serving([fault]) as server, client(server, max_size=None) as ws:
            await ws.send(json.dumps({"event": "ping", "cid": 1}))
            return await drain(ws, 0.2)

    bad = run(main(Fault("malformed", at_s=0, duration_s=5, params={"rate": 1.0})))
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad[0])
    big = run(main(Fault("oversized", at_s=0, duration_s=5, params={"rate": 1.0, "size": 200_000})))
    assert all(len(m) == 200_000 for m in big)
    binary = run(main(Fault("binary", at_s=0, duration_s=5, params={"rate": 1.0})))
    assert binary and all(isinstance(m, bytes) for m in binary)
    assert json.loads(binary[0])["event"] == "info"


def test_oversized_frame_trips_a_strict_client() -> None:
    async def main() -> None:
        fault = Fault("oversized", at_s=0, duration_s=5, params={"rate": 1.0, "size": 5000})
        async with serving([fault]) as server, client(server, max_size=1000) as ws:
            with pytest.raises(ConnectionClosedError):
                await ws.recv()
            assert ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1009

    run(main())


def test_error_reply_on_orders() -> None:
    async def main() -> Any:
        fault = Fault("error_reply", at_s=0, duration_s=5, params={"code": 10001, "rate": 1.0})
        async with serving([fault]) as server, client(server) as ws:
            await authenticate(ws)
            await order(ws, 7)
            return await recv_until(ws, is_order_reply)

    reply = run(main())
    assert reply[2][6] == "ERROR" and reply[2][5] == 10001


def test_info_reconnect_and_maintenance() -> None:
    async def main() -> tuple[list[int], Any]:
        faults = [Fault("info_reconnect", at_s=0.05), Fault("maintenance", at_s=0.1, duration_s=0.2)]
        async with serving(faults) as server, client(server) as ws:
            await authenticate(ws)
            codes = [(await recv_until(ws, lambda m: is_event("info")(m) and "code" in m))["code"] for _ in range(2)]
            await order(ws, 1)
            refused = await recv_until(ws, is_order_reply)
            codes.append((await recv_until(ws, lambda m: is_event("info")(m) and "code" in m))["code"])
            return codes, refused

    codes, refused = run(main())
    assert codes == [20051, 20060, 20061]
    assert refused[2][6] == "ERROR"


def test_connect_rate_limit_answers_429() -> None:
    async def main() -> None:
        fault = Fault("connect_rate_limit", at_s=0, duration_s=5, params={"max_connects": 2, "window": 0.3})
        async with serving([fault]) as server, client(server), client(server):
            with pytest.raises(InvalidStatus) as info:
                await client(server)
            assert info.value.response.status_code == 429
            await asyncio.sleep(0.35)
            async with client(server) as ws:
                assert (await recv(ws))["event"] == "info"

    run(main())


def test_capacity_drop_slows_orders() -> None:
    async def main(faults: list[Fault]) -> float:
        async with serving(faults, service=ServiceSpec("constant", 4, {"value": 0.05})) as server, client(server) as ws:
            await authenticate(ws)
            await asyncio.sleep(0.1)
            t0 = asyncio.get_running_loop().time()
            for cid in range(4):
                await order(ws, cid)
            for _ in range(4):
                await recv_until(ws, is_order_reply)
            return asyncio.get_running_loop().time() - t0

    normal = run(main([]))
    dropped = run(main([Fault("capacity_drop", at_s=0.05, duration_s=5, params={"workers": 1})]))
    assert normal < 0.15 and dropped >= 0.2 - EARLY


SCENARIO = """
name: cli-test
description: one node with a latency fault, for the exchange command
seed: 3
duration: 10s
nodes:
  - id: node-x
    port: 0
    service: {distribution: constant, value: 1ms, workers: 1}
    symbols: [tBTCUSD]
clients:
  connections:
    - {type: market_data, node: node-x, count: 1}
  workload: []
faults:
  - {kind: latency, at: 0s, duration: 10s, node: node-x, direction: down, latency: 100ms}
"""


def test_exchange_command_serves_a_scenario(tmp_path: Any) -> None:
    import subprocess
    import sys

    path = tmp_path / "cli.yaml"
    path.write_text(SCENARIO)
    cmd = [sys.executable, "-m", "benchmarks.cli", "exchange", str(path), "--duration", "1.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        node_id, address = line.split(" -> ")
        assert node_id == "node-x" and address.startswith("ws://127.0.0.1:")

        async def main() -> float:
            async with connect(address, ping_interval=None, open_timeout=2) as ws:
                await recv(ws)
                return await ping_rtt(ws)

        assert run(main()) >= 0.1 - EARLY  # the scenario's latency fault applies
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_exchange_command_rejects_a_bad_scenario(tmp_path: Any) -> None:
    from benchmarks.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nnodes: 3\n")
    assert main(["exchange", str(path), "--duration", "0"]) == 2


def test_a_client_that_stops_reading_is_dropped_at_the_backlog_bound() -> None:
    from simulator.server import LiveChannel

    class Transport:
        aborted = False

        def abort(self) -> None:
            self.aborted = True

        def is_closing(self) -> bool:
            return self.aborted

    class StuckConnection:
        remote_address = ("10.0.0.1", 5555)
        transport = Transport()

    channel = LiveChannel(StuckConnection())  # type: ignore[arg-type]
    channel.max_backlog = 3
    for i in range(3):
        channel.send(str(i))
    assert channel.backlog == 3 and not StuckConnection.transport.aborted
    channel.send("one too many")
    assert StuckConnection.transport.aborted and channel.backlog == 0
    channel.send("ignored")
    assert channel.backlog == 0 and channel.peer == "10.0.0.1"


def test_clients_with_different_flags_share_a_stream_but_get_their_own_frames() -> None:
    from simulator.book import checksum_of_levels

    flag_sets = {"plain": 0, "ts": 32768, "cs+ts": 131072 | 32768, "cs+seq": 131072 | 65536}

    async def one(server: ExchangeServer, flags: int) -> list[Any]:
        async with client(server) as ws:
            await recv(ws)
            if flags:
                await ws.send(json.dumps({"event": "conf", "flags": flags}))
            await ws.send(json.dumps({"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "len": "25"}))
            return stream_arrays(await drain(ws, 0.5))

    async def main() -> dict[str, list[Any]]:
        async with serving() as server:
            results = await asyncio.gather(*(one(server, f) for f in flag_sets.values()))
        return dict(zip(flag_sets, results, strict=True))

    streams = run(main())
    for name, msgs in streams.items():
        assert len(msgs) > 20, name
        assert {m[0] for m in msgs} == {msgs[0][0]}  # one channel: the same id for every client
        has_cs = any(m[1] == "cs" for m in msgs)
        assert has_cs == name.startswith("cs"), name
        tails = [m[-1] for m in msgs]
        if name == "plain":
            assert all(len(m) == 2 for m in msgs)
        elif name.endswith("ts"):
            assert all(isinstance(t, int) and t > 1_600_000_000_000 for t in tails)
        else:
            assert tails == list(range(tails[0], tails[0] + len(tails)))
        if has_cs:  # replay the book: every checksum matches the client's copy
            book: dict[float, list[float]] = {}
            checked = 0
            for m in msgs:
                if m[1] == "cs":
                    assert checksum_of_levels(book.values()) == m[2]
                    checked += 1
                    continue
                rows = m[1] if isinstance(m[1][0], list) else [m[1]]
                for price, count, amount in rows:
                    key = price if amount > 0 else -price
                    if count == 0:
                        book.pop(key, None)
                    else:
                        book[key] = [price, count, amount]
            assert checked > 5


@pytest.mark.parametrize("compression", [None, "deflate"])  # deflate: the frames go through ws.send instead
def test_batched_writes_keep_order_mix_text_and_binary_then_close(compression: str | None) -> None:
    from websockets.asyncio.server import serve

    from simulator.server import LiveChannel

    frames: list[str | bytes] = [f"text {i}" if i % 3 else f"bin {i}".encode() for i in range(700)]
    frames[5] = "x" * 70_000  # longer than the remembered frames and than a 16-bit length
    frames[6] = "é" * 200  # 400 bytes of UTF-8: a 16-bit length
    channels: list[LiveChannel] = []

    async def handler(ws: Any) -> None:
        channel = LiveChannel(ws)
        channels.append(channel)
        for frame in frames:  # more than one batch, queued before the writer runs
            channel.send(frame)
        channel.send_fragments(["frag", "ments"], 0.0)
        channel.send("after the fragments")
        channel.close(1001, "bye")
        await channel.run()

    async def main() -> tuple[list[str | bytes], int | None]:
        async with serve(handler, "127.0.0.1", 0, compression=compression) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}", ping_interval=None, max_size=None) as ws:
                got = [m async for m in ws]  # until the close frame
                return got, ws.close_code

    got, code = run(main())
    assert got == [*frames, "fragments", "after the fragments"]
    assert code == 1001 and channels[0].sent == len(frames) + 2 and channels[0].backlog == 0


def test_frame_bytes_are_what_websockets_writes() -> None:
    from websockets.frames import Frame, Opcode

    from simulator.server import frame_bytes

    for text in ["", "[1,[30000,2,0.5]]", "é" * 100, "y" * 70_000]:
        assert frame_bytes(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
        assert frame_bytes(text) == frame_bytes(text)  # remembered or not, the same bytes
    assert frame_bytes(b"\x00\x01") == b"\x82\x02\x00\x01"
    assert frame_bytes("ab") == b"\x81\x02ab"
