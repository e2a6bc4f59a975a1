import asyncio
import time

import pytest

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
