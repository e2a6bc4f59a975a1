"""LEAST_LATENCY's probe budget: a connection being explored (new, or stale and ranked by its ping RTT) draws at
most ``latency_probe_budget`` requests before an answer or a timeout says what it is worth."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsfinal.balancer import WebSocketLoadBalancer
from wsfinal.config import ConnectionConfig, ConnectionType, LoadBalancingStrategy
from wsfinal.exceptions import ConfigurationError
from wsfinal.records import DEFAULT_LATENCY_PROBE_BUDGET, ConnectionRecord
from wsfinal.states import ConnectionState
from wsfinal.store import InMemoryConnectionStore
from wsfinal.strategies import UNMEASURED_PENALTY_MS, LeastLatency, Pool, least_latency_rank

LBS = LoadBalancingStrategy
T = ConnectionType.TRADING


def rec(i: int, **kw: object) -> ConnectionRecord:
    r = ConnectionRecord(connection_id=f"c{i}", connection_type=T, endpoint=f"127.0.0.1:{9000 + i}")
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def old_rank(r: ConnectionRecord) -> float:
    """LEAST_LATENCY's measure before the probe budget (the reference for "ranked exactly as before")."""
    latency = r.latency_ewma_ms
    if math.isnan(latency):
        return 0.0
    if r.ping_stamp - r.latency_stamp >= r.latency_stale_after_s:
        return r.ping_rtt_ms
    return latency


class Shell:
    """What the balancer shell does around the pure index: a pick is sent at once (outstanding + 1), an answer
    folds its latency in (outstanding - 1), a pong is recorded; the index is told after each change."""

    def __init__(self, records: list[ConnectionRecord]) -> None:
        self.pool = Pool()
        for r in records:
            self.pool.add(r)
        self.index = self.pool.strategy(LBS.LEAST_LATENCY)
        self.rng = random.Random(0)

    def pick(self, now: float = 0.0) -> ConnectionRecord:
        r = self.index.select(now, self.rng)
        assert r is not None
        r.outstanding += 1
        self.pool.update(r)
        return r

    def answer(self, r: ConnectionRecord, latency_ms: float, now: float) -> None:
        r.outstanding -= 1
        r.record_latency(latency_ms, now)
        self.pool.update(r)

    def ping(self, r: ConnectionRecord, rtt_ms: float, now: float) -> None:
        r.record_ping(rtt_ms, now)
        self.pool.update(r)


# --- examples ----------------------------------------------------------------------------------------------------


def test_a_new_connection_draws_one_request_of_a_burst_until_its_answer_returns() -> None:
    fast, slow, new = rec(0, latency_ewma_ms=5.0), rec(1, latency_ewma_ms=8.0), rec(2)
    shell = Shell([fast, slow, new])
    got = Counter(shell.pick().connection_id for _ in range(50))
    assert got == {"c2": 1, "c0": 49}  # before: all 50 onto c2 (ranked 0 ms until its first answer)
    shell.answer(new, 2.0, now=0.01)  # its answer: now ranked by its request EWMA, the best
    assert shell.pick().connection_id == "c2"


@pytest.mark.parametrize("budget", [1, 2, 5])
def test_the_budget_is_the_number_of_probes(budget: int) -> None:
    fast, new = rec(0, latency_ewma_ms=5.0), rec(1, latency_probe_budget=budget)
    shell = Shell([fast, new])
    got = Counter(shell.pick().connection_id for _ in range(40))
    assert got == {"c1": budget, "c0": 40 - budget}
    # one probe answered (slowly): measured now, ranked by its EWMA, which is worse than c0's
    shell.answer(new, 50.0, now=0.1)
    assert {shell.pick().connection_id for _ in range(10)} == {"c0"}


def test_a_stale_connection_with_a_cheap_ping_draws_its_budget_then_its_request_ewma_ranks_it() -> None:
    starved = rec(0, latency_ewma_ms=80.0, latency_stamp=0.0, latency_stale_after_s=10.0)
    busy = rec(1, latency_ewma_ms=20.0, latency_stamp=0.0, latency_stale_after_s=10.0)
    shell = Shell([starved, busy])
    busy.record_latency(20.0, 30.0)  # busy stays fresh
    shell.pool.update(busy)
    shell.ping(starved, 1.0, now=30.0)  # 30 s after starved's last request sample: ranked by its 1 ms ping
    assert least_latency_rank(starved) == 1.0
    got = [shell.pick(now=30.0).connection_id for _ in range(20)]
    assert got[0] == "c0" and got[1:] == ["c1"] * 19  # one probe, then back behind its stale 80 ms
    assert least_latency_rank(starved) == 80.0
    # the probe's answer: fresh again, its EWMA mostly that answer after the 30 s gap (time-weighted)
    shell.answer(starved, 3.0, now=30.05)
    assert starved.latency_ewma_ms < 20.0 and shell.pick(now=30.05).connection_id == "c0"


