"""``submit(..., future=False)``: the outcome reaches the caller through ``on_done`` only, no future is made.

The manager's and the connection's opt-out of the per-request ``asyncio.Future`` (the simulator's runner uses it):
each outcome must reach ``on_done`` exactly once and be counted everywhere as with the future (ledgers, store,
balancer), for every way a request can end, and connections whose ``submit`` lacks the parameter must still work.
"""

import asyncio
import random
from collections import Counter

import pytest

from simulator.memory import MemoryNetwork, MemoryTransport
from simulator.node import ExchangeNode
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.virtual import run_virtual
from wsfinal import ConnectionConfig, ConnectionType, IntegrationConfig, LoadBalancingStrategy
from wsfinal.connection import ManagedConnection
from wsfinal.exceptions import UsageError
from wsfinal.manager import WebSocketIntegrationManager
from wsfinal.requests import OutcomeKind

KEY, SECRET = "test-key", "test-secret"
ORDER = {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "1", "price": "1"}
NODE_URL = "ws://127.0.0.1:7001/ws/2"
ROUND_ROBIN = LoadBalancingStrategy.ROUND_ROBIN


def one_node(seed, service_s=0.001):
    """A started in-memory exchange node at :data:`NODE_URL`: (network, node). The caller stops the node."""
    spec = NodeSpec(
        id="n1",
        service=ServiceSpec("constant", 2, {"value": service_s}),
        symbols=("tBTCUSD",),
        api_keys={KEY: SECRET},
    )
    network = MemoryNetwork()
    node = ExchangeNode(spec, seed=seed)
    network.add("127.0.0.1:7001", node)
    node.start()
    return network, node


def connection(cls, config, connection_id, network):
    return cls(
        config, connection_id=connection_id, transport=MemoryTransport(network), rng=random.Random(7),
        api_key=KEY, api_secret=SECRET, nonce=iter(range(10**6, 10**7)).__next__,
    )  # fmt: skip


class _NoFutureParameter(ManagedConnection):
    """A connection whose ``submit`` takes ``tag``, ``on_done`` and ``now`` but not ``future``."""

    def submit(self, request, timeout=None, *, tag=None, on_done=None, now=None):
        return super().submit(request, timeout, tag=tag, on_done=on_done, now=now)


class _OldStyle(ManagedConnection):
    """A connection whose ``submit`` predates ``tag`` and ``on_done``: the manager falls back to callbacks."""

    def submit(self, request, timeout=None):
        return super().submit(request, timeout)


CLASSES = {"tr-0": ManagedConnection, "tr-1": ManagedConnection, "nofut": _NoFutureParameter, "old": _OldStyle}


def _run_manager(future, n=40):
    """Submit ``n`` round-robin requests to the four connections of :data:`CLASSES`, then one with no connection of
    its type; returns (what submit returned, outcomes in on_done order, request summary, balancer requests,
    store's no-connection count)."""

    async def main():
        network, node = one_node(5)
        config = ConnectionConfig(url=NODE_URL, connection_type=ConnectionType.TRADING, message_timeout_seconds=2.0)
        conns = [connection(cls, config, cid, network) for cid, cls in CLASSES.items()]
        async with WebSocketIntegrationManager(IntegrationConfig(seed=3, health_check_interval=1)) as manager:
            for c in conns:
                await manager.register_connection(c, config)
            assert manager._takes_future == {"tr-0", "tr-1"}
            seen = []
            returned = [
                manager.submit(ORDER, ConnectionType.TRADING, ROUND_ROBIN, on_done=seen.append, future=future)
                for _ in range(n)
            ]
            for _ in range(100):  # bounded: every request ends within message_timeout_seconds (2 s)
                if len(seen) >= n:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # anything delivered twice would come now
            # no connection of the type: on_done runs before submit returns
            before = len(seen)
            nothing = manager.submit(ORDER, ConnectionType.USER_DATA, on_done=seen.append, future=future)
            assert len(seen) == before + 1 and seen[-1].kind is OutcomeKind.NO_CONNECTION
            returned.append(nothing)
            for c in conns:
                c.ledger.check()
            requests = manager.load_balancer.get_strategy_performance()[ROUND_ROBIN]["requests"]
            no_connection = manager.store.request_totals()["no_connection"]
            summary = manager.request_summary()
        node.stop()
        return returned, seen, summary, requests, no_connection

    return run_virtual(main())


