"""The live shell: serve exchange nodes over real WebSockets on loopback, one port per node.

Each node (:class:`~simulator.node.ExchangeNode`) runs on the serving loop; this module only moves frames between
``websockets`` connections and the node through :class:`LiveChannel`. Refusals (node down -> HTTP 503, connect
rate limit -> HTTP 429) happen in the opening handshake; client frames larger than the node's limit are closed
with 1009 by ``websockets`` itself (``max_size``). Faults are decided by the node, never here.

Use :class:`ExchangeServer` as an async context manager; its ``urls`` map node ids to ``ws://`` (or ``wss://``)
addresses once started.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from simulator.node import ExchangeNode

__all__ = ["ExchangeServer", "LiveChannel", "frame_bytes", "make_tls_context"]


#: Timer slack of live nodes (see ExchangeNode.timer_slack_s): half of epoll's 1 ms timer granularity.
LIVE_TIMER_SLACK_S = 0.0005


class LiveChannel:
    """:class:`~simulator.node.ServerChannel` over a ``websockets`` server connection.

    Frames are queued and written in order by :meth:`run`, which the handler runs as a task for the life of the
    connection; ``abort`` acts at once.

    Whole frames queued back to back are written in batches: each is serialised with ``websockets``' own
    :class:`~websockets.frames.Frame` (the bytes ``ws.send`` would write for a server connection without
    extensions) and the batch goes to the socket in one write, followed by one wait for flow control. ``ws.send``
    would make one write (one system call) per frame, which costs more than producing a market message. The
    frame bytes of short texts are remembered (:func:`frame_bytes`): the node sends the same text objects to
    every client on a channel. Fragmented frames, closes, connections with extensions (compression), and anything
    while the connection is not open go through ``ws.send`` / ``ws.close``.
    """

    #: At most this many frames per socket write.
    batch_frames = 256

    #: A client that falls this many frames behind is dropped (bounded memory for a consumer that stopped reading).
    max_backlog = 100_000

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        address = ws.remote_address
        self.peer = str(address[0]) if address else "unknown"
        self._queue: deque[Any] = deque()  # str/bytes: one frame; tuple: a command
        self._wake: asyncio.Future[None] | None = None
        self._done = False
        #: Frames written to the socket so far (a fragmented message counts once).
        self.sent = 0

    def _push(self, item: Any) -> None:
        if self._done:
            return
        if len(self._queue) >= self.max_backlog:
            self.abort()
            return
        self._queue.append(item)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def send(self, data: str | bytes) -> None:
        self._push(data)

    def send_fragments(self, parts: Sequence[str | bytes], delay_s: float) -> None:
        self._push(("fragments", tuple(parts), delay_s))

    def close(self, code: int, reason: str = "") -> None:
        self._push(("close", code, reason))
        self._done = True

    def abort(self) -> None:
        self._done = True
        self._queue.clear()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    def pause_reading(self) -> None:
        """Stop reading from the client (its frames and pings wait in the kernel): a half-open link."""
        transport = self.ws.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()

    def resume_reading(self) -> None:
        transport = self.ws.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    @property
    def backlog(self) -> int:
        """Frames queued and not yet written to the socket."""
        return len(self._queue)

    def _write_batch(self) -> None:
        """Frame the whole frames at the head of the queue and write them to the socket at once."""
        queue = self._queue
        chunks: list[bytes] = []
        n = 0
        while queue and n < self.batch_frames:
            item = queue[0]
            if type(item) is not str and type(item) is not bytes:
                break
            chunks.append(frame_bytes(item))
            queue.popleft()
            n += 1
        self.ws.transport.write(b"".join(chunks))
        self.sent += n

    def _can_batch(self) -> bool:
        item = self._queue[0]
        if type(item) is not str and type(item) is not bytes:
            return False
        protocol = self.ws.protocol
        return (
            protocol.state is State.OPEN
            and not protocol.expect_continuation_frame
            and not protocol.extensions
            and not self.ws.transport.is_closing()
        )

    async def run(self) -> None:
        """Write queued frames until the connection closes (or :meth:`close`/:meth:`abort`)."""
        ws = self.ws
        queue = self._queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                while queue:
                    if self._can_batch():
                        self._write_batch()
                        await ws.drain()  # flow control: waits only while the socket's buffer is over its limit
                        continue
                    item = queue.popleft()
                    if type(item) is not tuple:
                        await ws.send(item)
                    elif item[0] == "fragments":
                        await ws.send(_paced(item[1], item[2]))
                    else:
                        await ws.close(item[1], item[2])
                        return
                    self.sent += 1
                if self._done:
                    return
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
        except (ConnectionClosed, OSError):  # OSError: drain() after the connection was lost with an error
            pass


_FRAMES: dict[str | bytes, bytes] = {}
_FRAMES_MAX = 4096  # entries; only short payloads are kept
_FRAMES_MAX_PAYLOAD = 1024


def frame_bytes(data: str | bytes) -> bytes:
    """The wire bytes of one unfragmented server frame (text for ``str``, binary for ``bytes``), no extensions.

    Short payloads are remembered (bounded): market frames go out to many clients with the same text.
    """
    wire = _FRAMES.get(data)
    if wire is None:
        if isinstance(data, str):
            wire = Frame(Opcode.TEXT, data.encode()).serialize(mask=False, extensions=[])
        else:
            wire = Frame(Opcode.BINARY, data).serialize(mask=False, extensions=[])
        if len(data) <= _FRAMES_MAX_PAYLOAD:
            if len(_FRAMES) >= _FRAMES_MAX:
                _FRAMES.clear()
            _FRAMES[data] = wire
    return wire


async def _paced(parts: Sequence[str | bytes], delay_s: float) -> AsyncIterator[str | bytes]:
    for i, part in enumerate(parts):
        if i and delay_s > 0:
            await asyncio.sleep(delay_s)
        yield part


def make_tls_context(
    cert: str | Path | None = None, key: str | Path | None = None, *, directory: str | Path | None = None
) -> tuple[ssl.SSLContext, Path | None]:
    """A server TLS context: from ``cert``/``key`` files, else a self-signed one for 127.0.0.1 and localhost.

    The self-signed case writes the CA certificate (PEM) under ``directory`` (a new temporary directory if
    None) and returns its path: clients must trust that file. Returns ``(context, ca_path or None)``.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
        return ctx, None
    import trustme  # only needed for the self-signed case

    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="wsfinal-tls-"))
    ca_path = folder / "wsfinal-exchange-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return ctx, ca_path


