"""Strategy behaviour, unit by unit, and a stateful property test of the balancer's selection invariants."""

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from wsfinal import ConnectionConfig, ConnectionState, ConnectionType, LoadBalancingStrategy
from wsfinal.balancer import WebSocketLoadBalancer
from wsfinal.records import ConnectionRecord
from wsfinal.store import InMemoryConnectionStore
from wsfinal.strategies import ADAPTIVE_ARMS, Pool, peak_ewma_cost

LBS = LoadBalancingStrategy
S = ConnectionState
T = ConnectionType.MARKET_DATA


def rec(i, **kw):
    r = ConnectionRecord(connection_id=f"c{i}", connection_type=T, endpoint=f"127.0.0.1:{9000 + i}")
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def picks(kind, records, n, seed=0, now=0.0):
    pool = Pool()
    for r in records:
        pool.add(r)
    index = pool.strategy(kind)
    rng = random.Random(seed)
    return [index.select(now, rng).connection_id for _ in range(n)]


def test_smooth_weighted_round_robin_interleaves():
    a, b = rec(0, weight=3.0), rec(1, weight=1.0)
    assert picks(LBS.WEIGHTED_ROUND_ROBIN, [a, b], 8) == ["c0", "c0", "c1", "c0"] * 2


def test_weighted_round_robin_proportions_over_a_cycle():
    weights = [5, 1, 3, 2]
    records = [rec(i, weight=float(w)) for i, w in enumerate(weights)]
    got = Counter(picks(LBS.WEIGHTED_ROUND_ROBIN, records, sum(weights) * 3))
    assert got == {f"c{i}": 3 * w for i, w in enumerate(weights)}


def test_round_robin_cycles_in_order():
    assert picks(LBS.ROUND_ROBIN, [rec(0), rec(1), rec(2)], 6) == ["c0", "c1", "c2"] * 2


def test_least_connections_picks_fewest_outstanding_and_rotates_ties():
    records = [rec(0, outstanding=3), rec(1, outstanding=1), rec(2, outstanding=1)]
    got = picks(LBS.LEAST_CONNECTIONS, records, 4)
    assert set(got) == {"c1", "c2"} and got[0] != got[1]


def test_least_latency_treats_unmeasured_as_zero():
    records = [rec(0, latency_ewma_ms=5.0), rec(1, latency_ewma_ms=2.0), rec(2)]
    assert picks(LBS.LEAST_LATENCY, records, 1) == ["c2"]
    assert picks(LBS.LEAST_LATENCY, records[:2], 1) == ["c1"]


def test_least_load_picks_fewest_messages():
    records = [rec(0, messages_sent=10), rec(1, messages_received=4), rec(2, messages_sent=3, messages_received=3)]
    assert picks(LBS.LEAST_LOAD, records, 1) == ["c1"]


def test_index_follows_updates():
    pool = Pool()
    records = [rec(i, outstanding=i) for i in range(5)]
    for r in records:
        pool.add(r)
    index = pool.strategy(LBS.LEAST_CONNECTIONS)
    rng = random.Random(0)
    assert index.select(0.0, rng).connection_id == "c0"
    records[0].outstanding = 9
    pool.update(records[0])
    assert index.select(0.0, rng).connection_id == "c1"
    pool.remove(records[1])
    assert index.select(0.0, rng).connection_id == "c2"
    for _ in range(10_000):  # many re-keys: the heap is compacted, stays bounded
        records[4].outstanding = (records[4].outstanding + 1) % 7
        pool.update(records[4])
    assert len(index._heap) <= 4 * len(pool) + 33


def test_power_of_two_choices_never_picks_the_busiest_of_many():
    records = [rec(i, outstanding=i) for i in range(10)]
    got = picks(LBS.POWER_OF_TWO_CHOICES, records, 2000)
    assert "c9" not in got  # c9 loses every comparison
    counts = Counter(got)
    assert counts["c0"] > counts["c5"] > counts["c8"]


