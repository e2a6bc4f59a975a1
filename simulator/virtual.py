"""An asyncio event loop on virtual time: when nothing is ready, the clock jumps to the next scheduled callback.

:class:`VirtualTimeLoop` is a ``SelectorEventLoop`` whose selector, instead of sleeping for ``timeout``, advances
the loop's own clock by ``timeout`` and reports no I/O (SimPy's ``Environment`` idea, done the way the
``looptime`` package does it). Everything that waits through the loop (``asyncio.sleep``, ``call_at``,
``wait_for`` timeouts) therefore completes at once in wall time, in the same order and at the same loop times as
it would in real time. Real sockets cannot run on it (their readiness is never awaited); the in-memory transport
of :mod:`simulator.memory` can. Threads still can: with nothing scheduled, the loop waits for real on its
self-pipe, so ``asyncio.to_thread`` works.

Use :func:`run_virtual` as you would ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _VirtualSelector(selectors.BaseSelector):
    """Delegates registration to a real selector; ``select(timeout)`` polls it, then advances virtual time."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop
        self._real = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is None:
            # Nothing is scheduled in virtual time: only another thread can wake us, so wait for it for real.
            return self._real.select(None)
        if timeout > 0:
            self._loop._advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Any:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose :meth:`time` is virtual and starts at ``start``."""

    def __init__(self, start: float = 0.0) -> None:
        self._virtual_now = float(start)
        super().__init__(selector=_VirtualSelector(self))
        # With a virtual clock there is no timer granularity to round up to.
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self._virtual_now

    def _advance(self, dt: float) -> None:
        self._virtual_now += dt


def run_virtual(main: Coroutine[Any, Any, T], *, start: float = 0.0, debug: bool = False) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop`, like ``asyncio.run``."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start), debug=debug) as runner:
        return runner.run(main)
