"""Load-balancing strategies: pure selection over a pool of connections.

A :class:`Pool` holds the connections one selection may choose from (one connection type, one eligibility
level). Each strategy is an incremental index over a pool: the pool tells it about additions, removals and
measure changes, and :meth:`Strategy.select` picks with ``now`` and a seeded ``random.Random`` handed in. No
strategy reads a clock, sleeps or does I/O. Per-pick cost does not grow with the pool: round robin, random and
the two-choice strategies are O(1); the least-measure strategies keep a lazily invalidated binary heap (the
``heapq`` C code), O(1) to peek and O(log n) in C to re-key, so the Python work per pick is constant.

Strategies, exactly:

- ``ROUND_ROBIN``: members in turn; over k x n picks of a fixed pool each is picked exactly k times.
- ``RANDOM``: uniform choice.
- ``LEAST_CONNECTIONS``: fewest outstanding requests; ties go to the one picked least recently.
- ``LEAST_LOAD``: fewest messages handled (sent + received); ties as above.
- ``LEAST_LATENCY``: lowest request-latency EWMA; connections with no sample yet count as 0 ms so they get
  measured. Explicit exploration: a connection with no request sample for its ``latency_stale_after_s`` is ranked
  by its last ping round trip (the link without the service time) from its next pong on, so one that lost its
  traffic for being slow gets it back once its link is fast (:meth:`ConnectionRecord.routing_latency_ms`). Both
  kinds of exploration have a probe budget (``latency_probe_budget``, default 1 request in flight): beyond it the
  connection is ranked as if not explored until an answer or timeout returns, so a burst does not pile onto it
  (:func:`least_latency_rank`).
- ``WEIGHTED_ROUND_ROBIN``: smooth weighted round robin as an earliest-deadline-first schedule (Envoy's EDF
  scheduler): pick k of a member with weight w is due at ``base + (k + 0.5) / w``; ties go to the heavier
  member. Weights 3 and 1 give ``a a b a``; over any run of W = sum of (integer) weights picks on a fixed pool,
  each member is picked exactly its weight times.
- ``POWER_OF_TWO_CHOICES``: two distinct members at random, the one with fewer outstanding requests (Envoy's
  and Finagle's P2C least-loaded).
- ``PEAK_EWMA``: P2C on cost = peak-EWMA latency x (outstanding + 1), the peak-EWMA decaying with its time
  constant while no sample arrives (Finagle/linkerd). A member with no sample costs 0 when idle and a large
  penalty per outstanding request otherwise, so a silent member is not flooded.
- ``HEALTH_BASED``: P2C on health score: two distinct members at random; the healthier wins when the scores
  differ by more than :data:`HEALTH_BAND` points, else the one with fewer outstanding requests. With distinct
  health levels the chance of being picked rises with the health rank (rank r of n, 1 = worst, is picked with
  probability (2r - 1) / n^2); among equally healthy members it spreads load like P2C.
- ``ADAPTIVE``: a discounted epsilon-greedy bandit over the other strategies (see :class:`Adaptive`).
"""

from __future__ import annotations

import heapq
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable

from .config import LoadBalancingStrategy
from .records import ConnectionRecord

LBS = LoadBalancingStrategy

#: HEALTH_BASED: health scores closer than this count as equal, and the less loaded member wins. Without a band,
#: noise-level differences (95.3 vs 95.1) would send every contested pick to the marginally healthier member.
HEALTH_BAND = 5.0

#: Cost per outstanding request of a member with no latency sample yet (PEAK_EWMA), in ms.
UNMEASURED_PENALTY_MS = 1e6