def test_peak_ewma_cost_and_preference():
    fast = rec(0)
    slow = rec(1)
    fast.record_latency(1.0, 0.0)
    slow.record_latency(50.0, 0.0)
    assert peak_ewma_cost(slow, 0.0) == 50.0
    slow.outstanding = 1
    assert peak_ewma_cost(slow, 0.0) == 100.0
    # A faster sample pulls the peak down smoothly; with no sample it decays towards zero (Finagle).
    slow.record_latency(5.0, 1.0)
    assert 5.0 < slow.peak_ewma_at(1.0) < 50.0
    assert slow.peak_ewma_at(1.0) > slow.peak_ewma_at(20.0) > slow.peak_ewma_at(100.0) > 0.0
    slow.record_latency(80.0, 2.0)
    assert slow.peak_ewma_at(2.0) == 80.0  # a slower sample is taken at once
    got = Counter(picks(LBS.PEAK_EWMA, [fast, slow], 200))
    assert got["c0"] == 200  # with two members P2C compares both every time
    busy_unmeasured = rec(2, outstanding=3)
    assert peak_ewma_cost(busy_unmeasured, 0.0) > 1e6


def test_health_based_prefers_healthier():
    records = [rec(i, health_score=float(10 * i)) for i in range(10)]
    got = Counter(picks(LBS.HEALTH_BASED, records, 5000))
    assert got["c9"] > got["c5"] > got["c1"]
    assert "c0" not in got  # the least healthy loses every comparison


def test_adaptive_prefers_the_arm_that_serves_best():
    store = InMemoryConnectionStore(clock=lambda: 0.0)
    lb = WebSocketLoadBalancer(store, seed=3)
    cfg = ConnectionConfig(url="ws://127.0.0.1:1/", connection_type=T)
    for i in range(4):
        store.register(f"c{i}", cfg)
        store.set_state(f"c{i}", S.CONNECTING)
        store.set_state(f"c{i}", S.CONNECTED)
    for _ in range(3000):
        sel = lb.choose(T, LBS.ADAPTIVE)
        good = sel.arm is LBS.LEAST_LATENCY
        lb.report(sel, ok=True, latency_ms=1.0 if good else 20.0)
    state = lb.adaptive_state(T)
    best = max(state["means"], key=state["means"].get)
    assert best == LBS.LEAST_LATENCY.value
    pulls = state["pulls"]
    assert pulls[LBS.LEAST_LATENCY.value] > sum(pulls.values()) * 0.7
    assert set(pulls) == {a.value for a in ADAPTIVE_ARMS}


@given(st.lists(st.integers(1, 6), min_size=1, max_size=8), st.integers(1, 4))
def test_weighted_round_robin_exact_over_cycles(weights, cycles):
    records = [rec(i, weight=float(w)) for i, w in enumerate(weights)]
    got = Counter(picks(LBS.WEIGHTED_ROUND_ROBIN, records, sum(weights) * cycles))
    assert got == {f"c{i}": cycles * w for i, w in enumerate(weights)}


# -- the stateful machine ----------------------------------------------------------------------------------

