"""The live exchange over loopback (simulator.server), observed with a raw ``websockets`` client: protocol basics,
robustness, slow readers, per-client flags and the frames it writes. The effect of every fault kind is tested in
test_server_faults.py."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import pytest
from _server_helpers import (
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
    spec,
    stream_arrays,
    url,
)
from websockets.asyncio.client import connect

from simulator.scenario import ServiceSpec
from simulator.server import ExchangeServer, make_tls_context

pytestmark = pytest.mark.live


# --- protocol basics and robustness ---------------------------------------------------------------------------------


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


# --- slow readers, flags and the frames written ---------------------------------------------------------------------


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
