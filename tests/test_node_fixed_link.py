"""Delivery times worked out by :class:`simulator.node_connection.NodeConnection` itself on links without jitter.

On the request path (an order in, its two answer frames out) a node connection on a jitter-free link computes
``Link.deliver_at`` / ``deliver_pair_at`` inline from ``Link.fixed_latency`` and ``Link.fifo``; with jitter it
calls the link. Both ways must give the same frames at the same times, the same counters and the same link state,
also when a fault window has pushed a direction's FIFO time beyond ``now + latency``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.fault_link import Link
from simulator.faults import Fault
from simulator.node import ExchangeNode, NodeConnection
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.virtual import run_virtual

KEY, SECRET = "demo-key", "demo-secret"


class MemoryChannel:
    """Records what the node sends, with the loop time of each call."""

    peer = "127.0.0.1"

    def __init__(self) -> None:
        self.frames: list[tuple[float, Any]] = []

    def send(self, data: str | bytes) -> None:
        self.frames.append((asyncio.get_running_loop().time(), data))

    def send_fragments(self, parts: Sequence[str | bytes], delay_s: float) -> None:
        self.frames.append((asyncio.get_running_loop().time(), tuple(parts)))

    def close(self, code: int, reason: str = "") -> None:
        self.frames.append((asyncio.get_running_loop().time(), ("close", code, reason)))

    def abort(self) -> None:
        self.frames.append((asyncio.get_running_loop().time(), ("abort",)))


class PairChannel(MemoryChannel):
    """With the optional send_pair (as the in-memory transport's server end has)."""

    def send_pair(self, first: str | bytes, second: str | bytes) -> bool:
        self.send(first)
        self.send(second)
        return True


def spec(**kw: Any) -> NodeSpec:
    base: dict[str, Any] = {"id": "node-a", "queue_limit": 100, "symbols": ("tBTCUSD",), "api_keys": {KEY: SECRET}}
    base.update(kw)
    return NodeSpec(**base)


def auth_message(nonce: int = 1) -> str:
    payload = f"AUTH{nonce}"
    sig = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha384).hexdigest()
    return json.dumps({"event": "auth", "apiKey": KEY, "authNonce": nonce, "authPayload": payload, "authSig": sig})


def order_message(cid: int) -> str:
    order = {"cid": cid, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "price": "30000"}
    return json.dumps([0, "on", None, order])


def is_order_reply(m: Any) -> bool:
    return isinstance(m, list) and len(m) >= 3 and m[0] == 0 and m[1] == "n" and m[2][1] == "on-req"


def _run(latency: float, jitter: float, gaps: list[float], faults: list[Fault], paired: bool) -> tuple[Any, ...]:
    async def main() -> tuple[Any, ...]:
        node = ExchangeNode(
            spec(
                network_latency_s=latency,
                network_jitter_s=jitter,
                service=ServiceSpec("exponential", 1, {"mean": 0.005}),
            ),
            faults=faults,
        )
        node.start()
        ch: MemoryChannel = PairChannel() if paired else MemoryChannel()
        conn = node.connect(ch)
        conn.receive(auth_message())
        for cid, gap in enumerate(gaps, start=1):
            await asyncio.sleep(gap)
            conn.receive(order_message(cid))
        await asyncio.sleep(2.0)
        fifo = (conn.link.fifo("up").last_at, conn.link.fifo("down").last_at)
        node.stop()
        return ch.frames, node.frames_sent, node.frames_received, fifo, conn._up_fifo is not None

    return run_virtual(main())


