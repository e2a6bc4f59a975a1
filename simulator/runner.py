"""Run a scenario end to end: exchange nodes, the full manager, the workload and the fault timeline.

``run(scenario, strategy=..., seed=..., mode="virtual"|"live")`` returns a :class:`~simulator.results.RunResult`.

- **virtual**: nodes and manager share one :class:`~simulator.virtual.VirtualTimeLoop`, connected by the
  in-memory transport. A run of minutes takes seconds, and the same scenario and seed give byte-identical
  ``summary.json`` and ``requests.npz``.
- **live**: the exchange runs in its own process (``wsfinal exchange``), the manager dials it over real
  WebSockets on 127.0.0.1, in real time.

The run: start the nodes (their fault timelines start then: time 0), register the scenario's connections with
the manager and make their subscriptions, drive each workload from its arrival process, wait out the duration,
drain the requests still in flight (each ends by its timeout at the latest), stop everything. Every request is
recorded with its intended send time, so latency is measured without coordinated omission. A run that breaks is
reported with ``status: failed`` and the reason, and still returns what it collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from simulator.memory import MemoryNetwork, MemoryTransport
from simulator.node import ExchangeNode
from simulator.results import (
    STATES,
    RequestRecorder,
    RequestTable,
    RunResult,
)
from simulator.run_summary import build_summary, collect_manager_events, describe
from simulator.scenario import Scenario
from simulator.server import LIVE_TIMER_SLACK_S
from simulator.virtual import run_virtual
from simulator.workload import arrival_times
from wsfinal.alerts import RouteConfig
from wsfinal.config import ConnectionConfig, IntegrationConfig, LoadBalancingStrategy
from wsfinal.connection import ManagedConnection
from wsfinal.manager import WebSocketIntegrationManager, derive_seeds
from wsfinal.notifications import RecordingNotifier
from wsfinal.requests import RequestOutcome
from wsfinal.transport import Transport, WebsocketsTransport

logger = logging.getLogger("simulator.runner")

MODES = ("virtual", "live")
#: Extra time after the last request's timeout before a run gives up draining.
DRAIN_SLACK_S = 1.0
#: Seconds of scenario time between samples of per-connection health, state and outstanding requests.
SAMPLE_INTERVAL_S = 1.0
#: Notification grouping for runs: first notice 1 s after an alert group appears, updates every 5 s, repeats of
#: an unchanged firing alert every 30 s.
SCENARIO_ROUTE = RouteConfig(group_wait_s=1.0, group_interval_s=5.0, repeat_interval_s=30.0)
#: Wall-clock second that virtual time 0 stands for in notification payloads (2026-01-01T00:00:00Z).
VIRTUAL_EPOCH_S = 1_767_225_600.0
#: Where virtual nodes listen (in-memory, nothing is bound): node i at port BASE_PORT + i.
BASE_PORT = 7001


class RunError(RuntimeError):
    """A run could not be set up (the exchange process did not start, say)."""


@dataclass(frozen=True)
class RunOptions:
    strategy: LoadBalancingStrategy
    seed: int
    mode: str
    progress: bool = False


def order_for(symbol: str) -> dict[str, Any]:
    """The order every workload sends: a small exchange limit order (the exchange only validates its shape)."""
    return {"type": "EXCHANGE LIMIT", "symbol": symbol, "amount": "0.01", "price": "1000"}


def seeds_for(seed: int) -> dict[str, int]:
    """Independent seeds for the parts of a run, from ``SeedSequence(seed).spawn``."""
    names = ("manager", "workload", "connections")
    return dict(zip(names, derive_seeds(seed, len(names)), strict=True))


def run(
    scenario: Scenario,
    *,
    strategy: LoadBalancingStrategy | str | None = None,
    seed: int | None = None,
    mode: str = "virtual",
    progress: bool = False,
    interruptible: bool = False,
) -> RunResult:
    """Run ``scenario`` once. ``strategy`` and ``seed`` default to the scenario's.

    ``interruptible=True`` (the ``wsfinal run`` command; only in the main thread, and only while SIGINT has its
    default handler): the first SIGINT (Ctrl-C) ends the run early, as a run that breaks ends: the result is
    ``status: failed`` with the reason, holds everything collected so far (the requests in flight are ended by
    stopping the manager, so the accounting still holds) and has ``interrupted`` set; the caller saves it and
    exits 130. A second SIGINT raises KeyboardInterrupt. Otherwise SIGINT raises KeyboardInterrupt as usual.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
    opts = RunOptions(
        strategy=LoadBalancingStrategy.parse(strategy) if strategy is not None else scenario.manager.strategy,
        seed=scenario.seed if seed is None else int(seed),
        mode=mode,
        progress=progress,
    )
    wall_start = time.perf_counter()  # reporting only: how long the run took on this machine
    with _sigint_ends_run(interruptible) as interrupt:
        coro = _run(scenario, opts, interrupt)
        result = run_virtual(coro) if mode == "virtual" else asyncio.run(coro)
    result.interrupted = interrupt.reason is not None
    result.timing = {"wall_time_s": time.perf_counter() - wall_start}
    simulated = float(result.summary.get("simulated_s") or 0.0)
    result.timing["simulated_per_wall_s"] = (
        simulated / result.timing["wall_time_s"] if result.timing["wall_time_s"] else 0
    )
    return result


