"""The transport seam: something that dials a URL and returns a channel of whole messages.

A :class:`Transport` opens a :class:`Channel`; a channel sends and receives text or binary messages, pings and
closes. :class:`~wsfinal.connection.ManagedConnection` uses nothing else, so it runs unchanged over the live
implementation here (:class:`WebsocketsTransport`, on the ``websockets`` asyncio client) or over an in-memory
transport whose deliveries are scheduled on a virtual-time loop. The seam needs nothing from sockets.

Errors: every ``websockets``, ``ssl`` and ``OSError`` exception is translated into wsfinal's tree in one place,
:func:`translate_error`: a closed connection is :class:`~wsfinal.exceptions.ConnectionLost` carrying the close
code and reason; an open that times out is :class:`~wsfinal.exceptions.ConnectTimeout`; other failures to open
are :class:`~wsfinal.exceptions.TransportError` (with ``status`` set when the server refused the handshake
with an HTTP status, e.g. 429).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.frames import BINARY, CONT, TEXT, Frame
from websockets.protocol import Event, State

from .config import ConnectionConfig
from .exceptions import (
    ConfigurationError,
    ConnectionLost,
    ConnectTimeout,
    TransportError,
    WsFinalError,
)

#: Close code websockets reports when the connection dropped without a close frame (TCP reset, EOF).
ABNORMAL_CLOSURE = 1006


@runtime_checkable
class Channel(Protocol):
    """One open connection carrying whole messages.

    ``recv`` raises :class:`ConnectionLost` (with ``code`` and ``reason``) once the connection is closed;
    ``send`` and ``ping`` raise it too. After a close, ``close_code``/``close_reason`` say how it ended
    (``None`` while open).
    """

    async def send(self, data: str | bytes) -> None: ...
    async def recv(self) -> str | bytes: ...
    async def close(self, code: int = 1000, reason: str = "") -> None: ...
    async def ping(self) -> float: ...  # round trip in seconds, measured on the loop's clock

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str | None: ...


class Transport(Protocol):
    """Dials ``url`` with the settings of ``config`` and returns an open :class:`Channel`.

    Raises :class:`ConnectTimeout` after ``config.connection_timeout_seconds`` and :class:`TransportError`
    for any other failure to open.
    """

    async def connect(self, url: str, config: ConnectionConfig) -> Channel: ...


class TransportClosed(ConnectionLost):
    """The channel was closed: ``code``/``reason`` from the close frame, 1006 when there was none."""


class HandshakeRefused(TransportError):
    """The server answered the opening handshake with an HTTP status (``status``) instead of upgrading."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


def translate_error(exc: BaseException, *, url: str = "", opening: bool = False) -> WsFinalError:
    """The wsfinal exception for a ``websockets``/``ssl``/OS error. The one place these are translated.

    ``opening`` tells whether it happened while opening (a timeout then means :class:`ConnectTimeout`).
    Exceptions that are already wsfinal's are returned unchanged.
    """
    if isinstance(exc, WsFinalError):
        return exc
    where = f" ({url})" if url else ""
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd or exc.sent
        code = frame.code if frame is not None else ABNORMAL_CLOSURE
        reason = frame.reason if frame is not None else ""
        return TransportClosed(f"connection closed{where}: code {code} {reason}".rstrip(), code=code, reason=reason)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) and opening:
        return ConnectTimeout(f"connection not open within the timeout{where}")
    if isinstance(exc, InvalidURI):
        return ConfigurationError("url", url, str(exc))
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return HandshakeRefused(f"handshake refused with HTTP {status}{where}", status=status)
    if isinstance(exc, InvalidHandshake):
        return HandshakeRefused(f"handshake failed{where}: {exc}")
    if isinstance(exc, ssl_module.SSLError | ssl_module.CertificateError):
        return TransportError(f"TLS failure{where}: {exc}")
    if isinstance(exc, OSError | EOFError):
        if opening:
            return TransportError(f"could not connect{where}: {exc}")
        return TransportClosed(f"connection failed{where}: {exc}", code=ABNORMAL_CLOSURE)
    if isinstance(exc, WebSocketException):
        return TransportError(f"websocket error{where}: {exc}")
    return TransportError(f"unexpected transport failure{where}: {type(exc).__name__}: {exc}")


class _PushingConnection(ClientConnection):
    """websockets' client connection, able to hand data frames to a callback instead of its assembler.

    Until :attr:`on_frame` is set it behaves exactly as :class:`ClientConnection`; afterwards every data frame
    (text, binary, continuation) goes to ``on_frame`` from ``data_received``, and ``on_closed`` is called once
    the TCP connection is gone.
    """

    on_frame: Callable[[Frame], None] | None = None
    on_closed: Callable[[], None] | None = None

    def process_event(self, event: Event) -> None:
        on_frame = self.on_frame
        if on_frame is not None and type(event) is Frame and event.opcode in (TEXT, BINARY, CONT):
            on_frame(event)
            return
        super().process_event(event)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        on_closed = self.on_closed
        if on_closed is not None:
            on_closed()