def _through_the_link(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every node connection ask its link (the general form of the inline computation). Returns a list that
    gets the direction of each frame the link held back for an earlier one (arriving after ``now + latency``)."""
    init = NodeConnection.__init__
    held: list[str] = []
    single, pair = Link._deliver_at_fixed, Link._deliver_pair_at_fixed

    def general_init(self: NodeConnection, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._up_fifo = self._down_fifo = None

    def deliver_at(self: Link, direction: str, now: float) -> float:
        at = single(self, direction, now)
        if at > now + self._latency:
            held.append(direction)
        return at

    def deliver_pair_at(self: Link, direction: str, now: float) -> tuple[float, float]:
        at, second = pair(self, direction, now)
        if at > now + self._latency:
            held.append(direction)
        return at, second

    monkeypatch.setattr(NodeConnection, "__init__", general_init)
    monkeypatch.setattr(Link, "_deliver_at_fixed", deliver_at)
    monkeypatch.setattr(Link, "_deliver_pair_at_fixed", deliver_pair_at)
    return held


def window(direction: str) -> list[Fault]:
    """A latency fault in the middle: frames planned during it arrive late, and the plain frames right after it
    must wait for them (the FIFO time is then beyond now + latency)."""
    return [Fault("latency", at_s=0.05, duration_s=0.05, direction=direction, params={"latency": 0.08})]


@settings(max_examples=15, deadline=None)
@given(
    latency=st.sampled_from([0.0, 0.001, 0.02]),
    gaps=st.lists(st.sampled_from([0.0, 0.0005, 0.002, 0.01, 0.03]), min_size=1, max_size=25),
    direction=st.sampled_from([None, "up", "down", "both"]),
    paired=st.booleans(),
)
def test_inline_delivery_times_equal_the_links(
    latency: float, gaps: list[float], direction: str | None, paired: bool
) -> None:
    faults = window(direction) if direction else []
    fast = _run(latency, 0.0, gaps, faults, paired)
    assert fast[4]  # the inline computation ran
    with pytest.MonkeyPatch.context() as monkeypatch:
        _through_the_link(monkeypatch)
        general = _run(latency, 0.0, gaps, faults, paired)
    assert not general[4]
    assert fast[:4] == general[:4]
    frames = fast[0]
    assert sum(1 for _, d in frames if isinstance(d, str) and '"on-req"' in d) == len(gaps)


@pytest.mark.parametrize("direction", ["up", "down"])
def test_fifo_time_after_a_fault_window_holds_back_the_next_plain_frames(direction: str) -> None:
    # frames sent while the window is open arrive after it: the first plain ones after the window wait for them
    gaps = [0.06] + [0.005] * 20
    fast = _run(0.01, 0.0, gaps, window(direction), True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        held = _through_the_link(monkeypatch)
        general = _run(0.01, 0.0, gaps, window(direction), True)
    assert fast[:4] == general[:4]
    times = [t for t, d in fast[0] if isinstance(d, str) and is_order_reply(json.loads(d))]
    assert times == sorted(times) and len(times) == len(gaps)
    assert direction in held  # the case this test is for: plain frames held back by the window's late ones


def test_links_with_jitter_keep_asking_the_link() -> None:
    run = _run(0.01, 0.004, [0.001] * 10, [], True)
    assert not run[4]


def test_fixed_latency_and_fifo_give_deliver_at() -> None:
    node = ExchangeNode(spec(network_latency_s=0.02))
    fixed, general = node.faults.open_link(), node.faults.open_link()
    assert fixed.fixed_latency == 0.02
    assert ExchangeNode(spec(network_latency_s=0.02, network_jitter_s=0.001)).faults.open_link().fixed_latency is None
    fifo = fixed.fifo("down")
    assert fifo is fixed.fifo("down") and fifo is not fixed.fifo("up")
    for now in [0.0, 0.001, 0.001, 0.5, 0.7]:
        fifo.last_at = max(fifo.last_at, 0.6)  # as a fault window would leave it
        general.fifo("down").last_at = max(general.fifo("down").last_at, 0.6)
        at = max(now + fixed.fixed_latency, fifo.last_at)
        fifo.last_at = at
        assert at == Link.deliver_at(general, "down", now) == general.fifo("down").last_at
