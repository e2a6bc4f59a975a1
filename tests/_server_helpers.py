"""Shared by the live exchange tests (test_server*.py, test_exchange_commands.py): a served node, a raw
``websockets`` client, and small protocol steps (authenticate, order, ping, read until a close)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from simulator.faults import Fault
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.server import LIVE_TIMER_SLACK_S, ExchangeServer

KEY, SECRET = "demo-key", "demo-secret"

#: Live nodes send a frame up to LIVE_TIMER_SLACK_S before its modelled time, in each direction: lower bounds on
#: measured delays allow for that.
EARLY = 2 * LIVE_TIMER_SLACK_S


def spec(**kw: Any) -> NodeSpec:
    base: dict[str, Any] = {
        "id": "node-a",
        "service": ServiceSpec("constant", 2, {"value": 0.005}),
        "queue_limit": 100,
        "symbols": ("tBTCUSD",),
        "api_keys": {KEY: SECRET},
        "market_update_interval_s": 0.02,
    }
    base.update(kw)
    return NodeSpec(**base)


@contextlib.asynccontextmanager
async def serving(faults: Sequence[Fault] = (), **kw: Any) -> AsyncIterator[ExchangeServer]:
    server = ExchangeServer([spec(**kw)], faults=faults, seed=1)
    async with server:
        yield server


def url(server: ExchangeServer) -> str:
    return server.urls["node-a"]


def client(server: ExchangeServer, **kw: Any) -> Any:
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", 2)
    kw.setdefault("close_timeout", 1)
    return connect(url(server), **kw)


async def recv(ws: ClientConnection, timeout: float = 1.0) -> Any:
    data = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(data)


async def recv_until(ws: ClientConnection, pred: Any, timeout: float = 1.5) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            m = json.loads(await ws.recv())
            if pred(m):
                return m


async def drain(ws: ClientConnection, seconds: float) -> list[str | bytes]:
    out: list[str | bytes] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                out.append(await ws.recv())
    return out


def is_event(name: str) -> Any:
    return lambda m: isinstance(m, dict) and m.get("event") == name


def is_order_reply(m: Any) -> bool:
    return isinstance(m, list) and m[:2] == [0, "n"] and m[2][1] == "on-req"


async def authenticate(ws: ClientConnection) -> None:
    payload = "AUTH1"
    sig = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha384).hexdigest()
    await ws.send(json.dumps({"event": "auth", "apiKey": KEY, "authNonce": 1, "authPayload": payload, "authSig": sig}))
    reply = await recv_until(ws, is_event("auth"))
    assert reply["status"] == "OK"


async def order(ws: ClientConnection, cid: int) -> None:
    body = {"cid": cid, "type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "price": "30000"}
    await ws.send(json.dumps([0, "on", None, body]))


async def ping_rtt(ws: ClientConnection, cid: int = 1) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await ws.send(json.dumps({"event": "ping", "cid": cid}))
    await recv_until(ws, lambda m: is_event("pong")(m) and m["cid"] == cid)
    return loop.time() - t0


async def close_code(ws: ClientConnection, timeout: float = 2.0) -> int | None:
    """Read until the connection closes; the close code received (None: no close frame, i.e. 1006)."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    assert ws.close_code is not None
    rcvd = ws.protocol.close_rcvd
    return rcvd.code if rcvd is not None else None


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def stream_arrays(msgs: list[str | bytes]) -> list[Any]:
    out = []
    for m in msgs:
        v = json.loads(m)
        if isinstance(v, list) and v[0] != 0:
            out.append(v)
    return out


async def subscribed_stream(faults: Sequence[Fault], seconds: float, flags: int = 0) -> list[str | bytes]:
    async with serving(faults) as server, client(server) as ws:
        await recv(ws)
        if flags:
            await ws.send(json.dumps({"event": "conf", "flags": flags}))
        await ws.send(json.dumps({"event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"}))
        await ws.send(json.dumps({"event": "subscribe", "channel": "book", "symbol": "tBTCUSD"}))
        return await drain(ws, seconds)