class Pool:
    """The members one selection may pick from, in a list with O(1) add and remove (swap with the last)."""

    __slots__ = ("_on_tracking", "_pos", "members", "strategies", "tracking")

    def __init__(self, on_tracking: Callable[[], None] | None = None) -> None:
        """``on_tracking``, when given, is called each time the pool gets a strategy that tracks measures (the
        balancer skips measure updates altogether until then)."""
        self.members: list[ConnectionRecord] = []
        self._pos: dict[str, int] = {}
        self.strategies: dict[LoadBalancingStrategy, Strategy] = {}
        #: The strategies whose index depends on measures (the hot path only updates these; read-only outside).
        self.tracking: list[Strategy] = []
        self._on_tracking = on_tracking

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, record: ConnectionRecord) -> bool:
        return record.connection_id in self._pos

    def add(self, record: ConnectionRecord) -> None:
        if record.connection_id in self._pos:
            return
        self._pos[record.connection_id] = len(self.members)
        self.members.append(record)
        for strategy in self.strategies.values():
            strategy.add(record)

    def remove(self, record: ConnectionRecord) -> None:
        i = self._pos.pop(record.connection_id, None)
        if i is None:
            return
        last = self.members.pop()
        if last is not record:
            self.members[i] = last
            self._pos[last.connection_id] = i
        for strategy in self.strategies.values():
            strategy.remove(record)

    def update(self, record: ConnectionRecord) -> None:
        if self.tracking and record.connection_id in self._pos:
            for strategy in self.tracking:
                strategy.update(record)

    def strategy(self, kind: LoadBalancingStrategy) -> Strategy:
        """The index for ``kind`` over this pool, built on first use and kept up to date afterwards."""
        found = self.strategies.get(kind)
        if found is None:
            found = make_strategy(kind, self)
            for record in self.members:
                found.add(record)
            self.strategies[kind] = found
            if type(found).update is not Strategy.update:
                self.tracking.append(found)
                if self._on_tracking is not None:
                    self._on_tracking()
        return found


class Strategy(ABC):
    """An incremental selection index over one :class:`Pool`."""

    kind: LoadBalancingStrategy
    #: The strategy the last pick was delegated to (:class:`Adaptive`), else ``None``: the balancer reads it after
    #: every pick, as an attribute rather than through an ``isinstance`` check (ABCs check in Python code).
    last_arm: LoadBalancingStrategy | None = None

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def add(self, record: ConnectionRecord) -> None:  # noqa: B027 - most strategies read pool.members directly
        """A member joined the pool."""

    def remove(self, record: ConnectionRecord) -> None:  # noqa: B027
        """A member left the pool."""

    def update(self, record: ConnectionRecord) -> None:  # noqa: B027
        """A member's measures (outstanding, messages, latency, weight, health) changed.

        A strategy that overrides this (a measure-tracking one) must ignore a record that is not its member: the
        balancer calls it for every load change of any connection, not through :meth:`Pool.update`.
        """

    @abstractmethod
    def select(self, now: float, rng: random.Random) -> ConnectionRecord | None:
        """Pick one member, or ``None`` when the pool is empty."""


class RoundRobin(Strategy):
    kind = LBS.ROUND_ROBIN

    def __init__(self, pool: Pool) -> None:
        super().__init__(pool)
        self._cursor = 0

    def select(self, now: float, rng: random.Random) -> ConnectionRecord | None:
        members = self.pool.members
        if not members:
            return None
        i = self._cursor % len(members)
        self._cursor = i + 1
        return members[i]


class RandomChoice(Strategy):
    kind = LBS.RANDOM

    def select(self, now: float, rng: random.Random) -> ConnectionRecord | None:
        members = self.pool.members
        if not members:
            return None
        return members[int(rng.random() * len(members))]


class _TwoChoices(Strategy):
    """Two distinct members at random; :meth:`prefer_second` says whether the second one wins (Envoy/Finagle P2C)."""

    def select(self, now: float, rng: random.Random) -> ConnectionRecord | None:
        members = self.pool.members
        n = len(members)
        if n < 2:
            return members[0] if members else None
        i = int(rng.random() * n)
        j = int(rng.random() * (n - 1))
        if j >= i:
            j += 1
        a, b = members[i], members[j]
        return b if self.prefer_second(a, b, now) else a

    @staticmethod
    @abstractmethod
    def prefer_second(a: ConnectionRecord, b: ConnectionRecord, now: float) -> bool: ...