class _Interrupt:
    """Where a SIGINT goes while a run is interruptible: the run's main task is cancelled (once), from the loop."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        #: True once the run is stopping and writing up what it has: a Ctrl-C then only marks it interrupted.
        self.finishing = False
        self.reason: str | None = None

    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.reason is not None or (self.task is None and not self.finishing):
            raise KeyboardInterrupt  # the second Ctrl-C, or one before the run started
        self.reason = "interrupted by SIGINT (Ctrl-C)"
        if self.task is not None:
            self.task.get_loop().call_soon_threadsafe(self.task.cancel)


@contextlib.contextmanager
def _sigint_ends_run(enabled: bool) -> Iterator[_Interrupt]:
    """Route SIGINT to an :class:`_Interrupt` for the block when ``enabled`` (and possible); restore it after."""
    interrupt = _Interrupt()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield interrupt  # SIGINT ignored or handled by the caller: leave it so
        return
    signal.signal(signal.SIGINT, interrupt.on_sigint)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class _Run:
    """The state of one run while it goes (the asyncio shell around the pure parts)."""

    def __init__(self, scenario: Scenario, opts: RunOptions) -> None:
        self.scenario = scenario
        self.opts = opts
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.recorder = RequestRecorder()
        self.events: list[dict[str, Any]] = []
        self.node_of: dict[str, str] = {}
        self.submitted = 0
        self.in_flight = 0
        self.drained: asyncio.Future[None] | None = None
        self.stopping = False
        self.seeds = seeds_for(opts.seed)
        self.sample_times: list[float] = []
        self.samples: list[list[tuple[float, int, int]]] = []
        self.sampled_ids: list[str] = []

    def sample(self, manager: WebSocketIntegrationManager) -> None:
        """Record each connection's health score, state and outstanding requests now; again in a while."""
        if self.stopping:
            return
        if not self.sampled_ids:
            self.sampled_ids = [c.connection_id for c in manager.connections()]
        row = []
        for cid in self.sampled_ids:
            record = manager.store.get(cid)
            if record is None:
                row.append((float("nan"), STATES.index("closed"), 0))
                continue
            row.append((manager._health_score(cid), STATES.index(record.state.value), record.outstanding))
        self.sample_times.append(round(self.rel(self.loop.time()), 9))
        self.samples.append(row)
        self.loop.call_later(SAMPLE_INTERVAL_S, self.sample, manager)

    def series(self) -> dict[str, np.ndarray]:
        if not self.samples:
            return {}
        arr = np.array(self.samples, dtype=float)  # (n, k, 3)
        return {
            "time": np.array(self.sample_times),
            "connections": np.array(self.sampled_ids, dtype=str),
            "health": arr[:, :, 0],
            "state": arr[:, :, 1].astype(np.int8),
            "outstanding": arr[:, :, 2].astype(np.int32),
        }

    def rel(self, t: float) -> float:
        return t - self.t0

    def event(self, kind: str, source: str, time_s: float, /, **detail: Any) -> None:
        self.events.append({"time": round(time_s, 9), "kind": kind, "source": source, "detail": detail})

    # -- requests -------------------------------------------------------------------------------------------

    def _finished(self, intended: float, sent: float, ctype: str, outcome: RequestOutcome) -> None:
        self.in_flight -= 1
        cid = outcome.connection_id
        t0 = self.t0
        self.recorder.add(
            intended - t0,
            sent - t0,
            outcome.finished_at - t0,
            cid,
            self.node_of.get(cid) if cid else None,
            ctype,
            outcome.kind._value_,
            outcome.code,
        )
        if self.stopping and self.in_flight == 0 and self.drained is not None and not self.drained.done():
            self.drained.set_result(None)


