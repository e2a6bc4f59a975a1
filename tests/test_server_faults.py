"""The live exchange over loopback with faults: the effect of every fault kind, observed with a raw ``websockets``
client (short windows so each test stays well under a second or two)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from _server_helpers import (
    EARLY,
    authenticate,
    client,
    close_code,
    drain,
    is_event,
    is_order_reply,
    order,
    ping_rtt,
    recv,
    recv_until,
    run,
    serving,
    stream_arrays,
    subscribed_stream,
)
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from simulator.faults import Fault
from simulator.scenario import ServiceSpec

pytestmark = pytest.mark.live


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