class PowerOfTwoChoices(_TwoChoices):
    kind = LBS.POWER_OF_TWO_CHOICES

    @staticmethod
    def prefer_second(a: ConnectionRecord, b: ConnectionRecord, now: float) -> bool:
        return b.outstanding < a.outstanding


def peak_ewma_cost(record: ConnectionRecord, now: float) -> float:
    """Finagle's load measure: peak-EWMA latency (ms) x (outstanding + 1)."""
    latency = record.peak_ewma_at(now)
    if math.isnan(latency):
        return UNMEASURED_PENALTY_MS * record.outstanding
    return latency * (record.outstanding + 1)


class PeakEwma(_TwoChoices):
    kind = LBS.PEAK_EWMA

    @staticmethod
    def prefer_second(a: ConnectionRecord, b: ConnectionRecord, now: float) -> bool:
        return peak_ewma_cost(b, now) < peak_ewma_cost(a, now)


class HealthBased(_TwoChoices):
    kind = LBS.HEALTH_BASED

    @staticmethod
    def prefer_second(a: ConnectionRecord, b: ConnectionRecord, now: float) -> bool:
        if abs(b.health_score - a.health_score) > HEALTH_BAND:
            return b.health_score > a.health_score
        return b.outstanding < a.outstanding


class _LeastMeasure(Strategy):
    """The member with the least ``measure``: a heap of (measure, seq, record), stale entries skipped lazily.

    Each member has one valid entry, the one whose seq is in ``_valid``. Re-keying pushes a new entry; a pick
    re-pushes the winner with a fresh seq so that ties rotate. The heap is rebuilt when stale entries
    outnumber live ones by 3 to 1, which keeps it O(n) in size and the amortised cost per operation constant.
    """

    def __init__(self, pool: Pool) -> None:
        super().__init__(pool)
        self._heap: list[tuple[float, int, ConnectionRecord]] = []
        self._valid: dict[str, tuple[int, float]] = {}
        self._seq = 0

    @staticmethod
    @abstractmethod
    def measure(record: ConnectionRecord) -> float: ...

    def _push(self, record: ConnectionRecord, key: float) -> None:
        self._seq += 1
        self._valid[record.connection_id] = (self._seq, key)
        heapq.heappush(self._heap, (key, self._seq, record))
        if len(self._heap) > 4 * len(self._valid) + 32:
            valid = self._valid
            self._heap = [e for e in self._heap if valid.get(e[2].connection_id, (0,))[0] == e[1]]
            heapq.heapify(self._heap)

    def add(self, record: ConnectionRecord) -> None:
        self._push(record, self.measure(record))

    def remove(self, record: ConnectionRecord) -> None:
        self._valid.pop(record.connection_id, None)

    def update(self, record: ConnectionRecord) -> None:
        current = self._valid.get(record.connection_id)
        if current is None:
            return
        key = self.measure(record)
        if key != current[1]:
            self._push(record, key)

    def select(self, now: float, rng: random.Random) -> ConnectionRecord | None:
        heap = self._heap
        valid = self._valid
        while heap:
            key, seq, record = heap[0]
            current = valid.get(record.connection_id)
            if current is not None and current[0] == seq:
                # Re-push the winner with the same key and a fresh seq: behind its equals next time.
                self._seq += 1
                valid[record.connection_id] = (self._seq, key)
                heapq.heapreplace(heap, (key, self._seq, record))
                return record
            heapq.heappop(heap)
        return None

    def minimum(self) -> float | None:
        """The least measure in the pool (for tests and diagnostics)."""
        return min((k for _, k in self._valid.values()), default=None)


class LeastConnections(_LeastMeasure):
    kind = LBS.LEAST_CONNECTIONS

    @staticmethod
    def measure(record: ConnectionRecord) -> float:
        return float(record.outstanding)