def test_a_probe_that_times_out_ends_the_exploration_with_a_censored_sample() -> None:
    starved = rec(0, latency_ewma_ms=80.0, latency_stamp=0.0, latency_stale_after_s=10.0)
    busy = rec(1, latency_ewma_ms=20.0, latency_stamp=0.0, latency_stale_after_s=10.0)
    shell = Shell([starved, busy])
    busy.record_latency(20.0, 30.0)
    shell.pool.update(busy)
    shell.ping(starved, 1.0, now=30.0)
    assert [shell.pick(now=30.0).connection_id for _ in range(3)] == ["c0", "c1", "c1"]
    starved.outstanding -= 1  # the probe timed out after 5 s: a censored sample, fresh, and slow
    starved.record_censored(5000.0, 35.0)
    shell.pool.update(starved)
    assert least_latency_rank(starved) == starved.latency_ewma_ms > 1000.0
    assert {shell.pick(now=35.0).connection_id for _ in range(10)} == {"c1"}
    shell.ping(starved, 1.0, now=44.0)  # not stale yet (9 s after the censored sample): no new probe
    assert shell.pick(now=44.0).connection_id == "c1"
    shell.ping(starved, 1.0, now=45.0)  # 10 s after: explored again, one probe
    assert [shell.pick(now=45.0).connection_id for _ in range(3)] == ["c0", "c1", "c1"]


def test_when_every_member_is_new_a_burst_spreads_like_least_connections() -> None:
    shell = Shell([rec(i) for i in range(3)])
    got = Counter(shell.pick().connection_id for _ in range(30))
    assert got == {"c0": 10, "c1": 10, "c2": 10}
    assert least_latency_rank(rec(9, outstanding=3)) == 3 * UNMEASURED_PENALTY_MS


def test_the_budget_comes_from_the_connection_config_through_the_store() -> None:
    store = InMemoryConnectionStore(clock=lambda: 0.0)
    lb = WebSocketLoadBalancer(store, seed=1)
    for i, budget in enumerate((1, 3)):
        config = ConnectionConfig(url="ws://127.0.0.1:1/", connection_type=T, latency_probe_budget=budget)
        store.register(f"c{i}", config)
        store.set_state(f"c{i}", ConnectionState.CONNECTING)
        store.set_state(f"c{i}", ConnectionState.CONNECTED)
    store.register("m", ConnectionConfig(url="ws://127.0.0.1:1/", connection_type=T))
    store.set_state("m", ConnectionState.CONNECTING)
    store.set_state("m", ConnectionState.CONNECTED)
    store.answer_received("m", 10, ok=True, latency_ms=4.0, now=0.0)  # (its outstanding stays 0)
    assert [store.get(c).latency_probe_budget for c in ("c0", "c1", "m")] == [1, 3, 1]  # type: ignore[union-attr]
    got = Counter()
    for _ in range(20):
        sel = lb.choose(T, LBS.LEAST_LATENCY, now=0.0)
        assert sel is not None
        got[sel.record.connection_id] += 1
        store.request_sent(sel.record.connection_id, 10, now=0.0)  # what the connection does on submit
    assert got == {"c0": 1, "c1": 3, "m": 16}
    assert ConnectionConfig.latency_probe_budget == DEFAULT_LATENCY_PROBE_BUDGET == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_a_bad_budget_is_refused_with_a_clear_error(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"latency_probe_budget=.*must be an integer >= 1"):
        ConnectionConfig(url="ws://127.0.0.1:1/", connection_type=T, latency_probe_budget=bad)  # type: ignore[arg-type]


# --- properties ----------------------------------------------------------------------------------------------------

records = st.builds(
    lambda ewma, stamp, ping, ping_at, stale, out, budget: rec(
        0,
        latency_ewma_ms=ewma,
        latency_stamp=stamp,
        ping_rtt_ms=ping,
        ping_stamp=ping_at,
        latency_stale_after_s=stale,
        outstanding=out,
        latency_probe_budget=budget,
    ),
    st.one_of(st.just(math.nan), st.floats(0.01, 1e4)),
    st.floats(0.0, 100.0),
    st.floats(0.01, 1e4),
    st.one_of(st.just(-math.inf), st.floats(0.0, 200.0)),
    st.floats(0.5, 30.0),
    st.integers(0, 20),
    st.integers(1, 5),
)


