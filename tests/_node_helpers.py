"""Shared by the exchange node tests (test_node.py, test_node_connection.py): a channel that records what the node
sends with the loop time of each call, a node spec, and the client frames and reply checks they use."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

from simulator.node import ExchangeNode
from simulator.scenario import NodeSpec, ServiceSpec

KEY, SECRET = "demo-key", "demo-secret"


class MemoryChannel:
    """Records what the node sends, with the loop time of each call."""

    def __init__(self, peer: str = "127.0.0.1") -> None:
        self.peer = peer
        self.frames: list[tuple[float, Any]] = []
        self.closed: tuple[float, int, str] | None = None
        self.aborted: float | None = None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def send(self, data: str | bytes) -> None:
        self.frames.append((self._now(), data))

    def send_fragments(self, parts: Sequence[str | bytes], delay_s: float) -> None:
        self.frames.append((self._now(), tuple(parts)))

    def close(self, code: int, reason: str = "") -> None:
        self.closed = (self._now(), code, reason)

    def abort(self) -> None:
        self.aborted = self._now()

    def messages(self) -> list[Any]:
        return [json.loads(d) for _, d in self.frames if isinstance(d, str)]

    def find(self, pred: Any) -> list[tuple[float, Any]]:
        out = []
        for t, d in self.frames:
            if isinstance(d, str):
                m = json.loads(d)
                if pred(m):
                    out.append((t, m))
        return out


def spec(**kw: Any) -> NodeSpec:
    base: dict[str, Any] = {
        "id": "node-a",
        "service": ServiceSpec("constant", 1, {"value": 0.010}),
        "queue_limit": 100,
        "network_latency_s": 0.0,
        "heartbeat_interval_s": 15.0,
        "symbols": ("tBTCUSD",),
        "api_keys": {KEY: SECRET},
    }
    base.update(kw)
    return NodeSpec(**base)


def auth_message(nonce: int = 1) -> str:
    payload = f"AUTH{nonce}"
    sig = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha384).hexdigest()
    return json.dumps({"event": "auth", "apiKey": KEY, "authNonce": nonce, "authPayload": payload, "authSig": sig})


def order_message(cid: int) -> str:
    return json.dumps(
        [0, "on", None, {"cid": cid, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "price": "30000"}]
    )


def is_order_reply(m: Any) -> bool:
    return isinstance(m, list) and len(m) >= 3 and m[0] == 0 and m[1] == "n" and m[2][1] == "on-req"


def reply_status(m: Any) -> str:
    return str(m[2][6])


def reply_cid(m: Any) -> int:
    return int(m[2][4][2])


async def connected(node: ExchangeNode) -> tuple[Any, MemoryChannel]:
    ch = MemoryChannel()
    conn = node.connect(ch)
    conn.receive(auth_message())
    await asyncio.sleep(0.001)
    return conn, ch
