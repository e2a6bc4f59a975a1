"""One open channel of a connection (:class:`Session`) and why it ended (:class:`SessionEnd`).

Part of :mod:`wsfinal.traffic` (which re-exports both): a :class:`Session` holds what belongs to one open channel
(reader and writer tasks, outbox, timers); it ends once, through :meth:`Session.end`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import bitfinex_client as bfx
from .backoff import RetryPolicy


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
class Session:
    """One open channel and what belongs to it (tasks, outbox, timers). Ends once, through :meth:`end`."""

    channel: Any
    opened_at: float
    ended: asyncio.Future[SessionEnd]
    outbox: deque[tuple[str | bytes, int | None]] = field(default_factory=deque)
    wake: asyncio.Future[None] | None = None
    #: The reader task (None when the channel pushes its messages).
    reader: asyncio.Task[None] | None = None
    #: Writer and pinger tasks.
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    auth: asyncio.Future[bfx.Auth] | None = None
    greeted: asyncio.Future[None] | None = None
    send_nowait: Callable[[str | bytes], bool] | None = None
    last_rx: float = 0.0
    watchdog: asyncio.TimerHandle | None = None
    sub_check: asyncio.TimerHandle | None = None
    torn_down: bool = False
    writing: bool = False  # the writer task was started
    #: Set at the end of teardown: a pushing channel's late messages are ignored from then on.
    detached: bool = False
    #: Called once, synchronously, by the first :meth:`end` (the connection sets it once it is CONNECTED, so that
    #: a lost channel leaves CONNECTED, and the balancer's selection, at once rather than at the supervisor's next
    #: step). Cleared before it is called; clear it yourself to end the session without it (``disconnect()``).
    on_end: Callable[[Session, SessionEnd], None] | None = None
    #: What the connection decided when the session ended (set by the connection; read by its supervisor).
    loss: Any = None

    def end(self, end: SessionEnd) -> None:
        """End the session with ``end`` (the first call wins); then call :attr:`on_end`, if set."""
        if not self.ended.done():
            self.ended.set_result(end)
            on_end = self.on_end
            if on_end is not None:
                self.on_end = None
                on_end(self, end)

    def all_tasks(self) -> list[asyncio.Task[None]]:
        return self.tasks if self.reader is None else [self.reader, *self.tasks]