TYPES = [ConnectionType.MARKET_DATA, ConnectionType.TRADING]
MEASURES = {
    LBS.LEAST_CONNECTIONS: lambda r: r.outstanding,
    LBS.LEAST_LOAD: lambda r: r.messages_sent + r.messages_received,
    # no pings here, so never stale: an unmeasured member is 0 ms within its probe budget, then 1e6 ms per request
    # beyond it (tests/test_least_latency_probe.py)
    LBS.LEAST_LATENCY: lambda r: (
        r.latency_ewma_ms
        if not math.isnan(r.latency_ewma_ms)
        else 0.0
        if r.outstanding < r.latency_probe_budget
        else 1e6 * (r.outstanding - r.latency_probe_budget + 1)
    ),
}


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class BalancerMachine(RuleBasedStateMachine):
    """Registers, removes, connects, disconnects, loads and selects; checks the selection invariants each step."""

    conns = Bundle("conns")

    def __init__(self):
        super().__init__()
        self.seed = 1234
        self.log = []  # (op, args) to replay for the determinism check
        self.results = []
        self.clock, self.store, self.lb = self._fresh()
        self.n = 0

    def _fresh(self):
        clock = Clock()
        store = InMemoryConnectionStore(clock=clock)
        lb = WebSocketLoadBalancer(store, seed=self.seed, clock=clock, max_ejection_percent=50.0)
        return clock, store, lb

    def apply(self, store, lb, clock, op, args):
        if op == "register":
            cid, kind, weight = args
            store.register(
                cid,
                ConnectionConfig(url="ws://127.0.0.1:1/", connection_type=kind, load_balancing_weight=float(weight)),
            )
        elif op == "connect":
            store.set_state(args, S.CONNECTING)
            store.set_state(args, S.CONNECTED)
        elif op == "disconnect":
            store.set_state(args, S.DISCONNECTED)
        elif op == "remove":
            store.remove(args)
        elif op == "start":
            store.request_started(args)
        elif op == "finish":
            cid, ok, latency = args
            store.request_finished(cid, ok=ok, latency_ms=latency)
        elif op == "message":
            store.message_received(args)
        elif op == "advance":
            clock.t += args
        elif op == "select":
            kind, strategy = args
            sel = lb.choose(kind, strategy)
            return None if sel is None else (sel.record.connection_id, sel.panic)
        return None

    def do(self, op, args):
        self.log.append((op, args))
        result = self.apply(self.store, self.lb, self.clock, op, args)
        self.results.append(result)
        return result

    @rule(target=conns, kind=st.sampled_from(TYPES), weight=st.integers(1, 4))
    def register(self, kind, weight):
        cid = f"c{self.n}"
        self.n += 1
        self.do("register", (cid, kind, weight))
        return cid

    @rule(cid=conns)
    def connect(self, cid):
        r = self.store.get(cid)
        if r is not None and r.state is not S.CONNECTED:
            self.do("connect", cid)

    @rule(cid=conns)
    def disconnect(self, cid):
        r = self.store.get(cid)
        if r is not None and r.state is S.CONNECTED:
            self.do("disconnect", cid)

    @rule(cid=consumes(conns))
    def remove(self, cid):
        self.do("remove", cid)

    @rule(cid=conns)
    def start_request(self, cid):
        if self.store.get(cid) is not None:
            self.do("start", cid)

    @rule(cid=conns, ok=st.booleans(), latency=st.one_of(st.none(), st.floats(0.1, 500.0)))
    def finish_request(self, cid, ok, latency):
        r = self.store.get(cid)
        if r is not None and r.outstanding > 0:
            self.do("finish", (cid, ok, latency))

    @rule(cid=conns)
    def message(self, cid):
        if self.store.get(cid) is not None:
            self.do("message", cid)

    @rule(dt=st.floats(0.0, 100.0))
    def advance(self, dt):
        self.do("advance", dt)

    @rule(kind=st.sampled_from(TYPES), strategy=st.sampled_from(list(LBS)))
    def select(self, kind, strategy):
        connected = [r for r in self.store.get_connections_by_type(kind) if r.state is S.CONNECTED]
        got = self.do("select", (kind, strategy))
        if not connected:
            assert got is None
            return
        assert got is not None
        cid, panic = got
        chosen = self.store.get(cid)
        assert chosen.connection_type is kind and chosen.state is S.CONNECTED
        eligible = [r for r in connected if not r.is_ejected(self.clock.t)]
        pool = connected if panic else eligible
        if not panic:
            assert not chosen.is_ejected(self.clock.t)
        assert chosen in pool
        if strategy in MEASURES:
            measure = MEASURES[strategy]
            assert measure(chosen) == min(measure(r) for r in pool)

    @rule(kind=st.sampled_from(TYPES), k=st.integers(1, 3))
    def round_robin_cycle(self, kind, k):
        # Nothing changes during the cycle, so the pool is fixed.
        if not any(r.state is S.CONNECTED for r in self.store.get_connections_by_type(kind)):
            return
        first = self.do("select", (kind, LBS.ROUND_ROBIN))
        n = len(self.lb.eligible(kind)) if not first[1] else len(self.lb.connected(kind))
        got = [first[0]] + [self.do("select", (kind, LBS.ROUND_ROBIN))[0] for _ in range(k * n - 1)]
        assert set(Counter(got).values()) == {k}
        assert len(Counter(got)) == n

    @rule(kind=st.sampled_from(TYPES))
    def weighted_cycle(self, kind):
        if not any(r.state is S.CONNECTED for r in self.store.get_connections_by_type(kind)):
            return
        first = self.do("select", (kind, LBS.WEIGHTED_ROUND_ROBIN))
        pool = self.lb.connected(kind) if first[1] else self.lb.eligible(kind)
        total = int(sum(r.weight for r in pool))
        got = [self.do("select", (kind, LBS.WEIGHTED_ROUND_ROBIN))[0] for _ in range(total)]
        assert Counter(got) == {r.connection_id: int(r.weight) for r in pool}

    @invariant()
    def none_only_when_nothing_connected(self):
        for kind in TYPES:
            connected = [r for r in self.store.get_connections_by_type(kind) if r.state is S.CONNECTED]
            assert {r.connection_id for r in self.lb.connected(kind)} == {r.connection_id for r in connected}

    def teardown(self):
        # Same seed + same event sequence -> same picks.
        clock, store, lb = self._fresh()
        replay = [self.apply(store, lb, clock, op, args) for op, args in self.log]
        assert replay == self.results


BalancerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
TestBalancerMachine = BalancerMachine.TestCase


def test_pool_tells_its_owner_when_a_measure_tracking_strategy_is_built():
    calls = []
    pool = Pool(on_tracking=lambda: calls.append(len(pool.tracking)))
    pool.add(rec(0))
    for kind in (LBS.ROUND_ROBIN, LBS.RANDOM, LBS.POWER_OF_TWO_CHOICES, LBS.ADAPTIVE):
        pool.strategy(kind)
    assert calls == []  # none of these keeps a measure index
    pool.strategy(LBS.LEAST_CONNECTIONS)
    pool.strategy(LBS.LEAST_CONNECTIONS)  # built once
    pool.strategy(LBS.WEIGHTED_ROUND_ROBIN)
    assert calls == [1, 2]


def test_tracking_strategies_ignore_updates_of_records_they_do_not_hold():
    # The balancer calls Strategy.update directly for any connection's load change (not through Pool.update,
    # which checks membership): a record never added, or removed, must not come back into the index.
    members = [rec(i, outstanding=5, weight=1.0) for i in range(3)]
    stranger, leaver = rec(7, outstanding=0, weight=9.0), members[2]
    for kind in (LBS.LEAST_CONNECTIONS, LBS.LEAST_LOAD, LBS.LEAST_LATENCY, LBS.WEIGHTED_ROUND_ROBIN):
        pool = Pool()
        for r in members:
            pool.add(r)
        index = pool.strategy(kind)
        pool.remove(leaver)
        leaver.outstanding, leaver.weight = 0, 9.0
        for strategy in pool.tracking:
            strategy.update(stranger)
            strategy.update(leaver)
        picked = {index.select(0.0, random.Random(0)).connection_id for _ in range(12)}
        assert picked <= {"c0", "c1"}, kind
        leaver.outstanding, leaver.weight = 5, 1.0


# --- LEAST_LATENCY: explicit exploration through ping round trips ------------------------------------------------


def connected_store(n, clock, stale_s=10.0, hb=1.0):
    store = InMemoryConnectionStore(clock=clock)
    lb = WebSocketLoadBalancer(store, seed=1)
    config = ConnectionConfig(
        url="ws://127.0.0.1:1/",
        connection_type=T,
        heartbeat_interval_seconds=hb,
        latency_stale_after_seconds=stale_s,
    )
    for i in range(n):
        store.register(f"c{i}", config)
        store.set_state(f"c{i}", S.CONNECTING)
        store.set_state(f"c{i}", S.CONNECTED)
    return store, lb