class LeastLoad(_LeastMeasure):
    kind = LBS.LEAST_LOAD

    @staticmethod
    def measure(record: ConnectionRecord) -> float:
        return float(record.messages_sent + record.messages_received)


def least_latency_rank(record: ConnectionRecord) -> float:
    """What ``LEAST_LATENCY`` ranks ``record`` by (ms; the least wins). A connection is *being explored* when it
    has no request-latency sample yet, or when its sample is stale (:meth:`ConnectionRecord.routing_latency_ms`:
    the last pong came ``latency_stale_after_s`` after it). While it has fewer than ``latency_probe_budget``
    requests in flight, it is ranked by its exploration signal: 0 when unmeasured (so it gets measured), its ping
    RTT when stale. Once that many are in flight (the probes), it is ranked by what it would be without
    exploration until an answer or a timeout returns: its request EWMA when stale, and last when unmeasured
    (:data:`UNMEASURED_PENALTY_MS` per request beyond the budget, as ``PEAK_EWMA`` does, so that when every member
    is unmeasured the burst spreads as with least connections). A measured connection whose sample is fresh is
    ranked by its request EWMA, whatever its load. Pure: reads the record only (the store keeps ``outstanding``).
    """
    latency = record.latency_ewma_ms
    if latency != latency:  # NaN: unmeasured
        beyond = record.outstanding - record.latency_probe_budget
        return 0.0 if beyond < 0 else UNMEASURED_PENALTY_MS * (beyond + 1)
    if (
        record.ping_stamp - record.latency_stamp >= record.latency_stale_after_s
        and record.outstanding < record.latency_probe_budget
    ):
        return record.ping_rtt_ms
    return latency


class LeastLatency(_LeastMeasure):
    kind = LBS.LEAST_LATENCY

    # the documented rule itself, no wrapper (it runs once per store notification, up to three times per request)
    measure = staticmethod(least_latency_rank)


class SmoothWeightedRoundRobin(Strategy):
    """Earliest-deadline-first weighted round robin (see the module docstring)."""

    kind = LBS.WEIGHTED_ROUND_ROBIN

    def __init__(self, pool: Pool) -> None:
        super().__init__(pool)
        self._heap: list[tuple[float, float, int, ConnectionRecord]] = []
        # id -> (seq of the valid entry, base time, picks since base, weight)
        self._state: dict[str, tuple[int, float, int, float]] = {}
        self._seq = 0
        self._vtime = 0.0

    def _schedule(self, record: ConnectionRecord, base: float, k: int) -> None:
        self._seq += 1
        w = record.weight
        self._state[record.connection_id] = (self._seq, base, k, w)
        heapq.heappush(self._heap, (base + (k + 0.5) / w, -w, self._seq, record))
        if len(self._heap) > 4 * len(self._state) + 32:
            state = self._state
            self._heap = [e for e in self._heap if state.get(e[3].connection_id, (0,))[0] == e[2]]
            heapq.heapify(self._heap)

    def add(self, record: ConnectionRecord) -> None:
        self._schedule(record, self._vtime, 0)

    def remove(self, record: ConnectionRecord) -> None:
        self._state.pop(record.connection_id, None)

    def update(self, record: ConnectionRecord) -> None:
        current = self._state.get(record.connection_id)
        if current is not None and current[3] != record.weight:
            self._schedule(record, self._vtime, 0)

    def select(self, now: float, rng: random.Random) -> ConnectionRecord | None:
        heap = self._heap
        state = self._state
        while heap:
            deadline, _, seq, record = heapq.heappop(heap)
            current = state.get(record.connection_id)
            if current is not None and current[0] == seq:
                self._vtime = deadline
                self._schedule(record, current[1], current[2] + 1)
                return record
        return None


