"""Virtual-time speed: the full manager against a bare SimPy model of the same queues (``wsfinal bench virtual``).

The system: ``nodes`` M/M/1 queues, Poisson arrivals at utilisation ``rho``, each request sent to a random node.
The full manager (balancer, store, analytics, connections, exchange sessions, in-memory transport) runs it on the
virtual-time loop; SimPy runs the same queueing system as a textbook process-per-request model in the same
process. The figure is requests simulated per wall second, and the ratio manager / SimPy (DESIGN.md's goal: 1.0).
With ``--profile``, where the manager's time goes. With ``--scenarios``, also simulated seconds per wall second of
each bundled scenario (``scenarios/*.yaml``) run once in virtual time with its own strategy and seed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from simulator.queueing import queueing_scenario
from simulator.runner import run
from simulator.scenario import load_scenario
from simulator.virtual import VirtualTimeLoop

#: The bundled scenarios (what ``--scenarios`` runs by default).
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


def simpy_rate(nodes: int, rho: float, mu: float, duration_s: float, seed: int = 1) -> tuple[float, int]:
    """Requests per wall second of a SimPy M/M/1 bank (random routing) simulated for ``duration_s``."""
    import simpy

    env = simpy.Environment()
    rng = random.Random(seed)
    servers = [simpy.Resource(env, capacity=1) for _ in range(nodes)]
    lam = rho * mu * nodes
    done = [0]
    latency_sum = [0.0]

    def request(server: Any) -> Any:
        t0 = env.now
        with server.request() as req:
            yield req
            yield env.timeout(rng.expovariate(mu))
        done[0] += 1
        latency_sum[0] += env.now - t0

    def source() -> Any:
        while True:
            yield env.timeout(rng.expovariate(lam))
            env.process(request(servers[int(rng.random() * nodes)]))

    env.process(source())
    start = time.perf_counter()
    env.run(until=duration_s)
    return done[0] / (time.perf_counter() - start), done[0]


#: The order the client sends, as ``wsfinal.traffic`` writes it for a queueing run (plus its ``cid``).
_ORDER_FIELDS = {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.01", "price": "1000"}


def answer_texts(order_id: int, cid: int, mts: int, seq: int) -> tuple[str, str]:
    """The exchange's two answers to an accepted order, written from a template (as ``simulator.bitfinex`` does):
    the ``n`` notification (sequence ``seq``) and the ``[0,"on",ORDER]`` order-new frame (``seq + 1``)."""
    order = (
        f'[{order_id},null,{cid},"tBTCUSD",{mts},{mts},0.01,0.01,"EXCHANGE LIMIT",null,null,null,0,"ACTIVE",null,'
        'null,1000.0,0,0,0,null,null,null,0,0,null,null,null,"API>BFX",null,null,null]'
    )
    note = (
        f'[0,"n",[{mts},"on-req",null,null,{order},null,"SUCCESS",'
        f'"Submitting exchange limit buy order for 0.01 BTC."],{seq},{seq}]'
    )
    return note, f'[0,"on",{order},{seq + 1},{seq + 1}]'


def wire_floor_rate(
    nodes: int, rho: float, mu: float, duration_s: float, seed: int = 1, *, wire: bool = True
) -> tuple[float, int, float]:
    """Requests per wall second of the least any implementation speaking the wire protocol must do, in this process.

    The same M/M/1 bank as :func:`simpy_rate`, on the virtual-time loop, each request a chain of plain callbacks (no
    task, no future) doing only the wire work: the client encodes the order (orjson), the exchange decodes it,
    queues it at its node's single server and, after an exponential service time, writes the ``n`` notification and
    the ``on`` order-new frame from a template (:func:`answer_texts`); the client decodes both. No balancer, store,
    analytics, sequence checks, validation or results table. The ratio of this rate to SimPy's bounds what
    ``manager / SimPy`` can reach for a manager that speaks the real protocol in Python; ``manager / floor`` is what
    the manager's own work costs. With ``wire=False`` the callbacks pass the cid instead of text: the bare callback
    chain DESIGN.md measured against SimPy, so the JSON work's share shows.
    Returns (requests per wall second, requests completed, mean latency in ms).
    """
    loop = VirtualTimeLoop()
    rng = random.Random(seed)
    lam = rho * mu * nodes
    # The fastest JSON at hand (orjson, as the client and the exchange use): a floor, not a strawman.
    dumps, loads, expovariate, uniform = orjson.dumps, orjson.loads, rng.expovariate, rng.random
    queues: list[deque[tuple[int, float]]] = [deque() for _ in range(nodes)]
    busy = [False] * nodes
    state = {"cid": 0, "seq": 0, "done": 0, "latency": 0.0}

    def arrive() -> None:
        now = loop.time()
        state["cid"] += 1
        cid = state["cid"]
        payload = dumps([0, "on", None, {**_ORDER_FIELDS, "cid": cid}]) if wire else cid
        loop.call_soon(exchange_receive, int(uniform() * nodes), payload, now)
        loop.call_at(now + expovariate(lam), arrive)

    def exchange_receive(node: int, payload: Any, sent_at: float) -> None:
        queues[node].append((loads(payload)[3]["cid"] if wire else payload, sent_at))
        if not busy[node]:
            busy[node] = True
            loop.call_at(loop.time() + expovariate(mu), serve, node)

    def serve(node: int) -> None:
        cid, sent_at = queues[node].popleft()
        state["seq"] += 2
        if wire:
            note, new = answer_texts(120_000_000_000 + cid, cid, int(loop.time() * 1000), state["seq"] - 1)
        else:
            note = new = ""
        loop.call_soon(client_receive, note, new, sent_at)
        if queues[node]:
            loop.call_at(loop.time() + expovariate(mu), serve, node)
        else:
            busy[node] = False

    def client_receive(note: str, new: str, sent_at: float) -> None:
        if not wire or (loads(note)[2][6] == "SUCCESS" and loads(new)[1] == "on"):
            state["done"] += 1
            state["latency"] += loop.time() - sent_at

    loop.call_at(expovariate(lam), arrive)
    loop.call_at(duration_s, loop.stop)
    start = time.perf_counter()
    try:
        loop.run_forever()
    finally:
        wall = time.perf_counter() - start
        loop.close()
    done = int(state["done"])
    return done / wall, done, 1000.0 * float(state["latency"]) / max(done, 1)


def manager_rate(nodes: int, rho: float, mu: float, duration_s: float, seed: int = 1) -> tuple[float, int, float]:
    """Requests per wall second through the full manager in virtual time; also the run's wall time."""
    scenario = queueing_scenario(nodes, rho, duration_s, mu=mu, warmup_s=0.0)
    start = time.perf_counter()
    result = run(scenario, strategy="random", seed=seed, mode="virtual")
    wall = time.perf_counter() - start
    n = result.summary["accounting"]["submitted"]
    return n / wall, n, wall


