"""Tests of wsfinal.store_protocol: the in-memory store implements the whole ConnectionStore protocol, and the
names split out of wsfinal.store are still importable from it."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import wsfinal
import wsfinal.store as store_module
import wsfinal.store_protocol as protocol_module
from wsfinal.exceptions import UsageError
from wsfinal.store import InMemoryConnectionStore
from wsfinal.store_protocol import ConnectionStore, StoreObserver, loop_clock


def _members(protocol: type) -> list[str]:
    return sorted(n for n, v in vars(protocol).items() if inspect.isfunction(v) and not n.startswith("_"))


@pytest.mark.parametrize("name", _members(ConnectionStore))
def test_the_in_memory_store_implements_every_method_of_the_protocol(name: str) -> None:
    wanted = inspect.signature(getattr(ConnectionStore, name))
    impl = getattr(InMemoryConnectionStore, name, None)
    assert impl is not None, f"InMemoryConnectionStore.{name} is missing"
    got = inspect.signature(impl)
    assert inspect.iscoroutinefunction(impl) == inspect.iscoroutinefunction(getattr(ConnectionStore, name))
    for param in wanted.parameters.values():  # every parameter the protocol names, of the same kind
        assert param.name in got.parameters, f"{name}: no parameter {param.name!r}"
        assert got.parameters[param.name].kind == param.kind, f"{name}({param.name})"
    # extra parameters (now=...) must be optional, so a caller of the protocol's signature is served
    for extra in set(got.parameters) - set(wanted.parameters):
        assert got.parameters[extra].default is not inspect.Parameter.empty, f"{name}({extra})"


def test_the_reporting_methods_the_connection_calls_are_in_the_protocol() -> None:
    assert {"record_ping", "record_timeout", "request_not_sent", "request_no_connection"} <= set(
        _members(ConnectionStore)
    )


def test_split_names_are_the_same_objects_from_every_import_path() -> None:
    for name in protocol_module.__all__:
        assert getattr(store_module, name) is getattr(protocol_module, name)
    assert wsfinal.ConnectionStore is ConnectionStore and wsfinal.StoreEvent is protocol_module.StoreEvent
    assert set(_members(StoreObserver)) == {
        "on_eligibility_changed",
        "on_load_changed",
        "on_registered",
        "on_removed",
        "on_state_changed",
    }


def test_loop_clock_reads_the_running_loop_and_names_the_fix_outside_one() -> None:
    with pytest.raises(UsageError, match="clock="):
        loop_clock()

    async def main() -> tuple[float, float]:
        return loop_clock(), asyncio.get_running_loop().time()

    mine, loops = asyncio.run(main())
    assert mine <= loops
