import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.results import (
    OUTCOMES,
    SCHEMA_VERSION,
    RequestRecorder,
    RequestTable,
    RunResult,
    check_accounting,
    latency_stats,
    outcome_counts,
    percent_text,
    summarize_requests,
)


def filled(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    rec = RequestRecorder(capacity=8)  # forces growth
    for i in range(n):
        t = i * 0.01
        lat = rng.exponential(0.005)
        outcome = OUTCOMES[i % 7 % len(OUTCOMES)] if i % 10 == 0 else "acknowledged"
        rec.add(t, t, t + lat, f"c{i % 3}", f"n{i % 2}", "trading", outcome, 10001 if outcome == "rejected" else None)
    return RequestTable.from_recorder(rec)


def test_recorder_grows_and_keeps_rows():
    table = filled(1000)
    assert len(table) == 1000
    assert table.connections == ["c0", "c1", "c2"] and table.nodes == ["n0", "n1"]
    assert np.all(table.latency_ms >= 0)


def test_summary_counts_add_up_and_respect_warmup():
    table = filled(1000)
    s = summarize_requests(table, warmup_s=2.0)
    assert s["all"]["submitted"] == 800
    assert check_accounting(s["all"]["outcomes"], s["all"]["submitted"])
    assert sum(b["submitted"] for b in s["by_node"].values()) == 800
    lat = s["all"]["latency"]
    assert lat["count"] == s["all"]["outcomes"]["acknowledged"]
    assert lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]


def test_latency_stats_empty_and_known():
    assert latency_stats(np.array([]))["p99_ms"] is None
    stats = latency_stats(np.arange(1, 101, dtype=float))
    assert stats["p50_ms"] == pytest.approx(50.5) and stats["mean_ms"] == pytest.approx(50.5)


def test_outcome_counts_cover_every_outcome():
    assert set(outcome_counts(filled(50))) == set(OUTCOMES)


def test_save_and_load_round_trip(tmp_path):
    table = filled(200)
    summary = {"schema_version": SCHEMA_VERSION, "status": "ok", "requests": summarize_requests(table, 0.0)}
    result = RunResult(summary, table, [{"time": 1.0, "kind": "fault", "detail": {"kind": "latency"}}])
    out = result.save(tmp_path / "run")
    assert {p.name for p in out.iterdir()} == {"summary.json", "requests.npz", "requests.csv", "events.jsonl"}
    back = RunResult.load(out)
    assert back.summary == json.loads(json.dumps(summary))
    for name in table.columns:
        assert np.array_equal(back.requests.columns[name], table.columns[name])
    assert back.requests.connections == table.connections and back.events == result.events
    assert (out / "requests.csv").read_text().count("\n") == 201


def test_load_rejects_other_schema_versions(tmp_path):
    table = filled(5)
    RunResult({"schema_version": 999}, table).save(tmp_path)
    with pytest.raises(ValueError, match="schema_version 999"):
        RunResult.load(tmp_path)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 1e4),
            st.sampled_from([None, "c0", "c1", "c2", "c3"]),
            st.sampled_from([None, "n0", "n1"]),
            st.sampled_from(["trading", "market_data"]),
            st.sampled_from(OUTCOMES),
            st.sampled_from([None, 0, 10001]),
        ),
        max_size=80,
    ),
    st.integers(1, 9),
    st.integers(0, 80),
)
def test_buffered_rows_give_the_same_columns_and_tables_as_rows_written_at_once(rows, flush_rows, read_at):
    # add() buffers rows; flush_rows=1 writes each row at once (the unbuffered recorder). Reading in between
    # (len, a name table) writes the buffer early: nothing may change either.
    at_once, buffered = RequestRecorder(capacity=1, flush_rows=1), RequestRecorder(capacity=2, flush_rows=flush_rows)
    for k, (t, conn, node, ctype, outcome, code) in enumerate(rows):
        for rec in (at_once, buffered):
            rec.add(t, t + 1, t + 2, conn, node, ctype, outcome, code)
        if k == read_at:
            assert len(buffered) == k + 1 and buffered.nodes == at_once.nodes
    a, b = RequestTable.from_recorder(at_once), RequestTable.from_recorder(buffered)
    assert len(a) == len(b) == len(rows)
    assert (a.connections, a.nodes, a.ctypes) == (b.connections, b.nodes, b.ctypes)
    assert a.connections == list(dict.fromkeys(r[1] for r in rows if r[1] is not None))  # first-seen order
    for name in a.columns:
        assert np.array_equal(a.columns[name], b.columns[name]) and a.columns[name].dtype == b.columns[name].dtype
    assert [a.connections[i] if i >= 0 else None for i in a.columns["connection"]] == [r[1] for r in rows]
    assert a.columns["code"].tolist() == [r[5] or 0 for r in rows]


def test_an_unknown_outcome_is_refused_when_added():
    rec = RequestRecorder()
    with pytest.raises(KeyError, match="lost_in_space"):
        rec.add(0.0, 0.0, 1.0, "c0", "n0", "trading", "lost_in_space")
    assert len(rec) == 0


@given(st.floats(min_value=0.0, max_value=100.0, allow_nan=False))
def test_percent_text_reads_100_only_without_failures(percent: float) -> None:
    text = percent_text(percent)
    if percent < 100.0:
        assert text == ">99.999" or float(text) < 100.0
    else:
        assert text == "100.00"
    assert percent_text(math.nan) == "nan"