@settings(max_examples=300, deadline=None)
@given(r=records)
def test_a_measured_fresh_connection_is_ranked_exactly_as_before_and_within_budget_nothing_changed(
    r: ConnectionRecord,
) -> None:
    new = least_latency_rank(r)
    assert new == LeastLatency.measure(r)  # the strategy ranks by the documented function
    fresh = not math.isnan(r.latency_ewma_ms) and not r.ping_stamp - r.latency_stamp >= r.latency_stale_after_s
    if fresh:
        assert new == old_rank(r) == r.latency_ewma_ms  # whatever its load and budget
    if r.outstanding < r.latency_probe_budget:
        assert new == old_rank(r)  # exploration within the budget is what it was
    elif math.isnan(r.latency_ewma_ms):  # beyond the budget, unmeasured: behind every measured latency
        assert new == UNMEASURED_PENALTY_MS * (r.outstanding - r.latency_probe_budget + 1) >= UNMEASURED_PENALTY_MS
    else:  # beyond the budget, measured: its request EWMA, fresh or stale (no exploration signal)
        assert new == r.latency_ewma_ms


ops = st.lists(
    st.one_of(
        st.tuples(st.just("pick"), st.integers(0, 0), st.floats(0.0, 0.0)),
        st.tuples(st.just("answer"), st.integers(0, 5), st.floats(0.5, 200.0)),
        st.tuples(st.just("timeout"), st.integers(0, 5), st.floats(0.0, 0.0)),
        st.tuples(st.just("ping"), st.integers(0, 5), st.floats(0.1, 30.0)),
        st.tuples(st.just("advance"), st.integers(0, 0), st.floats(0.0, 8.0)),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(2, 5),
    measured=st.lists(st.one_of(st.none(), st.floats(1.0, 100.0)), min_size=5, max_size=5),
    budget=st.integers(1, 3),
    script=ops,
)
def test_never_more_than_the_budget_of_exploratory_requests_in_flight(
    n: int, measured: list[float | None], budget: int, script: list[tuple[str, int, float]]
) -> None:
    """Any interleaving of picks, answers, timeouts (censored samples), pongs and time. A pick is *exploratory*
    when it could only be made by exploring: the connection has no request sample while another one has, or its
    sample is stale while another connection's fresh request EWMA is lower than its own. Exploratory requests
    are tracked until they end; there are never more than the budget of them in flight to one connection."""
    members = [rec(i, latency_stale_after_s=5.0, latency_probe_budget=budget) for i in range(n)]
    for r, v in zip(members, measured, strict=False):
        if v is not None:
            r.record_latency(v, 0.0)
    shell = Shell(members)
    now = 0.0
    in_flight: dict[str, list[bool]] = {r.connection_id: [] for r in members}  # exploratory?, oldest first

    def fresh(r: ConnectionRecord) -> bool:
        return not math.isnan(r.latency_ewma_ms) and not r.ping_stamp - r.latency_stamp >= r.latency_stale_after_s

    for op, i, x in script:
        if op == "pick":
            r = shell.pick(now)
            others = [m for m in members if m is not r]
            if math.isnan(r.latency_ewma_ms):
                exploratory = any(not math.isnan(m.latency_ewma_ms) for m in others)
            elif not fresh(r):
                exploratory = any(fresh(m) and m.latency_ewma_ms < r.latency_ewma_ms for m in others)
            else:
                exploratory = False
            in_flight[r.connection_id].append(exploratory)
            assert sum(in_flight[r.connection_id]) <= budget, (r.connection_id, in_flight)
        elif op in ("answer", "timeout"):
            r = members[i % n]
            if not in_flight[r.connection_id]:
                continue
            in_flight[r.connection_id].pop(0)
            if op == "answer":
                shell.answer(r, x, now)
            else:
                r.outstanding -= 1
                r.record_censored(5000.0, now)
                shell.pool.update(r)
        elif op == "ping":
            shell.ping(members[i % n], x, now)
        else:
            now += x
    for r in members:
        assert r.outstanding == len(in_flight[r.connection_id])


# --- the scenario key --------------------------------------------------------------------------------------------

SCENARIO = """
name: probe
duration: 5s
nodes:
  - id: node-a
    service: {distribution: constant, value: 1ms}
    api_keys: {key-1: secret-1}
clients:
  connections:
    - {type: trading, node: node-a, count: 2, api_key: key-1}
    - {type: trading, node: node-a, api_key: key-1}
  workload:
    - {type: trading, rate: 10/s}
"""


def test_latency_probe_budget_is_a_connection_group_key() -> None:
    import yaml

    from simulator.scenario import ScenarioError, parse_scenario

    doc = yaml.safe_load(SCENARIO)
    doc["clients"]["connections"][0]["latency_probe_budget"] = 3
    s = parse_scenario(doc, "probe.yaml")
    assert s.connections[0].latency_probe_budget == 3
    assert s.connections[1].latency_probe_budget == 1 == ConnectionConfig.latency_probe_budget  # the default
    for bad in (0, 1.5, "2"):
        doc["clients"]["connections"][0]["latency_probe_budget"] = bad
        with pytest.raises(ScenarioError) as info:
            parse_scenario(doc, "probe.yaml")
        assert info.value.path == "clients.connections[0].latency_probe_budget", (bad, info.value.problems)
