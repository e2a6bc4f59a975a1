"""A storm: the exchange closes 200 connections at once; full-jitter backoff spreads their reconnects out
(virtual time, so the spread measured is the backoff's, not the machine's)."""

import asyncio
import random

from simulator.memory import MemoryNetwork, MemoryTransport
from simulator.node import ExchangeNode
from simulator.scenario import FaultSpec, NodeSpec
from simulator.virtual import run_virtual
from wsfinal import ConnectionConfig, ConnectionType, IntegrationConfig, ManagedConnection, WebSocketIntegrationManager

N = 200


def test_two_hundred_simultaneous_disconnects_reconnect_spread_out():
    async def main():
        loop = asyncio.get_running_loop()
        drop = FaultSpec(kind="close", at_s=2.0, node="n1", params={"code": 1011, "reason": "storm"})
        node = ExchangeNode(NodeSpec(id="n1"), faults=[drop], seed=1)
        network = MemoryNetwork()
        url = network.add("127.0.0.1:7001", node)
        node.start()
        config = ConnectionConfig(url=url, connection_type=ConnectionType.MARKET_DATA, reconnect_delay_seconds=0.5)
        rng = random.Random(7)
        reconnected: list[float] = []
        async with WebSocketIntegrationManager(IntegrationConfig(max_connections=N)) as manager:
            for i in range(N):
                conn = ManagedConnection(
                    config, connection_id=f"c{i}", transport=MemoryTransport(network), rng=random.Random(rng.random())
                )
                conn.add_listener(lambda e: reconnected.append(loop.time()) if e.kind == "connected" else None)
                await manager.register_connection(conn, config)
            assert len(reconnected) == N
            reconnected.clear()
            await asyncio.sleep(10.0)
            assert len(reconnected) == N  # every one came back
            assert manager.get_system_overview()["connections"]["active"] == N
        node.stop()
        return sorted(reconnected)

    times = run_virtual(main())
    assert times[0] > 2.0
    # Full jitter over the first backoff window [0, 0.5 s]: never more than a quarter within any 50 ms.
    busiest = max(sum(1 for t in times if a <= t < a + 0.05) for a in times)
    assert busiest <= N // 4, busiest
    assert times[-1] - times[0] > 0.3
