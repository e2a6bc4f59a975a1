import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.virtual import VirtualTimeLoop, run_virtual


def test_sleep_jumps_virtual_time_not_wall_time():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - t0

    wall = time.perf_counter()
    elapsed = run_virtual(main())
    assert elapsed == pytest.approx(3600, abs=1e-6)
    assert time.perf_counter() - wall < 5.0  # an hour of loop time in (much) less than real seconds


def test_callbacks_run_at_their_times_in_order():
    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        for when in (5.0, 1.0, 3.0, 3.0):
            loop.call_at(when, lambda w=when: seen.append((w, loop.time())))
        await asyncio.sleep(10)
        return seen

    seen = run_virtual(main(), start=0.0)
    assert [w for w, _ in seen] == [1.0, 3.0, 3.0, 5.0]
    assert all(abs(w - t) < 1e-6 for w, t in seen)


def test_wait_for_times_out_in_virtual_time():
    async def main():
        loop = asyncio.get_running_loop()
        never = loop.create_future()
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(never, timeout=2.5)
        return loop.time() - t0

    assert run_virtual(main()) == pytest.approx(2.5, abs=1e-6)


def test_threads_still_work():
    async def main():
        return await asyncio.to_thread(sum, [1, 2, 3])

    assert run_virtual(main()) == 6


def test_same_program_same_trace():
    async def worker(name, delays, trace):
        loop = asyncio.get_running_loop()
        for d in delays:
            await asyncio.sleep(d)
            trace.append((name, round(loop.time(), 9)))

    async def main():
        trace = []
        await asyncio.gather(worker("a", [0.1, 0.2, 0.3], trace), worker("b", [0.15, 0.15, 0.4], trace))
        return trace

    assert run_virtual(main()) == run_virtual(main())


def test_loop_class_reports_its_start():
    loop = VirtualTimeLoop(start=100.0)
    try:
        assert loop.time() == 100.0
    finally:
        loop.close()


def test_timers_at_the_same_time_run_in_scheduling_order_at_exactly_their_time():
    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        times = [0.3, 0.1, 0.3, 0.7 - 0.4, 0.1, 1 / 3]  # 0.7 - 0.4 != 0.3 in floating point
        for i, when in enumerate(times):
            loop.call_at(when, lambda i=i, w=when: seen.append((i, w, loop.time())))
        await asyncio.sleep(1.0)
        return seen

    seen = run_virtual(main())
    assert [i for i, _, _ in seen] == [1, 4, 3, 0, 2, 5]
    assert all(t == w for _, w, t in seen)  # the clock stands exactly at each timer's time: no drift


def test_equal_times_keep_fifo_order_among_many_timers():
    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        for i in range(500):
            loop.call_at(1.0 + (i % 7) * 0.25, seen.append, i)
        await asyncio.sleep(5)
        return seen

    seen = run_virtual(main())
    assert seen == sorted(range(500), key=lambda i: (i % 7, i))


def test_cancelled_timers_never_run_and_are_swept():
    async def main():
        loop = asyncio.get_running_loop()
        ran = []
        handles = [loop.call_at(10.0 + i, ran.append, i) for i in range(1000)]
        for h in handles[:900]:
            h.cancel()
        await asyncio.sleep(0)  # one iteration: the sweep drops the cancelled majority
        left = len(loop._timers)
        await asyncio.sleep(2000)
        return ran, left, loop.scheduled_handles()

    ran, left, after = run_virtual(main())
    assert ran == list(range(900, 1000))
    assert left <= 101 and after == []


def test_a_failing_callback_goes_to_the_exception_handler_and_the_loop_goes_on():
    async def main():
        loop = asyncio.get_running_loop()
        caught = []
        loop.set_exception_handler(lambda _loop, context: caught.append(context))
        loop.call_soon(lambda: 1 / 0)
        loop.call_at(loop.time() + 1.0, lambda: [][1])
        await asyncio.sleep(2.0)
        return caught

    caught = run_virtual(main())
    assert [type(c["exception"]) for c in caught] == [ZeroDivisionError, IndexError]
    assert all("Exception in callback" in c["message"] and "handle" in c for c in caught)


def test_real_file_descriptors_are_still_served():
    import socket

    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: got.set_result(a.recv(16)) if not got.done() else None)
        try:
            loop.call_at(loop.time() + 5.0, b.send, b"ping")
            data = await asyncio.wait_for(got, timeout=10.0)
            return data, loop.time()
        finally:
            loop.remove_reader(a.fileno())
            a.close()
            b.close()

    data, now = run_virtual(main())
    assert data == b"ping" and now == pytest.approx(5.0)


def test_a_thread_wakes_the_loop_while_virtual_timers_are_pending():
    import threading

    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        ticks = []

        def tick():
            ticks.append(loop.time())
            if not done.done():
                loop.call_at(loop.time() + 0.001, tick)

        tick()
        threading.Thread(target=lambda: loop.call_soon_threadsafe(done.set_result, "from thread")).start()
        return await done, len(ticks) > 0

    assert run_virtual(main()) == ("from thread", True)


def test_debug_mode_runs_the_same_program():
    async def main():
        loop = asyncio.get_running_loop()
        await asyncio.sleep(1.5)
        handle = loop.call_later(1.0, lambda: None)
        handle.cancel()
        await asyncio.sleep(0.5)
        return loop.time()

    assert run_virtual(main(), debug=True) == run_virtual(main()) == 2.0


