"""The in-memory transport: wsfinal's :class:`~wsfinal.transport.Transport` seam with no sockets.

A :class:`MemoryNetwork` maps ``host:port`` endpoints to exchange nodes (:class:`~simulator.node.ExchangeNode`).
:class:`MemoryTransport` dials a URL on it and returns a :class:`MemoryChannel` (the client's end); the node gets
a :class:`_ServerEnd` (its :class:`~simulator.node.ServerChannel`). Deliveries are scheduled on the running loop
(``call_soon`` for frames, ``call_at`` for fragment delays), so on a :class:`~simulator.virtual.VirtualTimeLoop`
a whole exchange session runs in virtual time. Network latency and faults are the node's business, exactly as
in live mode; this module only carries whole messages, in order, like a loopback TCP connection.

This is the pair harness of STYLE.md habit 6: what one end sent is what the other end receives.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from wsfinal.config import ConnectionConfig
from wsfinal.exceptions import ConnectionLost, ConnectTimeout, TransportError
from wsfinal.transport import HandshakeRefused, TransportClosed

if TYPE_CHECKING:
    from simulator.node import ExchangeNode, NodeConnection

ABNORMAL_CLOSURE = 1006


def endpoint_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    return f"{parts.hostname}:{port}"


class MemoryNetwork:
    """Which node answers at which ``host:port``. One network per run."""

    def __init__(self) -> None:
        self._nodes: dict[str, ExchangeNode] = {}
        self._peers = itertools.count(1)
        self.channels: list[MemoryChannel] = []

    def add(self, endpoint: str, node: ExchangeNode) -> str:
        """Serve ``node`` at ``endpoint`` (``host:port``); returns the ws:// URL clients dial."""
        self._nodes[endpoint] = node
        return f"ws://{endpoint}/ws/2"

    def node_at(self, url: str) -> ExchangeNode | None:
        return self._nodes.get(endpoint_of(url))

    def open_channels(self) -> int:
        return sum(1 for c in self.channels if c.close_code is None)


class MemoryTransport:
    """Dials nodes of a :class:`MemoryNetwork`. ``peer`` names this client for connection rate limiting."""

    def __init__(self, network: MemoryNetwork, *, peer: str = "127.0.0.1") -> None:
        self.network = network
        self.peer = peer

    async def connect(self, url: str, config: ConnectionConfig) -> MemoryChannel:
        node = self.network.node_at(url)
        if node is None:
            raise TransportError(f"could not connect ({url}): nothing listens at {endpoint_of(url)}")
        refusal = node.refuse(self.peer)
        if refusal is not None:
            status, text = refusal
            raise HandshakeRefused(f"handshake refused with HTTP {status} ({url}): {text}", status=status)
        loop = asyncio.get_running_loop()
        channel = MemoryChannel(loop, url, max_size=config.max_message_size_bytes)
        server = _ServerEnd(channel, self.peer)
        channel._server = server
        server.node_conn = node.connect(server)
        # Frames go straight to the node's connection (what _ServerEnd.receive does, one call less per frame):
        # its own open flag turns False whenever the server end closes (see _ServerEnd._released).
        channel._receive = server.node_conn.receive
        # ... and run in the context of the connection's opening, as asyncio's socket transports call
        # data_received (their reader handle's context is copied once, when the connection is made): no context
        # copy per frame.
        channel._server_context = contextvars.copy_context()
        self.network.channels.append(channel)
        if channel.close_code is not None and not channel._inbox:
            raise ConnectTimeout(f"connection closed during the opening handshake ({url})")
        return channel


