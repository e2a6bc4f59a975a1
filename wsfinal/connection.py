"""ManagedConnection: one Bitfinex-style WebSocket connection kept alive over any transport.

The asyncio shell around the pure pieces: :mod:`wsfinal.backoff` (when to reconnect),
:mod:`wsfinal.requests` (request outcomes), :mod:`wsfinal.bitfinex_client` (frames, sequence numbers, book
checksums, subscriptions). This module holds the life cycle (connect, authenticate, supervise and reconnect,
liveness, teardown); :mod:`wsfinal.traffic` holds what happens on an open channel (reader, writer, requests).
Per open channel there is a reader task (none when the channel pushes its messages), a writer task only when
the channel's synchronous ``send_nowait`` is missing or declines under back-pressure, and, with
``enable_heartbeat``, a pinger; plus one supervisor task that owns reconnection. All timers are the loop's
(``call_at``); all times are ``loop.time()``. :meth:`ManagedConnection.disconnect` cancels and awaits every
task it started.

Decisions (see docs/connections.md): ``connect()`` makes one attempt and returns; on failure, retries continue
in the background as the backoff allows. During exchange maintenance (20060 until 20061) new requests end at
once as ``NOT_SENT`` rather than waiting in a queue of unknown length.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from . import bitfinex_client as bfx
from .backoff import Backoff, Delay, RetryPolicy
from .config import ConnectionConfig
from .exceptions import (
    ConfigurationError,
    InvalidTransitionError,
    UnknownConnectionError,
    WsFinalError,
)
from .interface import ConnectionMetrics
from .ping_ids import PingTable
from .requests import OutcomeKind, RequestLedger, RequestOutcome
from .states import ConnectionState, is_legal
from .traffic import ConnectionTraffic, DataHandler, OutcomeHook, Session, SessionEnd
from .transport import HandshakeRefused, Transport, WebsocketsTransport

__all__ = ["DataHandler", "ManagedConnection", "OutcomeHook", "Session", "SessionEnd", "wall_clock_nonce"]

logger = logging.getLogger("wsfinal.connection")

_S = ConnectionState
_ids = itertools.count(1)


def _sendable_close_code(code: int) -> bool:
    """Codes a close frame may carry (RFC 6455 7.4): 1005, 1006 and 1015 are reserved for reporting."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def wall_clock_nonce() -> int:
    """Auth nonce: microseconds since the epoch. The exchange demands increasing nonces across connections
    and processes, so this is the one place the wall clock is read; pass ``nonce=`` to replace it."""
    return time.time_ns() // 1000


