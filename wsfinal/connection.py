"""ManagedConnection: one Bitfinex-style WebSocket connection kept alive over any transport.

The asyncio shell around the pure pieces: :mod:`wsfinal.backoff` (when to reconnect),
:mod:`wsfinal.requests` (request outcomes), :mod:`wsfinal.bitfinex_client` (frames, sequence numbers, book
checksums, subscriptions). Per open channel it runs three tasks: a reader (the only place frames are
handled), a writer (started on first need: it drains the outbox whenever the channel's synchronous
``send_nowait`` is missing or declines under back-pressure, so :meth:`ManagedConnection.submit` never needs a
task of its own) and, with
``enable_heartbeat``, a pinger; plus one supervisor task that owns reconnection. All timers are the loop's
(``call_at``); all times are ``loop.time()``. :meth:`ManagedConnection.disconnect` cancels and awaits every
task it started.

Decisions (see docs/connections.md): ``connect()`` makes one attempt and returns; on failure, retries continue
in the background as the backoff allows. During exchange maintenance (20060 until 20061) new requests end at
once as ``NOT_SENT`` rather than waiting in a queue of unknown length.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import bitfinex_client as bfx
from .backoff import Backoff, RetryPolicy, close_policy
from .config import ConnectionConfig
from .exceptions import (
    ConfigurationError,
    ConnectionLost,
    InvalidTransitionError,
    TransportError,
    UnknownConnectionError,
    UsageError,
    WsFinalError,
)
from .interface import ConnectionMetrics, WebSocketConnectionInterface
from .requests import OutcomeKind, PendingRequest, RequestLedger, RequestOutcome
from .states import ConnectionState, is_legal
from .transport import HandshakeRefused, Transport, WebsocketsTransport

logger = logging.getLogger("wsfinal.connection")

_S = ConnectionState
_ids = itertools.count(1)
DataHandler = Callable[[bfx.Subscription | None, bfx.ChannelData], None]


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _sendable_close_code(code: int) -> bool:
    """Codes a close frame may carry (RFC 6455 7.4): 1005, 1006 and 1015 are reserved for reporting."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def wall_clock_nonce() -> int:
    """Auth nonce: microseconds since the epoch. The exchange demands increasing nonces across connections
    and processes, so this is the one place the wall clock is read; pass ``nonce=`` to replace it."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """Why an open channel ended and what that means for reconnecting."""

    reason: str
    policy: RetryPolicy
    code: int | None = None
    close_reason: str = ""
    local: bool = False  # we decided to end it (stale, 20051...): we close the channel ourselves
    graceful: bool = True  # for a local end: attempt a closing handshake (False: abort at once)


@dataclass(slots=True, eq=False)
class _Session:
    channel: Any
    opened_at: float
    ended: asyncio.Future[SessionEnd]
    outbox: deque[tuple[str | bytes, int | None]] = field(default_factory=deque)
    wake: asyncio.Future[None] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    auth: asyncio.Future[bfx.Auth] | None = None
    greeted: asyncio.Future[None] | None = None
    send_nowait: Callable[[str | bytes], bool] | None = None
    last_rx: float = 0.0
    watchdog: asyncio.TimerHandle | None = None
    sub_check: asyncio.TimerHandle | None = None
    torn_down: bool = False
    writing: bool = False  # the writer task was started

    def end(self, end: SessionEnd) -> None:
        if not self.ended.done():
            self.ended.set_result(end)


class ManagedConnection(WebSocketConnectionInterface):
    """A connection that reconnects, resubscribes, checks liveness and accounts for every request.

    Create it, optionally :meth:`bind` it to a store and analytics, ``await connect()``, then use
    :meth:`subscribe`, :meth:`submit`/:meth:`request` and :meth:`send_message`; ``await disconnect()`` at the end.
    ``rng`` (a seeded ``random.Random``) drives reconnect jitter; ``api_key``/``api_secret`` authenticate each
    new channel before it counts as connected.
    """

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        connection_id: str | None = None,
        transport: Transport | None = None,
        store: Any = None,
        analytics: Any = None,
        rng: random.Random | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        nonce: Callable[[], int] = wall_clock_nonce,
        sequence_checks: bool = True,
        checksums: bool = True,
        stale_multiplier: float = 3.0,
        backoff_cap_s: float = 30.0,
        stable_after_s: float = 10.0,
        close_timeout_s: float = 2.0,
        first_cid: int = 1,
        await_info: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(config, ConnectionConfig):
            raise ConfigurationError("config", type(config).__name__, "must be a ConnectionConfig")
        if (api_key is None) != (api_secret is None):
            raise ConfigurationError("api_key", api_key, "api_key and api_secret go together")
        if stale_multiplier <= 1:
            raise ConfigurationError("stale_multiplier", stale_multiplier, "must be > 1")
        self._config = config
        self._id = connection_id or f"{config.connection_type.value}-{next(_ids)}"
        self._transport: Transport = transport or WebsocketsTransport()
        self._store = store
        self._analytics = analytics
        self._rng = rng if rng is not None else random.Random(0)
        self._api = (api_key, api_secret) if api_key is not None and api_secret is not None else None
        self._nonce = nonce
        self.stale_bound_s = stale_multiplier * config.heartbeat_interval_seconds
        self._close_timeout_s = close_timeout_s
        self._await_info = await_info
        self._backoff = Backoff(
            base_s=config.reconnect_delay_seconds,
            cap_s=backoff_cap_s,
            max_attempts=config.max_reconnect_attempts,
            stable_after_s=stable_after_s,
            rng=self._rng,
        )
        self._state = _S.DISCONNECTED
        self._metrics = ConnectionMetrics()
        self.ledger = RequestLedger(first_cid=first_cid)
        self.protocol = bfx.ClientProtocol(
            max_frame_bytes=config.max_message_size_bytes,
            sequence_checks=sequence_checks,
            checksums=checksums,
            release_retry_s=config.message_timeout_seconds,
        )
        self.subscriptions = self.protocol.subscriptions
        self._session: _Session | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connect_task: asyncio.Task[tuple[_Session | None, SessionEnd]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._data_handlers: list[DataHandler] = []
        self._app_ping_cid = itertools.count(1)
        self._deadlines: list[tuple[float, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        #: Bumped by disconnect(): an attempt that started under an older generation gives up.
        self._generation = 0

    # -- properties of the interface ------------------------------------------------------------------------

    @property
    def connection_id(self) -> str:
        return self._id

    @property
    def config(self) -> ConnectionConfig:
        return self._config

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def metrics(self) -> ConnectionMetrics:
        """A copy of the counters, with the request ledger's figures filled in."""
        m = ConnectionMetrics(**self._metrics.as_dict())
        m.requests_submitted = self.ledger.submitted
        m.requests_in_flight = self.ledger.in_flight
        m.requests_by_outcome = {k.value: n for k, n in self.ledger.counts.by_kind.items()}
        m.sequence_gaps = self.protocol.sequence.gaps
        m.checksum_mismatches = self.protocol.checksum_mismatches
        m.resubscribes = self.protocol.resubscribes
        return m

    @property
    def paused(self) -> bool:
        """True during exchange maintenance (info 20060 until 20061): new requests end as NOT_SENT."""
        return self.protocol.paused

    @property
    def tasks(self) -> list[asyncio.Task[Any]]:
        """Every task this connection has running now (for tests and diagnostics)."""
        out: list[asyncio.Task[Any]] = []
        for task in (self._connect_task, self._supervisor):
            if task is not None and not task.done():
                out.append(task)
        if self._session is not None:
            out += [t for t in self._session.tasks if not t.done()]
        return out

    def bind(self, store: Any = None, analytics: Any = None) -> None:
        """Report to ``store`` (the connection must be registered there) and ``analytics`` from now on.

        The store's record is brought to this connection's current state.
        """
        self._store = store
        self._analytics = analytics
        if store is None:
            return
        record = store.get(self._id)
        if record is None or record.state is self._state:
            return
        try:
            store.set_state(self._id, self._state)
        except InvalidTransitionError:
            store.set_state(self._id, _S.CONNECTING)
            if self._state is not _S.CONNECTING:
                store.set_state(self._id, self._state)

    def add_data_handler(self, handler: DataHandler) -> None:
        """Call ``handler(subscription, data)`` for every channel data frame (subscription None if unknown)."""
        self._data_handlers.append(handler)

    # -- state and reporting ----------------------------------------------------------------------------------

    def _now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    def _set_state(self, new: ConnectionState, reason: str = "") -> None:
        old = self._state
        if old is new:
            return
        if not is_legal(old, new):
            raise InvalidTransitionError(old, new)
        self._state = new
        now = self._now()
        if self._store is not None:
            try:
                self._store.set_state(self._id, new, now=now)
            except (InvalidTransitionError, UnknownConnectionError) as exc:
                logger.warning("%s: store did not take state %s: %s", self._id, new.value, exc)
        self._emit("state_changed", now, old=old.value, new=new.value, reason=reason)

    def _error(self, kind: str, message: str = "", *, emit: bool = True) -> None:
        m = self._metrics
        m.errors += 1
        m.errors_by_kind[kind] = m.errors_by_kind.get(kind, 0) + 1
        now = self._now()
        if self._store is not None:
            self._store.record_error(self._id, kind, now=now)
        if self._analytics is not None:
            self._analytics_call("record_error", kind, now)
        if emit:
            self._emit("error", now, kind=kind, message=message)

    def _analytics_call(self, method: str, *args: Any) -> None:
        fn = getattr(self._analytics, method, None)
        if fn is None:
            return
        try:
            fn(self._id, self._config.connection_type, *args)
        except Exception:  # analytics must never break the connection
            logger.exception("%s: analytics.%s failed", self._id, method)

    # -- connect / disconnect ---------------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Make one connection attempt. ``True`` when connected; ``False`` otherwise, and then retries go on
        in the background as the backoff allows (watch the ``connected``/``gave_up`` events)."""
        self._loop = asyncio.get_running_loop()
        if self._state is _S.CONNECTED:
            return True
        if self._state is _S.CONNECTING or (self._supervisor is not None and not self._supervisor.done()):
            return False  # an attempt or a reconnect cycle is already running
        if self._state is _S.CLOSED:
            raise InvalidTransitionError(self._state, _S.CONNECTING)
        self._backoff.reset()
        generation = self._generation
        # The attempt runs as a task so that disconnect() can cancel it without cancelling our caller.
        attempt = self._loop.create_task(self._attempt(), name=f"wsfinal-connect-{self._id}")
        self._connect_task = attempt
        try:
            await asyncio.wait({attempt})
        except asyncio.CancelledError:
            attempt.cancel()
            await asyncio.gather(attempt, return_exceptions=True)
            raise
        finally:
            self._connect_task = None
        if attempt.cancelled() or generation != self._generation:  # disconnect() was called meanwhile
            return False
        session, end = attempt.result()
        self._supervisor = self._loop.create_task(self._supervise(session, end), name=f"wsfinal-sup-{self._id}")
        return session is not None

    async def disconnect(self, reason: str = "manual") -> None:
        """Close the channel (closing handshake, ``close_timeout_s`` at most), end all requests in flight and
        cancel every task; the state becomes DISCONNECTED and no reconnect follows."""
        self._loop = asyncio.get_running_loop()
        self._generation += 1
        for task in (self._connect_task, self._supervisor):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._supervisor = None
        session = self._session
        if session is not None:
            end = SessionEnd(reason, RetryPolicy.NO_RETRY, 1000, reason, local=True)
            session.end(end)
            await self._teardown(session, end if session.ended.cancelled() else session.ended.result())
        if self._state in (_S.CONNECTED, _S.CONNECTING, _S.RECONNECTING, _S.FAILED):
            self._set_state(_S.DISCONNECTED, reason)
            self._emit("disconnected", self._now(), reason=reason, code=1000)

    async def close(self, reason: str = "closed") -> None:
        """Disconnect for good: the state becomes CLOSED and the connection cannot be used again."""
        await self.disconnect(reason)
        if self._state is not _S.CLOSED:
            self._set_state(_S.CLOSED, reason)

    async def _attempt(self) -> tuple[_Session | None, SessionEnd]:
        """One try at opening a channel and authenticating: (session, _) or (None, why it failed)."""
        loop = self._loop or asyncio.get_running_loop()
        self._set_state(_S.CONNECTING, "connect")
        generation = self._generation
        deadline = loop.time() + self._config.connection_timeout_seconds
        try:
            async with asyncio.timeout_at(deadline):
                channel = await self._transport.connect(self._config.url, self._config)
        except TimeoutError:
            return None, SessionEnd("connect_timeout", RetryPolicy.RETRY)
        except ConfigurationError as exc:
            return None, SessionEnd(f"bad configuration: {exc}", RetryPolicy.NO_RETRY)
        except HandshakeRefused as exc:
            later = exc.status in (429, 503)
            return None, SessionEnd(str(exc), RetryPolicy.RETRY_LATER if later else RetryPolicy.RETRY)
        except WsFinalError as exc:
            return None, SessionEnd(str(exc) or type(exc).__name__, RetryPolicy.RETRY)
        except Exception as exc:  # a transport outside wsfinal broke its contract: log it, treat it as a failure
            logger.exception("%s: transport.connect raised a non-wsfinal error", self._id)
            return None, SessionEnd(f"transport failure: {type(exc).__name__}: {exc}", RetryPolicy.RETRY)
        if generation != self._generation:
            await self._teardown(
                _Session(channel, loop.time(), loop.create_future()), SessionEnd("disconnected", RetryPolicy.NO_RETRY)
            )
            return None, SessionEnd("disconnected while connecting", RetryPolicy.NO_RETRY)
        now = loop.time()
        session = _Session(channel, now, loop.create_future(), last_rx=now)
        session.send_nowait = getattr(channel, "send_nowait", None)
        self._session = session
        session.tasks.append(loop.create_task(self._read_loop(session), name=f"wsfinal-read-{self._id}"))
        for frame in self.protocol.opening_frames():
            self._enqueue(session, frame)
        # The application handshake: the exchange's info event, then (with credentials) the auth answer.
        session.greeted = loop.create_future() if self._await_info else None
        if self._api is not None:
            session.auth = loop.create_future()
            self._enqueue(session, bfx.auth_message(self._api[0], self._api[1], self._nonce()))
        waits = [f for f in (session.greeted, session.auth) if f is not None]
        while not session.ended.done() and loop.time() < deadline:
            pending: set[asyncio.Future[Any]] = {f for f in waits if not f.done()}
            if not pending:
                break
            pending.add(session.ended)
            await asyncio.wait(pending, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)
        failure = None
        if session.ended.done():
            failure = session.ended.result()
        elif session.greeted is not None and not session.greeted.done():
            failure = SessionEnd("no info event: connect_timeout", RetryPolicy.RETRY, local=True, graceful=False)
        elif session.auth is not None and not session.auth.done():
            failure = SessionEnd("auth_timeout", RetryPolicy.RETRY, local=True, graceful=False)
        elif session.auth is not None and not session.auth.result().ok:
            auth = session.auth.result()
            failure = SessionEnd(f"auth failed: {auth.code} {auth.message}", RetryPolicy.NO_RETRY, local=True)
        if failure is not None:
            session.end(failure)
            await self._teardown(session, session.ended.result())
            return None, failure
        if session.ended.done() or generation != self._generation:  # closed during the handshake
            session.end(SessionEnd("disconnected while connecting", RetryPolicy.NO_RETRY, local=True))
            end = session.ended.result()
            await self._teardown(session, end)
            return None, end
        self._set_state(_S.CONNECTED, "open")
        self._metrics.connects += 1
        self._metrics.connected_since = now
        self._backoff.connected(loop.time())
        for request in self.subscriptions.requests_for_reconnect(loop.time()):
            self._enqueue(session, request)
        if len(self.subscriptions):
            self._arm_subscription_check(session)
        if self._config.enable_heartbeat:
            session.tasks.append(loop.create_task(self._ping_loop(session), name=f"wsfinal-ping-{self._id}"))
            session.last_rx = loop.time()
            session.watchdog = loop.call_at(session.last_rx + self.stale_bound_s, self._check_stale, session)
        self._emit("connected", loop.time(), url=self._config.url, attempt=self._backoff.attempts)
        return session, SessionEnd("open", RetryPolicy.RETRY)

    async def _supervise(self, session: _Session | None, failure: SessionEnd) -> None:
        """Own the connection's life: wait for the channel to end, then back off and reconnect."""
        try:
            await self._supervise_loop(session, failure)
        except Exception as exc:  # a bug must not leave a zombie connection that claims to be alive
            logger.exception("%s: supervisor failed", self._id)
            self._error("internal", f"supervisor failed: {type(exc).__name__}: {exc}")
            if self._session is not None:
                self._session.end(SessionEnd("internal error", RetryPolicy.NO_RETRY, 1011, local=True))
                await self._teardown(self._session, self._session.ended.result())
            if is_legal(self._state, _S.FAILED):
                self._set_state(_S.FAILED, "internal error")
            self._emit("gave_up", self._now(), reason="internal error", attempts=self._backoff.attempts, code=None)

    async def _supervise_loop(self, session: _Session | None, failure: SessionEnd) -> None:
        loop = self._loop or asyncio.get_running_loop()
        while True:
            if session is not None:
                end = await asyncio.shield(session.ended)  # cancelling us must not cancel the session's future
                lost_at = loop.time()
                self._backoff.lost(lost_at)
            else:
                end, lost_at = failure, loop.time()
                self._error("connect_failed", end.reason, emit=False)
            # The state changes first (the balancer stops choosing us at once), the channel closes after.
            if self._config.max_reconnect_attempts == 0 and self._state is _S.CONNECTED:
                # reconnection is off: a lost connection is simply disconnected
                self._set_state(_S.DISCONNECTED, end.reason)
                if session is not None:
                    await self._teardown(session, end)
                self._emit("disconnected", loop.time(), reason=end.reason, code=end.code)
                return
            delay = None if self._config.max_reconnect_attempts == 0 else self._backoff.next_delay(end.policy)
            if delay is None:
                self._set_state(_S.FAILED, end.reason)
                if session is not None:
                    await self._teardown(session, end)
                self._emit("gave_up", loop.time(), reason=end.reason, attempts=self._backoff.attempts, code=end.code)
                return
            self._set_state(_S.RECONNECTING, end.reason)
            self._metrics.reconnects += 1
            if self._store is not None:
                self._store.record_reconnect(self._id, now=loop.time())
            if self._analytics is not None:
                self._analytics_call("record_reconnect", loop.time())
            self._emit(
                "reconnect_scheduled",
                loop.time(),
                delay=delay.seconds,
                low=delay.low,
                high=delay.high,
                attempt=delay.attempt,
                policy=delay.policy.value,
                reason=end.reason,
                code=end.code,
                lost_at=lost_at,
            )
            if session is not None:
                await self._teardown(session, end)
            await asyncio.sleep(max(lost_at + delay.seconds - loop.time(), 0.0))
            session, failure = await self._attempt()

    async def _teardown(self, session: _Session, end: SessionEnd) -> None:
        """Close the channel, stop the session's tasks, end its requests. Idempotent."""
        if session.torn_down:
            return
        session.torn_down = True
        now = self._now()
        for handle in (session.watchdog, session.sub_check):
            if handle is not None:
                handle.cancel()
        for outcome_pair in self.ledger.fail_all(now, connection_id=self._id):
            self._resolve(*outcome_pair)
        self._disarm_timer()
        self.subscriptions.connection_lost()
        if self._metrics.connected_since is not None:
            self._metrics.connected_since = None
        for waiter in (session.auth, session.greeted):
            if waiter is not None and not waiter.done():
                waiter.cancel()
        current = asyncio.current_task()
        for task in session.tasks[1:]:  # writer and pinger stop now; the reader sees the close through
            task.cancel()
        channel = session.channel
        if end.local and not end.graceful and hasattr(channel, "abort"):
            channel.abort()
        else:
            try:
                async with asyncio.timeout(self._close_timeout_s):
                    code = end.code if end.code is not None and _sendable_close_code(end.code) else 1000
                    await channel.close(code, (end.close_reason or end.reason)[:60])
            except (TimeoutError, WsFinalError):
                if hasattr(channel, "abort"):
                    channel.abort()
        for task in session.tasks:
            task.cancel()
        await asyncio.gather(*[t for t in session.tasks if t is not current], return_exceptions=True)
        if self._session is session:
            self._session = None

    # -- the reader -------------------------------------------------------------------------------------------

    async def _read_loop(self, session: _Session) -> None:
        channel = session.channel
        try:
            while True:
                data = await channel.recv()
                try:
                    self._on_frame(session, data)
                except Exception as exc:  # a bug in handling one frame must not kill the reader
                    logger.exception("%s: error handling a frame", self._id)
                    self._error("internal", f"{type(exc).__name__}: {exc}")
        except ConnectionLost as exc:
            code = exc.code if exc.code is not None else channel.close_code
            reason = exc.reason or (channel.close_reason or "")
            session.end(SessionEnd(f"closed ({code})", close_policy(code), code, reason))
        except TransportError as exc:
            session.end(SessionEnd(f"transport error: {exc}", RetryPolicy.RETRY))
        except Exception as exc:  # a channel that broke its contract: drop this channel, keep the connection
            logger.exception("%s: channel.recv raised a non-wsfinal error", self._id)
            session.end(SessionEnd(f"channel failure: {type(exc).__name__}", RetryPolicy.RETRY, local=True))

    def _on_frame(self, session: _Session, data: str | bytes) -> None:
        now = self._now()
        session.last_rx = now
        size = len(data)
        m = self._metrics
        m.messages_received += 1
        m.bytes_received += size
        m.last_message_at = now
        if self._store is not None:
            try:
                self._store.message_received(self._id, size, now=now)
            except UnknownConnectionError:
                pass
        if self._analytics is not None:
            self._analytics_call("record_message", "in", size, now)
        self._apply(session, self.protocol.receive(data, now), now)

    def _apply(self, session: _Session, actions: list[bfx.Action], now: float) -> None:
        """Carry out what the client protocol asked for."""
        for action in actions:
            if isinstance(action, bfx.Answer):
                kind = OutcomeKind.ACKNOWLEDGED if action.ok else OutcomeKind.REJECTED
                done = self.ledger.finish(
                    action.cid, kind, now, code=action.code, text=action.text, connection_id=self._id
                )
                if done is not None:
                    self._resolve(*done)
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

    # -- liveness ---------------------------------------------------------------------------------------------

    def _arm_subscription_check(self, session: _Session) -> None:
        """Look again in ``message_timeout_seconds`` for subscriptions still without an answer."""
        if session.sub_check is None and not session.ended.done():
            loop = self._loop or asyncio.get_running_loop()
            at = loop.time() + self._config.message_timeout_seconds
            session.sub_check = loop.call_at(at, self._check_subscriptions, session)

    def _check_subscriptions(self, session: _Session) -> None:
        session.sub_check = None
        if session.ended.done() or session.torn_down:
            return
        now = self._now()
        self._apply(session, self.protocol.overdue_subscriptions(now, self._config.message_timeout_seconds), now)
        if any(sub.pending for sub in self.subscriptions):
            self._arm_subscription_check(session)

    def _check_stale(self, session: _Session) -> None:
        if session.ended.done():
            return
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time()
        due = session.last_rx + self.stale_bound_s
        if now < due:
            session.watchdog = loop.call_at(due, self._check_stale, session)
            return
        self._emit("stale", now, silent_for=now - session.last_rx, bound=self.stale_bound_s)
        self._error("stale", f"no message for {now - session.last_rx:.3f} s", emit=False)
        session.end(SessionEnd("stale", RetryPolicy.RETRY, 1006, "stale", local=True, graceful=False))

    async def _ping_loop(self, session: _Session) -> None:
        """Every heartbeat interval: an app-level ping if the line was quiet, and a WebSocket ping."""
        loop = self._loop or asyncio.get_running_loop()
        interval = self._config.heartbeat_interval_seconds
        while not session.ended.done():
            await asyncio.sleep(interval)
            if loop.time() - session.last_rx >= interval:
                # the exchange answers with a pong event: traffic that proves the application is alive
                self._enqueue(session, {"event": "ping", "cid": next(self._app_ping_cid)})
            try:
                async with asyncio.timeout(self._config.message_timeout_seconds):
                    rtt = await session.channel.ping()
            except TimeoutError:
                self._error("ping_timeout", f"no pong within {self._config.message_timeout_seconds} s", emit=False)
                session.end(SessionEnd("ping_timeout", RetryPolicy.RETRY, 1006, local=True, graceful=False))
                return
            except WsFinalError:  # the reader reports the loss
                return
            except Exception as exc:  # a channel that broke its contract
                logger.exception("%s: channel.ping raised a non-wsfinal error", self._id)
                session.end(SessionEnd(f"channel failure: {type(exc).__name__}", RetryPolicy.RETRY, local=True))
                return
            now = loop.time()
            self._metrics.last_ping_latency_ms = rtt * 1000.0
            if self._store is not None:
                try:
                    self._store.record_latency(self._id, rtt * 1000.0, now=now)
                except UnknownConnectionError:  # removed from the store meanwhile
                    pass
            if self._analytics is not None:
                self._analytics_call("record_latency", rtt * 1000.0, now)

    # -- sending ----------------------------------------------------------------------------------------------

    def _enqueue(self, session: _Session, message: Any, cid: int | None = None) -> None:
        text = message if isinstance(message, str | bytes) else _dumps(message)
        send_nowait = session.send_nowait
        if send_nowait is not None and not session.outbox and send_nowait(text):
            # written at once: no hop through the writer task (the common case when the socket keeps up)
            if cid is not None:
                self.ledger.mark_sent(cid)
            self._count_sent(len(text), self._now())
            return
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

    async def _write_loop(self, session: _Session) -> None:
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
        self._metrics.messages_sent += 1
        self._metrics.bytes_sent += size
        if self._store is not None:
            try:
                self._store.message_sent(self._id, size, now=now)
            except UnknownConnectionError:
                pass
        if self._analytics is not None:
            self._analytics_call("record_message", "out", size, now)

    def send_message_nowait(self, message: Any) -> bool | None:
        """Send without waiting if the transport takes the frame at once: ``True`` sent, ``False`` not connected,
        ``None`` when it would have to wait (then ``await send_message(message)``). Broadcasts use this to
        reach many connections with no task per connection."""
        session = self._session
        if self._state is not _S.CONNECTED or session is None or session.ended.done():
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
        connected, timed out or lost; the failure is counted as an error."""
        session = self._session
        if self._state is not _S.CONNECTED or session is None or session.ended.done():
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

    def subscribe(self, channel: str, **params: Any) -> bfx.Subscription:
        """Subscribe to a public channel (``book``, ``ticker``, ``trades``, ``candles``); remembered and
        restored after every reconnect. Sent now if connected, else on the next connection."""
        loop = self._loop or asyncio.get_running_loop()
        sub, request = self.subscriptions.add(channel, params, loop.time())
        session = self._session
        if session is not None and self._state is _S.CONNECTED and not session.ended.done():
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

    def submit(
        self, request: Mapping[str, Any] | list[Any], timeout: float | None = None
    ) -> asyncio.Future[RequestOutcome]:
        """Send an order-style request and return a future of its one :class:`RequestOutcome`.

        ``request`` is an order's fields (wrapped as ``[0, "on", null, {...}]`` with a fresh ``cid``) or a full
        ``[0, "on", null, {...}]`` frame (its ``cid`` kept if present). No task is created: the reader, a loop
        timer (``timeout``, default ``message_timeout_seconds``) or the connection's loss resolves the future.
        """
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        fut: asyncio.Future[RequestOutcome] = loop.create_future()
        now = loop.time()
        session = self._session
        if self._state is not _S.CONNECTED or session is None or session.ended.done() or self.paused:
            kind = OutcomeKind.NOT_SENT if self.paused and self._state is _S.CONNECTED else OutcomeKind.NO_CONNECTION
            fut.set_result(self.ledger.record_immediate(kind, now, connection_id=self._id))
            return fut
        if isinstance(request, list):
            body = request[3] if len(request) > 3 and isinstance(request[3], dict) else None
            given = body.get("cid") if body is not None else None
            try:
                entry = self.ledger.start(now, cid=given if isinstance(given, int) else None)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            frame: list[Any] = list(request)
            if body is not None:
                frame[3] = {**body, "cid": entry.cid}
        else:
            entry = self.ledger.start(now)
            frame = bfx.order_frame(request, entry.cid)
        wait = self._config.message_timeout_seconds if timeout is None else timeout
        entry.deadline = now + wait
        entry.token = fut
        # Timeouts: one loop timer per connection over a heap of (deadline, cid) tuples, not a TimerHandle
        # per request (their Python-level comparisons dominated the pipelined profile).
        heap = self._deadlines
        heapq.heappush(heap, (entry.deadline, entry.cid))
        if entry.deadline < self._timer_at:
            self._arm_timer(entry.deadline)
        if len(heap) > 4 * self.ledger.in_flight + 1024:  # drop answered requests' entries now and then
            heap[:] = [(e.deadline, e.cid) for e in self.ledger.pending() if e.deadline is not None]
            heapq.heapify(heap)
        if self._store is not None:
            try:
                self._store.request_started(self._id, now=now)
            except UnknownConnectionError:
                pass
        self._enqueue(session, frame, entry.cid)
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
            if ledger.get(cid) is not None:  # else answered already: a stale heap entry
                done = ledger.finish(cid, OutcomeKind.TIMED_OUT, now, connection_id=self._id)
                if done is not None:
                    self._resolve(*done)
        if heap:
            self._arm_timer(heap[0][0])

    def _resolve(self, entry: PendingRequest, outcome: RequestOutcome) -> None:
        fut = entry.token
        if outcome.latency_ms is not None:
            self._metrics.last_request_latency_ms = outcome.latency_ms
        if self._store is not None:
            self._store.request_finished(
                self._id, ok=outcome.ok, latency_ms=outcome.latency_ms, now=outcome.finished_at
            )
        if self._analytics is not None:
            if outcome.latency_ms is not None:
                self._analytics_call("record_latency", outcome.latency_ms, outcome.finished_at)
            if not outcome.ok:
                self._analytics_call("record_error", outcome.kind.value, outcome.finished_at)
        if not fut.done():
            fut.set_result(outcome)