async def _run(scenario: Scenario, opts: RunOptions, interrupt: _Interrupt | None = None) -> RunResult:
    state = _Run(scenario, opts)
    status, error = "ok", None
    frozen = False
    manager: WebSocketIntegrationManager | None = None
    nodes: list[ExchangeNode] = []
    process: subprocess.Popen[str] | None = None
    progress_bar = None
    recording = RecordingNotifier(name="recording")
    if interrupt is not None:
        interrupt.task = asyncio.current_task()
    try:
        if opts.mode == "virtual":
            network = MemoryNetwork()
            urls: dict[str, str] = {}
            base = Path(scenario.source).parent if not scenario.source.startswith("<") else None
            for i, spec in enumerate(scenario.nodes):
                # The market steps only while someone subscribes (replaying what it missed): same stream.
                node = ExchangeNode(spec, faults=scenario.faults, seed=opts.seed, base_dir=base, market_on_demand=True)
                nodes.append(node)
                urls[spec.id] = network.add(f"127.0.0.1:{BASE_PORT + i}", node)
            for node in nodes:
                node.start()
            transport: Transport = MemoryTransport(network)
        else:
            process, urls = await _start_exchange_process(scenario, opts.seed)
            transport = WebsocketsTransport()
        state.t0 = state.loop.time()
        _log_fault_timeline(state, scenario)

        manager = _make_manager(scenario, opts, state, recording)
        await manager.start()
        await _register_connections(manager, scenario, urls, transport, state)
        progress_bar = _progress(state, scenario.duration_s) if opts.progress else None
        state.sample(manager)
        _start_workloads(manager, scenario, state)
        # Everything set up so far (modules, scenario, manager, connections, nodes, books) lives as long as the
        # run: out of the collector's sight, full collections then only walk what the run itself keeps (a full
        # collection over the set-up costs ~0.1 s of wall time, about once per 25,000 requests). Undone below;
        # left alone when the caller froze objects already.
        if not gc.get_freeze_count():
            gc.freeze()
            frozen = True
        await asyncio.sleep(max(0.0, state.t0 + scenario.duration_s - state.loop.time()))
        state.stopping = True
        if state.in_flight:
            state.drained = state.loop.create_future()
            limit = scenario.manager.request_timeout_s + DRAIN_SLACK_S
            try:
                await asyncio.wait_for(state.drained, timeout=limit)
            except TimeoutError:
                status, error = "failed", f"{state.in_flight} requests still in flight {limit:g}s after the run"
    except Exception as exc:  # the run is reported as failed, with what it collected
        logger.exception("run failed")
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    except asyncio.CancelledError:
        if interrupt is None or interrupt.reason is None:
            raise
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        at = state.loop.time() - state.t0
        status, error = "failed", f"{interrupt.reason} at {at:.1f}s of {scenario.duration_s:g}s scenario time"
    finally:
        if interrupt is not None:
            interrupt.task, interrupt.finishing = None, True  # a Ctrl-C from here on only marks the result
        if frozen:
            gc.unfreeze()
        state.stopping = True
        if progress_bar is not None:
            progress_bar.close()
        simulated = state.loop.time() - state.t0
        if manager is not None:
            collect_manager_events(manager, state)
            with contextlib.suppress(Exception):
                await manager.stop()
        for node in nodes:
            node.stop()
        if process is not None:
            _stop_process(process)
    table = RequestTable.from_recorder(state.recorder)
    summary = build_summary(scenario, opts, state, table, manager, status, error, simulated)
    state.events.sort(key=lambda e: (e["time"], e["source"], e["kind"]))
    return RunResult(summary, table, state.events, series=state.series())


