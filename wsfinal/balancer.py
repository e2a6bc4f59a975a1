"""The load balancer: eligibility, selection, passive outlier ejection and per-strategy bookkeeping.

The balancer observes the connection store (it is a :class:`~wsfinal.store.StoreObserver`) and keeps two
:class:`~wsfinal.strategies.Pool`\\ s per connection type, updated incrementally as states and measures change:

- *connected*: every ``CONNECTED`` connection of the type;
- *eligible*: the connected ones not currently ejected nor paused (exchange maintenance).

A pick uses the eligible pool, unless the eligible share of connected connections is below
``panic_threshold``: then, as Envoy does in panic mode, it uses every connected connection and counts the
event. So :meth:`WebSocketLoadBalancer.choose` returns ``None`` exactly when no connection of the type is
connected.

Outlier ejection (Envoy's passive health checking): a connection with ``consecutive_failures_threshold``
failed requests in a row is ejected at once; at each health check, a connection whose success rate since the
last check is below ``mean - success_rate_stdev_factor x stdev`` of its peers (at least
``success_rate_min_hosts`` peers with ``success_rate_request_volume`` requests each) is ejected too. The n-th
ejection of a connection lasts ``base_ejection_s x n`` (capped at ``max_ejection_s``), and at most
``max_ejection_percent`` of a type's connections are ejected at once (at least one may always be).
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

from .config import ConnectionType, LoadBalancingStrategy
from .exceptions import UsageError
from .records import ConnectionRecord
from .requests import OutcomeKind, RequestOutcome
from .states import ConnectionState
from .store import Clock, InMemoryConnectionStore
from .strategies import Adaptive, Pool

logger = logging.getLogger("wsfinal.balancer")

# Enum members as module constants: ``SomeEnum.MEMBER`` costs a metaclass attribute lookup (about 0.2 us in
# Python 3.11), a module global a dict lookup.
_ACKNOWLEDGED = OutcomeKind.ACKNOWLEDGED
_ADAPTIVE = LoadBalancingStrategy.ADAPTIVE
_CONNECTED = ConnectionState.CONNECTED


class Selection(NamedTuple):
    """One pick: report its outcome with :meth:`WebSocketLoadBalancer.report` when the request ends.

    Immutable; a named tuple rather than a frozen dataclass because one is made per request and a frozen
    dataclass's ``__init__`` (an ``object.__setattr__`` call per field) costs several times as much.
    """

    record: ConnectionRecord
    strategy: LoadBalancingStrategy
    #: The strategy ADAPTIVE delegated to, else the same as ``strategy``.
    arm: LoadBalancingStrategy
    time: float
    panic: bool = False


#: ``Selection`` from a tuple of all five fields without the generated ``__new__``'s Python frame.
_new_selection: Callable[[type[Selection], tuple[Any, ...]], Selection] = tuple.__new__


class _StrategyStats:
    __slots__ = ("failures", "latency_count", "latency_sum_ms", "selections", "successes")

    def __init__(self) -> None:
        self.selections = 0
        self.successes = 0
        self.failures = 0
        self.latency_sum_ms = 0.0
        self.latency_count = 0

    def as_dict(self) -> dict[str, float]:
        finished = self.successes + self.failures
        return {
            "selections": float(self.selections),
            "requests": float(finished),
            "successes": float(self.successes),
            "failures": float(self.failures),
            "success_rate": self.successes / finished if finished else 1.0,
            "mean_latency_ms": self.latency_sum_ms / self.latency_count if self.latency_count else math.nan,
        }


class _TypePools:
    __slots__ = ("connected", "eligible")

    def __init__(self, on_tracking: Callable[[], None] | None = None) -> None:
        self.connected = Pool(on_tracking)
        self.eligible = Pool(on_tracking)


class WebSocketLoadBalancer:
    """Picks connections for requests. Use from the event loop's thread.

    ``store`` is observed for changes; ``seed`` seeds the ``random.Random`` every strategy draws from, so the
    same seed and the same sequence of events give the same picks. ``health_scorer(record, now)``, when set
    (the integration manager sets it to the analytics' score), refreshes health scores at each health check.
    """

    def __init__(
        self,
        store: InMemoryConnectionStore,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        default_strategy: LoadBalancingStrategy = LoadBalancingStrategy.ROUND_ROBIN,
        panic_threshold: float = 0.5,
        consecutive_failures_threshold: int = 5,
        base_ejection_s: float = 30.0,
        max_ejection_s: float = 300.0,
        max_ejection_percent: float = 50.0,
        success_rate_min_hosts: int = 5,
        success_rate_request_volume: int = 20,
        success_rate_stdev_factor: float = 1.9,
        health_scorer: Callable[[ConnectionRecord, float], float] | None = None,
    ) -> None:
        if not 0.0 <= panic_threshold <= 1.0:
            raise UsageError(f"panic_threshold={panic_threshold!r}: must be within [0, 1]")
        if consecutive_failures_threshold < 1:
            raise UsageError(f"consecutive_failures_threshold={consecutive_failures_threshold!r}: must be >= 1")
        self.store = store
        self._clock: Clock = clock or store.clock
        self.rng = random.Random(seed)
        self.default_strategy = LoadBalancingStrategy.parse(default_strategy)
        self.panic_threshold = panic_threshold
        self.consecutive_failures_threshold = consecutive_failures_threshold
        self.base_ejection_s = base_ejection_s
        self.max_ejection_s = max_ejection_s
        self.max_ejection_percent = max_ejection_percent
        self.success_rate_min_hosts = success_rate_min_hosts
        self.success_rate_request_volume = success_rate_request_volume
        self.success_rate_stdev_factor = success_rate_stdev_factor
        self.health_scorer = health_scorer
        #: Whether any pool has a strategy that tracks measures: until then a load change can only matter through
        #: consecutive failures (on_load_changed's fast path; the pools call _tracking_started).
        self._tracking = False
        self._pools: dict[ConnectionType, _TypePools] = defaultdict(self._new_type_pools)
        self._stats: dict[LoadBalancingStrategy, _StrategyStats] = defaultdict(_StrategyStats)
        self._ejections: list[tuple[float, str]] = []  # heap of (until, connection_id)
        self._last_counts: dict[str, tuple[int, int]] = {}
        #: Picks made in panic mode, per connection type.
        self.panic_selections: dict[ConnectionType, int] = defaultdict(int)
        #: (time, connection_id, until, reason) of every ejection, oldest first (bounded).
        self.ejection_log: list[tuple[float, str, float, str]] = []
        self.health_checks = 0
        #: The pools of each connection the store told us about, by id: the hot path looks them up by string
        #: (enum members hash in Python code, strings in C).
        self._pools_of: dict[str, _TypePools] = {}
        # one-entry caches for choose()/report(): the last type's pools, the last (pool, strategy) index and the
        # last strategy's statistics
        self._hot_type: ConnectionType | None = None
        self._hot_pools: _TypePools | None = None
        self._hot_pool: Pool | None = None
        self._hot_kind: LoadBalancingStrategy | None = None
        self._hot_index: Any = None
        self._hot_stats_kind: LoadBalancingStrategy | None = None
        self._hot_stats: _StrategyStats | None = None
        store.subscribe(self)

    # -- store observer ------------------------------------------------------------------------------------

    def _new_type_pools(self) -> _TypePools:
        return _TypePools(self._tracking_started)

    def _tracking_started(self) -> None:
        self._tracking = True

    def _pools_for(self, record: ConnectionRecord) -> _TypePools:
        pools = self._pools_of.get(record.connection_id)
        if pools is None:
            pools = self._pools_of[record.connection_id] = self._pools[record.connection_type]
        return pools

    def on_registered(self, record: ConnectionRecord) -> None:
        self._pools_for(record)
        if record.state is _CONNECTED:
            self._enter(record)

    def on_state_changed(self, record: ConnectionRecord, old: ConnectionState) -> None:
        if record.state is _CONNECTED:
            self._enter(record)
        elif old is _CONNECTED:
            pools = self._pools_for(record)
            pools.connected.remove(record)
            pools.eligible.remove(record)

    def on_load_changed(self, record: ConnectionRecord) -> None:
        # Up to three times per request. Fast path: with no measure-tracking strategy in any pool (most strategies
        # track none) and the failure streak below the threshold, nothing below would do anything.
        if not self._tracking and record.consecutive_failures < self.consecutive_failures_threshold:
            return
        pools = self._pools_of.get(record.connection_id)
        if pools is None:
            return
        # Only the measure-tracking strategies are told, directly rather than through Pool.update (one call less
        # per pool and change): each ignores a record that is not its member, as Pool.update would skip it.
        for strategy in pools.connected.tracking:
            strategy.update(record)
        for strategy in pools.eligible.tracking:
            strategy.update(record)
        if record.consecutive_failures >= self.consecutive_failures_threshold and record in pools.eligible:
            now = self._clock()
            if not record.is_ejected(now):
                self._eject(record, now, f"{record.consecutive_failures} consecutive failures")

    def on_eligibility_changed(self, record: ConnectionRecord) -> None:
        if record.state is not _CONNECTED:
            return
        pools = self._pools_for(record)
        if record.ejected_until is None and not record.paused:
            pools.eligible.add(record)
        else:
            pools.eligible.remove(record)

    def on_removed(self, record: ConnectionRecord) -> None:
        pools = self._pools_of.pop(record.connection_id, None)
        if pools is not None:
            pools.connected.remove(record)
            pools.eligible.remove(record)
        self._last_counts.pop(record.connection_id, None)

    def _enter(self, record: ConnectionRecord) -> None:
        pools = self._pools_for(record)
        pools.connected.add(record)
        if record.ejected_until is None and not record.paused:
            pools.eligible.add(record)

    # -- selection -----------------------------------------------------------------------------------------

    def choose(
        self,
        connection_type: ConnectionType,
        strategy: LoadBalancingStrategy | None = None,
        now: float | None = None,
    ) -> Selection | None:
        """Pick a connection of ``connection_type``; ``None`` exactly when none of that type is connected."""
        kind = self.default_strategy if strategy is None else strategy
        t = self._clock() if now is None else now
        if self._ejections and self._ejections[0][0] <= t:
            self._expire_ejections(t)
        if connection_type is self._hot_type:
            pools = self._hot_pools
        else:
            pools = self._pools.get(connection_type)
            if pools is not None:
                self._hot_type, self._hot_pools = connection_type, pools
        if pools is None or not pools.connected.members:
            return None
        pool = pools.eligible
        panic = len(pool.members) < self.panic_threshold * len(pools.connected.members) or not pool.members
        if panic:
            self.panic_selections[connection_type] += 1
            pool = pools.connected
        if pool is self._hot_pool and kind is self._hot_kind:
            index = self._hot_index
        else:
            index = pool.strategies.get(kind) or pool.strategy(kind)
            self._hot_pool, self._hot_kind, self._hot_index = pool, kind, index
        record = index.select(t, self.rng)
        if record is None:  # cannot happen with a non-empty pool; kept as a guard for custom strategies
            return None
        arm = index.last_arm
        if arm is None:  # not delegated (every strategy but ADAPTIVE)
            arm = kind
        stats = self._hot_stats if kind is self._hot_stats_kind else None
        if stats is None:
            stats = self._stats_of(kind)
        stats.selections += 1
        return _new_selection(Selection, (record, kind, arm, t, panic))

    def _stats_of(self, kind: LoadBalancingStrategy) -> _StrategyStats:
        if kind is self._hot_stats_kind and self._hot_stats is not None:
            return self._hot_stats
        stats = self._stats[kind]
        self._hot_stats_kind, self._hot_stats = kind, stats
        return stats

    async def select_connection(
        self, connection_type: ConnectionType, strategy: LoadBalancingStrategy | None = None
    ) -> ConnectionRecord | None:
        """Seed API: the record of the picked connection, or ``None`` when none of the type is connected."""
        selection = self.choose(connection_type, strategy)
        return None if selection is None else selection.record

    def report(self, selection: Selection, *, ok: bool, latency_ms: float | None, now: float | None = None) -> None:
        """The request routed by ``selection`` ended: feeds strategy statistics and the ADAPTIVE bandit."""
        kind = selection.strategy
        stats = self._hot_stats if kind is self._hot_stats_kind else None
        if stats is None:
            stats = self._stats_of(kind)
        if ok:
            stats.successes += 1
        else:
            stats.failures += 1
        if latency_ms is not None and ok:
            stats.latency_sum_ms += latency_ms
            stats.latency_count += 1
        if kind is _ADAPTIVE:
            self._feedback(selection, ok, latency_ms)

    def _feedback(self, selection: Selection, ok: bool, latency_ms: float | None) -> None:
        """Tell the ADAPTIVE bandit of the type how its pick ``selection`` did."""
        pools = self._pools.get(selection.record.connection_type)
        if pools is not None:
            for pool in (pools.eligible, pools.connected):
                index = pool.strategies.get(LoadBalancingStrategy.ADAPTIVE)
                if isinstance(index, Adaptive):
                    index.feedback(selection.arm, ok, latency_ms)
                    break

    def report_outcome(self, outcome: RequestOutcome, selection: Selection) -> None:
        """:meth:`report` for the request routed by ``selection`` that ended with ``outcome``: the integration
        manager's ``outcome_hook`` (called once per request)."""
        # report(selection, ok=..., latency_ms=...), inline: one frame (with keyword arguments) less per request
        ok = outcome.kind is _ACKNOWLEDGED
        latency_ms = outcome.latency_ms
        kind = selection.strategy
        stats = self._hot_stats if kind is self._hot_stats_kind else None
        if stats is None:
            stats = self._stats_of(kind)
        if ok:
            stats.successes += 1
            if latency_ms is not None:
                stats.latency_sum_ms += latency_ms
                stats.latency_count += 1
        else:
            stats.failures += 1
        if kind is _ADAPTIVE:
            self._feedback(selection, ok, latency_ms)

    def get_strategy_performance(self) -> dict[LoadBalancingStrategy, dict[str, float]]:
        """Per strategy used so far: selections, requests, successes, failures, success_rate, mean_latency_ms."""
        return {kind: stats.as_dict() for kind, stats in self._stats.items()}

    def adaptive_state(self, connection_type: ConnectionType) -> dict[str, Any]:
        """The ADAPTIVE bandit's means and pulls for a type (empty if ADAPTIVE was never used there)."""
        pools = self._pools.get(connection_type)
        index = pools.eligible.strategies.get(LoadBalancingStrategy.ADAPTIVE) if pools else None
        if not isinstance(index, Adaptive):
            return {}
        return {
            "means": {k.value: v for k, v in index.means.items()},
            "pulls": {k.value: v for k, v in index.pulls.items()},
        }

    def eligible(self, connection_type: ConnectionType) -> list[ConnectionRecord]:
        pools = self._pools.get(connection_type)
        return list(pools.eligible.members) if pools else []

    def connected(self, connection_type: ConnectionType) -> list[ConnectionRecord]:
        pools = self._pools.get(connection_type)
        return list(pools.connected.members) if pools else []

    # -- ejection and health checks --------------------------------------------------------------------------

    def _eject(self, record: ConnectionRecord, now: float, reason: str) -> bool:
        pools = self._pools[record.connection_type]
        total = len(pools.connected.members)
        ejected = total - len(pools.eligible.members)
        allowed = max(1, math.floor(total * self.max_ejection_percent / 100.0))
        if ejected >= allowed:
            return False
        duration = min(self.base_ejection_s * (record.ejection_count + 1), self.max_ejection_s)
        until = now + duration
        self.store.set_ejection(record.connection_id, until)
        pools.eligible.remove(record)
        heapq.heappush(self._ejections, (until, record.connection_id))
        self.ejection_log.append((now, record.connection_id, until, reason))
        del self.ejection_log[:-1000]
        logger.info("ejected %s for %.1f s: %s", record.connection_id, duration, reason)
        return True

    def _expire_ejections(self, now: float) -> None:
        while self._ejections and self._ejections[0][0] <= now:
            until, connection_id = heapq.heappop(self._ejections)
            record = self.store.get(connection_id)
            if record is None or record.ejected_until != until:
                continue
            self.store.set_ejection(connection_id, None)
            record.consecutive_failures = 0
            if record.state is _CONNECTED and not record.paused:
                self._pools[record.connection_type].eligible.add(record)
            logger.info("%s returns from ejection", connection_id)

    def perform_health_checks(self, now: float) -> None:
        """One health-check round at ``now``: expire ejections, refresh health scores, eject outliers."""
        self.health_checks += 1
        self._expire_ejections(now)
        records = self.store.all()
        if self.health_scorer is not None:
            for record in records:
                self.store.set_health_score(record.connection_id, self.health_scorer(record, now))
        by_type: dict[ConnectionType, list[tuple[ConnectionRecord, float]]] = defaultdict(list)
        for record in records:
            ok, failed = record.requests_ok, record.requests_failed
            last_ok, last_failed = self._last_counts.get(record.connection_id, (0, 0))
            self._last_counts[record.connection_id] = (ok, failed)
            volume = (ok - last_ok) + (failed - last_failed)
            if record.state is _CONNECTED and volume >= self.success_rate_request_volume:
                by_type[record.connection_type].append((record, (ok - last_ok) / volume))
        for candidates in by_type.values():
            if len(candidates) < self.success_rate_min_hosts:
                continue
            rates = [rate for _, rate in candidates]
            mean = statistics.fmean(rates)
            threshold = mean - self.success_rate_stdev_factor * statistics.pstdev(rates)
            for record, rate in candidates:
                if rate < threshold and not record.is_ejected(now):
                    self._eject(record, now, f"success rate {rate:.1%} below the peers' threshold {threshold:.1%}")

    async def _perform_health_checks(self) -> None:
        """Seed API: one health-check round at the loop's current time."""
        self.perform_health_checks(self._clock())