class ManagedConnection(ConnectionTraffic):
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
        self.ledger = RequestLedger(first_cid=first_cid, on_immediate=self._report_immediate)
        self.protocol = bfx.ClientProtocol(
            max_frame_bytes=config.max_message_size_bytes,
            sequence_checks=sequence_checks,
            checksums=checksums,
            release_retry_s=config.message_timeout_seconds,
        )
        self.subscriptions = self.protocol.subscriptions
        self._session: Session | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connect_task: asyncio.Task[tuple[Session | None, SessionEnd]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._data_handlers: list[DataHandler] = []
        #: App-level pings awaiting their pong, with cids from a reserved range (wsfinal.ping_ids).
        self._pings = PingTable()
        self._deadlines: list[tuple[float, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        #: Bumped by disconnect(): an attempt that started under an older generation gives up.
        self._generation = 0
        self.outcome_hook: OutcomeHook | None = None
        self._bind_reporting()

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
        m.requests_by_outcome = dict(self.ledger.counts.by_value)
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
            out += [t for t in self._session.all_tasks() if not t.done()]
        return out

    def bind(self, store: Any = None, analytics: Any = None) -> None:
        """Report to ``store`` (the connection must be registered there) and ``analytics`` from now on.

        The store's record is brought to this connection's current state.
        """
        self._store = store
        self._analytics = analytics
        self._bind_reporting()
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

    def _report_immediate(self, outcome: RequestOutcome) -> None:
        """A request ended at submit (the ledger's ``on_immediate``; never on the path of a sent request).

        ``NOT_SENT`` (paused for maintenance) counts against this connection: in the store as a failed, not-sent
        request (:meth:`~wsfinal.store.InMemoryConnectionStore.request_not_sent`), in analytics as an error, as
        a not-sent request dropped from the queue at a loss is. ``NO_CONNECTION`` (not connected) is nobody's
        load: the store counts it by connection type. Failures are logged: the caller still gets its outcome.
        """
        store = self._store
        now = outcome.finished_at
        try:
            if outcome.kind is OutcomeKind.NOT_SENT:
                report = getattr(store, "request_not_sent", None)
                if report is not None:
                    report(self._id, now=now)
                self._analytics_call("record_error", outcome.kind.value, now)
            else:
                report = getattr(store, "request_no_connection", None)
                if report is not None:
                    report(self._config.connection_type, now=now)
        except Exception:  # the store's bug must not lose the outcome
            logger.exception("%s: reporting a %s request failed", self._id, outcome.kind.value)

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
            session.on_end = None  # asked to disconnect: DISCONNECTED below, not FAILED
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

    async def _attempt(self) -> tuple[Session | None, SessionEnd]:
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
                Session(channel, loop.time(), loop.create_future()), SessionEnd("disconnected", RetryPolicy.NO_RETRY)
            )
            return None, SessionEnd("disconnected while connecting", RetryPolicy.NO_RETRY)
        now = loop.time()
        session = Session(channel, now, loop.create_future(), last_rx=now)
        session.send_nowait = getattr(channel, "send_nowait", None)
        self._session = session
        self._start_reader(session, loop)
        for frame in self.protocol.opening_frames(now):
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
        session.on_end = self._on_session_end  # from now on, a loss leaves CONNECTED at once
        self._metrics.connects += 1
        self._metrics.connected_since = now
        self._backoff.connected(loop.time())
        for request in self.subscriptions.requests_for_reconnect(loop.time()):
            self._enqueue(session, request)
        if len(self.subscriptions) or self.protocol.conf_sent_at is not None:
            self._arm_subscription_check(session)
        if self._config.enable_heartbeat:
            session.tasks.append(loop.create_task(self._ping_loop(session), name=f"wsfinal-ping-{self._id}"))
            session.last_rx = loop.time()
            session.watchdog = loop.call_at(session.last_rx + self.stale_bound_s, self._check_stale, session)
        self._emit("connected", loop.time(), url=self._config.url, attempt=self._backoff.attempts)
        return session, SessionEnd("open", RetryPolicy.RETRY)

    async def _supervise(self, session: Session | None, failure: SessionEnd) -> None:
        """Own the connection's life: wait for the channel to end, then back off and reconnect."""
        try:
            await self._supervise_loop(session, failure)
        except Exception as exc:  # a bug must not leave a zombie connection that claims to be alive
            logger.exception("%s: supervisor failed", self._id)
            self._error("internal", f"supervisor failed: {type(exc).__name__}: {exc}")
            if self._session is not None:
                self._session.on_end = None  # no reconnect decision: the supervisor is gone
                self._session.end(SessionEnd("internal error", RetryPolicy.NO_RETRY, 1011, local=True))
                await self._teardown(self._session, self._session.ended.result())
            if is_legal(self._state, _S.FAILED):
                self._set_state(_S.FAILED, "internal error")
            self._emit("gave_up", self._now(), reason="internal error", attempts=self._backoff.attempts, code=None)

    def _on_session_end(self, session: Session, end: SessionEnd) -> None:
        """The open channel ended (``Session.on_end``, called synchronously wherever the loss was seen: the
        reader, the channel's push, the writer, the watchdog, the pinger, a 20051). Leave CONNECTED now, so that
        the balancer (through the store) stops choosing this connection before anything else runs; the
        supervisor does the rest (teardown, events, the wait, the next attempt) at its next step."""
        if session.loss is not None:
            return
        lost_at = self._now()
        self._backoff.lost(lost_at)
        try:
            session.loss = (lost_at, self._leave(end))
        except Exception:  # raised into whoever saw the loss otherwise; the supervisor decides instead
            logger.exception("%s: leaving CONNECTED at the loss failed", self._id)

    def _leave(self, end: SessionEnd) -> Delay | None:
        """Decide what follows a loss or a failed attempt and set the state: DISCONNECTED (reconnection off),
        FAILED (no retry left, returns None) or RECONNECTING (returns the delay before the next attempt)."""
        if self._config.max_reconnect_attempts == 0 and self._state is _S.CONNECTED:
            # reconnection is off: a lost connection is simply disconnected
            self._set_state(_S.DISCONNECTED, end.reason)
            return None
        delay = None if self._config.max_reconnect_attempts == 0 else self._backoff.next_delay(end.policy)
        self._set_state(_S.FAILED if delay is None else _S.RECONNECTING, end.reason)
        return delay

    async def _supervise_loop(self, session: Session | None, failure: SessionEnd) -> None:
        loop = self._loop or asyncio.get_running_loop()
        while True:
            if session is not None:
                end = await asyncio.shield(session.ended)  # cancelling us must not cancel the session's future
                if session.loss is None:  # not decided at the loss (the session ended before CONNECTED)
                    lost_at = loop.time()
                    self._backoff.lost(lost_at)
                    session.loss = (lost_at, self._leave(end))
                lost_at, delay = session.loss
            else:
                end, lost_at = failure, loop.time()
                self._error("connect_failed", end.reason, emit=False)
                # The state changes first (the balancer stops choosing us at once), the channel closes after.
                delay = self._leave(end)
            if self._state is _S.DISCONNECTED:
                if session is not None:
                    await self._teardown(session, end)
                self._emit("disconnected", loop.time(), reason=end.reason, code=end.code)
                return
            if delay is None:
                if session is not None:
                    await self._teardown(session, end)
                self._emit("gave_up", loop.time(), reason=end.reason, attempts=self._backoff.attempts, code=end.code)
                return
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

    async def _teardown(self, session: Session, end: SessionEnd) -> None:
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
        for task in session.tasks:  # writer and pinger stop now; the reader sees the close through
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
        session.detached = True
        tasks = session.all_tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*[t for t in tasks if t is not current], return_exceptions=True)
        if self._session is session:
            self._session = None

    # -- liveness ---------------------------------------------------------------------------------------------

    def _check_stale(self, session: Session) -> None:
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

    async def _ping_loop(self, session: Session) -> None:
        """Every heartbeat interval: an app-level ping and a WebSocket ping.

        The app-level ping (``{"event": "ping", "cid": N}``) is the round-trip probe: the exchange answers it
        with a pong on the same session and link as every request, so its round trip (timed in :meth:`_pong`)
        sees the link's latency and faults, in live and virtual mode alike. The WebSocket ping is the liveness
        check: no pong within ``message_timeout_seconds`` ends the channel. Its round trip is not recorded: the
        peer's WebSocket library answers it (the in-memory channel at once), past any application or link delay.
        """
        loop = self._loop or asyncio.get_running_loop()
        interval = self._config.heartbeat_interval_seconds
        pings = self._pings
        pings.clear()  # pings of an earlier channel never get their pong
        while not session.ended.done():
            await asyncio.sleep(interval)
            self._enqueue(session, {"event": "ping", "cid": pings.send(loop.time())})
            try:
                async with asyncio.timeout(self._config.message_timeout_seconds):
                    await session.channel.ping()  # liveness only: its round trip is not a latency
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

    def _pong(self, cid: int | None, now: float) -> None:
        """The exchange answered app-level ping ``cid``: its round trip is the connection's ping RTT
        (``metrics.last_ping_latency_ms``, the store's :meth:`~wsfinal.store.InMemoryConnectionStore.record_ping`,
        analytics' ``record_ping``), kept apart from request latency. A pong for no ping of ours (a caller's own
        ping: its cid is outside our reserved range, see :mod:`wsfinal.ping_ids`) is ignored."""
        rtt_ms = self._pings.answer(cid, now)
        if rtt_ms is None:
            return
        self._metrics.last_ping_latency_ms = rtt_ms
        report = getattr(self._store, "record_ping", None) if self._store is not None else None
        if report is not None:
            try:
                report(self._id, rtt_ms, now=now)
            except Exception:  # the store's bug must not break the reader
                logger.exception("%s: store.record_ping failed", self._id)
        self._analytics_call("record_ping", rtt_ms, now)

    def _timed_out(self, outcome: RequestOutcome) -> None:
        """A sent request timed out: its elapsed time (submit to timeout) is a censored latency sample, a lower
        bound, for the routing and alerting signals (the store's ``record_timeout``, analytics'
        ``record_timeout``), never for the answered-latency histograms."""
        elapsed_ms = (outcome.finished_at - outcome.submitted_at) * 1000.0
        report = getattr(self._store, "record_timeout", None) if self._store is not None else None
        if report is not None:
            try:
                report(self._id, elapsed_ms, now=outcome.finished_at)
            except Exception:  # the store's bug must not lose the outcome
                logger.exception("%s: store.record_timeout failed", self._id)
        self._analytics_call("record_timeout", elapsed_ms, outcome.finished_at)