def _make_manager(
    scenario: Scenario, opts: RunOptions, state: _Run, recording: RecordingNotifier
) -> WebSocketIntegrationManager:
    m = scenario.manager
    total = sum(g.count for g in scenario.connections)
    config = IntegrationConfig(
        max_connections=max(m.max_connections, total),
        health_check_interval=m.health_check_interval_s,
        analytics_interval=m.analytics_interval_s,
        alert_check_interval=m.alert_check_interval_s,
        default_load_balancing_strategy=opts.strategy,
        enable_analytics=m.enable_analytics,
        enable_alerts=m.enable_alerts,
        enable_load_balancing=m.enable_load_balancing,
        seed=state.seeds["manager"],
    )
    rules: dict[str, Any] = {name: {"threshold": value} for name, value in m.thresholds.items()}
    for name, override in m.alert_rules.items():
        rules[name] = {**rules.get(name, {}), **override}
    # The capacity rule measures against this run's connection limit, not the library default.
    rules.setdefault("capacity_warning", {}).setdefault("params", {"max_connections": config.max_connections})
    # Scenarios last seconds to minutes: Alertmanager's hour-scale grouping defaults would notify nothing.
    options: dict[str, Any] = {"route": SCENARIO_ROUTE}
    if opts.mode == "virtual":
        # Notification timestamps then come from a fixed epoch, not the wall clock, so they replay too.
        options["epoch_offset"] = VIRTUAL_EPOCH_S
    return WebSocketIntegrationManager(config, notifiers=[recording], alert_rules=rules, alert_options=options)


async def _register_connections(
    manager: WebSocketIntegrationManager,
    scenario: Scenario,
    urls: dict[str, str],
    transport: Transport,
    state: _Run,
) -> None:
    rng = random.Random(state.seeds["connections"])
    nonces = itertools.count(1_000_000)
    pending = []
    for group in scenario.connections:
        spec = scenario.node(group.node)
        for i in range(group.count):
            cid = f"{group.node}/{group.connection_type.value}/{i}"
            state.node_of[cid] = group.node
            config = ConnectionConfig(
                url=urls[group.node].rstrip("/") + ("" if urls[group.node].endswith("/ws/2") else "/ws/2"),
                connection_type=group.connection_type,
                max_reconnect_attempts=group.max_reconnect_attempts,
                reconnect_delay_seconds=group.reconnect_delay_s,
                heartbeat_interval_seconds=group.heartbeat_interval_s,
                connection_timeout_seconds=group.connection_timeout_s,
                latency_stale_after_seconds=group.latency_stale_after_s,
                latency_probe_budget=group.latency_probe_budget,
                message_timeout_seconds=scenario.manager.request_timeout_s,
                load_balancing_weight=group.weight,
            )
            secret = spec.api_keys.get(group.api_key) if group.api_key else None
            conn = ManagedConnection(
                config,
                connection_id=cid,
                transport=transport,
                rng=random.Random(rng.getrandbits(64)),
                api_key=group.api_key if secret is not None else None,
                api_secret=secret,
                nonce=nonces.__next__,
            )
            for sub in group.subscriptions:
                params: dict[str, Any] = {"symbol": sub.symbol}
                if sub.channel == "book":
                    params.update(prec=sub.prec or "P0", len=str(sub.length or 25), freq=sub.freq or "F0")
                conn.subscribe(sub.channel, **params)
            pending.append(manager.register_connection(conn, config))
    await asyncio.gather(*pending)


def _start_workloads(manager: WebSocketIntegrationManager, scenario: Scenario, state: _Run) -> None:
    loop = state.loop
    # Live: asyncio timers wake up to 1 ms late (epoll); firing half a millisecond early centres the send time on
    # the intended time, as the live exchange does with its own timers. Virtual time is exact.
    slack = LIVE_TIMER_SLACK_S if state.opts.mode == "live" else 0.0
    rng_root = np.random.SeedSequence(state.seeds["workload"])
    submit = manager.submit
    finished = state._finished
    strategy = state.opts.strategy
    # On the virtual loop each arrival's timer is the previous arrival's handle scheduled again (call_at_again: the
    # same place among timers as a new call_at, without a new handle per request); other loops get call_at.
    call_at_again = getattr(loop, "call_at_again", None)
    for w, child in zip(scenario.workload, rng_root.spawn(len(scenario.workload)), strict=True):
        symbol = w.symbol or _first_symbol(scenario, w.connection_type)
        order = order_for(symbol)
        if w.arrival == "closed_loop":
            _start_closed_loop(manager, w, order, state)
            continue
        times = arrival_times(w, np.random.default_rng(child))

        #: The handle of the timer that runs fire() (one at a time per workload), for call_at_again.
        timer: list[asyncio.TimerHandle] = []

        def fire(
            it: Any = times,
            w: Any = w,
            order: dict[str, Any] = order,
            intended: float = 0.0,
            ctype: Any = w.connection_type,
            ctype_value: str = w.connection_type._value_,
            timer: list[asyncio.TimerHandle] = timer,
        ) -> None:
            """Send the request intended at ``intended`` (now), then arm the timer of the next one."""
            if state.stopping:
                return
            state.submitted += 1
            state.in_flight += 1
            # The outcome comes to _finished synchronously (on_done), not through a done-callback of the future: one
            # loop iteration and callback handle less per request; and with future=False there is no future at all.
            # partial (C) rather than a lambda: one frame less.
            submit(order, ctype, strategy, on_done=partial(finished, intended, loop.time(), ctype_value), future=False)
            nxt = next(it, None)
            if nxt is not None:
                at = state.t0 + nxt
                if call_at_again is not None:  # this timer has run: schedule it again (see above)
                    call_at_again(timer[0], at - slack, it, w, order, at)
                else:
                    loop.call_at(at - slack, fire, it, w, order, at)

        first = next(times, None)
        if first is not None:
            timer.append(loop.call_at(state.t0 + first - slack, fire, times, w, order, state.t0 + first))