Message = str | bytes


class WebsocketsChannel:
    """A :class:`Channel` over an open ``websockets`` client connection."""

    __slots__ = (
        "_backlog",
        "_conn",
        "_flush_scheduled",
        "_fragments",
        "_loop",
        "_lost_due",
        "_on_lost",
        "_on_message",
        "_queued",
        "_url",
    )

    #: Bytes of queued frames after which :meth:`send_nowait` writes at once instead of at the end of the loop
    #: pass: a long burst reaches the peer in pieces, so the peer starts working while the rest is produced.
    FLUSH_BYTES = 16384

    def __init__(self, conn: ClientConnection, url: str) -> None:
        self._conn = conn
        self._url = url
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self._queued = 0
        self._on_message: Callable[[Message], None] | None = None
        self._on_lost: Callable[[ConnectionLost], None] | None = None
        #: Messages waiting for the first push callback (those that arrived before push_to).
        self._backlog: list[Message] | None = None
        self._lost_due = False
        self._fragments: list[Frame] | None = None

    def push_to(self, on_message: Callable[[Message], None], on_lost: Callable[[ConnectionLost], None]) -> bool:
        """Deliver by push from now on: ``on_message(data)`` for each message, in order, then ``on_lost(exc)``
        once the connection is closed (the :class:`ConnectionLost` :meth:`recv` would have raised). Returns
        ``False`` (and changes nothing) when the connection cannot push; then keep calling :meth:`recv`.

        Messages that arrived before this call are delivered from a ``call_soon`` callback, later ones from
        the loop's ``data_received`` callback: never from inside this method. Do not call :meth:`recv` after.
        """
        conn = self._conn
        if not isinstance(conn, _PushingConnection):
            return False
        # Frames websockets already received are taken over and delivered first; websockets 17's Assembler keeps
        # them in ``frames.queue``. Another layout (another websockets version): decline, recv() keeps working.
        try:
            assembler = conn.recv_messages
            busy = assembler.get_in_progress
            queue = assembler.frames.queue
            resume = assembler.maybe_resume
        except AttributeError:
            return False
        if busy:
            return False
        self._on_message, self._on_lost = on_message, on_lost
        queued = list(queue)
        queue.clear()
        self._backlog = []
        for frame in queued:
            self._frame(frame)
        resume()
        conn.on_frame = self._frame
        conn.on_closed = self._closed
        if conn.protocol.state is State.CLOSED:
            self._lost_due = True
        self._loop.call_soon(self._deliver_backlog)
        return True

    def _frame(self, frame: Frame) -> None:
        if not frame.fin or self._fragments is not None:
            if self._fragments is None:
                self._fragments = []
            self._fragments.append(frame)
            if not frame.fin:
                return
            frames, self._fragments = self._fragments, None
            data = b"".join(f.data for f in frames)
            text = frames[0].opcode is TEXT
        else:
            data = bytes(frame.data)
            text = frame.opcode is TEXT
        message: Message = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                pass  # handed over as bytes: the reader's decoding reports it as malformed
        backlog = self._backlog
        if backlog is not None:
            backlog.append(message)
        elif self._on_message is not None:
            self._on_message(message)

    def _deliver_backlog(self) -> None:
        backlog, self._backlog = self._backlog, None
        on_message = self._on_message
        if backlog and on_message is not None:
            for message in backlog:
                on_message(message)
        if self._lost_due:
            self._closed()

    def _closed(self) -> None:
        if self._backlog is not None:  # the backlog first; _deliver_backlog reports the loss after it
            self._lost_due = True
            return
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            exc = translate_error(self._conn.protocol.close_exc, url=self._url)
            on_lost(exc if isinstance(exc, ConnectionLost) else TransportClosed(str(exc), code=ABNORMAL_CLOSURE))

    async def send(self, data: str | bytes) -> None:
        try:
            await self._conn.send(data)
        except Exception as exc:
            raise translate_error(exc, url=self._url) from exc

    def send_nowait(self, data: str | bytes) -> bool:
        """Queue a whole message now if that needs no waiting; ``False``: nothing queued, ``await send``.

        Optional fast path of a channel (the managed connection uses it when present): no task switch per
        message. The first message of a loop pass goes to the socket at once (no added latency); those that
        follow it in the same pass are written together (by a ``call_soon`` flush, or as soon as
        :attr:`FLUSH_BYTES` are queued), where ``await send`` makes one system call per message. It declines
        while websockets applies write back-pressure, sends fragments, or is not open; websockets' own writes
        flush whatever is queued first, so the order of messages is kept.
        """
        conn = self._conn
        protocol = conn.protocol
        if conn.paused or conn.send_in_progress is not None or protocol.state is not State.OPEN:
            return False
        try:
            if isinstance(data, str):
                protocol.send_text(data.encode())
            else:
                protocol.send_binary(data)
        except Exception:  # refused by the protocol: nothing was queued
            return False
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
            self._write_queued()
        else:
            self._queued += len(data)
            if self._queued >= self.FLUSH_BYTES:
                self._write_queued()
        return True

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._write_queued()

    def _write_queued(self) -> None:
        self._queued = 0
        conn = self._conn
        chunks = conn.protocol.data_to_send()
        if not chunks:
            return  # websockets wrote them already
        transport = conn.transport
        payload = b"".join(chunks)
        if payload:
            transport.write(payload)
        if b"" in chunks:  # the protocol also asks for end of stream (as websockets' own send_data does)
            if transport.can_write_eof():
                try:
                    transport.write_eof()
                except Exception:  # write_eof() may raise on a broken socket; the reader sees the loss
                    pass
            else:
                transport.close()

    async def recv(self) -> str | bytes:
        try:
            return await self._conn.recv()
        except Exception as exc:
            raise translate_error(exc, url=self._url) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        try:
            await self._conn.close(code, reason)
        except Exception as exc:  # closing an already broken connection: nothing left to do
            raise translate_error(exc, url=self._url) from exc

    async def ping(self) -> float:
        start = self._loop.time()
        try:
            waiter = await self._conn.ping()
            await waiter
        except Exception as exc:
            raise translate_error(exc, url=self._url) from exc
        return self._loop.time() - start

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake (a dead peer will not answer one)."""
        transport = self._conn.transport
        if transport is not None:
            transport.abort()

    @property
    def close_code(self) -> int | None:
        return self._conn.close_code

    @property
    def close_reason(self) -> str | None:
        return self._conn.close_reason

    @property
    def local_address(self) -> Any:
        return self._conn.local_address


class WebsocketsTransport:
    """The live :class:`Transport`, on ``websockets.asyncio.client.connect``.

    Settings from :class:`~wsfinal.config.ConnectionConfig`: permessage-deflate when ``enable_compression``;
    ``open_timeout`` = ``connection_timeout_seconds``; the library's keepalive pings are off (liveness is the
    managed connection's job); ``max_size`` = ``max_message_size_bytes * oversize_tolerance``. The managed
    connection itself drops and counts messages over ``max_message_size_bytes``; the looser limit here only
    protects memory, and a message over it makes websockets close the connection with 1009.

    TLS for ``wss://`` URLs: the system trust store by default; ``ca_file`` to trust a private CA (the fake
    exchange's ``--tls`` mode); or a ready ``ssl`` context. ``proxy``: as websockets (``True`` reads the
    environment, ``None`` never uses one).
    """

    def __init__(
        self,
        *,
        ssl: ssl_module.SSLContext | None = None,
        ca_file: str | None = None,
        oversize_tolerance: float = 4.0,
        close_timeout_s: float = 2.0,
        proxy: str | bool | None = True,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if ssl is not None and ca_file is not None:
            raise ConfigurationError("ca_file", ca_file, "give either ssl= or ca_file=, not both")
        if oversize_tolerance < 1:
            raise ConfigurationError("oversize_tolerance", oversize_tolerance, "must be >= 1")
        if ca_file is not None:
            try:
                ssl = ssl_module.create_default_context(cafile=ca_file)
            except (OSError, ssl_module.SSLError) as exc:
                raise ConfigurationError("ca_file", ca_file, f"cannot load CA file: {exc}") from None
        self._ssl = ssl
        self._oversize_tolerance = oversize_tolerance
        self._close_timeout_s = close_timeout_s
        self._proxy = proxy
        self._extra = dict(extra or {})

    def options(self, url: str, config: ConnectionConfig) -> dict[str, Any]:
        """The keyword arguments given to ``websockets.asyncio.client.connect`` (for inspection and tests)."""
        opts: dict[str, Any] = {
            "compression": "deflate" if config.enable_compression else None,
            "max_size": int(config.max_message_size_bytes * self._oversize_tolerance),
            "open_timeout": config.connection_timeout_seconds,
            "ping_interval": None,
            "ping_timeout": None,
            "close_timeout": self._close_timeout_s,
            "proxy": True if self._proxy is True else self._proxy or None,
        }
        if url.startswith("wss://"):  # a context given for wss:// is simply unused by ws:// URLs
            opts["ssl"] = self._ssl if self._ssl is not None else True
        opts.update(self._extra)
        return opts

    async def connect(self, url: str, config: ConnectionConfig) -> WebsocketsChannel:
        """Open ``url``. Raises :class:`ConnectTimeout`, :class:`HandshakeRefused` or :class:`TransportError`."""
        try:
            options = self.options(url, config)
            options.setdefault("create_connection", _PushingConnection)  # push_to() needs it; a caller's own wins
            conn = await ws_connect(url, **options)
        except Exception as exc:
            raise translate_error(exc, url=url, opening=True) from exc
        return WebsocketsChannel(conn, url)
