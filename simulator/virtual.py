"""An asyncio event loop on virtual time: when nothing is ready, the clock jumps to the next scheduled callback.

:class:`VirtualTimeLoop` is a ``SelectorEventLoop`` whose clock is its own: an iteration with nothing ready
sets the clock to the time of the earliest timer instead of sleeping until then (SimPy's ``Environment`` idea,
done the way the ``looptime`` package does it). Everything that waits through the loop (``asyncio.sleep``,
``call_at``, ``wait_for`` timeouts) therefore completes at once in wall time, in the same order and at the same
loop times as it would in real time. Real sockets cannot run on it (their readiness is never awaited); the
in-memory transport of :mod:`simulator.memory` can. Threads still can: the loop keeps a real selector for its
self-pipe, and with nothing scheduled it waits on it for real, so ``asyncio.to_thread`` works.

Speed (a whole scenario runs on this loop, several iterations per simulated request):

- timers live in a heap of ``(when, seq, handle)`` tuples, compared in C (asyncio's heap of ``TimerHandle``
  compares in Python); timers due at the same time run in the order they were scheduled (asyncio's heap leaves
  that order to the heap's shape, i.e. to every other timer pending), and each runs with the clock exactly at
  its ``when``;
- the real selector is polled only when something other than the self-pipe is registered, when the loop has
  nothing else to do, or every :data:`POLL_EVERY` iterations (to drain the self-pipe): a thread's
  ``call_soon_threadsafe`` appends to the ready queue directly, so it is seen at the next iteration anyway;
- ``_run_once`` runs iterations in a loop of its own until the loop is stopped (``run_forever`` would call it
  once per iteration and check for a stop in between: the same iterations, minus a Python call each).

Use :func:`run_virtual` as you would ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import contextvars
import operator
import selectors
import types
from asyncio import format_helpers
from collections.abc import Callable, Coroutine
from heapq import heapify, heappop, heappush
from typing import Any, TypeVar

T = TypeVar("T")

#: Iterations between two polls of the real selector when only the self-pipe is registered.
POLL_EVERY = 256
#: Cancelled timers are swept out of the heap once there are more than this many and they are half of it.
_SWEEP_MIN = 100

_Handle = asyncio.Handle
_TimerHandle = asyncio.TimerHandle
_new = object.__new__
_copy_context = contextvars.copy_context
_read_now = operator.attrgetter("_virtual_now")
_read_debug = operator.attrgetter("_debug")


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to a real selector, and tells the loop whether anything besides its self-pipe is registered."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def _changed(self) -> None:
        # The loop registers its self-pipe first (in its constructor); anything more is real I/O to poll.
        self._loop._real_io = len(self._real.get_map()) > 1

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._real.register(fileobj, events, data)
        self._changed()
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._real.unregister(fileobj)
        self._changed()
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Real readiness only (the loop advances its clock itself): ``timeout`` None blocks, else polls."""
        return self._real.select(None if timeout is None else 0)

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Any:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose :meth:`time` is virtual and starts at ``start``."""

    def __init__(self, start: float = 0.0) -> None:
        self._virtual_now = float(start)
        self._real_io = False
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._timer_seq = 0
        self._iterations = 0
        super().__init__(selector=_VirtualSelector(self))
        # With a virtual clock there is no timer granularity to round up to.
        self._clock_resolution = 0.0
        # time() and get_debug() answer from an attribute, through C (a method bound to an attrgetter) rather than
        # a Python frame: time() is read about six times per simulated request, and get_debug() once, by the
        # C constructor of every asyncio.Future made on this loop. Same values as the methods below (which stay
        # for VirtualTimeLoop.time(loop) and for subclasses); set_debug() still takes effect at once.
        self.time = types.MethodType(_read_now, self)  # type: ignore[method-assign]
        self.get_debug = types.MethodType(_read_debug, self)  # type: ignore[method-assign]

    def time(self) -> float:
        return self._virtual_now

    def get_debug(self) -> bool:
        debug: bool = self._debug
        return debug

    def _advance(self, dt: float) -> None:
        self._virtual_now += dt

    def scheduled_handles(self) -> list[asyncio.TimerHandle]:
        """The timers not yet run nor cancelled, earliest first (for tests and leak checks)."""
        return [h for _, _, h in sorted(self._timers) if not h.cancelled()]

    # -- scheduling ---------------------------------------------------------------------------------------------

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> asyncio.Handle:
        if self._debug:
            return super().call_soon(callback, *args, context=context)
        if self._closed:
            raise RuntimeError("Event loop is closed")
        # Handle(callback, args, self, context) without its two Python-level calls (not in debug mode).
        handle = _new(_Handle)
        handle._context = _copy_context() if context is None else context
        handle._loop = self
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
        self._ready.append(handle)
        return handle

    def call_at(
        self, when: float, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()  # type: ignore[attr-defined]
            self._check_callback(callback, "call_at")  # type: ignore[attr-defined]
            timer = _TimerHandle(when, callback, args, self, context)
            if timer._source_traceback:  # type: ignore[attr-defined]
                del timer._source_traceback[-1]  # type: ignore[attr-defined]
        else:
            # TimerHandle(when, callback, args, self, context) without its three Python-level calls.
            timer = _new(_TimerHandle)
            timer._context = _copy_context() if context is None else context
            timer._loop = self
            timer._callback = callback
            timer._args = args
            timer._cancelled = False
            timer._repr = None
            timer._source_traceback = None
            timer._when = when
        self._timer_seq += 1
        heappush(self._timers, (when, self._timer_seq, timer))
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    # -- handles used again ---------------------------------------------------------------------------------------
    #
    # A caller that schedules the same callback over and over, with at most one pending at a time (a transport's
    # "deliver what arrived" callback, an arrival process's next arrival, a connection's next completion), may
    # hand back the handle of its previous run instead of having a new one made: the same place in the ready queue
    # or the timer heap as call_soon / call_at would give a new handle now, minus the new handle and its context
    # copy. The callback runs in the handle's context, made once, as asyncio's own reader handles do (one handle
    # per registered file descriptor, used for every readiness event). Callers check for these methods (another
    # loop has none) and fall back to call_soon / call_at.

    def call_soon_again(self, handle: asyncio.Handle) -> None:
        """Put ``handle`` (made by this loop's ``call_soon``, not pending, not cancelled) at the end of the ready
        queue again: its callback runs once more, with the same arguments, as after ``call_soon``."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if handle._cancelled or handle._loop is not self:  # type: ignore[attr-defined]
            raise ValueError("call_soon_again() takes a handle of this loop that was not cancelled")
        if self._debug:
            self._check_thread()  # type: ignore[attr-defined]
        self._ready.append(handle)

    def call_at_again(self, timer: asyncio.TimerHandle, when: float, *args: Any) -> None:
        """Schedule ``timer`` (made by this loop's ``call_at``, already run, not cancelled) again at ``when``, its
        callback then called with ``args``: the same as ``call_at(when, callback, *args)`` would schedule now."""
        if when is None:
            raise TypeError("when cannot be None")
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if timer._scheduled or timer._cancelled or timer._loop is not self:  # type: ignore[attr-defined]
            raise ValueError("call_at_again() takes a timer of this loop that has run and was not cancelled")
        if self._debug:
            self._check_thread()  # type: ignore[attr-defined]
        timer._when = when  # type: ignore[attr-defined]
        timer._args = args  # type: ignore[attr-defined]
        self._timer_seq += 1
        heappush(self._timers, (when, self._timer_seq, timer))
        timer._scheduled = True  # type: ignore[attr-defined]

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        return self.call_at(self._virtual_now + delay, callback, *args, context=context)

    def close(self) -> None:
        super().close()
        for _, _, handle in self._timers:
            handle._scheduled = False  # type: ignore[attr-defined]
        self._timers.clear()

    # -- one iteration ------------------------------------------------------------------------------------------

    def _run_once(self) -> None:
        """Loop iterations until :meth:`stop` is called.

        ``run_forever`` calls this once per iteration and checks ``_stopping`` after each call; looping here,
        with the same check after each iteration, runs exactly the same iterations without a Python call (and
        the reloading of the loop's state) per iteration: several iterations per simulated request.
        """
        ready = self._ready
        popleft = ready.popleft
        # The iteration count is a local while this runs (saved on the way out, however it ends): it only paces
        # the polls of the real selector, and a local costs less than the attribute at every iteration.
        n = self._iterations
        try:
            while True:
                timers = self._timers
                cancelled = self._timer_cancelled_count
                if cancelled:
                    if cancelled > _SWEEP_MIN and 2 * cancelled > len(timers):
                        self._sweep_cancelled_timers()
                        timers = self._timers
                    else:
                        while timers and timers[0][2]._cancelled:  # type: ignore[attr-defined]
                            self._timer_cancelled_count -= 1
                            heappop(timers)[2]._scheduled = False  # type: ignore[attr-defined]

                n += 1
                if self._real_io or not n % POLL_EVERY:
                    self._process_events(self._selector._real.select(0))  # type: ignore[attr-defined]
                if timers:
                    if not ready and not self._stopping:
                        when = timers[0][0]
                        if when > self._virtual_now:
                            self._virtual_now = when  # nothing to do until then: jump
                        now = self._virtual_now
                        # The root timer is due (the clock is at least at its time). Is it the only one?
                        nt = len(timers)
                        if (
                            (nt < 2 or timers[1][0] > now)  # the root's children: if they are not due,
                            and (nt < 3 or timers[2][0] > now)  # no other timer is (heap order)
                            and not self._debug
                        ):
                            # The usual case: one timer due and nothing else ready. Run it now, without the ready-queue
                            # hop (what the general path below does, minus the append and popleft).
                            handle = heappop(timers)[2]
                            handle._scheduled = False  # type: ignore[attr-defined]
                            if not handle._cancelled:  # type: ignore[attr-defined]
                                try:
                                    handle._context.run(handle._callback, *handle._args)  # type: ignore[attr-defined]
                                except (SystemExit, KeyboardInterrupt):
                                    raise
                                except BaseException as exc:
                                    self._callback_failed(handle, exc)
                            if self._stopping:
                                return
                            continue
                    # Timers that are due now join the ready queue, in (when, scheduling) order. The clock stands
                    # exactly at their time (it jumps to it), so unlike asyncio no resolution window is needed.
                    now = self._virtual_now
                    while timers and timers[0][0] <= now:
                        handle = heappop(timers)[2]
                        handle._scheduled = False  # type: ignore[attr-defined]
                        ready.append(handle)
                elif not ready and not self._stopping:
                    # Nothing is scheduled in virtual time: only another thread (or real I/O) can wake us, so wait.
                    self._process_events(self._selector._real.select(None))  # type: ignore[attr-defined]

                # Run what is ready now; callbacks scheduled by these run at the next iteration (asyncio's rule).
                if self._debug:
                    for _ in range(len(ready)):
                        handle = popleft()
                        if not handle._cancelled:  # type: ignore[attr-defined]
                            self._current_handle = handle
                            try:
                                handle._run()  # type: ignore[attr-defined]
                            finally:
                                self._current_handle = None
                else:
                    for _ in range(len(ready)):
                        handle = popleft()
                        if handle._cancelled:  # type: ignore[attr-defined]
                            continue
                        # Handle._run() inlined (one Python frame less per callback), with its error handling.
                        try:
                            handle._context.run(handle._callback, *handle._args)  # type: ignore[attr-defined]
                        except (SystemExit, KeyboardInterrupt):
                            raise
                        except BaseException as exc:
                            self._callback_failed(handle, exc)
                if self._stopping:
                    return
        finally:
            self._iterations = n

    def _callback_failed(self, handle: asyncio.Handle, exc: BaseException) -> None:
        """What ``Handle._run`` does when its callback raises: report to the loop's exception handler."""
        callback, args = handle._callback, handle._args  # type: ignore[attr-defined]
        source = format_helpers._format_callback_source(callback, args)  # type: ignore[attr-defined]
        context: dict[str, Any] = {"message": f"Exception in callback {source}", "exception": exc, "handle": handle}
        if handle._source_traceback:  # type: ignore[attr-defined]
            context["source_traceback"] = handle._source_traceback  # type: ignore[attr-defined]
        self.call_exception_handler(context)

    def _sweep_cancelled_timers(self) -> None:
        kept = []
        for entry in self._timers:
            if entry[2]._cancelled:  # type: ignore[attr-defined]
                entry[2]._scheduled = False  # type: ignore[attr-defined]
            else:
                kept.append(entry)
        heapify(kept)
        self._timers = kept
        self._timer_cancelled_count = 0


def run_virtual(main: Coroutine[Any, Any, T], *, start: float = 0.0, debug: bool = False) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop`, like ``asyncio.run``."""
    if not asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    # main's result is kept here rather than as the result of the runner's task: when the runner puts the SIGINT
    # handler back, the signal module formats the old handler's repr (it tries it as a Handlers member), which
    # holds the task, and a done task's repr includes its result's: for a simulation run (RunResult) that was about
    # 20 ms per run.
    result: list[T] = []

    async def keep() -> None:
        result.append(await main)

    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start), debug=debug) as runner:
        runner.run(keep())
    return result[0]
