"""``run_virtual`` returns its coroutine's result without making it the result of the runner's task.

When ``asyncio.Runner`` puts the SIGINT handler back, the signal module formats the old handler's repr, which
holds the task; a done task's repr includes its result's. ``run_virtual`` keeps the result apart, so a large
result (a simulation run's) is never formatted.
"""

from __future__ import annotations

import asyncio

import pytest

from simulator.virtual import VirtualTimeLoop, run_virtual


class _Result:
    reprs = 0

    def __repr__(self) -> str:
        type(self).reprs += 1
        return "<_Result>"


def test_the_result_is_returned_and_never_formatted() -> None:
    async def main() -> _Result:
        assert isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
        await asyncio.sleep(5.0)
        return _Result()

    result = run_virtual(main())
    assert isinstance(result, _Result) and _Result.reprs == 0


def test_exceptions_and_bad_input_as_before() -> None:
    async def fails() -> None:
        await asyncio.sleep(1.0)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        run_virtual(fails())
    with pytest.raises(ValueError, match="a coroutine was expected"):
        run_virtual(42)  # type: ignore[arg-type]
    assert run_virtual(asyncio.sleep(3.0, result="slept"), start=10.0) == "slept"
