"""What sweeps/example.yaml's comment and the README say about it matches the sweep."""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks.sweep import grid_size, load_sweep

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "sweeps" / "example.yaml"


def test_comment_counts_and_time_match() -> None:
    text = EXAMPLE.read_text()
    sweep = load_sweep(EXAMPLE)
    m = re.search(r"(\d+) load levels x (\d+) strategies x (\d+) seeds = (\d+) short virtual runs", text)
    assert m is not None
    levels, strategies, seeds, runs = map(int, m.groups())
    assert (strategies, seeds, runs) == (len(sweep.strategies), len(sweep.seeds), grid_size(sweep))
    assert levels == len(next(iter(sweep.parameters.values())))
    assert "about 30 s on two idle cores" in text and "few minutes" not in text
    readme = (ROOT / "README.md").read_text()
    assert f"({runs} runs, about 30 s)" in readme  # the README's figure, the same as the comment's