def measure(nodes: int = 100, rho: float = 0.5, mu: float = 100.0, duration_s: float = 10.0) -> dict[str, float]:
    simpy_rps, simpy_n = simpy_rate(nodes, rho, mu, duration_s)
    chain_rps, _, _ = wire_floor_rate(nodes, rho, mu, duration_s, wire=False)
    floor_rps, floor_n, _ = wire_floor_rate(nodes, rho, mu, duration_s)
    manager_rps, manager_n, wall = manager_rate(nodes, rho, mu, duration_s)
    return {
        "simpy_rps": simpy_rps,
        "simpy_requests": simpy_n,
        "chain_rps": chain_rps,
        "chain_ratio": chain_rps / simpy_rps,
        "floor_rps": floor_rps,
        "floor_requests": floor_n,
        "floor_ratio": floor_rps / simpy_rps,
        "manager_vs_floor": manager_rps / floor_rps,
        "manager_rps": manager_rps,
        "manager_requests": manager_n,
        "manager_wall_s": wall,
        "ratio": manager_rps / simpy_rps,
        "simulated_per_wall_s": duration_s / wall,
    }


#: Everything else: mostly once per run (scenario validation, software versions, the summary).
OTHER = "other (mostly once per run: set-up, summary)"

#: Layers of the profile, by where a function lives (first match wins); the rest is :data:`OTHER`.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("client library (wsfinal/)", ("/wsfinal/",)),
    ("exchange (simulator: protocol, nodes, service, market)", (
        "/simulator/bitfinex.py", "/simulator/order_text.py", "/simulator/node.py", "/simulator/node_connection.py",
        "/simulator/service.py",
        "/simulator/market.py", "/simulator/book.py", "/simulator/exchange",
    )),
    ("transport and faults (simulator/memory.py, faults.py)", (
        "/simulator/memory.py", "/simulator/faults.py", "/simulator/fault_link.py", "/simulator/fault_vocabulary.py",
    )),
    ("virtual loop and asyncio", ("/simulator/virtual.py", "/asyncio/", "_contextvars")),
    ("runner, workload, results", ("/simulator/runner.py", "/simulator/workload.py", "/simulator/results.py")),
    ("builtins and C (json, len, dict.get ...)", ("~",)),
)  # fmt: skip


def layer_of(filename: str) -> str:
    """The :data:`LAYERS` name of a profiled function's file (``~`` is cProfile's name for C functions)."""
    for name, needles in LAYERS:
        if any(needle in filename for needle in needles):
            return name
    return OTHER