class MemoryChannel:
    """The client's end: a :class:`~wsfinal.transport.Channel` over in-memory queues."""

    def __init__(self, loop: asyncio.AbstractEventLoop, url: str, *, max_size: int | None = None) -> None:
        self._loop = loop
        self.url = url
        self.max_size = max_size
        self._inbox: deque[str | bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._server: _ServerEnd | None = None
        #: Where a sent frame goes (the server end's connection's receive), set once connected.
        self._receive: Callable[[str | bytes], None] | None = None
        #: The context the server end's receive runs in (set once connected; None: a copy per frame).
        self._server_context: contextvars.Context | None = None
        self._close_code: int | None = None
        self._close_reason: str | None = None
        self._ping_waiters: list[asyncio.Future[None]] = []
        self.bytes_sent = 0
        self.bytes_received = 0
        #: Push mode (see push_to): where messages and the close go instead of recv().
        self._push: tuple[Callable[[str | bytes], None], Callable[[ConnectionLost], None]] | None = None
        self._drain_scheduled = False
        self._lost_reported = False
        #: The loop handle of the last _drain (see _schedule_drain), and the loop's call_soon_again if it has one.
        self._drain_handle: asyncio.Handle | None = None
        self._call_soon_again: Callable[[asyncio.Handle], None] | None = getattr(loop, "call_soon_again", None)

    # -- delivery from the server end ---------------------------------------------------------------------

    def _deliver(self, data: str | bytes) -> bool:
        """Take one frame from the server end (dropped once closed); False if it was too big (then closed)."""
        if self._close_code is not None:
            return True
        size = len(data)
        if self.max_size is not None and size > self.max_size:
            # What websockets does with a frame over max_size: close with 1009, message too big.
            self._closed_by_peer(1009, "message too big", notify_server=True)
            return False
        self._inbox.append(data)
        self.bytes_received += size
        self._wake()
        return True

    def _deliver_pair(self, first: str | bytes, second: str | bytes) -> bool:
        """``_deliver(first)`` then ``_deliver(second)`` with one wake-up (the second one's does nothing: the
        first scheduled the drain or woke the reader). False if ``first`` closed the channel (too big): then
        ``second`` was not delivered and the server end is closed."""
        if self._close_code is not None:
            return True  # both dropped, as _deliver() drops them
        size, size_second = len(first), len(second)
        max_size = self.max_size
        if max_size is not None and (size > max_size or size_second > max_size):  # rare: one at a time
            if not self._deliver(first):
                return False
            self._deliver(second)
            return True
        inbox = self._inbox
        inbox.append(first)
        inbox.append(second)
        self.bytes_received += size + size_second
        if self._push is not None:  # _wake() in push mode, inlined (the channel is open: no pings to release)
            if not self._drain_scheduled:  # _schedule_drain(), inline too: this runs once per order answered
                self._drain_scheduled = True
                handle = self._drain_handle
                again = self._call_soon_again
                if handle is None or again is None:
                    self._drain_handle = self._loop.call_soon(self._drain)
                else:
                    again(handle)
        else:
            self._wake()
        return True

    def _closed_by_peer(self, code: int, reason: str, *, notify_server: bool = False) -> None:
        if self._close_code is not None:
            return
        self._close_code = code
        self._close_reason = reason
        self._wake()
        if notify_server and self._server is not None:
            self._server.peer_closed()

    def _wake(self) -> None:
        if self._push is not None:
            # one loop callback drains what arrived, exactly where a reader task's wake-up would have run
            if not self._drain_scheduled:
                self._schedule_drain()
        else:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if self._close_code is not None:
            self._release_pings()

    def _schedule_drain(self) -> None:
        """``call_soon(self._drain)``; on a loop with ``call_soon_again`` (the virtual loop), the handle of the
        previous drain goes back in the ready queue instead of a new one: at most one drain is pending at a time
        (``_drain_scheduled``), and this runs about once per simulated request."""
        self._drain_scheduled = True
        handle = self._drain_handle
        again = self._call_soon_again
        if handle is None or again is None:
            self._drain_handle = self._loop.call_soon(self._drain)
        else:
            again(handle)

    def _drain(self) -> None:
        self._drain_scheduled = False
        push = self._push
        if push is None:
            return
        on_message, on_lost = push
        inbox = self._inbox
        while inbox:
            on_message(inbox.popleft())
        if self._close_code is not None and not self._lost_reported:
            self._lost_reported = True
            on_lost(self._lost())

    def _release_pings(self) -> None:
        waiters, self._ping_waiters = self._ping_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- Channel ------------------------------------------------------------------------------------------

    async def send(self, data: str | bytes) -> None:
        if self._close_code is not None:
            raise self._lost()
        server = self._server
        assert server is not None
        self.bytes_sent += len(data)
        self._loop.call_soon(self._receive or server.receive, data, context=self._server_context)

    def send_nowait(self, data: str | bytes) -> bool:
        """:meth:`send` without a task switch (sending never waits here); ``False`` once closed (then
        :meth:`send` raises the loss)."""
        receive = self._receive
        if receive is None:
            server = self._server
            if server is None:
                return False
            receive = server.receive
        if self._close_code is not None:
            return False
        self.bytes_sent += len(data)
        self._loop.call_soon(receive, data, context=self._server_context)
        return True

    def push_to(self, on_message: Callable[[str | bytes], None], on_lost: Callable[[ConnectionLost], None]) -> bool:
        """Deliver by push from now on: ``on_message(data)`` for each message, in order, then ``on_lost(exc)``
        once after the last one when the channel closes (the :class:`~wsfinal.exceptions.ConnectionLost` that
        :meth:`recv` would have raised). Calls come from loop callbacks, never from inside this method or
        :meth:`send`. Do not call :meth:`recv` afterwards."""
        self._push = (on_message, on_lost)
        if self._inbox or self._close_code is not None:
            self._wake()
        return True

    async def recv(self) -> str | bytes:
        while not self._inbox:
            if self._close_code is not None:
                raise self._lost()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._inbox.popleft()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._close_code is not None:
            return
        self._close_code = code
        self._close_reason = reason
        self._wake()
        if self._server is not None:
            self._loop.call_soon(self._server.peer_closed)

    async def ping(self) -> float:
        """A protocol-level ping: answered at once (0 s of loop time), unless the node stopped reading from this
        client (a ``timeout`` fault on the up direction, i.e. a half-open link): then, as over TCP, the pong only
        comes once reading resumes, and the caller's timeout decides."""
        if self._close_code is not None:
            raise self._lost()
        start = self._loop.time()
        server = self._server
        if server is not None and server.reading_paused:
            fut: asyncio.Future[None] = self._loop.create_future()
            self._ping_waiters.append(fut)
            await fut
            if self._close_code is not None:
                raise self._lost()
        else:
            await asyncio.sleep(0)
        return self._loop.time() - start

    def abort(self) -> None:
        """Drop the connection with no close frame (as if the client process died)."""
        if self._close_code is None:
            self._closed_by_peer(ABNORMAL_CLOSURE, "", notify_server=True)

    @property
    def close_code(self) -> int | None:
        return self._close_code

    @property
    def close_reason(self) -> str | None:
        return self._close_reason

    def _lost(self) -> TransportClosed:
        code = self._close_code if self._close_code is not None else ABNORMAL_CLOSURE
        reason = self._close_reason or ""
        return TransportClosed(
            f"connection closed ({self.url}): code {code} {reason}".rstrip(), code=code, reason=reason
        )


class _ServerEnd:
    """The node's end of a :class:`MemoryChannel`: implements :class:`simulator.node.ServerChannel`."""

    def __init__(self, client: MemoryChannel, peer: str) -> None:
        self.client = client
        self.peer = peer
        self.node_conn: NodeConnection | None = None
        self._open = True
        self.reading_paused = False
        # send_pair (below) is the client's _deliver_pair itself, one Python frame less per order answered: once
        # this end is closed (close, abort, peer_closed) the client's close code is set, and _deliver_pair then
        # drops both frames and returns True, exactly what the method does when this end is closed.
        self.send_pair: Callable[[str | bytes, str | bytes], bool] = client._deliver_pair

    def pause_reading(self) -> None:
        """The node stopped reading this client (half-open link): pings go unanswered until it resumes."""
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False
        self.client._release_pings()

    def receive(self, data: str | bytes) -> None:
        if self._open and self.node_conn is not None:
            self.node_conn.receive(data)

    def send(self, data: str | bytes) -> None:
        if self._open:
            self.client._deliver(data)

    def _send_pair(self, first: str | bytes, second: str | bytes) -> bool:
        """What :attr:`send_pair` does (see ``__init__``): ``send(first)`` then ``send(second)`` in one call; False
        if ``first`` closed the connection (then ``second`` was not sent)."""
        if self._open:
            return self.client._deliver_pair(first, second)
        return True

    def send_fragments(self, parts: Sequence[str | bytes], delay_s: float) -> None:
        """The client sees the reassembled message once its last fragment has arrived."""
        if not self._open or not parts:
            return
        first = parts[0]
        whole: Any = b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)
        if isinstance(first, str):
            whole = whole.decode("utf-8", errors="replace")
        loop = self.client._loop
        loop.call_at(loop.time() + delay_s * (len(parts) - 1), self.send, whole)

    def close(self, code: int, reason: str = "") -> None:
        if not self._open:
            return
        self._open = False
        self.client._closed_by_peer(code, reason)
        self._released()

    def abort(self) -> None:
        if not self._open:
            return
        self._open = False
        self.client._closed_by_peer(ABNORMAL_CLOSURE, "")
        self._released()

    def peer_closed(self) -> None:
        """The client closed or vanished: tell the node once."""
        if not self._open:
            return
        self._open = False
        self._released()

    def _released(self) -> None:
        conn = self.node_conn
        if conn is not None:
            conn.closed()