class ExchangeServer:
    """Serve exchange nodes live. ``nodes`` are NodeSpecs; ``faults`` and ``seed`` as in a scenario.

    ``port`` overrides the nodes' ports: node *i* gets ``port + i`` (0 = let the OS choose each).
    ``ssl`` serves ``wss://``. Start with ``async with`` (or :meth:`start` / :meth:`stop`).
    """

    def __init__(
        self,
        nodes: Sequence[Any],
        *,
        faults: Sequence[Any] = (),
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int | None = None,
        ssl: ssl.SSLContext | None = None,
        base_dir: str | Path | None = None,
        market_update_interval_s: float | None = None,
    ) -> None:
        self.specs = tuple(nodes)
        self.host = host
        self.port = port
        self.ssl = ssl
        self.nodes = {
            spec.id: ExchangeNode(
                spec,
                faults=faults,
                seed=seed,
                base_dir=base_dir,
                market_update_interval_s=market_update_interval_s,
            )
            for spec in self.specs
        }
        for node in self.nodes.values():
            node.timer_slack_s = LIVE_TIMER_SLACK_S
        self.urls: dict[str, str] = {}
        #: The open connections' channels (for backlog and byte counts).
        self.channels: set[LiveChannel] = set()
        self._servers: list[Server] = []

    @classmethod
    def from_scenario(cls, scenario: Any, **kwargs: Any) -> ExchangeServer:
        """Serve ``scenario``'s nodes and fault timeline (``seed`` in kwargs overrides the scenario's)."""
        kwargs.setdefault("seed", scenario.seed)
        source = getattr(scenario, "source", "")
        if source and not source.startswith("<"):
            kwargs.setdefault("base_dir", Path(source).parent)
        return cls(scenario.nodes, faults=scenario.faults, **kwargs)

    async def start(self) -> dict[str, str]:
        """Bind every node, start their timelines; returns node id -> URL."""
        scheme = "wss" if self.ssl is not None else "ws"
        for i, spec in enumerate(self.specs):
            node = self.nodes[spec.id]
            port = spec.port if self.port is None else (self.port + i if self.port else 0)
            server = await serve(
                self._handler(node),
                self.host,
                port,
                process_request=self._gate(node),
                max_size=int(getattr(spec, "max_frame_bytes", 1 << 20)),
                compression=None,
                ping_interval=None,
                ssl=self.ssl,
            )
            self._servers.append(server)
            bound = server.sockets[0].getsockname()[1]
            self.urls[spec.id] = f"{scheme}://{self.host}:{bound}"
            node.start()
        return dict(self.urls)

    async def stop(self) -> None:
        """Stop the nodes (aborting their connections) and close the listening sockets."""
        for node in self.nodes.values():
            node.stop()
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> ExchangeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @staticmethod
    def _gate(node: ExchangeNode) -> Any:
        def process_request(connection: ServerConnection, request: Request) -> Response | None:
            address = connection.remote_address
            refusal = node.refuse(str(address[0]) if address else "unknown")
            if refusal is None:
                return None
            status, reason = refusal
            return connection.respond(HTTPStatus(status), reason + "\n")

        return process_request

    @property
    def backlog(self) -> int:
        """Frames queued in the channels and in the nodes' delay queues, not yet written."""
        return sum(c.backlog for c in self.channels) + sum(n.backlog for n in self.nodes.values())

    def _handler(self, node: ExchangeNode) -> Any:
        channels = self.channels

        async def handler(ws: ServerConnection) -> None:
            channel = LiveChannel(ws)
            channels.add(channel)
            writer = asyncio.create_task(channel.run())
            conn = node.connect(channel)
            try:
                async for message in ws:
                    conn.receive(message)
            except ConnectionClosed:
                pass
            finally:
                channels.discard(channel)
                conn.closed()
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer

        return handler