def layer_table(stats: pstats.Stats, requests: int) -> str:
    """Own time and Python calls per request, per layer, from a cProfile run of ``requests`` requests."""
    own: dict[str, float] = {}
    calls: dict[str, int] = {}
    for (filename, _line, _func), (_cc, ncalls, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        layer = layer_of(filename)
        own[layer] = own.get(layer, 0.0) + tottime
        calls[layer] = calls.get(layer, 0) + ncalls
    total = sum(own.values()) or 1.0
    n = max(requests, 1)
    lines = [f"{'layer':<58}{'own time':>9}{'calls/request':>15}"]
    for layer in sorted(own, key=own.__getitem__, reverse=True):
        lines.append(f"{layer:<58}{100 * own[layer] / total:>8.1f}%{calls[layer] / n:>15.1f}")
    lines.append(f"{'all':<58}{100.0:>8.1f}%{sum(calls.values()) / n:>15.1f}")
    return "\n".join(lines)


def profile(nodes: int, rho: float, mu: float, duration_s: float, top: int = 25) -> str:
    """Where the manager's time goes: own time and calls per request by layer, then the ``top`` functions."""
    prof = cProfile.Profile()
    prof.enable()
    _, requests, _ = manager_rate(nodes, rho, mu, duration_s)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    out.write(f"Profile of {requests:,} requests (cProfile; its overhead inflates small functions):\n")
    out.write(layer_table(stats, requests) + "\n\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def scenario_speeds(paths: list[Path]) -> list[dict[str, Any]]:
    """Run each scenario once in virtual time (its own strategy and seed): simulated seconds per wall second."""
    rows = []
    for path in paths:
        scenario = load_scenario(path)
        start = time.perf_counter()
        result = run(scenario, mode="virtual")
        wall = time.perf_counter() - start
        simulated = float(result.summary.get("simulated_s") or 0.0)
        requests = int(result.summary["accounting"]["submitted"])
        rows.append(
            {
                "scenario": scenario.name,
                "status": result.summary["status"],
                "simulated_s": simulated,
                "wall_s": wall,
                "simulated_per_wall_s": simulated / wall if wall else 0.0,
                "requests": requests,
                "requests_per_wall_s": requests / wall if wall else 0.0,
            }
        )
    return rows


def format_speeds(rows: list[dict[str, Any]]) -> str:
    """The ``--scenarios`` table."""
    lines = [f"{'scenario':<22}{'simulated s':>12}{'wall s':>9}{'sim s/wall s':>14}{'requests':>10}{'req/wall s':>12}"]
    for r in rows:
        lines.append(
            f"{r['scenario']:<22}{r['simulated_s']:>12.1f}{r['wall_s']:>9.2f}{r['simulated_per_wall_s']:>14.2f}"
            f"{r['requests']:>10,}{r['requests_per_wall_s']:>12,.0f}" + ("" if r["status"] == "ok" else "  FAILED")
        )
    total_sim = sum(r["simulated_s"] for r in rows)
    total_wall = sum(r["wall_s"] for r in rows)
    if rows and total_wall:
        lines.append(f"{'all':<22}{total_sim:>12.1f}{total_wall:>9.2f}{total_sim / total_wall:>14.2f}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.scenarios is not None:
        paths = [Path(p) for p in args.scenarios] or sorted(SCENARIO_DIR.glob("*.yaml"))
        print("Bundled scenarios in virtual time (one run each, the scenario's strategy and seed):")
        print(format_speeds(scenario_speeds(paths)))
        if args.scenarios_only:
            return 0
    r = measure(args.nodes, args.rho, args.mu, args.duration)
    print(
        f"{args.nodes} M/M/1 nodes at utilisation {args.rho:g}, {args.duration:g} s simulated:\n"
        f"  SimPy model        {r['simpy_rps']:>10,.0f} requests per wall second "
        f"({r['simpy_requests']:,} requests)\n"
        f"  callback chain     {r['chain_rps']:>10,.0f} requests per wall second (plain callbacks, no JSON)\n"
        f"  wire floor         {r['floor_rps']:>10,.0f} requests per wall second "
        f"({r['floor_requests']:,} requests; JSON both ways, plain callbacks, nothing else)\n"
        f"  full manager       {r['manager_rps']:>10,.0f} requests per wall second "
        f"({r['manager_requests']:,} requests, "
        f"{r['simulated_per_wall_s']:.2f} simulated s per wall s)\n"
        f"  ratio manager/SimPy {r['ratio']:.2f} (goal 1.0)\n"
        f"  ratio chain/SimPy   {r['chain_ratio']:.2f} (the virtual loop itself)\n"
        f"  ratio floor/SimPy   {r['floor_ratio']:.2f} (the most any manager speaking the protocol could reach)\n"
        f"  ratio manager/floor {r['manager_vs_floor']:.2f} (what the manager's own work costs)"
    )
    if args.profile:
        print(profile(args.nodes, args.rho, args.mu, min(args.duration, 5.0)))
    return 0


def register_virtual(bench_sub: Any) -> None:
    p = bench_sub.add_parser("virtual", help="virtual-time speed of the full manager vs a SimPy model")
    p.add_argument("--nodes", type=int, default=100, help="single-worker nodes (default 100)")
    p.add_argument("--rho", type=float, default=0.5, help="utilisation (default 0.5)")
    p.add_argument("--mu", type=float, default=100.0, help="service rate per node, per second (default 100)")
    p.add_argument("--duration", type=float, default=10.0, help="simulated seconds (default 10)")
    p.add_argument("--profile", action="store_true", help="also print where the manager's time goes")
    p.add_argument(
        "--scenarios",
        nargs="*",
        metavar="YAML",
        help="also print simulated seconds per wall second of each scenario (default: the bundled ones)",
    )
    p.add_argument("--scenarios-only", action="store_true", help="with --scenarios: skip the SimPy comparison")
    p.set_defaults(func=main)
