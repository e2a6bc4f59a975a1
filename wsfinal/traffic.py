"""The traffic half of :class:`~wsfinal.connection.ManagedConnection`: frames in, frames out, requests.

:class:`ConnectionTraffic` holds everything that happens while a channel is open: the reader (a task awaiting
``recv``, or none at all when the channel pushes its messages, see :meth:`ConnectionTraffic._start_reader`),
the outbox and its writer task (started on first need only: when the channel's synchronous ``send_nowait``
takes a frame, no task is involved), subscriptions, and the request path (:meth:`ConnectionTraffic.submit`:
one future per request, resolved by the reader, by one loop timer per connection for timeouts, or by the
connection's loss). :mod:`wsfinal.connection` adds the life cycle (connect, reconnect, liveness, teardown).

The request path is the hot path: per request it makes one store call when the frame goes out and one when the
answer comes in (each one observer notification), calls analytics through methods bound once in
:meth:`ConnectionTraffic._bind_reporting`, and creates no task and no timer handle.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, overload

from . import bitfinex_client as bfx
from .backoff import RetryPolicy, close_policy
from .config import ConnectionConfig
from .exceptions import ConnectionLost, TransportError, UnknownConnectionError, UsageError, WsFinalError
from .interface import ConnectionMetrics, WebSocketConnectionInterface
from .order_encoding import dumps as _dumps
from .order_encoding import encode_order as _encode_order
from .order_encoding import iterencode as _iterencode
from .ping_ids import refuse_reserved_ping as _refuse_reserved_ping
from .requests import OutcomeKind, PendingRequest, RequestLedger, RequestOutcome
from .session import Session, SessionEnd
from .states import ConnectionState

__all__ = ["ConnectionTraffic", "DataHandler", "OutcomeCallback", "OutcomeHook", "Session", "SessionEnd"]

logger = logging.getLogger("wsfinal.connection")

#: Enum members read once: ``ConnectionState.CONNECTED`` goes through ``EnumType.__getattr__``'s slot hook at every
#: read (about 0.2 us, in C, so cProfile does not show it).
_CONNECTED = ConnectionState.CONNECTED
_ACKNOWLEDGED = OutcomeKind.ACKNOWLEDGED
_REJECTED = OutcomeKind.REJECTED
_TIMED_OUT = OutcomeKind.TIMED_OUT
_Answer = bfx.Answer

DataHandler = Callable[[bfx.Subscription | None, bfx.ChannelData], None]
#: Told synchronously of every request outcome whose ``submit`` carried a ``tag`` (the manager's balancer report).
OutcomeHook = Callable[[RequestOutcome, Any], None]
#: Called synchronously with a request's outcome when it ends (``submit(..., on_done=...)``).
OutcomeCallback = Callable[[RequestOutcome], None]

_heappush = heapq.heappush
_Future = asyncio.Future
_stock_create_future = asyncio.BaseEventLoop.create_future


class ConnectionTraffic(WebSocketConnectionInterface):
    """Frames, subscriptions and requests over the current :class:`Session` (see the module docstring).

    Not used alone: :class:`~wsfinal.connection.ManagedConnection` sets these attributes up.
    """

    _id: str
    _config: ConnectionConfig
    _loop: asyncio.AbstractEventLoop | None
    _store: Any
    _analytics: Any
    _metrics: ConnectionMetrics
    ledger: RequestLedger
    protocol: bfx.ClientProtocol
    subscriptions: bfx.SubscriptionTable
    _session: Session | None
    _state: ConnectionState
    _data_handlers: list[DataHandler]
    _deadlines: list[tuple[float, int]]
    _timer: asyncio.TimerHandle | None
    _timer_at: float
    #: Called synchronously with ``(outcome, tag)`` for each request submitted with a ``tag``.
    outcome_hook: OutcomeHook | None = None
    # analytics' per-message methods, looked up once (None when absent) and called in an inline try
    _record_message: Callable[..., Any] | None = None
    _record_latency: Callable[..., Any] | None = None
    _record_answer: Callable[..., Any] | None = None
    #: The store has the combined per-request calls (request_sent, answer_received).
    _store_combined: bool = False

    # -- reporting --------------------------------------------------------------------------------------------

    def _now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def _bind_reporting(self) -> None:
        """Look up analytics' hot-path methods once (not per call): ``record_message``, ``record_latency``,
        ``record_error``, each called as ``(connection_id, connection_type, ...)``; and whether the store offers
        the combined per-request calls. Call after changing ``_store`` or ``_analytics``."""
        store = self._store
        self._store_combined = hasattr(store, "request_sent") and hasattr(store, "answer_received")
        analytics = self._analytics
        self._record_message = getattr(analytics, "record_message", None) if analytics is not None else None
        self._record_latency = getattr(analytics, "record_latency", None) if analytics is not None else None
        # record_message("in") and record_latency in one call, for answered requests (when analytics has it)
        self._record_answer = getattr(analytics, "record_answer", None) if analytics is not None else None

    def _analytics_call(self, method: str, *args: Any) -> None:
        """Call ``analytics.<method>(connection_id, connection_type, *args)`` if analytics has it (looked up per
        call: for the rare reports, errors, reconnects and pings). Analytics' failures are logged, not raised."""
        fn = getattr(self._analytics, method, None) if self._analytics is not None else None
        if fn is None:
            return
        try:
            fn(self._id, self._config.connection_type, *args)
        except Exception:  # analytics must never break the connection
            logger.exception("%s: analytics.%s failed", self._id, method)

    def _pong(self, cid: int | None, now: float) -> None:
        """An app-level pong with client id ``cid`` was read at ``now`` (the connection times its ping)."""

    def _timed_out(self, outcome: RequestOutcome) -> None:
        """A sent request timed out (the connection reports its elapsed time as a censored latency sample)."""

    def _error(self, kind: str, message: str = "", *, emit: bool = True) -> None:
        m = self._metrics
        m.errors += 1
        m.errors_by_kind[kind] = m.errors_by_kind.get(kind, 0) + 1
        now = self._now()
        if self._store is not None:
            self._store.record_error(self._id, kind, now=now)
        self._analytics_call("record_error", kind, now)
        if emit:
            self._emit("error", now, kind=kind, message=message)

    # -- the reader -------------------------------------------------------------------------------------------

    def _start_reader(self, session: Session, loop: asyncio.AbstractEventLoop) -> None:
        """Receive on ``session``: by push when the channel offers ``push_to(on_message, on_lost)`` and accepts
        (its messages then reach :meth:`_on_frame` with no task and no future per wake-up), else with a reader
        task awaiting ``recv``."""
        push_to = getattr(session.channel, "push_to", None)

        def on_lost(exc: ConnectionLost) -> None:
            if not session.detached:
                self._lost(session, exc)

        # on_message is _on_frame itself (which ignores a detached session's messages): no wrapper frame per message
        if push_to is None or push_to(functools.partial(self._on_frame, session), on_lost) is False:
            session.reader = loop.create_task(self._read_loop(session), name=f"wsfinal-read-{self._id}")

    def _lost(self, session: Session, exc: ConnectionLost) -> None:
        channel = session.channel
        code = exc.code if exc.code is not None else channel.close_code
        reason = exc.reason or (channel.close_reason or "")
        session.end(SessionEnd(f"closed ({code})", close_policy(code), code, reason))

    async def _read_loop(self, session: Session) -> None:
        channel = session.channel
        try:
            while True:
                data = await channel.recv()
                self._on_frame(session, data)
        except ConnectionLost as exc:
            self._lost(session, exc)
        except TransportError as exc:
            session.end(SessionEnd(f"transport error: {exc}", RetryPolicy.RETRY))
        except Exception as exc:  # a channel that broke its contract: drop this channel, keep the connection
            logger.exception("%s: channel.recv raised a non-wsfinal error", self._id)
            session.end(SessionEnd(f"channel failure: {type(exc).__name__}", RetryPolicy.RETRY, local=True))

    def _on_frame(self, session: Session, data: str | bytes) -> None:
        """Handle one received frame (from the reader task, or pushed by the channel). Ignores the frames of a
        detached session (a pushing channel's late messages). Raises only if counting its own failure fails: an
        error while handling the frame is logged and counted as an ``internal`` error, and the deliveries go on."""
        if session.detached:
            return
        try:
            loop = self._loop
            now = loop.time() if loop is not None else self._now()
            session.last_rx = now
            size = len(data)
            m = self._metrics
            m.messages_received += 1
            m.bytes_received += size
            m.last_message_at = now
            # without data handlers, the protocol leaves out the Deliver actions (and does not build them)
            actions = self.protocol.receive(data, now, deliver=bool(self._data_handlers))
            if actions and type(actions[0]) is _Answer and self._store_combined and len(actions) == 1:
                # The common frame: one answer to a request. Counted with the request's end in one store call,
                # and in one analytics call (see _resolve) (_answer, inline).
                action = actions[0]
                kind = _ACKNOWLEDGED if action.ok else _REJECTED
                done = self.ledger.finish(
                    action.cid, kind, now, code=action.code, text=action.text, connection_id=self._id
                )
                if done is not None:
                    self._resolve(done[0], done[1], size)
                    return
                # a late or unknown answer: still a message (and nothing else to do)
                actions = []
            # any other frame (the order updates after each answer, mostly): a message (_count_received, inline)
            record_message = self._record_message
            if record_message is not None:
                try:
                    record_message(self._id, self._config.connection_type, "in", size, now)
                except Exception:  # analytics must never break the connection
                    logger.exception("%s: analytics.record_message failed", self._id)
            store = self._store
            if store is not None:
                try:
                    store.message_received(self._id, size, now=now)
                except UnknownConnectionError:
                    pass
            if actions:
                self._apply(session, actions, now)
        except Exception as exc:  # a bug in handling one frame must not stop the deliveries (or kill the reader)
            logger.exception("%s: error handling a frame", self._id)
            self._error("internal", f"{type(exc).__name__}: {exc}")

    def _count_received(self, size: int, now: float) -> None:
        """Tell analytics of a received frame of ``size`` (an answered request's frame is told in _resolve)."""
        record_message = self._record_message
        if record_message is not None:
            try:
                record_message(self._id, self._config.connection_type, "in", size, now)
            except Exception:  # analytics must never break the connection
                logger.exception("%s: analytics.record_message failed", self._id)

    def _answer(self, action: bfx.Answer, now: float, size: int | None = None) -> None:
        """End the request ``action`` answers; with ``size``, the frame that carried it is counted too."""
        kind = _ACKNOWLEDGED if action.ok else _REJECTED
        done = self.ledger.finish(action.cid, kind, now, code=action.code, text=action.text, connection_id=self._id)
        if done is not None:
            self._resolve(done[0], done[1], size)
        elif size is not None and self._store is not None:  # a late or unknown answer: still a message
            try:
                self._store.message_received(self._id, size, now=now)
            except UnknownConnectionError:
                pass

    def _apply(self, session: Session, actions: list[bfx.Action], now: float) -> None:
        """Carry out what the client protocol asked for."""
        for action in actions:
            if isinstance(action, bfx.Answer):
                self._answer(action, now)
            elif isinstance(action, bfx.Deliver):
                for handler in self._data_handlers:
                    try:
                        handler(action.subscription, action.data)
                    except Exception:
                        logger.exception("%s: data handler %r failed", self._id, handler)
            elif isinstance(action, bfx.SendFrame):
                self._enqueue(session, action.message)
                self._arm_subscription_check(session)
            elif isinstance(action, bfx.Problem):
                self._error(action.kind, action.message, emit=action.emit)
            elif isinstance(action, bfx.Notice):
                if action.kind == "info" and action.detail["code"] is None:
                    greeted = session.greeted
                    if greeted is not None and not greeted.done():
                        greeted.set_result(None)
                self._emit(action.kind, now, **action.detail)
            elif isinstance(action, bfx.AuthAnswer):
                if session.auth is not None and not session.auth.done():
                    session.auth.set_result(action.auth)
            elif isinstance(action, bfx.ReconnectRequested):
                session.end(SessionEnd(action.reason, RetryPolicy.RETRY_NOW, 1000, "20051", local=True))
            elif isinstance(action, bfx.Pong):
                self._pong(action.cid, now)

    # -- subscriptions ----------------------------------------------------------------------------------------

    def _arm_subscription_check(self, session: Session) -> None:
        """Look again in ``message_timeout_seconds`` for subscriptions (and ``conf``) still without an answer."""
        if session.sub_check is None and not session.ended.done():
            loop = self._loop or asyncio.get_running_loop()
            at = loop.time() + self._config.message_timeout_seconds
            session.sub_check = loop.call_at(at, self._check_subscriptions, session)

    def _check_subscriptions(self, session: Session) -> None:
        session.sub_check = None
        if session.ended.done() or session.torn_down:
            return
        now = self._now()
        self._apply(session, self.protocol.overdue_subscriptions(now, self._config.message_timeout_seconds), now)
        if self.protocol.conf_sent_at is not None or any(sub.pending for sub in self.subscriptions):
            self._arm_subscription_check(session)

    def subscribe(self, channel: str, **params: Any) -> bfx.Subscription:
        """Subscribe to a public channel (``book``, ``ticker``, ``trades``, ``candles``); remembered and
        restored after every reconnect. Sent now if connected, else on the next connection."""
        loop = self._loop or asyncio.get_running_loop()
        sub, request = self.subscriptions.add(channel, params, loop.time())
        session = self._session
        if session is not None and self._state is _CONNECTED and not session.ended.done():
            self._enqueue(session, request)
            self._arm_subscription_check(session)
        return sub

    def unsubscribe(self, channel: str, **params: Any) -> bool:
        """Forget a subscription (and unsubscribe its channel if open). False if it was not known."""
        known = any(sub.key == bfx.subscription_key(channel, params) for sub in self.subscriptions)
        frame = self.protocol.unsubscribe(channel, params, self._now())
        session = self._session
        if frame is not None and session is not None and not session.ended.done():
            self._enqueue(session, frame)
        return known

    # -- sending ----------------------------------------------------------------------------------------------

    def _enqueue(self, session: Session, message: Any, cid: int | None = None) -> None:
        text = message if isinstance(message, str | bytes) else _dumps(message)
        send_nowait = session.send_nowait
        if send_nowait is not None and not session.outbox and send_nowait(text):
            # written at once: no hop through the writer task (the common case when the socket keeps up)
            if cid is not None:
                self.ledger.mark_sent(cid)
            self._count_sent(len(text), self._now())
            return
        self._queue(session, text, cid)

    def _queue(self, session: Session, text: str | bytes, cid: int | None) -> None:
        """Put a frame in the outbox for the writer task (started on first need)."""
        session.outbox.append((text, cid))
        if not session.writing:
            if session.torn_down:
                return  # teardown ends what is queued (NOT_SENT)
            # started on first need: with send_nowait, most connections never need a writer task
            session.writing = True
            loop = self._loop or asyncio.get_running_loop()
            session.tasks.append(loop.create_task(self._write_loop(session), name=f"wsfinal-write-{self._id}"))
        wake = session.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _write_loop(self, session: Session) -> None:
        loop = self._loop or asyncio.get_running_loop()
        outbox = session.outbox
        channel = session.channel
        try:
            while True:
                if not outbox:
                    session.wake = loop.create_future()
                    await session.wake
                    continue
                text, cid = outbox.popleft()
                if cid is not None:
                    self.ledger.mark_sent(cid)
                await channel.send(text)
                self._count_sent(len(text), loop.time())
        except ConnectionLost as exc:
            session.end(SessionEnd(f"closed while sending ({exc.code})", close_policy(exc.code), exc.code, exc.reason))
        except TransportError as exc:
            session.end(SessionEnd(f"transport error while sending: {exc}", RetryPolicy.RETRY))
        except Exception as exc:  # a channel that broke its contract: drop this channel, keep the connection
            logger.exception("%s: channel.send raised a non-wsfinal error", self._id)
            session.end(SessionEnd(f"channel failure: {type(exc).__name__}", RetryPolicy.RETRY, local=True))

    def _count_sent(self, size: int, now: float) -> None:
        """One frame of ``size`` went out (a request's frame sent at once is counted in submit itself)."""
        self._metrics.messages_sent += 1
        self._metrics.bytes_sent += size
        if self._store is not None:
            try:
                self._store.message_sent(self._id, size, now=now)
            except UnknownConnectionError:
                pass
        self._analytics_out(size, now)

    def _analytics_out(self, size: int, now: float) -> None:
        """Tell analytics (when bound) of one frame of ``size`` sent."""
        record_message = self._record_message
        if record_message is not None:
            try:
                record_message(self._id, self._config.connection_type, "out", size, now)
            except Exception:  # analytics must never break the connection
                logger.exception("%s: analytics.record_message failed", self._id)

    def send_message_nowait(self, message: Any) -> bool | None:
        """Send without waiting if the transport takes the frame at once: ``True`` sent, ``False`` not connected,
        ``None`` when it would have to wait (then ``await send_message(message)``). Broadcasts use this to
        reach many connections with no task per connection. A ping with a reserved cid raises ``UsageError``
        (:func:`~wsfinal.ping_ids.refuse_reserved_ping`)."""
        _refuse_reserved_ping(message, self._id)
        session = self._session
        if self._state is not _CONNECTED or session is None or session.ended.done():
            return False
        if session.outbox or session.send_nowait is None:
            return None
        text = message if isinstance(message, str | bytes) else _dumps(message)
        if session.send_nowait(text):
            self._count_sent(len(text), self._now())
            return True
        return None

    async def send_message(self, message: Any) -> bool:
        """Send one message now (dict/list as JSON), within ``message_timeout_seconds``. False if not
        connected, timed out or lost; the failure is counted as an error. A ping with a cid of the range reserved for
        the connection's own pings raises ``UsageError`` (:func:`~wsfinal.ping_ids.refuse_reserved_ping`)."""
        _refuse_reserved_ping(message, self._id)
        session = self._session
        if self._state is not _CONNECTED or session is None or session.ended.done():
            return False
        text = message if isinstance(message, str | bytes) else _dumps(message)
        if not session.outbox and session.send_nowait is not None and session.send_nowait(text):
            self._count_sent(len(text), self._now())
            return True
        try:
            async with asyncio.timeout(self._config.message_timeout_seconds):
                await session.channel.send(text)
        except TimeoutError:
            self._error("send_timeout", "send_message timed out", emit=False)
            return False
        except WsFinalError:
            return False
        self._count_sent(len(text), self._now())
        return True

    # -- requests ---------------------------------------------------------------------------------------------

    @overload
    def submit(
        self,
        request: Mapping[str, Any] | list[Any],
        timeout: float | None = None,
        *,
        tag: Any = None,
        on_done: OutcomeCallback | None = None,
        now: float | None = None,
        future: Literal[True] = True,
    ) -> asyncio.Future[RequestOutcome]: ...

    @overload
    def submit(
        self,
        request: Mapping[str, Any] | list[Any],
        timeout: float | None = None,
        *,
        tag: Any = None,
        on_done: OutcomeCallback,
        now: float | None = None,
        future: Literal[False],
    ) -> None: ...

    def submit(
        self,
        request: Mapping[str, Any] | list[Any],
        timeout: float | None = None,
        *,
        tag: Any = None,
        on_done: OutcomeCallback | None = None,
        now: float | None = None,
        future: bool = True,
    ) -> asyncio.Future[RequestOutcome] | None:
        """Send an order-style request and return a future of its one :class:`RequestOutcome`.

        ``request`` is an order's fields (wrapped as ``[0, "on", null, {...}]`` with a fresh ``cid``) or a full
        ``[0, "on", null, {...}]`` frame (its ``cid`` kept if present). No task is created: the reader, a loop
        timer (``timeout``, default ``message_timeout_seconds``) or the connection's loss resolves the future.
        With a ``tag`` (not None), :attr:`outcome_hook` is also called with ``(outcome, tag)`` when it ends,
        synchronously, before the future's callbacks run. ``on_done``, if given, is called with the outcome
        exactly once, synchronously, right after the hook and before the future is resolved (before ``submit``
        returns when the request ends at once); its exceptions are logged, not raised. A caller that only needs
        ``on_done`` may ignore the future: it never holds an exception. ``now``: the running loop's time, when the
        caller read it already at this instant (the manager does); read here otherwise.

        ``future=False`` (needs ``on_done``): no future is made and ``submit`` returns ``None``; the outcome reaches
        the caller through ``on_done`` only (and the hook, with a ``tag``), and is counted everywhere as usual.
        For callers that never look at the future (the simulator's runner, through the manager): one
        ``asyncio.Future`` less per request. Raises :class:`UsageError` without ``on_done``.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[RequestOutcome] | None
        if future:
            # loop.create_future() without its Python frame when it is asyncio's own (which makes exactly this)
            fut = _Future(loop=loop) if type(loop).create_future is _stock_create_future else loop.create_future()
        elif on_done is None:
            raise UsageError("submit(future=False) needs on_done: the outcome would reach no one")
        else:
            fut = None
        if now is None:
            now = loop.time()
        session = self._session
        paused = self.protocol.paused
        if self._state is not _CONNECTED or session is None or session.ended.done() or paused:
            kind = OutcomeKind.NOT_SENT if paused and self._state is _CONNECTED else OutcomeKind.NO_CONNECTION
            outcome = self.ledger.record_immediate(kind, now, connection_id=self._id)
            if tag is not None:
                self._hook(outcome, tag)
            if on_done is not None:
                self._done(on_done, outcome)
            if fut is not None:
                fut.set_result(outcome)
            return fut
        if type(request) is not dict and isinstance(request, list):  # (an order's fields, mostly: one call less)
            body = request[3] if len(request) > 3 and isinstance(request[3], dict) else None
            given = body.get("cid") if body is not None else None
            try:
                entry = self.ledger.start(now, cid=given if isinstance(given, int) else None)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            whole = list(request)
            if body is not None:
                whole[3] = {**body, "cid": entry.cid}
            frame: list[Any] | None = whole
            fields = None
        else:
            entry = self.ledger.start(now)
            fields = dict(request)  # bfx.order_frame, inline (one call less per request)
            fields["cid"] = entry.cid
            frame = None  # [0, "on", None, fields]: _encode_order makes it
        deadline = now + (self._config.message_timeout_seconds if timeout is None else timeout)
        entry.deadline = deadline
        entry.token = fut
        entry.tag = tag
        entry.on_done = on_done
        # Timeouts: one loop timer per connection over a heap of (deadline, cid) tuples, not a TimerHandle
        # per request (their Python-level comparisons dominated the pipelined profile).
        heap = self._deadlines
        _heappush(heap, (deadline, entry.cid))
        if deadline < self._timer_at:
            self._arm_timer(deadline)
        n = len(heap)
        if n > 1024 and n > 4 * self.ledger.in_flight + 1024:  # drop answered requests' entries now and then
            heap[:] = [(e.deadline, e.cid) for e in self.ledger.pending() if e.deadline is not None]
            heapq.heapify(heap)
        if fields is not None:
            text = _encode_order(fields)
        else:
            text = "".join(_iterencode(frame, 0)) if _iterencode is not None else _dumps(frame)  # encode_frame, inline
        send_nowait = session.send_nowait
        if send_nowait is not None and not session.outbox and send_nowait(text):
            # the common case: handed to the transport at once; its start and its frame in one store call
            entry.sent = True
            store = self._store
            if store is None or not self._store_combined:
                if store is not None:
                    store.request_started(self._id, now=now)
                self._count_sent(len(text), now)
                return fut
            size = len(text)
            m = self._metrics
            m.messages_sent += 1
            m.bytes_sent += size
            try:
                store.request_sent(self._id, size, now=now)
            except UnknownConnectionError:
                pass
            record_message = self._record_message  # _analytics_out, inline
            if record_message is not None:
                try:
                    record_message(self._id, self._config.connection_type, "out", size, now)
                except Exception:  # analytics must never break the connection
                    logger.exception("%s: analytics.record_message failed", self._id)
            return fut
        if self._store is not None:
            try:
                self._store.request_started(self._id, now=now)
            except UnknownConnectionError:
                pass
        self._queue(session, text, entry.cid)
        return fut

    async def request(self, request: Mapping[str, Any] | list[Any], timeout: float | None = None) -> RequestOutcome:
        """:meth:`submit` and wait for the outcome."""
        return await self.submit(request, timeout)

    def _arm_timer(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = self._loop or asyncio.get_running_loop()
        self._timer_at = deadline
        self._timer = loop.call_at(deadline, self._expire)

    def _disarm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf
        self._deadlines.clear()

    def _expire(self) -> None:
        """The timeout timer fired: end every request whose deadline has passed, re-arm for the next one."""
        self._timer, self._timer_at = None, math.inf
        now = self._now()
        heap = self._deadlines
        ledger = self.ledger
        while heap and heap[0][0] <= now:
            _, cid = heapq.heappop(heap)
            entry = ledger.get(cid)
            # else answered already (a stale heap entry), or its cid was reused by a later request with its own entry
            if entry is not None and entry.deadline is not None and entry.deadline <= now:
                done = ledger.finish(cid, _TIMED_OUT, now, connection_id=self._id)
                if done is not None:
                    self._timed_out(done[1])  # its censored latency sample, before anyone learns the outcome
                    self._resolve(*done)
        # Drop answered requests' entries from the top too, so that the timer is armed for a request still in
        # flight: otherwise it would fire once per answered request, each time for nothing.
        while heap:
            entry = ledger.get(heap[0][1])
            if entry is not None and entry.deadline == heap[0][0]:
                break
            heapq.heappop(heap)
        if heap:
            self._arm_timer(heap[0][0])

    def _hook(self, outcome: RequestOutcome, tag: Any) -> None:
        """Tell :attr:`outcome_hook` (if set) how the request tagged ``tag`` ended; its failure is logged."""
        hook = self.outcome_hook
        if hook is None:
            return
        try:
            hook(outcome, tag)
        except Exception:  # the hook's bug must not lose the outcome
            logger.exception("%s: outcome hook failed", self._id)

    def _done(self, on_done: OutcomeCallback, outcome: RequestOutcome) -> None:
        """Call a request's ``on_done`` with its outcome; its failure is logged."""
        try:
            on_done(outcome)
        except Exception:  # the caller's bug must not lose the outcome for the others
            logger.exception("%s: on_done callback failed", self._id)

    def _resolve(self, entry: PendingRequest, outcome: RequestOutcome, size: int | None = None) -> None:
        """Report a finished request (store, analytics, hook) and resolve its future. ``size``: the answer's
        frame, counted as a received message in the same store call."""
        latency = outcome.latency_ms
        ok = outcome.kind is _ACKNOWLEDGED
        if latency is not None:
            self._metrics.last_request_latency_ms = latency
        store = self._store
        if store is not None:
            if size is None:  # a timeout, a loss (NOT_SENT: never written), or an answer to a foreign store
                store.request_finished(
                    self._id, ok=ok, latency_ms=latency, outcome=outcome.kind._value_, now=outcome.finished_at
                )
            else:
                store.answer_received(self._id, size, ok=ok, latency_ms=latency, now=outcome.finished_at)
        if size is not None:
            # the answer's frame (a received message) and the request's latency
            record_answer = self._record_answer
            if record_answer is not None and latency is not None:
                try:
                    record_answer(self._id, self._config.connection_type, size, latency, outcome.finished_at)
                except Exception:  # analytics must never break the connection
                    logger.exception("%s: analytics.record_answer failed", self._id)
                latency = None  # told
            else:
                self._count_received(size, outcome.finished_at)
        record_latency = self._record_latency
        if latency is not None and record_latency is not None:
            try:
                record_latency(self._id, self._config.connection_type, latency, outcome.finished_at)
            except Exception:  # analytics must never break the connection
                logger.exception("%s: analytics.record_latency failed", self._id)
        if not ok:
            self._analytics_call("record_error", outcome.kind.value, outcome.finished_at)
        tag = entry.tag
        if tag is not None:
            hook = self.outcome_hook  # _hook, inline: once per request
            if hook is not None:
                try:
                    hook(outcome, tag)
                except Exception:  # the hook's bug must not lose the outcome
                    logger.exception("%s: outcome hook failed", self._id)
        on_done = entry.on_done
        if on_done is not None:
            try:
                on_done(outcome)
            except Exception:  # the caller's bug must not lose the outcome for the others
                logger.exception("%s: on_done callback failed", self._id)
        fut = entry.token
        if fut is not None and not fut.done():  # None: submitted with future=False
            fut.set_result(outcome)
