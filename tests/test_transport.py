"""The transport seam and its live implementation on websockets, on 127.0.0.1 (ws:// and wss://)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from wsfinal import ConfigurationError, ConnectionConfig, ConnectionLost, ConnectionType, ConnectTimeout, TransportError
from wsfinal.transport import (
    Channel,
    HandshakeRefused,
    TransportClosed,
    WebsocketsTransport,
    translate_error,
)

pytestmark = pytest.mark.live


def config(url: str, **kw: Any) -> ConnectionConfig:
    return ConnectionConfig(url=url, connection_type=ConnectionType.MARKET_DATA, **kw)


@asynccontextmanager
async def server(handler: Callable[[ServerConnection], Awaitable[None]], **kw: Any) -> AsyncIterator[tuple[str, int]]:
    async with serve(handler, "127.0.0.1", 0, ping_interval=None, **kw) as srv:
        port = srv.sockets[0].getsockname()[1]
        yield "127.0.0.1", port


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        if message == "close-1012":
            await ws.close(1012, "restarting")
        elif message == "big":
            await ws.send("x" * 5000)
        else:
            await ws.send(message)


def test_options_come_from_the_connection_config() -> None:
    t = WebsocketsTransport(oversize_tolerance=2.0)
    opts = t.options("ws://127.0.0.1:1/", config("ws://127.0.0.1:1/", max_message_size_bytes=1000))
    assert opts["compression"] == "deflate" and opts["max_size"] == 2000 and opts["open_timeout"] == 10.0
    assert opts["ping_interval"] is None and "ssl" not in opts
    cfg = config("wss://127.0.0.1:1/", enable_compression=False, connection_timeout_seconds=0.5)
    opts = t.options("wss://127.0.0.1:1/", cfg)
    assert opts["compression"] is None and opts["open_timeout"] == 0.5 and opts["ssl"] is True


def test_send_recv_ping_and_a_server_close_with_its_code() -> None:
    async def main() -> None:
        async with server(echo) as (host, port):
            url = f"ws://{host}:{port}/"
            channel = await WebsocketsTransport().connect(url, config(url))
            assert isinstance(channel, Channel)
            await channel.send("hello")
            assert await channel.recv() == "hello"
            await channel.send(b"\x00\x01")
            assert await channel.recv() == b"\x00\x01"
            rtt = await channel.ping()
            assert 0.0 < rtt < 1.0
            assert channel.close_code is None
            await channel.send("close-1012")
            with pytest.raises(ConnectionLost) as info:
                await channel.recv()
            assert info.value.code == 1012 and info.value.reason == "restarting"
            assert isinstance(info.value, TransportClosed)
            assert channel.close_code == 1012
            with pytest.raises(ConnectionLost):
                await channel.send("after close")
            await channel.close()

    asyncio.run(main())


def test_compression_is_negotiated_only_when_enabled() -> None:
    async def main() -> None:
        async with server(echo) as (host, port):
            url = f"ws://{host}:{port}/"
            for enabled in (True, False):
                channel = await WebsocketsTransport().connect(url, config(url, enable_compression=enabled))
                extensions = channel._conn.protocol.extensions
                assert bool(extensions) is enabled
                await channel.close()

    asyncio.run(main())


def test_a_message_over_the_hard_limit_closes_with_1009() -> None:
    async def main() -> None:
        async with server(echo) as (host, port):
            url = f"ws://{host}:{port}/"
            channel = await WebsocketsTransport(oversize_tolerance=2.0).connect(
                url, config(url, max_message_size_bytes=1000)
            )
            await channel.send("big")
            with pytest.raises(ConnectionLost) as info:
                await channel.recv()
            assert info.value.code == 1009
            await channel.close()

    asyncio.run(main())


def test_refused_connect_is_a_transport_error_and_a_silent_server_a_connect_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept TCP, never answer the handshake
        writer.close()

    async def main() -> None:
        srv = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/"
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ConnectTimeout):
            await WebsocketsTransport().connect(url, config(url, connection_timeout_seconds=0.3))
        assert 0.25 <= loop.time() - start < 2.0
        srv.close()
        await srv.wait_closed()
        with pytest.raises(TransportError) as info:
            await WebsocketsTransport().connect(url, config(url))
        assert not isinstance(info.value, ConnectTimeout)

    asyncio.run(main())


def test_handshake_refused_with_http_429_carries_the_status() -> None:
    def refuse(conn: ServerConnection, request: Any) -> Any:
        return conn.respond(HTTPStatus.TOO_MANY_REQUESTS, "slow down\n")

    async def main() -> None:
        async with server(echo, process_request=refuse) as (host, port):
            url = f"ws://{host}:{port}/"
            with pytest.raises(HandshakeRefused) as info:
                await WebsocketsTransport().connect(url, config(url))
            assert info.value.status == 429

    asyncio.run(main())


def test_wss_with_a_ca_file_an_ssl_context_and_an_untrusted_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> None:
        async with server(echo, ssl=server_ctx) as (host, port):
            url = f"wss://{host}:{port}/"
            for transport in (WebsocketsTransport(ca_file=str(ca_file)), WebsocketsTransport(ssl=client_ctx)):
                channel = await transport.connect(url, config(url))
                await channel.send("secure")
                assert await channel.recv() == "secure"
                await channel.close()
            with pytest.raises(TransportError, match="TLS"):
                await WebsocketsTransport().connect(url, config(url))  # system trust store: unknown CA

    asyncio.run(main())


def test_bad_tls_arguments_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="ca_file"):
        WebsocketsTransport(ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError, match="either"):
        WebsocketsTransport(ssl=ssl.create_default_context(), ca_file="x.pem")


def test_errors_are_translated_in_one_place() -> None:
    no_frame = translate_error(ConnectionClosedError(None, None))
    assert isinstance(no_frame, ConnectionLost) and no_frame.code == 1006
    with_frame = translate_error(ConnectionClosedError(Close(1008, "policy"), None))
    assert isinstance(with_frame, ConnectionLost) and (with_frame.code, with_frame.reason) == (1008, "policy")
    assert isinstance(translate_error(TimeoutError(), opening=True), ConnectTimeout)
    assert isinstance(translate_error(ConnectionRefusedError(), opening=True), TransportError)
    assert isinstance(translate_error(ConnectionResetError()), ConnectionLost)
    assert isinstance(translate_error(RuntimeError("odd")), TransportError)
    already = ConnectTimeout("x")
    assert translate_error(already) is already


def test_send_nowait_writes_at_once_and_declines_when_closed() -> None:
    async def main() -> None:
        async with server(echo) as (host, port):
            url = f"ws://{host}:{port}/"
            channel = await WebsocketsTransport().connect(url, config(url))
            assert channel.send_nowait("quick")
            assert channel.send_nowait(b"\x01")
            assert await channel.recv() == "quick"
            assert await channel.recv() == b"\x01"
            await channel.close()
            assert not channel.send_nowait("too late")

    asyncio.run(main())


def test_send_nowait_writes_the_first_frame_at_once_batches_the_rest_and_keeps_order_with_send() -> None:
    async def main() -> None:
        async with server(echo) as (host, port):
            url = f"ws://{host}:{port}/"
            channel = await WebsocketsTransport().connect(url, config(url))
            writes: list[bytes] = []
            transport = channel._conn.transport
            original = transport.write
            transport.write = lambda data: (writes.append(bytes(data)), original(data))[1]  # type: ignore[method-assign]
            for i in range(50):
                assert channel.send_nowait(f"m{i}")
            assert len(writes) == 1  # the first frame went out at once (no added latency)
            await asyncio.sleep(0)  # the flush runs once per loop pass
            assert len(writes) == 2  # the other 49 frames, one write
            assert channel.send_nowait("a")
            await channel.send("b")  # websockets' own write flushes what was queued first
            assert channel.send_nowait("c")
            got = [await channel.recv() for _ in range(53)]
            assert got == [f"m{i}" for i in range(50)] + ["a", "b", "c"]
            await asyncio.sleep(0)
            # a long burst goes out in pieces of about FLUSH_BYTES, so the peer can start before it ends
            writes.clear()
            big = "x" * 1000
            for _ in range(100):
                assert channel.send_nowait(big)
            pieces = len(writes)
            assert 1 + 100_000 // channel.FLUSH_BYTES - 1 <= pieces <= 1 + 100_000 // channel.FLUSH_BYTES + 1
            got = [await channel.recv() for _ in range(100)]
            assert got == [big] * 100
            transport.write = original  # type: ignore[method-assign]
            await channel.close()

    asyncio.run(main())


async def chatty(ws: ServerConnection) -> None:
    """Greets at once (before the client can switch to push), then answers commands."""
    await ws.send("hello-1")
    await ws.send(b"hello-2")
    async for message in ws:
        if message == "fragments":
            await ws.send(["frag", "mented", " text"])  # one message in three frames
            await ws.send([b"\x01", b"\x02"])
        elif message == "close-4001":
            await ws.close(4001, "bye")
        else:
            await ws.send(message)


def test_push_mode_takes_over_waiting_messages_reassembles_fragments_and_reports_the_close() -> None:
    async def main() -> None:
        async with server(chatty) as (host, port):
            url = f"ws://{host}:{port}/"
            channel = await WebsocketsTransport().connect(url, config(url))
            await asyncio.sleep(0.05)  # the greetings are now waiting in websockets' own queue
            got: list[Any] = []
            lost: list[ConnectionLost] = []
            assert channel.push_to(got.append, lost.append)
            assert got == []  # never delivered from inside push_to
            assert channel.send_nowait("fragments")
            assert channel.send_nowait("echo-me")
            for _ in range(200):
                if len(got) >= 5:
                    break
                await asyncio.sleep(0.01)
            assert got == ["hello-1", b"hello-2", "fragmented text", b"\x01\x02", "echo-me"]
            assert channel.send_nowait("close-4001")
            for _ in range(200):
                if lost:
                    break
                await asyncio.sleep(0.01)
            assert len(lost) == 1 and isinstance(lost[0], TransportClosed)
            assert (lost[0].code, lost[0].reason) == (4001, "bye")
            assert channel.close_code == 4001

    asyncio.run(main())


def test_push_mode_is_declined_while_recv_runs_and_by_a_foreign_connection_class() -> None:
    async def main() -> None:
        async with server(chatty) as (host, port):
            url = f"ws://{host}:{port}/"
            channel = await WebsocketsTransport().connect(url, config(url))
            assert await channel.recv() == "hello-1"
            reader = asyncio.ensure_future(channel.recv())
            await asyncio.sleep(0)
            assert await reader == b"hello-2"
            pending = asyncio.ensure_future(channel.recv())
            await asyncio.sleep(0.01)
            assert not channel.push_to(lambda data: None, lambda exc: None)  # a recv() is waiting
            channel.send_nowait("x")
            assert await pending == "x"
            await channel.close()
            from websockets.asyncio.client import ClientConnection

            plain = await WebsocketsTransport(extra={"create_connection": ClientConnection}).connect(url, config(url))
            assert not plain.push_to(lambda data: None, lambda exc: None)
            assert await plain.recv() == "hello-1"
            await plain.close()

    asyncio.run(main())
