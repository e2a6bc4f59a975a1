"""Per-pick cost of every load-balancing strategy as the pool grows: ``wsfinal bench strategies``.

Each figure is the median over several timed batches of ``WebSocketLoadBalancer.choose`` on a pool of
connected connections with varied outstanding counts, latencies and weights; ``random.choice`` over a list of
the same size, timed in the same run, is the yardstick. Flat rows (10,000 connections about as fast as 10)
show that selection does not scan the pool.
"""

from __future__ import annotations

import argparse
import random
import statistics
import timeit
from collections.abc import Sequence

from wsfinal import ConnectionConfig, ConnectionState, ConnectionType, LoadBalancingStrategy
from wsfinal.balancer import WebSocketLoadBalancer
from wsfinal.store import InMemoryConnectionStore

SIZES: tuple[int, ...] = (10, 100, 1_000, 10_000)
T = ConnectionType.TRADING


def build_balancer(n: int, seed: int = 0) -> WebSocketLoadBalancer:
    """A balancer over ``n`` connected connections with varied measures (seeded, so runs are comparable)."""
    rng = random.Random(seed)
    clock = [0.0]
    store = InMemoryConnectionStore(clock=lambda: clock[0])
    lb = WebSocketLoadBalancer(store, seed=seed)
    for i in range(n):
        cid = f"c{i}"
        cfg = ConnectionConfig(
            url=f"ws://127.0.0.1:{10000 + i % 50000}/", connection_type=T, load_balancing_weight=rng.randint(1, 5)
        )
        store.register(cid, cfg)
        store.set_state(cid, ConnectionState.CONNECTING)
        store.set_state(cid, ConnectionState.CONNECTED)
        for _ in range(rng.randint(0, 3)):
            store.request_started(cid)
        store.record_latency(cid, rng.uniform(1.0, 50.0))
        store.set_health_score(cid, rng.uniform(0, 100))
    return lb


def time_per_call(fn: object, number: int, repeat: int) -> float:
    """Median seconds per call over ``repeat`` batches of ``number`` calls."""
    timer = timeit.Timer(fn)  # type: ignore[arg-type]
    return statistics.median(t / number for t in timer.repeat(repeat=repeat, number=number))


def measure(sizes: Sequence[int] = SIZES, number: int = 20_000, repeat: int = 7) -> dict[str, dict[int, float]]:
    """Median per-pick time in microseconds: strategy name -> pool size -> us."""
    table: dict[str, dict[int, float]] = {"random.choice (yardstick)": {}}
    for n in sizes:
        items = list(range(n))
        rng = random.Random(1)
        yardstick = rng.choice
        table["random.choice (yardstick)"][n] = time_per_call(lambda y=yardstick, i=items: y(i), number, repeat) * 1e6
        lb = build_balancer(n)
        for kind in LoadBalancingStrategy:
            lb.choose(T, kind, now=0.0)  # build the index outside the timing

            def pick(kind: LoadBalancingStrategy = kind, lb: WebSocketLoadBalancer = lb) -> object:
                return lb.choose(T, kind, now=0.0)

            table.setdefault(kind.value, {})[n] = time_per_call(pick, number, repeat) * 1e6
    return table


def format_table(table: dict[str, dict[int, float]], sizes: Sequence[int] = SIZES) -> str:
    head = f"{'strategy':<28}" + "".join(f"{n:>10,}" for n in sizes) + f"{'10k/10':>9}"
    lines = ["per-pick median, microseconds (pool size across)", head, "-" * len(head)]
    for name, row in table.items():
        ratio = row[sizes[-1]] / row[sizes[0]] if row.get(sizes[0]) else float("nan")
        lines.append(f"{name:<28}" + "".join(f"{row[n]:>10.2f}" for n in sizes) + f"{ratio:>9.2f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    sizes = tuple(args.sizes) if args.sizes else SIZES
    print(f"timing {len(LoadBalancingStrategy)} strategies at {', '.join(map(str, sizes))} connections ...", flush=True)
    table = measure(sizes, number=args.number, repeat=args.repeat)
    print(format_table(table, sizes))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench",
        help="microbenchmarks: strategy pick cost, manager, virtual time",
        description=(
            "Microbenchmarks that print tables of medians beside a yardstick timed in the same run (the figures "
            "are wall-clock and depend on the machine). WHAT is one of: strategies (per-pick cost of every "
            "strategy at 10..10,000 connections, vs random.choice), manager (the full manager vs bare websockets, "
            "live on loopback, the exchange in its own process), virtual (the full manager in virtual time vs a "
            "SimPy model, a bare callback chain and the wire floor), instructions (the same models' instructions per "
            "request under valgrind: independent of load, a CI gate). Each has its own --help. Exit codes: 0 ok, "
            "2 bad arguments."
        ),
    )
    bench_sub = bench.add_subparsers(dest="bench", metavar="WHAT", required=True)
    p = bench_sub.add_parser("strategies", help="per-pick time of every strategy at 10..10,000 connections")
    p.add_argument("--sizes", type=int, nargs="+", help="pool sizes (default: 10 100 1000 10000)")
    p.add_argument("--number", type=int, default=20_000, help="picks per timed batch (default 20000)")
    p.add_argument("--repeat", type=int, default=7, help="timed batches; the median is shown (default 7)")
    p.set_defaults(func=run)
    from .instructions import register_instructions
    from .manager_bench import register_manager
    from .virtual_bench import register_virtual

    register_manager(bench_sub)
    register_virtual(bench_sub)
    register_instructions(bench_sub)
