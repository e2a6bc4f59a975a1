"""The full manager against bare ``websockets``, live on loopback: ``wsfinal bench manager``.

The fake exchange runs in its own process (``wsfinal exchange``), one node with plenty of workers and a tiny
constant service time, so the figures measure the client side. Each comparison is made in the same run:

- **pipelined requests**: N authenticated orders sent back to back, then all answers awaited; requests per
  second through ``WebSocketIntegrationManager.submit`` (balancer, store, analytics on) divided by a bare
  ``websockets`` client sending the same frames on one connection and matching answers by ``cid``;
- **sequential round trip**: one order at a time; median round trip, manager / bare;
- **broadcast**: one message to K live connections through ``broadcast_message`` versus ``asyncio.gather`` of
  ``send`` on K bare connections; and the memory per connection (tracemalloc) of each.

Ratios, not absolute numbers, are the result: both sides share the same noisy machine in the same minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import hmac
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from wsfinal import (
    ConnectionConfig,
    ConnectionType,
    IntegrationConfig,
    LoadBalancingStrategy,
    ManagedConnection,
    WebSocketIntegrationManager,
)

KEY, SECRET = "bench-key", "bench-secret"
ORDER = {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.01", "price": "1000"}

SCENARIO = f"""
name: manager-bench
description: One node with many workers and a 10 us service time, for client-side benchmarks.
duration: 3600s
nodes:
  - id: bench
    service: {{distribution: constant, value: 0.01ms, workers: 64}}
    queue_limit: 100000
    heartbeat_interval: 15s
    api_keys: {{{KEY}: {SECRET}}}
clients:
  connections:
    - {{type: trading, node: bench, count: 1, api_key: {KEY}}}
