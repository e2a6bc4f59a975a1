"""The in-memory transport runs the server end's receive in the context of the connection's opening.

As asyncio's socket transports call ``data_received`` (their reader handle's context is copied once, when the
connection is made), not in a copy of the sender's context made per frame; a channel made outside
``MemoryTransport.connect`` still copies the sender's context per frame.
"""

from __future__ import annotations

import asyncio
import contextvars

from simulator.memory import MemoryChannel, MemoryNetwork, MemoryTransport
from simulator.node import ExchangeNode
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.virtual import run_virtual
from wsfinal import ConnectionConfig, ConnectionType

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("speed5_test_var", default="unset")
URL = "ws://127.0.0.1:7001/ws/2"


def test_server_receive_runs_in_the_context_of_the_connection_s_opening() -> None:
    async def main() -> tuple[list[str], list[str]]:
        network = MemoryNetwork()
        node = ExchangeNode(NodeSpec(id="n1", service=ServiceSpec("constant", 1, {"value": 0.001})), seed=1)
        network.add("127.0.0.1:7001", node)
        node.start()
        VAR.set("at connect")
        channel = await MemoryTransport(network).connect(
            URL, ConnectionConfig(url=URL, connection_type=ConnectionType.TRADING)
        )
        seen: list[str] = []
        receive = channel._receive
        assert receive is not None

        def spy(data: str | bytes) -> None:
            seen.append(VAR.get())
            receive(data)

        channel._receive = spy
        VAR.set("after connect")
        assert channel.send_nowait('{"event":"ping","cid":1}')
        await channel.send('{"event":"ping","cid":2}')
        await asyncio.sleep(0.01)
        # a channel of its own (not opened by the transport): a copy of the sender's context per frame
        loose = MemoryChannel(asyncio.get_running_loop(), URL)
        loose_seen: list[str] = []
        loose._receive = lambda data: loose_seen.append(VAR.get())
        assert loose.send_nowait("x")
        await asyncio.sleep(0.01)
        await channel.close()
        node.stop()
        return seen, loose_seen

    seen, loose_seen = run_virtual(main())
    assert seen == ["at connect", "at connect"]
    assert loose_seen == ["after connect"]
