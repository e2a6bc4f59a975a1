"""Pure tests of the fault engine: every kind's decisions, windows, toxicity and determinism. No sockets."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.fault_link import Link
from simulator.faults import (
    KINDS,
    AbortLink,
    CloseLink,
    Deliver,
    Fault,
    FaultSchedule,
    Info,
    injected,
)
from simulator.scenario import FAULT_KINDS, FaultSpec

STREAM = '[17,"hb"]'
EVENT = '{"event":"pong","cid":1}'


def sched(*faults: Fault, **kw: object) -> FaultSchedule:
    kw.setdefault("node_id", "n")
    return FaultSchedule(faults, **kw)  # type: ignore[arg-type]


def delivered(out: list) -> list[str | bytes]:
    return [d.data for d in out if isinstance(d, Deliver)]


def test_vocabulary_matches_the_scenario_kinds() -> None:
    assert set(FAULT_KINDS) == KINDS


def test_no_faults_delivers_immediately_in_order() -> None:
    link = sched().open_link()
    assert link.plan("down", "a", 1.0) == [Deliver(1.0, "a")]
    assert link.plan("up", "b", 2.0) == [Deliver(2.0, "b")]


def test_base_latency_each_direction_and_fifo() -> None:
    link = sched(base_latency_s=0.01, base_jitter_s=0.005, seed=3).open_link()
    times = [link.plan("down", str(i), i * 0.0001)[0].at for i in range(200)]
    assert times == sorted(times)  # jitter never reorders a stream
    assert all(t >= i * 0.0001 for i, t in enumerate(times))
    assert 0.005 < sum(t - i * 0.0001 for i, t in enumerate(times)) / 200 < 0.02


def test_window_edges_and_instant_kinds() -> None:
    s = sched(
        Fault("latency", at_s=1, duration_s=2, params={"latency": 0.1}),
        Fault("close", at_s=5, params={"code": 1012}),
    )
    edges = s.edges()
    assert [(e.time, e.start, e.fault.kind) for e in edges] == [
        (1, True, "latency"),
        (3, False, "latency"),
        (5, True, "close"),
    ]
    assert s.active(0.5) == () and s.active(1.0) == (0,) and s.active(2.99) == (0,) and s.active(3.0) == ()
    assert s.active(5.0) == ()  # instant


def test_other_nodes_faults_are_ignored() -> None:
    s = FaultSchedule([Fault("loss", node="other", params={"rate": 1.0})], node_id="n")
    assert s.faults == ()


def test_latency_fault_adds_delay_in_its_direction_only() -> None:
    s = sched(Fault("latency", at_s=0, duration_s=1, direction="down", params={"latency": 0.2, "jitter": 0.0}))
    link = s.open_link()
    assert link.plan("down", "x", 0.5)[0].at == pytest.approx(0.7)
    assert link.plan("up", "x", 0.5)[0].at == 0.5
    assert link.plan("down", "y", 1.5)[0].at == pytest.approx(1.5)  # FIFO: after 0.7 anyway


@pytest.mark.parametrize("dist", ["normal", "uniform", "exponential"])
def test_latency_jitter_distributions(dist: str) -> None:
    s = sched(Fault("latency", direction="both", params={"latency": 0.1, "jitter": 0.02, "distribution": dist}))
    delays = []
    for i in range(300):
        link = s.open_link()
        delays.append(link.plan("down", "x", float(i))[0].at - i)
    mean = sum(delays) / len(delays)
    assert min(delays) >= 0
    assert 0.08 < mean < (0.14 if dist == "exponential" else 0.11)
    assert len(set(delays)) > 100


def test_latency_factor_multiplies_network_delay_and_node_state() -> None:
    s = sched(Fault("latency_factor", direction="both", params={"factor": 20.0}), base_latency_s=0.001)
    link = s.open_link()
    assert link.plan("down", "x", 0.0)[0].at == pytest.approx(0.02)
    assert s.node_state(0.0).latency_factor == 20.0


def test_bandwidth_paces_bytes() -> None:
    link = sched(Fault("bandwidth", params={"rate": 1000.0})).open_link()
    times = [link.plan("down", "x" * 100, 0.0)[0].at for _ in range(5)]
    assert times == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_timeout_stalls_and_aborts_later_blackhole_never() -> None:
    s = sched(Fault("timeout", at_s=1, duration_s=5, params={"timeout": 0.5}))
    link = s.open_link()
    assert link.plan("down", STREAM, 1.1) == [] and link.plan("up", "x", 1.1) == []
    [edge] = [e for e in s.edges() if e.start]
    assert s.on_edge(edge, [link], 1.0) == [(link, AbortLink(1.5))]
    hole = sched(Fault("timeout", params={"timeout": 0.0}))
    link2 = hole.open_link()
    assert link2.plan("down", STREAM, 0.0) == []
    assert hole.on_edge(hole.edges()[0], [link2], 0.0) == []  # half-open: never closed


def test_reset_aborts_at_edge_and_on_traffic() -> None:
    s = sched(Fault("reset", at_s=1, duration_s=1))
    link = s.open_link()
    assert s.on_edge(s.edges()[0], [link], 1.0) == [(link, AbortLink(1.0))]
    other = s.open_link()
    assert other.plan("down", "x", 1.5) == [AbortLink(1.5)]
    assert other.plan("down", "x", 1.6) == []  # dead


def test_slicer_fragments_preserve_the_message() -> None:
    link = sched(Fault("slicer", params={"average_size": 10, "size_variation": 3, "delay": 0.01})).open_link()
    text = json.dumps([1, "x" * 95])
    [d] = link.plan("down", text, 0.0)
    assert isinstance(d, Deliver) and len(d.fragments) > 5
    assert "".join(d.fragments) == text and d.fragment_delay == 0.01
    # the next frame waits until the fragments are out
    assert link.plan("down", "y", 0.0)[0].at == pytest.approx(0.01 * (len(d.fragments) - 1))


def test_limit_data_aborts_after_n_bytes() -> None:
    link = sched(Fault("limit_data", params={"bytes": 25})).open_link()
    assert delivered(link.plan("down", "x" * 10, 0)) == ["x" * 10]
    assert delivered(link.plan("down", "x" * 10, 0)) == ["x" * 10]
    assert link.plan("down", "x" * 10, 0) == [AbortLink(0)]
    assert link.dead


def test_node_down_refuses_and_drops_everyone() -> None:
    s = sched(Fault("node_down", at_s=1, duration_s=2, probability=0.0))
    links = [s.open_link() for _ in range(3)]
    assert s.refuse_connect("c", 0.5) is None
    assert s.refuse_connect("c", 1.5) == (503, "node n is down")
    assert s.refuse_connect("c", 3.0) is None
    effects = s.on_edge(s.edges()[0], links, 1.0)
    assert [e for _, e in effects] == [AbortLink(1.0)] * 3
    assert s.node_state(1.5).down


@pytest.mark.parametrize(("code", "kind"), [(1001, CloseLink), (1012, CloseLink), (1013, CloseLink), (1006, AbortLink)])
def test_close_with_code(code: int, kind: type) -> None:
    s = sched(Fault("close", at_s=2, params={"code": code, "reason": "bye"}))
    link = s.open_link()
    [(_, effect)] = s.on_edge(s.edges()[0], [link], 2.0)
    assert isinstance(effect, kind)
    if kind is CloseLink:
        assert effect == CloseLink(2.0, code, "bye")


def test_loss_drops_stream_messages_at_the_rate_events_spared() -> None:
    link = sched(Fault("loss", params={"rate": 0.3}), seed=1).open_link()
    kept = sum(len(link.plan("down", STREAM, 0)) for _ in range(2000))
    assert 1250 < kept < 1550
    assert all(link.plan("down", EVENT, 0) for _ in range(100))


def test_duplicate() -> None:
    link = sched(Fault("duplicate", params={"rate": 1.0})).open_link()
    assert delivered(link.plan("down", STREAM, 0)) == [STREAM, STREAM]


def test_reorder_holds_back_by_gap_and_releases_at_end() -> None:
    s = sched(Fault("reorder", at_s=0, duration_s=10, params={"rate": 1.0, "gap": 2}))
    link = s.open_link()
    assert link.plan("down", "[1]", 0) == []
    s2 = sched(Fault("reorder", at_s=0, duration_s=10, params={"rate": 0.5, "gap": 2}), seed=4)
    link2 = s2.open_link()
    order: list[str | bytes] = []
    for i in range(40):
        order += delivered(link2.plan("down", f"[{i}]", 0))
    order += [d.data for _, d in link2.release(11.0) if isinstance(d, Deliver)]
    assert sorted(order, key=lambda x: json.loads(x)[0]) != order  # reordered
    assert sorted(json.loads(x)[0] for x in order) == list(range(40))  # nothing lost
    assert link.release(11.0) == [("down", Deliver(11.0, "[1]"))]


def test_malformed_oversized_binary() -> None:
    s = sched(
        Fault("malformed", params={"rate": 1.0}),
        Fault("oversized", params={"rate": 1.0, "size": 5000}),
        Fault("binary", params={"rate": 1.0}),
    )
    [d] = s.open_link().plan("down", STREAM, 0)
    assert isinstance(d.data, bytes) and len(d.data) == 5000
    [m] = sched(Fault("malformed", params={"rate": 1.0})).open_link().plan("down", STREAM, 0)
    with pytest.raises(json.JSONDecodeError):
        json.loads(m.data)


def test_error_reply_rate_and_code() -> None:
    link = sched(Fault("error_reply", params={"code": 10001, "rate": 0.5}), seed=2).open_link()
    errors = [link.order_error(0.0) for _ in range(1000)]
    hit = [e for e in errors if e is not None]
    assert 400 < len(hit) < 600 and hit[0][0] == 10001


def test_info_reconnect_and_maintenance_edges() -> None:
    s = sched(Fault("info_reconnect", at_s=1), Fault("maintenance", at_s=2, duration_s=1))
    link = s.open_link()
    effects = [(e.time, s.on_edge(e, [link], e.time)) for e in s.edges()]
    assert effects == [(1, [(link, Info(20051))]), (2, [(link, Info(20060))]), (3, [(link, Info(20061))])]
    assert s.node_state(2.5).maintenance and not s.node_state(3.5).maintenance


def test_connect_rate_limit_per_client_sliding_window() -> None:
    s = sched(Fault("connect_rate_limit", at_s=0, duration_s=10, params={"max_connects": 2, "window": 1.0}))
    assert s.refuse_connect("a", 0.0) is None and s.refuse_connect("a", 0.1) is None
    assert s.refuse_connect("a", 0.2) is not None and s.refuse_connect("a", 0.2)[0] == 429  # type: ignore[index]
    assert s.refuse_connect("b", 0.2) is None
    assert s.refuse_connect("a", 1.05) is None  # the first left the window


def test_capacity_drop_node_state() -> None:
    s = sched(Fault("capacity_drop", at_s=1, duration_s=1, params={"workers": 1}))
    assert s.node_state(0).workers is None and s.node_state(1.5).workers == 1


def test_slow_close_delays_node_closes() -> None:
    link = sched(Fault("slow_close", params={"delay": 0.3}), base_latency_s=0.1).open_link()
    link.plan("down", "x", 0.0)
    assert link.close_at(0.0) == pytest.approx(0.4)


def test_toxicity_is_stable_per_connection() -> None:
    s = sched(Fault("loss", probability=0.5, params={"rate": 1.0}), seed=11)
    picks = [s.affects(0, i) for i in range(400)]
    assert 150 < sum(picks) < 250
    again = sched(Fault("loss", probability=0.5, params={"rate": 1.0}), seed=11)
    assert [again.affects(0, i) for i in reversed(range(400))] == picks[::-1]


def test_connection_filter() -> None:
    s = sched(Fault("loss", connection=1, params={"rate": 1.0}))
    a, b = s.open_link(), s.open_link()
    assert a.plan("down", STREAM, 0) and b.plan("down", STREAM, 0) == []


def test_injected_fault_double() -> None:
    s = sched()
    link = s.open_link()
    with injected(s, Fault("loss", params={"rate": 1.0}), now=5.0):
        assert link.plan("down", STREAM, 5.0) == []
    assert link.plan("down", STREAM, 5.0) == [Deliver(5.0, STREAM)]


def test_accepts_scenario_fault_specs() -> None:
    spec = FaultSpec(kind="latency", at_s=0.0, duration_s=1.0, node="n", params={"latency": 0.05, "jitter": 0.0})
    link = FaultSchedule([spec], node_id="n").open_link()
    assert link.plan("down", "x", 0.0)[0].at == pytest.approx(0.05)


def test_unknown_kind_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        sched(Fault("gremlins"))


MIXED = (
    Fault("latency", direction="both", params={"latency": 0.01, "jitter": 0.005}),
    Fault("loss", probability=0.7, params={"rate": 0.2}),
    Fault("duplicate", params={"rate": 0.1}),
    Fault("reorder", params={"rate": 0.1, "gap": 3}),
    Fault("malformed", params={"rate": 0.05}),
    Fault("error_reply", params={"rate": 0.3, "code": 10001}),
)


def decisions(seed: int) -> list[object]:
    s = sched(*MIXED, seed=seed, base_jitter_s=0.001)
    out: list[object] = []
    for c in range(5):
        link = s.open_link()
        for i in range(100):
            out.append(link.plan("down" if i % 3 else "up", f"[{c},{i}]", i * 0.001))
            out.append(link.order_error(i * 0.001))
    return out


def test_same_seed_same_decisions() -> None:
    assert decisions(42) == decisions(42)
    assert decisions(42) != decisions(43)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    sends=st.lists(st.tuples(st.sampled_from(["down", "up"]), st.floats(0, 0.01)), max_size=60),
)
def test_no_frame_is_lost_without_a_loss_fault(seed: int, sends: list[tuple[str, float]]) -> None:
    s = sched(*MIXED[2:4], Fault("latency", direction="both", params={"latency": 0.01, "jitter": 0.01}), seed=seed)
    link = s.open_link()
    now = 0.0
    got: dict[str, list[int]] = {"down": [], "up": []}
    last = {"down": -math.inf, "up": -math.inf}
    for i, (direction, gap) in enumerate(sends):
        now += gap
        for d in link.plan(direction, f"[{i}]", now):
            assert isinstance(d, Deliver) and d.at >= now
            assert d.at >= last[direction]
            last[direction] = d.at
            got[direction].append(json.loads(d.data)[0])
    for direction, d in link.release(now + 1):
        assert isinstance(d, Deliver)
        got[direction].append(json.loads(d.data)[0])
    sent = {d: [i for i, (dd, _) in enumerate(sends) if dd == d] for d in ("down", "up")}
    for direction in ("down", "up"):
        assert sorted(set(got[direction])) == sent[direction]


def test_plain_until_is_the_next_edge_when_no_fault_acts_on_the_link() -> None:
    s = sched(
        Fault("latency", at_s=2, duration_s=1, params={"latency": 0.1}),
        Fault("capacity_drop", at_s=5, duration_s=1, params={"workers": 1}),
        Fault("error_reply", at_s=8, duration_s=1, params={"rate": 1.0}),
    )
    link = s.open_link()
    assert link.plain_until(0.5) == 2.0
    assert link.plain_until(2.5) == -math.inf  # latency on the link
    assert link.plain_until(3.0) == 5.0
    assert link.plain_until(5.5) == 6.0  # a capacity drop acts on the node, not on frames
    assert link.plain_until(8.5) == -math.inf  # order replies may be errors
    assert link.plain_until(9.0) == math.inf
    link.plan("down", "x", 9.5)
    link.dead = True
    assert link.plain_until(9.5) == -math.inf


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0, 0.05),
    st.floats(0, 0.02),
    st.lists(st.floats(0, 0.01), min_size=1, max_size=30),
    st.integers(0, 2**32),
)
def test_base_latency_without_faults_is_what_a_faultless_plan_gives(
    latency: float, jitter: float, gaps: list[float], seed: int
) -> None:
    import random

    link = sched(base_latency_s=latency, base_jitter_s=jitter, seed=seed).open_link()
    rng = random.Random(f"{seed}/n/0/down")  # the link's own generator for this direction
    now, last = 0.0, -math.inf
    for gap in gaps:
        now += gap
        delay = max(0.0, latency + rng.gauss(0.0, jitter)) if jitter else latency
        last = max(now + delay, last)
        assert link.plan("down", STREAM, now) == [Deliver(last, STREAM)]


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0, 0.05), st.floats(0, 0.02), st.lists(st.floats(0, 0.01), min_size=1, max_size=30), st.integers(0, 99)
)
def test_deliver_at_is_what_plan_says_on_a_plain_link(
    latency: float, jitter: float, gaps: list[float], seed: int
) -> None:
    planned = sched(base_latency_s=latency, base_jitter_s=jitter, seed=seed).open_link()
    timed = sched(base_latency_s=latency, base_jitter_s=jitter, seed=seed).open_link()
    now = 0.0
    for i, gap in enumerate(gaps):
        now += gap
        direction = "up" if i % 3 else "down"
        assert timed.plain_until(now) == math.inf
        assert planned.plan(direction, STREAM, now) == [Deliver(timed.deliver_at(direction, now), STREAM)]


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0, 0.05),
    st.floats(0, 0.02),
    st.lists(st.tuples(st.floats(0, 0.01), st.booleans()), min_size=1, max_size=30),
    st.integers(0, 99),
)
def test_deliver_pair_at_is_deliver_at_twice(
    latency: float, jitter: float, steps: list[tuple[float, bool]], seed: int
) -> None:
    # the node's answer to an order asks for both frames' times at once; single frames in between
    single = sched(base_latency_s=latency, base_jitter_s=jitter, seed=seed).open_link()
    paired = sched(base_latency_s=latency, base_jitter_s=jitter, seed=seed).open_link()
    now = 0.0
    for gap, pair in steps:
        now += gap
        if pair:
            assert paired.deliver_pair_at("down", now) == (
                single.deliver_at("down", now),
                single.deliver_at("down", now),
            )
        else:
            assert paired.deliver_at("down", now) == single.deliver_at("down", now)
    assert paired.plan("down", STREAM, now) == single.plan("down", STREAM, now)  # same draws, same FIFO state


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0, 0.05),
    st.lists(st.tuples(st.floats(0, 0.01), st.integers(0, 2)), min_size=1, max_size=40),
    st.integers(0, 99),
)
def test_jitter_free_fast_variants_equal_the_general_methods_and_plan(
    latency: float, steps: list[tuple[float, int]], seed: int
) -> None:
    # without jitter a link binds draw-free deliver_at / deliver_pair_at; the general methods (called through the
    # class) and plan() must give the same times and leave the same FIFO state
    fast = sched(base_latency_s=latency, seed=seed).open_link()
    general = sched(base_latency_s=latency, seed=seed).open_link()
    planned = sched(base_latency_s=latency, seed=seed).open_link()
    assert fast.deliver_at.__func__ is Link._deliver_at_fixed  # type: ignore[attr-defined]
    now = 0.0
    for gap, what in steps:
        now += gap
        direction = "up" if what == 1 else "down"
        if what == 2:
            pair = fast.deliver_pair_at("down", now)
            assert pair == Link.deliver_pair_at(general, "down", now)
            assert [d.at for d in planned.plan("down", STREAM, now) + planned.plan("down", STREAM, now)] == list(pair)
        else:
            at = fast.deliver_at(direction, now)
            assert at == Link.deliver_at(general, direction, now)
            assert planned.plan(direction, STREAM, now) == [Deliver(at, STREAM)]
    for d in ("down", "up"):
        assert fast._dirs[d].last_at == general._dirs[d].last_at == planned._dirs[d].last_at
    jittery = sched(base_latency_s=latency, base_jitter_s=0.001, seed=seed).open_link()
    assert jittery.deliver_at.__func__ is Link.deliver_at  # type: ignore[attr-defined]


def test_plain_until_ignores_base_latency_but_not_faults() -> None:
    s = sched(
        Fault("loss", at_s=1, duration_s=1, params={"rate": 0.5}),
        Fault("maintenance", at_s=3, duration_s=1),
        Fault("slow_close", at_s=5, duration_s=1, params={"delay": 0.1}),
        base_latency_s=0.01,
    )
    link = s.open_link()
    assert link.plain_until(0.0) == 1.0
    assert link.plain_until(1.5) == -math.inf
    assert link.plain_until(3.5) == 4.0  # maintenance acts at its edges, not on frames
    assert link.plain_until(5.5) == -math.inf
    assert link.plain_until(6.0) == math.inf