def test_manager_submit_without_future_delivers_each_outcome_once_and_counts_it_as_with_the_future():
    returned, seen, summary, requests, no_connection = _run_manager(future=False)
    assert returned == [None] * 41
    assert len(seen) == 41 and len({(o.connection_id, o.cid) for o in seen}) == 41  # each exactly once
    assert {o.connection_id for o in seen[:-1]} == set(CLASSES)
    assert {o.kind for o in seen[:-1]} == {OutcomeKind.ACKNOWLEDGED}
    assert summary["submitted"] == 41 == summary["finished"] and summary["in_flight"] == 0
    assert summary["acknowledged"] == 40 and summary["no_connection"] == 1
    assert requests == 40 and no_connection == 1
    # and the very same outcomes, in the same order, as with the future (same seed, same virtual times)
    returned_f, seen_f, summary_f, requests_f, no_connection_f = _run_manager(future=True)
    assert all(isinstance(f, asyncio.Future) and f.done() for f in returned_f)
    assert Counter(f.result() for f in returned_f) == Counter(seen_f)
    assert seen == seen_f and summary == summary_f and (requests, no_connection) == (requests_f, no_connection_f)


def test_future_false_needs_on_done():
    async def main():
        network, node = one_node(1)
        config = ConnectionConfig(url=NODE_URL, connection_type=ConnectionType.TRADING, message_timeout_seconds=2.0)
        conn = connection(ManagedConnection, config, "tr-0", network)
        async with WebSocketIntegrationManager(IntegrationConfig(seed=3, health_check_interval=1)) as manager:
            await manager.register_connection(conn, config)
            with pytest.raises(UsageError, match="needs on_done"):
                manager.submit(ORDER, ConnectionType.TRADING, future=False)
            with pytest.raises(UsageError, match="needs on_done"):
                conn.submit(ORDER, future=False)
            # nothing was started or counted
            assert manager.request_summary()["submitted"] == 0 and conn.ledger.in_flight == 0
        node.stop()

    run_virtual(main())


def test_connection_submit_without_future_for_every_way_a_request_ends():
    """Answered, timed out (then a late answer), lost with the connection, and not connected: on_done once each."""

    async def main():
        network, node = one_node(2, service_s=3.0)  # answers after 3 s: past a 1 s timeout, within a 5 s one
        config = ConnectionConfig(url=NODE_URL, connection_type=ConnectionType.TRADING, message_timeout_seconds=5.0)
        conn = connection(ManagedConnection, config, "tr-0", network)
        await conn.connect()
        got = []
        assert conn.submit(ORDER, on_done=got.append, future=False) is None  # answered after 3 s
        assert conn.submit(ORDER, 1.0, on_done=got.append, future=False) is None  # times out at 1 s
        await asyncio.sleep(1.5)
        assert [o.kind for o in got] == [OutcomeKind.TIMED_OUT]
        await asyncio.sleep(2.0)  # both answers came (the second one late)
        assert [o.kind for o in got] == [OutcomeKind.TIMED_OUT, OutcomeKind.ACKNOWLEDGED]
        assert conn.ledger.counts.late == 1
        assert conn.submit(ORDER, on_done=got.append, future=False) is None  # in flight when the connection goes
        await asyncio.sleep(0.1)
        await conn.disconnect("test")
        assert [o.kind for o in got[2:]] == [OutcomeKind.CONNECTION_LOST]
        # not connected: ends at once, before submit returns
        assert conn.submit(ORDER, on_done=got.append, future=False) is None
        assert [o.kind for o in got[3:]] == [OutcomeKind.NO_CONNECTION]
        await asyncio.sleep(4.0)
        assert len(got) == 4 and len({o.cid for o in got}) == 4  # nothing delivered twice
        conn.ledger.check()
        summary = conn.ledger.summary()
        assert summary["submitted"] == 4 == summary["finished"] and summary["in_flight"] == 0
        node.stop()

    run_virtual(main())


def test_on_done_failure_is_logged_without_a_future(caplog):
    async def main():
        network, node = one_node(3)
        config = ConnectionConfig(url=NODE_URL, connection_type=ConnectionType.TRADING, message_timeout_seconds=2.0)
        conn = connection(ManagedConnection, config, "tr-0", network)
        await conn.connect()

        def broken(outcome):
            raise RuntimeError("bug in the caller")

        with caplog.at_level("ERROR"):
            for _ in range(3):
                conn.submit(ORDER, on_done=broken, future=False)
            await asyncio.sleep(0.5)
        assert sum("on_done callback failed" in r.getMessage() for r in caplog.records) == 3
        summary = conn.ledger.summary()
        assert summary["acknowledged"] == 3 and summary["in_flight"] == 0
        await conn.disconnect("test")
        node.stop()

    run_virtual(main())
