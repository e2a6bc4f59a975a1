"""The in-memory transport against a real exchange node, on the virtual-time loop."""

import asyncio
import json

import pytest

from simulator.memory import MemoryNetwork, MemoryTransport
from simulator.node import ExchangeNode
from simulator.scenario import NodeSpec
from simulator.virtual import run_virtual
from wsfinal import ConnectionConfig, ConnectionLost, ConnectionType, TransportError
from wsfinal.transport import HandshakeRefused

URL = "ws://127.0.0.1:7001/ws/2"
CFG = ConnectionConfig(url=URL, connection_type=ConnectionType.MARKET_DATA)


def make(faults=()):
    node = ExchangeNode(NodeSpec(id="n1", symbols=("tBTCUSD",)), faults=faults, seed=3)
    network = MemoryNetwork()
    network.add("127.0.0.1:7001", node)
    return node, network


def test_info_ping_and_subscribe_round_trip():
    async def main():
        node, network = make()
        node.start()
        channel = await MemoryTransport(network).connect(URL, CFG)
        info = json.loads(await channel.recv())
        assert info["event"] == "info" and info["version"] == 2
        await channel.send(json.dumps({"event": "ping", "cid": 42}))
        pong = json.loads(await channel.recv())
        assert pong["event"] == "pong" and pong["cid"] == 42
        await channel.send(json.dumps({"event": "subscribe", "channel": "ticker", "symbol": "tBTCUSD"}))
        sub = json.loads(await channel.recv())
        assert sub["event"] == "subscribed" and sub["channel"] == "ticker"
        first = json.loads(await channel.recv())
        assert first[0] == sub["chanId"]
        await channel.close()
        assert channel.close_code == 1000
        with pytest.raises(ConnectionLost):
            await channel.recv()
        await asyncio.sleep(0)
        assert not node.connections  # the node released the connection
        node.stop()

    run_virtual(main())


def test_unknown_endpoint_and_server_close():
    async def main():
        node, network = make()
        node.start()
        with pytest.raises(TransportError, match="nothing listens"):
            await MemoryTransport(network).connect("ws://127.0.0.1:9/ws/2", CFG)
        channel = await MemoryTransport(network).connect(URL, CFG)
        await channel.recv()
        node.stop()  # aborts every connection: no close frame
        with pytest.raises(ConnectionLost) as info:
            await channel.recv()
        assert info.value.code == 1006

    run_virtual(main())


def test_node_down_refuses_the_handshake():
    from simulator.scenario import FaultSpec

    async def main():
        node, network = make([FaultSpec(kind="node_down", at_s=1.0, duration_s=5.0, node="n1")])
        node.start()
        await asyncio.sleep(2.0)
        with pytest.raises(HandshakeRefused) as info:
            await MemoryTransport(network).connect(URL, CFG)
        assert info.value.status == 503
        await asyncio.sleep(5.0)
        channel = await MemoryTransport(network).connect(URL, CFG)
        assert json.loads(await channel.recv())["event"] == "info"
        await channel.close()
        node.stop()

    run_virtual(main())


def test_same_seed_same_stream_in_virtual_time():
    async def main():
        node, network = make()
        node.start()
        loop = asyncio.get_running_loop()
        channel = await MemoryTransport(network).connect(URL, CFG)
        await channel.recv()
        await channel.send(json.dumps({"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"}))
        frames = []
        while loop.time() < 5.0:
            frames.append((round(loop.time(), 9), await channel.recv()))
        await channel.close()
        node.stop()
        return frames

    a = run_virtual(main())
    b = run_virtual(main())
    assert len(a) > 5 and a == b


def test_pings_unanswered_while_the_node_stops_reading():
    from simulator.scenario import FaultSpec

    async def main():
        fault = FaultSpec(kind="timeout", at_s=1.0, duration_s=3.0, node="n1", direction="up", params={"timeout": 0.0})
        node, network = make([fault])
        node.start()
        loop = asyncio.get_running_loop()
        channel = await MemoryTransport(network).connect(URL, CFG)
        assert await channel.ping() == 0.0
        await asyncio.sleep(1.5)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(channel.ping(), timeout=1.0)  # half-open: no pong
        t0 = loop.time()
        rtt = await channel.ping()  # answered when the fault ends at t=4
        assert loop.time() == pytest.approx(4.0, abs=1e-6) and rtt == pytest.approx(4.0 - t0, abs=1e-6)
        await channel.close()
        node.stop()

    run_virtual(main())


def test_push_mode_delivers_in_order_from_loop_callbacks_then_the_loss_once():
    async def main():
        node, network = make()
        node.start()
        channel = await MemoryTransport(network).connect(URL, CFG)
        got: list = []
        lost: list = []
        assert channel.push_to(lambda data: got.append(json.loads(data)), lost.append)
        assert got == []  # the info event already waiting is delivered by a loop callback, not inside push_to
        assert channel.send_nowait(json.dumps({"event": "ping", "cid": 1}))
        assert channel.send_nowait(json.dumps({"event": "ping", "cid": 2}))
        for _ in range(10):
            await asyncio.sleep(0)
        assert [m.get("event") for m in got] == ["info", "pong", "pong"]
        assert [m.get("cid") for m in got[1:]] == [1, 2]  # in the order sent
        assert channel.bytes_sent == 2 * len(json.dumps({"event": "ping", "cid": 1}))
        node.stop()  # aborts every connection: no close frame
        await asyncio.sleep(0)
        assert len(lost) == 1 and isinstance(lost[0], ConnectionLost) and lost[0].code == 1006
        assert not channel.send_nowait("late")  # closed: declined (send would raise the loss)
        with pytest.raises(ConnectionLost):
            await channel.send("late")
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(lost) == 1  # reported once

    run_virtual(main())