def test_a_closed_loop_refuses_new_callbacks():
    loop = VirtualTimeLoop()
    loop.close()
    with pytest.raises(RuntimeError):
        loop.call_soon(print)
    with pytest.raises(RuntimeError):
        loop.call_at(1.0, print)


def test_stop_ends_run_forever_after_the_current_iteration():
    # _run_once loops over iterations itself: it must return exactly where run_forever would have stopped.
    loop = VirtualTimeLoop()
    seen = []

    def first():
        seen.append("first")
        loop.call_soon(seen.append, "next iteration")
        loop.stop()

    try:
        loop.call_soon(first)
        loop.call_soon(seen.append, "same iteration")
        loop.call_at(0.0, seen.append, "due timer")  # due now: runs in the same iteration, after the ready ones
        loop.call_at(2.0, seen.append, "later timer")
        loop.run_forever()
        assert seen == ["first", "same iteration", "due timer"] and loop.time() == 0.0

        def lone_timer():  # the single-due-timer fast path stops the same way
            seen.append("lone timer")
            loop.stop()

        loop.call_at(1.0, lone_timer)
        loop.call_at(1.0 + 1e-9, seen.append, "after the stop")
        loop.run_forever()
        assert seen[3:] == ["next iteration", "lone timer"] and loop.time() == 1.0

        loop.call_at(3.0, loop.stop)
        loop.run_forever()
        assert seen[5:] == ["after the stop", "later timer"] and loop.time() == 3.0
    finally:
        loop.close()


def test_iterations_keep_asyncio_order_between_ready_callbacks_and_due_timers():
    # Callbacks scheduled during an iteration run at the next one, after timers that came due meanwhile are
    # queued behind them: the order asyncio's run_forever/_run_once pair gives, iteration by iteration.
    async def main():
        loop = asyncio.get_running_loop()
        seen = []

        def a():
            seen.append(("a", loop.time()))
            loop.call_soon(seen.append, ("a-soon", loop.time()))
            loop.call_at(loop.time(), seen.append, ("a-timer-now", loop.time()))

        loop.call_at(1.0, a)
        loop.call_at(1.0, seen.append, ("b", 1.0))
        await asyncio.sleep(2.0)
        return seen

    assert run_virtual(main()) == [("a", 1.0), ("b", 1.0), ("a-soon", 1.0), ("a-timer-now", 1.0)]
    assert run_virtual(main(), debug=True) == run_virtual(main())


def test_time_and_get_debug_answer_from_the_loop_state():
    # both are bound C callables on the instance (see VirtualTimeLoop.__init__): same answers as the methods
    loop = VirtualTimeLoop(start=7.5)
    try:
        assert loop.time() == VirtualTimeLoop.time(loop) == 7.5
        loop._virtual_now = 9.25
        assert loop.time() == 9.25
        assert loop.get_debug() is VirtualTimeLoop.get_debug(loop) is False
        assert asyncio.Future(loop=loop)._source_traceback is None
        loop.set_debug(True)
        assert loop.get_debug() is True
        assert asyncio.Future(loop=loop)._source_traceback  # the C constructor asked get_debug()
    finally:
        loop.set_debug(False)
        loop.close()


def _program(ops, again):
    """One chain of callbacks (each schedules the next, by call_soon or by call_at at a delay from ``ops``) among
    other timers and ready callbacks at the same times; ``again``: the chain reuses its handles (call_soon_again,
    call_at_again) once it has one of the kind."""

    async def main():
        loop = asyncio.get_running_loop()
        trace = []
        handles = {}
        state = {"i": 0}

        def step(*tag):
            trace.append(("step", tag, loop.time()))
            i = state["i"]
            if i >= len(ops):
                return
            state["i"] = i + 1
            kind, delay = ops[i]
            at = loop.time() + delay
            loop.call_at(at, trace.append, ("other-before", i))
            loop.call_soon(trace.append, ("ready-before", i))
            if kind == "soon":
                if again and "soon" in handles:
                    loop.call_soon_again(handles["soon"])
                else:
                    handles["soon"] = loop.call_soon(step)
            elif again and "at" in handles:
                loop.call_at_again(handles["at"], at, i)
            else:
                handles["at"] = loop.call_at(at, step, i)
            loop.call_at(at, trace.append, ("other-after", i))
            loop.call_soon(trace.append, ("ready-after", i))

        loop.call_soon(step)
        await asyncio.sleep(100)
        return trace

    return run_virtual(main())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["soon", "at"]), st.sampled_from([0.0, 0.25, 1.0])), max_size=12))
def test_handles_used_again_run_where_new_handles_would(ops):
    assert _program(ops, again=True) == _program(ops, again=False)


def test_handles_used_again_are_checked():
    loop = VirtualTimeLoop()
    try:
        timer = loop.call_at(1.0, print)
        with pytest.raises(ValueError, match="has run"):
            loop.call_at_again(timer, 2.0)  # still scheduled
        timer.cancel()
        with pytest.raises(ValueError):
            loop.call_at_again(timer, 2.0)
        handle = loop.call_soon(print)
        handle.cancel()
        with pytest.raises(ValueError):
            loop.call_soon_again(handle)
        other = VirtualTimeLoop()
        with pytest.raises(ValueError):
            loop.call_soon_again(other.call_soon(print))
        other.close()
        with pytest.raises(TypeError):
            loop.call_at_again(timer, None)
    finally:
        loop.close()
    with pytest.raises(RuntimeError):
        loop.call_soon_again(handle)
    with pytest.raises(RuntimeError):
        loop.call_at_again(timer, 3.0)
