"""Shared by the ManagedConnection tests (test_connection*.py, test_interface.py): a scripted Bitfinex-like server,
the real fake exchange with faults, and small helpers to build connections and wait for conditions.

:class:`FakeExchange` is a small Bitfinex-like server whose every reaction a test controls (silence, close codes,
held or rejected orders, raw frames); :func:`real_exchange` serves the simulator's exchange
(``simulator.server.ExchangeServer``) with a fault timeline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from simulator.faults import Fault
from simulator.scenario import NodeSpec, ServiceSpec
from simulator.server import ExchangeServer
from wsfinal import ConnectionConfig, ConnectionType
from wsfinal.connection import ManagedConnection
from wsfinal.interface import ConnectionEvent
from wsfinal.store import InMemoryConnectionStore


class FakeExchange:
    """A Bitfinex-like server: info on open, subscribe/unsubscribe/conf/auth/ping, order acks by client id."""

    def __init__(self) -> None:
        self.conns: list[ServerConnection] = []
        self.opened_at: list[float] = []
        self.received: list[list[Any]] = []
        self.silent = False  # half-open: keep TCP (and WebSocket pongs) up, answer nothing
        self.order_mode = "ack"  # ack | reject | hold
        self.close_on_open: int | None = None
        self.auth_ok = True
        self.greet = True  # send the info event on open
        self.ignore_subscribes = 0  # swallow this many subscribe requests (lost on the way)
        self._chan = itertools.count(10)

    async def handler(self, ws: ServerConnection) -> None:
        self.conns.append(ws)
        self.opened_at.append(asyncio.get_running_loop().time())
        log: list[Any] = []
        self.received.append(log)
        try:
            if self.greet:
                await ws.send(json.dumps({"event": "info", "version": 2, "platform": {"status": 1}}))
            if self.close_on_open is not None:
                await ws.close(self.close_on_open, "go away")
                return
            async for raw in ws:
                msg = json.loads(raw)
                log.append(msg)
                if not self.silent:
                    await self.answer(ws, msg)
        except ConnectionClosed:
            pass

    async def answer(self, ws: ServerConnection, msg: Any) -> None:
        if isinstance(msg, dict):
            event = msg.get("event")
            if event == "subscribe" and self.ignore_subscribes > 0:
                self.ignore_subscribes -= 1
            elif event == "subscribe":
                reply = {k: v for k, v in msg.items() if k != "event"}
                await ws.send(json.dumps({"event": "subscribed", "chanId": next(self._chan), **reply}))
            elif event == "unsubscribe":
                await ws.send(json.dumps({"event": "unsubscribed", "status": "OK", "chanId": msg["chanId"]}))
            elif event == "auth":
                ok = {"event": "auth", "status": "OK", "chanId": 0, "userId": 1}
                bad = {"event": "auth", "status": "FAILED", "chanId": 0, "code": 10100, "msg": "apikey: invalid"}
                await ws.send(json.dumps(ok if self.auth_ok else bad))
            elif event == "ping":
                await ws.send(json.dumps({"event": "pong", "cid": msg.get("cid"), "ts": 0}))
            elif event == "conf":
                await ws.send(json.dumps({"event": "conf", "status": "OK", "flags": msg["flags"]}))
        elif isinstance(msg, list) and msg[1:2] == ["on"]:
            cid = msg[3]["cid"]
            if self.order_mode == "ack":
                await ws.send(notification(cid, True))
            elif self.order_mode == "reject":
                await ws.send(notification(cid, False, 10001, "unknown pair"))

    def subscribes(self, index: int) -> list[dict[str, Any]]:
        return [
            m for m in self.received[index] if isinstance(m, dict) and m.get("event") in ("subscribe", "unsubscribe")
        ]


def notification(cid: int, ok: bool, code: int | None = None, text: str = "") -> str:
    order = [1, None, cid, "tBTCUSD", 0, 0, 0.1, 0.1, "EXCHANGE LIMIT"]
    return json.dumps([0, "n", [0, "on-req", None, None, order, code, "SUCCESS" if ok else "ERROR", text]])


@asynccontextmanager
async def exchange() -> AsyncIterator[tuple[FakeExchange, str]]:
    fx = FakeExchange()
    async with serve(fx.handler, "127.0.0.1", 0, ping_interval=None) as srv:
        yield fx, f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/ws/2"


def cfg(url: str, **kw: Any) -> ConnectionConfig:
    kw.setdefault("reconnect_delay_seconds", 0.05)
    kw.setdefault("connection_timeout_seconds", 2.0)
    return ConnectionConfig(url=url, connection_type=kw.pop("connection_type", ConnectionType.TRADING), **kw)


def managed(
    config: ConnectionConfig, cid: str = "c1", seed: int = 1, **kw: Any
) -> tuple[ManagedConnection, list[ConnectionEvent], InMemoryConnectionStore]:
    store = InMemoryConnectionStore()
    store.register(cid, config)
    conn = ManagedConnection(config, connection_id=cid, rng=random.Random(seed), **kw)
    conn.bind(store)
    events: list[ConnectionEvent] = []
    conn.add_listener(events.append)
    return conn, events, store


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def kinds(events: list[ConnectionEvent], kind: str) -> list[ConnectionEvent]:
    return [e for e in events if e.kind == kind]


def states(events: list[ConnectionEvent]) -> list[str]:
    return [e.detail["new"] for e in kinds(events, "state_changed")]


def no_other_tasks() -> bool:
    """No task of wsfinal's left (every task the connection creates is named ``wsfinal-...``)."""
    return not [t for t in asyncio.all_tasks() if t.get_name().startswith("wsfinal-")]


class Recorder:
    def __init__(self, *, answers: bool = True) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.answers = answers  # offers record_answer (else the connection uses record_message + record_latency)

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("record_") or (name == "record_answer" and not self.answers):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


KEY, SECRET = "demo-key", "demo-secret"

ORDER = {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.1", "price": "30000"}


@asynccontextmanager
async def real_exchange(faults: Any = ()) -> AsyncIterator[str]:
    node = NodeSpec(
        id="node-a",
        service=ServiceSpec("constant", 2, {"value": 0.002}),
        queue_limit=100,
        symbols=("tBTCUSD",),
        api_keys={KEY: SECRET},
        market_update_interval_s=0.02,
    )
    async with ExchangeServer([node], faults=faults, seed=3) as server:
        yield server.urls["node-a"]


def real(url: str, **kw: Any) -> tuple[ManagedConnection, list[ConnectionEvent], InMemoryConnectionStore]:
    nonce = itertools.count(10**6).__next__
    return managed(cfg(url, **kw), api_key=KEY, api_secret=SECRET, nonce=nonce)


def fault(kind: str, at_s: float = 0.0, duration_s: float | None = 5.0, **params: Any) -> Any:
    return Fault(kind, at_s=at_s, duration_s=duration_s, params=params)