def test_push_mode_and_recv_give_the_same_stream_in_virtual_time():
    async def session(push: bool) -> list:
        node, network = make()
        node.start()
        channel = await MemoryTransport(network).connect(URL, CFG)
        got: list = []
        if push:
            channel.push_to(got.append, lambda exc: None)
        await channel.send(json.dumps({"event": "subscribe", "channel": "ticker", "symbol": "tBTCUSD"}))
        loop = asyncio.get_running_loop()
        until = loop.time() + 5.0
        while loop.time() < until:
            if push:
                await asyncio.sleep(0.01)
            else:
                try:
                    async with asyncio.timeout_at(until):
                        got.append(await channel.recv())
                except TimeoutError:
                    break
        await channel.close()
        node.stop()
        return got

    pulled = run_virtual(session(False))
    pushed = run_virtual(session(True))
    assert len(pulled) > 10 and pushed[: len(pulled)] == pulled


def test_send_pair_is_two_sends_in_one_call():
    # The node answers an order with two frames through _ServerEnd.send_pair: the same as send() twice (order,
    # byte counts, one drain in push mode, a waiting recv() woken), and a first frame over max_size closes the
    # channel without delivering the second (False: the node counts one frame sent).
    async def main():
        node, network = make()
        node.start()
        pulled = await MemoryTransport(network).connect(URL, CFG)
        await pulled.recv()  # info
        server = pulled._server
        waiter = asyncio.ensure_future(pulled.recv())
        await asyncio.sleep(0)
        assert server.send_pair("a", "bc") is True
        assert await waiter == "a" and await pulled.recv() == "bc"
        pushed = await MemoryTransport(network).connect(URL, CFG)
        got: list = []
        pushed.push_to(got.append, lambda exc: None)
        await asyncio.sleep(0)
        received = pushed.bytes_received
        assert pushed._server.send_pair("x", "yz") is True
        assert got[1:] == [] and pushed._drain_scheduled  # delivered by one loop callback, as frames are
        await asyncio.sleep(0)
        assert got[1:] == ["x", "yz"] and pushed.bytes_received == received + 3
        small = await MemoryTransport(network).connect(URL, CFG)
        small.max_size = 4
        small._inbox.clear()
        small_server = small._server
        assert small_server.send_pair("12345", "1") is False  # first too big: closed, second dropped
        assert small.close_code == 1009 and list(small._inbox) == [] and not small_server._open
        assert small_server.send_pair("late", "late") is True  # closed: ignored, like send()
        last = await MemoryTransport(network).connect(URL, CFG)
        last.max_size = 4
        last._inbox.clear()
        assert last._server.send_pair("1234", "12345") is True  # second too big: first delivered, then closed
        assert list(last._inbox) == ["1234"] and last.close_code == 1009
        node.stop()

    run_virtual(main())


@pytest.mark.parametrize("end", ["open", "close", "abort", "client_close", "client_abort", "too_big"])
def test_the_bound_send_pair_does_what_the_method_does(end):
    # _ServerEnd.send_pair is the client's _deliver_pair itself (one frame less per order): in every state the two
    # ends can be in it must give what _send_pair (the checked method) gives, with the same effect on the client.
    # (peer_closed is called only once the client's close code is set: by its close() and its abort().)
    async def outcome(bound: bool) -> tuple:
        node, network = make()
        node.start()
        channel = await MemoryTransport(network).connect(URL, CFG)
        await channel.recv()  # info
        server = channel._server
        if end == "close":
            server.close(4000, "bye")
        elif end == "abort":
            server.abort()
        elif end == "client_abort":
            channel.abort()
        elif end == "client_close":
            await channel.close()
        elif end == "too_big":
            channel.max_size = 4
        send_pair = server.send_pair if bound else server._send_pair
        result = send_pair("12345" if end == "too_big" else "ab", "cd")
        await asyncio.sleep(0)
        state = (result, list(channel._inbox), channel.bytes_received, channel.close_code, server._open)
        node.stop()
        return state

    assert run_virtual(outcome(True)) == run_virtual(outcome(False))


def test_the_drain_handle_used_again_gives_the_same_stream():
    # On the virtual loop a pushing channel puts the handle of its previous drain back in the ready queue
    # (call_soon_again) instead of making a new one: the same messages at the same loop times as with new handles.
    async def session(again: bool) -> tuple[list, int]:
        node, network = make()
        node.start()
        channel = await MemoryTransport(network).connect(URL, CFG)
        if not again:
            channel._call_soon_again = None
        loop = asyncio.get_running_loop()
        got: list = []
        handles = []  # kept alive, so that distinct handles have distinct ids

        def on_message(data):
            got.append((loop.time(), data))
            handles.append(channel._drain_handle)

        channel.push_to(on_message, lambda exc: None)
        await channel.send(json.dumps({"event": "subscribe", "channel": "ticker", "symbol": "tBTCUSD"}))
        await asyncio.sleep(5.0)
        await channel.close()
        node.stop()
        return got, len({id(h) for h in handles})

    reused, one = run_virtual(session(True))
    fresh, many = run_virtual(session(False))
    assert len(reused) > 10 and reused == fresh
    assert one == 1 and many > 1
