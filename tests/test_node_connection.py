"""simulator.node_connection: the fast paths of one node connection (an order's two answer frames in one
``send_pair``, an order frame handed to the service model without ``execute``) give what the general path gives."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _node_helpers import MemoryChannel, auth_message, is_order_reply, order_message, spec

from simulator.bitfinex import Order
from simulator.node import ExchangeNode, NodeConnection
from simulator.scenario import ServiceSpec
from simulator.virtual import run_virtual


class PairChannel(MemoryChannel):
    """A channel with the optional send_pair (as the in-memory transport's server end has)."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs = 0

    def send_pair(self, first: str | bytes, second: str | bytes) -> bool:
        self.pairs += 1
        self.send(first)
        self.send(second)
        return True


@pytest.mark.parametrize(("latency", "jitter"), [(0.0, 0.0), (0.0, 0.004), (0.02, 0.0), (0.02, 0.01)])
def test_order_answers_are_the_same_with_and_without_send_pair(latency: float, jitter: float) -> None:
    # NodeConnection._send_answer: on a plain link both frames of an order's answer go out with one send_pair()
    # when the channel has it and both are due now; otherwise frame by frame as execute() would. Same frames,
    # same times, same jitter draws, same count.
    async def main(ch: MemoryChannel) -> tuple[list[tuple[float, Any]], int]:
        node = ExchangeNode(
            spec(
                network_latency_s=latency,
                network_jitter_s=jitter,
                service=ServiceSpec("exponential", 1, {"mean": 0.005}),
            )
        )
        node.start()
        conn = node.connect(ch)
        conn.receive(auth_message())
        for cid in range(1, 40):
            await asyncio.sleep(0.002 * (cid % 4))
            conn.receive(order_message(cid))
        await asyncio.sleep(1.0)
        node.stop()
        return ch.frames, node.frames_sent

    plain, paired = MemoryChannel(), PairChannel()
    assert run_virtual(main(plain)) == run_virtual(main(paired))
    assert len(plain.find(is_order_reply)) == 39
    if latency == 0.0:
        assert paired.pairs > 0  # the one-call path ran (with jitter: when both draws came out at 0)
    elif jitter == 0.0:
        assert paired.pairs == 0  # every answer waited for the latency: the frame-by-frame path


def test_a_send_pair_that_closes_at_the_first_frame_counts_one() -> None:
    class ClosingChannel(MemoryChannel):
        conn: Any = None

        def send_pair(self, first: str | bytes, second: str | bytes) -> bool:
            self.send(first)
            self.conn.closed()  # the first frame was too big: the shell closed the connection
            return False

    async def main() -> tuple[int, int]:
        node = ExchangeNode(spec())
        node.start()
        ch = ClosingChannel()
        ch.conn = conn = node.connect(ch)
        conn.receive(auth_message())
        await asyncio.sleep(0.001)
        before = node.frames_sent
        conn.receive(order_message(1))
        await asyncio.sleep(0.1)
        node.stop()
        return node.frames_sent - before, len(ch.find(is_order_reply))

    assert run_virtual(main()) == (1, 1)


@pytest.mark.parametrize("queue_limit", [100, 3])
def test_an_order_frame_goes_the_same_way_with_and_without_the_receive_fast_path(
    monkeypatch: pytest.MonkeyPatch, queue_limit: int
) -> None:
    # NodeConnection.receive hands a frame that is exactly one accepted Order to the service model itself,
    # without execute(): same answers (rate-limit errors included), same times, same counts as execute() gives.
    async def main() -> tuple[list[tuple[float, Any]], int, int]:
        node = ExchangeNode(spec(queue_limit=queue_limit, service=ServiceSpec("exponential", 1, {"mean": 0.005})))
        node.start()
        ch = MemoryChannel()
        conn = node.connect(ch)
        conn.receive(auth_message())
        for cid in range(1, 30):
            await asyncio.sleep(0.002 * (cid % 3))
            conn.receive(order_message(cid))
            conn.receive("not json")  # and other frames, which go through execute() either way
        await asyncio.sleep(1.0)
        node.stop()
        return ch.frames, node.frames_sent, node.frames_received

    fast = run_virtual(main())
    executed = []
    real_execute = NodeConnection.execute

    def execute(self: NodeConnection, actions: Any, now: float) -> None:
        executed.extend(actions)
        real_execute(self, actions, now)

    def general_receive(self: NodeConnection, data: str | bytes) -> None:  # the fast path's general form
        self._handle_inbound(data, self.node.loop.time())

    monkeypatch.setattr(NodeConnection, "execute", execute)
    monkeypatch.setattr(NodeConnection, "receive", general_receive)
    assert run_virtual(main()) == fast
    assert sum(isinstance(a, Order) for a in executed) == 29
    replies = [m for _, m in fast[0] if '"on-req"' in m]
    assert len(replies) == 29 and any('"SUCCESS"' in m for m in replies)
    assert any('"ERROR"' in m for m in replies) == (queue_limit == 3)  # rate-limit errors where the queue is short