def test_least_latency_falls_back_to_the_ping_rtt_once_the_request_ewma_is_stale():
    t = [0.0]
    store, lb = connected_store(2, lambda: t[0], stale_s=10.0)
    store.answer_received("c0", 10, ok=True, latency_ms=80.0, now=0.0)
    store.answer_received("c1", 10, ok=True, latency_ms=20.0, now=0.0)
    assert lb.choose(T, LBS.LEAST_LATENCY, now=0.0).record.connection_id == "c1"
    store.record_ping("c0", 1.0, now=9.9)  # a fast link, but the request sample is fresh: still the EWMA
    assert store.get("c0").routing_latency_ms() == 80.0
    assert lb.choose(T, LBS.LEAST_LATENCY, now=9.9).record.connection_id == "c1"
    store.answer_received("c1", 10, ok=True, latency_ms=20.0, now=9.95)  # c1 stays fresh: no fallback for it
    store.record_ping("c1", 0.5, now=10.0)
    store.record_ping("c0", 1.0, now=10.0)  # 10 s after c0's last request sample: ranked by its ping RTT
    assert store.get("c0").routing_latency_ms() == 1.0 and store.get("c0").latency_ewma_ms == 80.0
    assert store.get("c1").routing_latency_ms() == pytest.approx(20.0)
    assert lb.choose(T, LBS.LEAST_LATENCY, now=10.0).record.connection_id == "c0"
    store.answer_received("c0", 10, ok=True, latency_ms=5.0, now=10.1)  # measured again: back to the EWMA
    r0 = store.get("c0")
    assert r0.routing_latency_ms() == r0.latency_ewma_ms < 80.0
    assert r0.snapshot()["ping_rtt_ms"] == 1.0 and r0.snapshot()["routing_latency_ms"] == r0.latency_ewma_ms


def test_pings_never_enter_the_request_latency_signal():
    store, _ = connected_store(1, lambda: 0.0)
    store.answer_received("c0", 10, ok=True, latency_ms=50.0, now=1.0)
    for i in range(20):
        store.record_ping("c0", 0.1, now=2.0 + i)
    r = store.get("c0")
    assert r.latency_ewma_ms == r.peak_ewma_ms == r.last_latency_ms == 50.0
    assert r.ping_rtt_ms == 0.1 and r.ping_stamp == 21.0


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 4),
    stale_s=st.floats(0.5, 5.0),
    hb=st.floats(0.2, 3.0),
    dt=st.sampled_from([0.05, 0.1]),
    slow_ms=st.floats(60.0, 500.0),
    fast_ms=st.lists(st.floats(5.0, 50.0), min_size=3, max_size=3),
    ping_ms=st.floats(0.1, 4.0),
    recover_at=st.floats(1.0, 10.0),
)
def test_a_starved_connection_is_tried_again_within_a_bounded_time_and_never_while_fresh_and_worst(
    n, stale_s, hb, dt, slow_ms, fast_ms, ping_ms, recover_at
):
    # c0 is slow until recover_at, then the fastest; every link answers pings in ping_ms (below every request
    # latency: no service time). One request per step, answered at once. Every connection is picked at least once
    # per stale_s + hb (+ a step per connection, for ties), whatever its EWMA says; a connection is never picked
    # while its fresh request EWMA is the worst measure of the pool.
    t = [0.0]
    store, lb = connected_store(n, lambda: t[0], stale_s=stale_s, hb=hb)
    ids = [f"c{i}" for i in range(n)]
    last_pick = dict.fromkeys(ids, 0.0)
    picked_after_recovery = False
    next_ping = hb
    horizon = recover_at + 2 * (stale_s + hb)
    for k in range(1, int(horizon / dt) + 2):
        now = k * dt
        t[0] = now
        while next_ping <= now:
            for cid in ids:
                store.record_ping(cid, ping_ms, now=next_ping)
            next_ping += hb
        records = [store.get(cid) for cid in ids]
        measures = {r.connection_id: (0.0 if math.isnan(m := r.routing_latency_ms()) else m) for r in records}
        chosen = lb.choose(T, LBS.LEAST_LATENCY, now=now).record
        cid = chosen.connection_id
        assert measures[cid] == min(measures.values())
        if chosen.routing_latency_ms() == chosen.latency_ewma_ms:  # a fresh request EWMA (not NaN)
            assert not chosen.latency_ewma_ms > max(m for other, m in measures.items() if other != cid)
        i = int(cid[1:])
        latency = (slow_ms if now < recover_at else 1.0) if i == 0 else fast_ms[(i - 1) % 3]
        store.answer_received(cid, 10, ok=True, latency_ms=latency, now=now)
        last_pick[cid] = now
        picked_after_recovery |= i == 0 and now >= recover_at
        for other in ids:
            assert now - last_pick[other] <= stale_s + hb + (n + 1) * dt + 1e-9, (other, now)
    assert picked_after_recovery