#: The strategies ADAPTIVE chooses among.
ADAPTIVE_ARMS: tuple[LoadBalancingStrategy, ...] = (
    LBS.ROUND_ROBIN,
    LBS.LEAST_CONNECTIONS,
    LBS.LEAST_LATENCY,
    LBS.POWER_OF_TWO_CHOICES,
    LBS.PEAK_EWMA,
    LBS.HEALTH_BASED,
)


class Adaptive(Strategy):
    """A discounted epsilon-greedy bandit whose arms are the strategies of :data:`ADAPTIVE_ARMS`.

    Each pick: any arm never rewarded yet is tried first (in order); otherwise with probability ``epsilon``
    a uniformly random arm explores, else the arm with the best discounted mean reward exploits. The reward of a
    routed request is 0 when it failed, else ``ref / (ref + latency)`` where ``ref`` is the EWMA of all
    observed latencies: scale-free, in (0, 1), higher for faster. Means are exponentially discounted
    (``alpha``), so the bandit follows a changing system. All randomness comes from the ``rng`` handed in, so
    the same seed and the same outcomes give the same choices.
    """

    kind = LBS.ADAPTIVE

    def __init__(self, pool: Pool, *, epsilon: float = 0.1, alpha: float = 0.05) -> None:
        super().__init__(pool)
        self.epsilon = epsilon
        self.alpha = alpha
        self.means: dict[LoadBalancingStrategy, float] = {}
        self.pulls: dict[LoadBalancingStrategy, int] = dict.fromkeys(ADAPTIVE_ARMS, 0)
        self._ref_latency = math.nan
        self.last_arm: LoadBalancingStrategy | None = None

    def choose_arm(self, rng: random.Random) -> LoadBalancingStrategy:
        for arm in ADAPTIVE_ARMS:
            if arm not in self.means and self.pulls[arm] == 0:
                return arm
        if rng.random() < self.epsilon or not self.means:
            return ADAPTIVE_ARMS[int(rng.random() * len(ADAPTIVE_ARMS))]
        return max(ADAPTIVE_ARMS, key=lambda a: (self.means.get(a, 0.0), -ADAPTIVE_ARMS.index(a)))

    def select(self, now: float, rng: random.Random) -> ConnectionRecord | None:
        arm = self.choose_arm(rng)
        self.last_arm = arm
        self.pulls[arm] += 1
        return self.pool.strategy(arm).select(now, rng)

    def feedback(self, arm: LoadBalancingStrategy, ok: bool, latency_ms: float | None) -> None:
        """Credit ``arm`` with the outcome of a request it routed."""
        if ok and latency_ms is not None and latency_ms >= 0:
            if math.isnan(self._ref_latency):
                self._ref_latency = max(latency_ms, 1e-6)
            else:
                self._ref_latency += self.alpha * (latency_ms - self._ref_latency)
            ref = max(self._ref_latency, 1e-6)
            reward = ref / (ref + latency_ms)
        else:
            reward = 0.0
        mean = self.means.get(arm)
        self.means[arm] = reward if mean is None else mean + self.alpha * (reward - mean)


_FACTORIES: dict[LoadBalancingStrategy, Callable[[Pool], Strategy]] = {
    LBS.ROUND_ROBIN: RoundRobin,
    LBS.RANDOM: RandomChoice,
    LBS.LEAST_CONNECTIONS: LeastConnections,
    LBS.LEAST_LOAD: LeastLoad,
    LBS.LEAST_LATENCY: LeastLatency,
    LBS.WEIGHTED_ROUND_ROBIN: SmoothWeightedRoundRobin,
    LBS.POWER_OF_TWO_CHOICES: PowerOfTwoChoices,
    LBS.PEAK_EWMA: PeakEwma,
    LBS.HEALTH_BASED: HealthBased,
    LBS.ADAPTIVE: Adaptive,
}


def make_strategy(kind: LoadBalancingStrategy, pool: Pool) -> Strategy:
    """A new, empty index of ``kind`` over ``pool`` (use :meth:`Pool.strategy` to get one kept up to date)."""
    return _FACTORIES[kind](pool)