def _start_closed_loop(manager: WebSocketIntegrationManager, w: Any, order: dict[str, Any], state: _Run) -> None:
    """``concurrency`` request chains: each sends its next request ``think_s`` after the previous one ended."""
    loop = state.loop
    stop_at = state.t0 + w.stop_s

    def send() -> None:
        now = loop.time()
        if state.stopping or now >= stop_at:
            return
        ctype = w.connection_type.value

        def done(outcome: RequestOutcome) -> None:
            # Recorded at once, like the open-loop requests (records stay in the order requests ended); the next
            # request is scheduled from the next loop pass, where a done-callback of the future would have run,
            # so its timer is made at the same point as before (same order among simultaneous timers).
            state._finished(now, now, ctype, outcome)
            loop.call_soon(loop.call_later, w.think_s, send)

        state.submitted += 1
        state.in_flight += 1
        manager.submit(order, w.connection_type, state.opts.strategy, on_done=done, future=False)

    for _ in range(int(w.concurrency or 1)):
        loop.call_at(state.t0 + w.start_s, send)


def _first_symbol(scenario: Scenario, ctype: Any) -> str:
    for g in scenario.connections:
        if g.connection_type is ctype:
            return scenario.node(g.node).symbols[0]
    return scenario.nodes[0].symbols[0]


def _log_fault_timeline(state: _Run, scenario: Scenario) -> None:
    for f in scenario.faults:
        detail = {"kind": f.kind, "node": f.node, "direction": f.direction, "connection": f.connection,
                  "probability": f.probability, "params": dict(f.params), "index": f.index}  # fmt: skip
        state.event("fault_start", "exchange", f.at_s, **detail)
        if f.duration_s:
            state.event("fault_end", "exchange", f.at_s + f.duration_s, **detail)


def _progress(state: _Run, duration: float) -> Any:
    from tqdm import tqdm

    bar = tqdm(total=round(duration, 1), unit="s", desc="scenario time", leave=False, file=sys.stderr)

    def tick() -> None:
        if state.stopping:
            return
        bar.n = round(min(duration, state.loop.time() - state.t0), 1)
        bar.refresh()
        state.loop.call_later(max(duration / 100.0, 0.1), tick)

    tick()
    return bar


# -- live mode: the exchange in its own process ------------------------------------------------------------

_URL_LINE = re.compile(r"^(?P<node>\S+)\s+(?:->\s+)?(?P<url>wss?://\S+)")


async def _start_exchange_process(scenario: Scenario, seed: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    if scenario.source.startswith("<"):
        raise RunError("live mode needs a scenario loaded from a file (the exchange process reads it)")
    cmd = [sys.executable, "-m", "benchmarks.cli", "exchange", scenario.source, "--seed", str(seed), "--port", "0"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    urls: dict[str, str] = {}
    wanted = {n.id for n in scenario.nodes}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30.0
    assert process.stdout is not None
    while set(urls) != wanted:
        if loop.time() > deadline or process.poll() is not None:
            _stop_process(process)
            err = process.stderr.read() if process.stderr else ""
            raise RunError(f"the exchange process did not start: {err.strip()[-2000:]}")
        line = await asyncio.to_thread(process.stdout.readline)
        m = _URL_LINE.match(line.strip())
        if m and m.group("node") in wanted:
            urls[m.group("node")] = m.group("url")
    return process, urls


def _stop_process(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


__all__ = ["MODES", "RunError", "describe", "run"]
