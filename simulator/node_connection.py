"""One client connection as an exchange node sees it (:class:`NodeConnection`), and the server-side channel it
talks through (:class:`ServerChannel`). The node (:mod:`simulator.node`) creates one per accepted connection; the
request hot path (a client frame in, the order to the service model, the answer frames out through the fault
link) runs here."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from simulator.bitfinex import (
    ERR_RATE_LIMIT,
    INFO_MAINTENANCE_START,
    Close,
    ExchangeSession,
    Order,
    Send,
)
from simulator.faults import AbortLink, CloseLink, Deliver, Link

if TYPE_CHECKING:
    from simulator.node import ExchangeNode

#: Error code of the ``n`` notification when the node's queue is full (Bitfinex "ratelimit: error").
RATE_LIMIT_CODE = ERR_RATE_LIMIT
#: Orders are refused with this code on a connection told 20060 (maintenance start) until 20061.
MAINTENANCE_CODE = INFO_MAINTENANCE_START


class ServerChannel(Protocol):
    """The server side of one client connection, as the node needs it. Every method returns at once.

    ``send`` queues one frame (text for ``str``, binary for ``bytes``); ``send_fragments`` queues one message
    as fragments sent ``delay_s`` apart; ``close`` starts a close handshake; ``abort`` drops the connection with
    no close frame. Calls after the connection is closed are ignored. ``peer`` names the client (its host), which
    connection rate limiting counts by.

    Optional: ``pause_reading()`` / ``resume_reading()``, called while a ``timeout`` fault stalls the client ->
    exchange direction, so that a shell answering protocol pings by itself stops doing so (half-open link).
    """

    peer: str

    def send(self, data: str | bytes) -> None: ...

    def send_fragments(self, parts: Sequence[str | bytes], delay_s: float) -> None: ...

    def close(self, code: int, reason: str = "") -> None: ...

    def abort(self) -> None: ...


#: At most this many market steps per advance() when a dormant feed catches up (MarketFeed skips steps beyond
#: its max_catchup_steps in one call, as a stalled live loop should; a catch-up must not).
CATCHUP_CHUNK = 500


def _may_subscribe(data: str | bytes) -> bool:
    """Whether a client frame is a ``subscribe`` event (parsed as the session will; arrays never are)."""
    if data[:1] in ("[", b"["):
        return False
    try:
        msg = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(msg, dict) and msg.get("event") == "subscribe"


class NodeConnection:
    """One client connection as the node sees it: session, fault link and the frames queued in each direction."""

    def __init__(self, node: ExchangeNode, channel: ServerChannel, session: ExchangeSession, link: Link) -> None:
        self.node = node
        self.channel = channel
        self.session = session
        self.link = link
        self.open = True
        self._seq = itertools.count()
        self._seq_n = 0
        self._out: list[tuple[float, int, Any]] = []  # (at, seq, delivery) heap, exchange -> client
        self._in: list[tuple[float, int, str | bytes]] = []  # (at, seq, frame) heap, client -> exchange
        self._out_timer: tuple[float, asyncio.TimerHandle] | None = None
        self._in_timer: tuple[float, asyncio.TimerHandle] | None = None
        self._tick_timer: tuple[float, asyncio.TimerHandle] | None = None
        self._handles: set[asyncio.TimerHandle] = set()
        self._done: list[tuple[float, int, Order]] = []  # (at, seq, order) heap: orders the service model finishes
        self._done_timer: tuple[float, asyncio.TimerHandle] | None = None
        #: The completion timer's handle once it has run (None while armed), and the loop's call_at_again if it has
        #: one (the virtual loop): the next completion timer is that handle scheduled again, not a new one (this is
        #: armed about once per order).
        self._done_spent: asyncio.TimerHandle | None = None
        self._call_at_again: Callable[..., None] | None = getattr(node.loop, "call_at_again", None)
        #: Until when the link is known plain (see Link.plain_until): frames then skip the fault engine.
        self._plain_until = -math.inf
        #: True while reading from the client is paused (a ``timeout`` fault on the up direction).
        self.reading_paused = False
        #: The channel's optional ``send_pair(first, second) -> bool`` (the in-memory transport has one): two
        #: frames in one call, False if the first closed the connection. Otherwise two send() calls.
        self._send_pair: Callable[[str | bytes, str | bytes], bool] | None = getattr(channel, "send_pair", None)
        #: On a link without jitter, the delivery times of the request path (an order in, its two answer frames
        #: out) are worked out here, as Link.deliver_at / deliver_pair_at would (see Link.fifo): one call into the
        #: link less for each. None (and the link's methods) when the link has jitter.
        latency = link.fixed_latency
        self._latency = 0.0 if latency is None else latency
        self._up_fifo = None if latency is None else link.fifo("up")
        self._down_fifo = None if latency is None else link.fifo("down")

    # -- inbound ----------------------------------------------------------------------------------------------

    def receive(self, data: str | bytes) -> None:
        """A frame from the client: through the up-link faults, then to the session when it arrives."""
        if not self.open:
            return
        node = self.node
        now = node.loop.time()
        if now < self._plain_until or self._plain(now):  # the common case: no fault, maybe the node's latency
            fifo = self._up_fifo
            if fifo is not None:  # link.deliver_at("up", now) on a link without jitter (see __init__), inline
                at = now + self._latency
                if at < fifo.last_at:
                    at = fifo.last_at
                fifo.last_at = at
            else:
                at = self.link.deliver_at("up", now)  # what plan() would say, without its general machinery
            if at <= now + node.timer_slack_s and not self._in:
                # self._handle_inbound(data, now), inlined: this runs once per client frame
                node.frames_received += 1
                if node._market_dormant and data[:1] != "[" and _may_subscribe(data):
                    node._wake_market(now)
                actions = self.session.on_message(data, now)
                if len(actions) == 1 and type(actions[0]) is Order:
                    # execute(actions, now) for its usual input, one accepted order (once per request): through the
                    # service model, without execute()'s loop and frame
                    order = actions[0]
                    done = node.service.submit(now)
                    if done is None:
                        node._reject(self, order, now)
                    else:
                        self.complete_at(done, order)
                    if self._tick_timer is None:
                        self._arm_tick(now)
                else:
                    self.execute(actions, now)
            else:
                heapq.heappush(self._in, (at, next(self._seq), data))
                self._arm_in()
            return
        for d in self.link.plan("up", data, now):
            if isinstance(d, Deliver):
                if d.at <= now + self.node.timer_slack_s and not self._in:
                    self._handle_inbound(d.data, now)
                else:
                    heapq.heappush(self._in, (d.at, next(self._seq), d.data))
                    self._arm_in()
            else:
                self._schedule_out(d)

    def _arm_in(self) -> None:
        at = self._in[0][0]
        if self._in_timer is not None and self._in_timer[0] <= at:
            return
        if self._in_timer is not None:
            self._in_timer[1].cancel()
        self._in_timer = (at, self.node.loop.call_at(at - self.node.timer_slack_s, self._flush_in))

    def _flush_in(self) -> None:
        self._in_timer = None
        now = self.node.loop.time()
        due = now + self.node.timer_slack_s
        while self.open and self._in and self._in[0][0] <= due:
            _, _, data = heapq.heappop(self._in)
            self._handle_inbound(data, now)
        if self.open and self._in:
            self._arm_in()

    def _plain(self, now: float) -> bool:
        self._plain_until = until = self.link.plain_until(now)
        return now < until

    def _handle_inbound(self, data: str | bytes, now: float) -> None:
        node = self.node
        node.frames_received += 1
        if node._market_dormant and data[:1] != "[" and _may_subscribe(data):
            node._wake_market(now)
        self.execute(self.session.on_message(data, now), now)

    # -- actions ----------------------------------------------------------------------------------------------

    def execute(self, actions: Iterable[Any], now: float) -> None:
        """Carry out what the session returned: frames through the down-link faults, closes, orders."""
        link = self.link
        for action in actions:
            if not self.open:
                return
            if type(action) is Send:
                if now < self._plain_until or self._plain(now):  # the common case: no fault
                    at = link.deliver_at("down", now)
                    if at <= now + self.node.timer_slack_s and not self._out:
                        self.node.frames_sent += 1
                        self.channel.send(action.text)
                    else:
                        self._schedule_out(Deliver(at, action.text))
                    continue
                for d in link.plan("down", action.text, now):
                    self._schedule_out(d)
            elif isinstance(action, Order):  # through the node's service model
                done = self.node.service.submit(now)
                if done is None:
                    self.node._reject(self, action, now)
                else:
                    self.complete_at(done, action)
            elif isinstance(action, Close):
                self._schedule_out(CloseLink(self.link.close_at(now), action.code, action.reason))
        if self._tick_timer is None:
            # An armed heartbeat timer is never late: sending only moves deadlines later, and a channel opened
            # now is due no earlier than the channels already open (see ExchangeSession.next_deadline).
            self._arm_tick(now)

    def _send_answer(self, note: str, new: str, now: float) -> None:
        """``execute([Send(note), Send(new)], now)`` on a plain link (the two frames answering an order): one call
        into the link for both times and, when both go out now, one into the channel (``send_pair``)."""
        node = self.node
        fifo = self._down_fifo
        if fifo is not None:  # link.deliver_pair_at("down", now) without jitter (see __init__): both arrive at once
            at = now + self._latency
            if at < fifo.last_at:
                at = fifo.last_at
            fifo.last_at = at_new = at
        else:
            at, at_new = self.link.deliver_pair_at("down", now)
        due = now + node.timer_slack_s
        send_pair = self._send_pair
        if send_pair is not None and at_new <= due and not self._out:
            node.frames_sent += 2 if send_pair(note, new) else 1
        else:  # what execute() does frame by frame
            for text, when in ((note, at), (new, at_new)):
                if not self.open:
                    return
                if when <= due and not self._out:
                    node.frames_sent += 1
                    self.channel.send(text)
                else:
                    self._schedule_out(Deliver(when, text))
        if self._tick_timer is None:
            self._arm_tick(now)

    def _schedule_out(self, d: Deliver | CloseLink | AbortLink) -> None:
        now = self.node.loop.time()
        if isinstance(d, AbortLink) and d.at <= now:
            self._do(d)  # abrupt: whatever is queued is lost
            return
        if d.at <= now + self.node.timer_slack_s and not self._out:
            self._do(d)
            return
        heapq.heappush(self._out, (d.at, next(self._seq), d))
        at = self._out[0][0]
        if self._out_timer is not None and self._out_timer[0] <= at:
            return
        if self._out_timer is not None:
            self._out_timer[1].cancel()
        self._out_timer = (at, self.node.loop.call_at(at - self.node.timer_slack_s, self._flush_out))

    def _flush_out(self) -> None:
        self._out_timer = None
        now = self.node.loop.time()
        due = now + self.node.timer_slack_s
        while self.open and self._out and self._out[0][0] <= due:
            _, _, d = heapq.heappop(self._out)
            self._do(d)
        if self.open and self._out:
            at = self._out[0][0]
            self._out_timer = (at, self.node.loop.call_at(at - self.node.timer_slack_s, self._flush_out))

    def _do(self, d: Deliver | CloseLink | AbortLink) -> None:
        if not self.open:
            return
        if isinstance(d, Deliver):
            self.node.frames_sent += 1
            if d.fragments:
                self.channel.send_fragments(d.fragments, d.fragment_delay)
            else:
                self.channel.send(d.data)
        elif isinstance(d, CloseLink):
            self._shut()
            self.channel.close(d.code, d.reason)
        else:
            self._shut()
            self.channel.abort()

    # -- timers -----------------------------------------------------------------------------------------------

    def _arm_tick(self, now: float) -> None:
        deadline = self.session.next_deadline()
        if deadline is None or not self.open:
            return
        if self._tick_timer is not None:
            if self._tick_timer[0] <= deadline:
                return
            self._tick_timer[1].cancel()
        self._tick_timer = (deadline, self.node.loop.call_at(max(deadline, now), self._on_tick))

    def _on_tick(self) -> None:
        self._tick_timer = None
        now = self.node.loop.time()
        self.execute(self.session.on_tick(now), now)

    def complete_at(self, when: float, order: Order) -> None:
        """The service model finishes ``order`` at ``when``: answer it then (unless the connection is gone).

        One loop timer per connection, armed for the earliest pending completion, over a heap of tuples.
        """
        self._seq_n += 1
        heapq.heappush(self._done, (when, self._seq_n, order))
        timer = self._done_timer
        if timer is not None:
            if timer[0] <= when:
                return
            timer[1].cancel()
        spent = self._done_spent
        if spent is not None and self._call_at_again is not None:  # = call_at(..., self._flush_done), see __init__
            self._done_spent = None
            self._call_at_again(spent, when - self.node.timer_slack_s)
            self._done_timer = (when, spent)
        else:
            self._done_timer = (when, self.node.loop.call_at(when - self.node.timer_slack_s, self._flush_done))

    def _flush_done(self) -> None:
        timer = self._done_timer
        if timer is not None:  # (always: this runs from that timer) its handle has run, and can be used again
            self._done_spent = timer[1]
        self._done_timer = None
        node = self.node
        now = node.loop.time()
        due = now + node.timer_slack_s
        done = self._done
        session = self.session
        while self.open and done and done[0][0] <= due:
            order = heapq.heappop(done)[2]
            if now < self._plain_until:  # the common case, ExchangeNode._finish without its error_reply check
                texts = session.order_texts(order, now)  # = order_done(order, now, ok=True), as two texts
                if texts is not None:
                    self._send_answer(texts[0], texts[1], now)
            else:
                node._finish(self, order, now)
        if self.open and done:
            at = done[0][0]
            spent = self._done_spent
            if spent is not None and self._call_at_again is not None:  # as in complete_at
                self._done_spent = None
                self._call_at_again(spent, at - node.timer_slack_s)
                self._done_timer = (at, spent)
            else:
                self._done_timer = (at, node.loop.call_at(at - node.timer_slack_s, self._flush_done))

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """A timer owned by this connection: cancelled if the connection goes away first."""
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._handles.discard(handle)
            if self.open:
                callback(*args)

        handle = self.node.loop.call_at(when - self.node.timer_slack_s, fire)
        self._handles.add(handle)

    def update_reading(self, now: float) -> None:
        """Pause or resume reading from the client as the ``timeout`` faults on the up direction say."""
        stalled = self.open and self.link.stalled("up", now)
        if stalled != self.reading_paused:
            self.reading_paused = stalled
            method = getattr(self.channel, "pause_reading" if stalled else "resume_reading", None)
            if method is not None:
                method()

    @property
    def pending_orders(self) -> int:
        """Orders accepted by the service model and not answered yet."""
        return len(self._done)

    @property
    def backlog(self) -> int:
        """Frames waiting in this connection's delay queues (latency, pacing, slicing)."""
        return len(self._out) + len(self._in)

    def _shut(self) -> None:
        self.open = False
        for timer in (self._out_timer, self._in_timer, self._tick_timer, self._done_timer):
            if timer is not None:
                timer[1].cancel()
        self._out_timer = self._in_timer = self._tick_timer = self._done_timer = None
        self._done.clear()
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        self._out.clear()
        self._in.clear()
        self.node.connections.pop(self, None)
        self.session.on_close(self.node.loop.time())

    def closed(self) -> None:
        """The shell reports the connection gone: release every timer and queued frame. Idempotent."""
        self._shut()


__all__ = ["CATCHUP_CHUNK", "MAINTENANCE_CODE", "RATE_LIMIT_CODE", "NodeConnection", "ServerChannel"]