"""


@contextlib.contextmanager
def exchange_process() -> Iterator[str]:
    """Serve the benchmark node in a separate process; yields its ws:// URL."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(SCENARIO)
        cmd = [sys.executable, "-m", "benchmarks.cli", "exchange", str(path), "--port", "0"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "ws://" not in line:
                raise RuntimeError(f"exchange did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
            yield line.split("->")[-1].strip() + "/ws/2"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def auth_frame(nonce: int) -> str:
    payload = f"AUTH{nonce}"
    sig = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha384).hexdigest()
    return json.dumps({"event": "auth", "apiKey": KEY, "authSig": sig, "authNonce": nonce, "authPayload": payload})


async def bare_client(url: str, nonce: int) -> ClientConnection:
    ws = await connect(url, compression=None, ping_interval=None, max_size=None)
    await ws.recv()  # info
    await ws.send(auth_frame(nonce))
    while True:
        msg = json.loads(await ws.recv())
        if isinstance(msg, dict) and msg.get("event") == "auth":
            return ws


def _cid_of(msg: Any) -> int | None:
    # [0, "n", [MTS, "on-req", null, null, [order...], null, STATUS, TEXT]]; the order array holds cid at [2]
    if isinstance(msg, list) and len(msg) > 2 and msg[1] == "n":
        order = msg[2][4]
        return int(order[2]) if isinstance(order, list) and len(order) > 2 else None
    return None


async def bare_pipelined(url: str, n: int) -> float:
    ws = await bare_client(url, 10**9)
    cids = itertools.count(1)
    start = time.perf_counter()
    for _ in range(n):
        await ws.send(json.dumps([0, "on", None, {**ORDER, "cid": next(cids)}]))
    seen = 0
    while seen < n:
        if _cid_of(json.loads(await ws.recv())) is not None:
            seen += 1
    elapsed = time.perf_counter() - start
    await ws.close()
    return n / elapsed


async def bare_sequential(url: str, n: int) -> float:
    ws = await bare_client(url, 10**9 + 1)
    rtts = []
    for cid in range(1, n + 1):
        t = time.perf_counter()
        await ws.send(json.dumps([0, "on", None, {**ORDER, "cid": cid}]))
        while _cid_of(json.loads(await ws.recv())) != cid:
            pass
        rtts.append(time.perf_counter() - t)
    await ws.close()
    return statistics.median(rtts)


@contextlib.asynccontextmanager
async def managed(url: str, connections: int = 1) -> AsyncIterator[WebSocketIntegrationManager]:
    config = ConnectionConfig(url=url, connection_type=ConnectionType.TRADING, enable_compression=False)
    nonces = itertools.count(2 * 10**9)
    async with WebSocketIntegrationManager(IntegrationConfig(health_check_interval=5)) as manager:
        for i in range(connections):
            conn = ManagedConnection(
                config,
                connection_id=f"c{i}",
                rng=random.Random(i),
                api_key=KEY,
                api_secret=SECRET,
                nonce=nonces.__next__,
            )
            await manager.register_connection(conn, config)
        yield manager


async def managed_pipelined(url: str, n: int) -> float:
    async with managed(url) as manager:
        start = time.perf_counter()
        futures = [manager.submit(ORDER, ConnectionType.TRADING, LoadBalancingStrategy.ROUND_ROBIN) for _ in range(n)]
        outcomes = await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
    failed = sum(1 for o in outcomes if not o.ok)
    if failed:
        raise RuntimeError(f"{failed} of {n} managed requests failed: {outcomes[0]}")
    return n / elapsed


async def managed_sequential(url: str, n: int) -> float:
    async with managed(url) as manager:
        rtts = []
        for _ in range(n):
            t = time.perf_counter()
            outcome = await manager.submit(ORDER, ConnectionType.TRADING)
            rtts.append(time.perf_counter() - t)
            if not outcome.ok:
                raise RuntimeError(f"managed request failed: {outcome}")
    return statistics.median(rtts)


async def broadcast_pair(url: str, k: int, repeats: int = 5) -> dict[str, float]:
    """Broadcast time and memory per connection: manager vs bare gather over k connections each."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    bare = [await connect(url, compression=None, ping_interval=None) for _ in range(k)]
    bare_mem = (tracemalloc.get_traced_memory()[0] - before) / k
    message = json.dumps({"event": "ping", "cid": 1})
    bare_times = []
    for _ in range(repeats):
        t = time.perf_counter()
        await asyncio.gather(*(ws.send(message) for ws in bare))
        bare_times.append(time.perf_counter() - t)
    await asyncio.gather(*(ws.close() for ws in bare))
    del bare
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    config = ConnectionConfig(url=url, connection_type=ConnectionType.MARKET_DATA, enable_compression=False)
    async with WebSocketIntegrationManager(IntegrationConfig(max_connections=k, health_check_interval=60)) as manager:
        await asyncio.gather(
            *(
                manager.register_connection(
                    ManagedConnection(config, connection_id=f"b{i}", rng=random.Random(i)), config
                )
                for i in range(k)
            )
        )
        managed_mem = (tracemalloc.get_traced_memory()[0] - before) / k
        managed_times = []
        for _ in range(repeats):
            t = time.perf_counter()
            results = await manager.broadcast_message({"event": "ping", "cid": 1})
            managed_times.append(time.perf_counter() - t)
            if sum(results.values()) != k:
                raise RuntimeError(f"broadcast reached {sum(results.values())} of {k}")
    tracemalloc.stop()
    return {
        "bare_s": statistics.median(bare_times),
        "managed_s": statistics.median(managed_times),
        "bare_bytes_per_conn": bare_mem,
        "managed_bytes_per_conn": managed_mem,
    }


async def measure(n: int = 5000, seq: int = 500, k: int = 1000, rounds: int = 3) -> dict[str, float]:
    with exchange_process() as url:
        pipe_bare, pipe_managed, seq_bare, seq_managed = [], [], [], []
        for _ in range(rounds):  # interleaved, so drift on the machine hits both sides alike
            pipe_bare.append(await bare_pipelined(url, n))
            pipe_managed.append(await managed_pipelined(url, n))
            seq_bare.append(await bare_sequential(url, seq))
            seq_managed.append(await managed_sequential(url, seq))
        out = {
            "pipelined_bare_rps": statistics.median(pipe_bare),
            "pipelined_managed_rps": statistics.median(pipe_managed),
            "sequential_bare_rtt_us": statistics.median(seq_bare) * 1e6,
            "sequential_managed_rtt_us": statistics.median(seq_managed) * 1e6,
        }
        out["pipelined_ratio"] = out["pipelined_managed_rps"] / out["pipelined_bare_rps"]
        out["sequential_rtt_ratio"] = out["sequential_managed_rtt_us"] / out["sequential_bare_rtt_us"]
        if k:
            b = await broadcast_pair(url, k)
            out.update({f"broadcast_{key}": v for key, v in b.items()})
            out["broadcast_ratio"] = b["managed_s"] / b["bare_s"]
            out["memory_ratio"] = b["managed_bytes_per_conn"] / b["bare_bytes_per_conn"]
    return out


def format_results(r: dict[str, float], n: int, seq: int, k: int) -> str:
    lines = [
        f"pipelined ({n} orders): bare {r['pipelined_bare_rps']:,.0f}/s, manager {r['pipelined_managed_rps']:,.0f}/s, "
        f"ratio {r['pipelined_ratio']:.2f} (target >= 0.7)",
        f"sequential ({seq} orders): median RTT bare {r['sequential_bare_rtt_us']:.0f} us, manager "
        f"{r['sequential_managed_rtt_us']:.0f} us, ratio {r['sequential_rtt_ratio']:.2f} (target <= 1.25)",
    ]
    if "broadcast_ratio" in r:
        lines.append(
            f"broadcast to {k}: bare gather {r['broadcast_bare_s'] * 1e3:.1f} ms, manager "
            f"{r['broadcast_managed_s'] * 1e3:.1f} ms, ratio {r['broadcast_ratio']:.2f} (target <= 1.5)"
        )
        lines.append(
            f"memory per connection: bare {r['broadcast_bare_bytes_per_conn'] / 1024:.1f} KiB, managed "
            f"{r['broadcast_managed_bytes_per_conn'] / 1024:.1f} KiB, ratio {r['memory_ratio']:.2f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print("starting the exchange process and timing (bare websockets vs the full manager) ...", flush=True)
    results = asyncio.run(measure(args.requests, args.sequential, args.connections, args.rounds))
    print(format_results(results, args.requests, args.sequential, args.connections))
    return 0


def register_manager(bench_sub: Any) -> None:
    p = bench_sub.add_parser("manager", help="the full manager vs bare websockets, live on loopback")
    p.add_argument("--requests", type=int, default=5000, help="pipelined orders per round (default 5000)")
    p.add_argument("--sequential", type=int, default=500, help="sequential orders per round (default 500)")
    p.add_argument("--connections", type=int, default=1000, help="connections for the broadcast (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians shown (default 3)")
    p.set_defaults(func=run)
