"""Service-time CSV files: the format of simulator.service_csv, and its errors as ServiceDistribution.from_csv and
the scenario loader (wsfinal run, wsfinal scenario check) report them."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.cli import main
from simulator.scenario import ScenarioError, load_scenario
from simulator.service import ServiceDistribution, distribution_from_params
from simulator.service_csv import ServiceCsvError, read_service_csv
from wsfinal.exceptions import ConfigurationError

NAB = Path("/work/shared/data/nab")

SCENARIO = """\
name: csv-test
duration: 5s
nodes:
  - id: node-a
    service: {{distribution: empirical, csv: lat.csv{extra}}}
clients:
  connections:
    - {{type: market_data, node: node-a}}
  workload:
    - {{type: market_data, rate: 10/s}}
"""


def _csv(tmp_path: Path, text: str | bytes, name: str = "lat.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def _error(path: Path, column: str | int = "value", factor: float = 1.0) -> ServiceCsvError:
    with pytest.raises(ServiceCsvError) as info:
        read_service_csv(path, column, factor=factor)
    return info.value


# --- what loads ---------------------------------------------------------------------------------------------------


def test_blank_and_comment_lines_are_skipped_anywhere(tmp_path: Path) -> None:
    text = "# measured 2026-11-01\n\ntimestamp,value\n  \nt1,2.5\n# a pause\n,\nt2,0\r\nt3, 4 \n"
    assert read_service_csv(_csv(tmp_path, text), "value", factor=1e-3) == pytest.approx((0.0025, 0.0, 0.004))


def test_column_index_with_and_without_a_header(tmp_path: Path) -> None:
    assert read_service_csv(_csv(tmp_path, "lat,x\n3,a\n"), 0) == (3.0,)
    assert read_service_csv(_csv(tmp_path, "3,a\n4,b\n"), 0) == (3.0, 4.0)
    assert read_service_csv(_csv(tmp_path, "# c\n\n7\n"), 0) == (7.0,)


def test_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    assert read_service_csv(_csv(tmp_path, b"\xef\xbb\xbfvalue\n3\n")) == (3.0,)


@pytest.mark.parametrize("path", sorted(NAB.glob("*.csv")), ids=lambda p: p.stem)
def test_shared_example_csvs_load(path: Path) -> None:
    dist = ServiceDistribution.from_csv(path, "value", unit="ms")
    assert dist.kind == "empirical" and math.isfinite(dist.mean_s) and dist.mean_s > 0


# --- bad rows: file, line, column, value ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "cell", "detail"),
    [
        ("value\n1\nabc\n", 3, "abc", "not a number"),
        ("value\n1\n\n# note\n-2.5\n", 5, "-2.5", "service times cannot be negative"),
        ("value\nnan\n", 2, "nan", "service times must be finite"),
        ("value\n-inf\n", 2, "-inf", "service times must be finite"),
        ("value\n1e999\n", 2, "1e999", "service times must be finite"),
        ("t,value\nx,\n", 2, "", "empty cell"),
        ("t,value\nx,12ms\n", 2, "12ms", "not a number"),
    ],
)
def test_a_bad_cell_names_file_line_column_and_value(
    tmp_path: Path, text: str, line: int, cell: str, detail: str
) -> None:
    path = _csv(tmp_path, text)
    err = _error(path)
    assert (err.key, err.field, err.line, err.column, err.value) == ("csv", "service.csv", line, "value", cell)
    assert str(err) == f"{path} line {line}: {cell!r} is not a non-negative number (column 'value': {detail})"


def test_a_value_too_large_once_converted_is_an_error(tmp_path: Path) -> None:
    err = _error(_csv(tmp_path, "value\n1e308\n"), factor=1e3)
    assert err.line == 2 and "'1e308'" in str(err) and "not finite" in str(err)


def test_a_short_row_names_the_missing_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, "1,2\n3\n")
    err = _error(path, 1)
    assert (err.key, err.line) == ("column", 2)
    assert str(err) == f"{path} line 2: no column 1 (1 cell(s) on this row)"


def test_a_missing_header_column_suggests_the_close_one(tmp_path: Path) -> None:
    path = _csv(tmp_path, "# comment\ntimestamp,valeu\n1,2\n")
    err = _error(path)
    assert (err.key, err.line, err.value) == ("column", 2, "value")
    assert "no column 'value' in the header; did you mean 'valeu'?" in str(err)


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("", "value", "the file is empty"),
        ("\n\n# only comments\n", "value", "the file is empty"),
        ("", 0, "the file is empty"),
        ("value\n\n", "value", "no samples in column 'value'"),
        ("lat\n", 0, "no samples in column 0"),
    ],
)
def test_a_file_without_samples_is_an_error(tmp_path: Path, text: str, column: str | int, fragment: str) -> None:
    path = _csv(tmp_path, text)
    err = _error(path, column)
    assert err.key == "csv" and err.line is None and str(err).startswith(f"{path}: ") and fragment in str(err)


def test_unreadable_files(tmp_path: Path) -> None:
    err = _error(tmp_path / "missing.csv")
    assert err.key == "csv" and "is not a file" in str(err) and "missing.csv" in str(err)
    err = _error(tmp_path)
    assert "is not a file" in str(err)
    err = _error(_csv(tmp_path, b"value\n1\n\xff\n"))
    assert err.line == 3 and "not UTF-8" in str(err)
    err = _error(_csv(tmp_path, "value\n1\n" + "9" * 200_000 + "\n"))
    assert err.line == 3 and "not readable as CSV" in str(err) and "field larger" in str(err)


def test_the_error_survives_pickling(tmp_path: Path) -> None:
    err = _error(_csv(tmp_path, "value\nx\n"))
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.key, copy.line, copy.column, copy.value) == (str(err), "csv", 2, "value", "x")


# --- the callers --------------------------------------------------------------------------------------------------


def test_from_csv_raises_instead_of_skipping_bad_rows(tmp_path: Path) -> None:
    path = _csv(tmp_path, "value\n2\noops\n4\n")
    with pytest.raises(ConfigurationError, match=r"line 3: 'oops'") as info:
        ServiceDistribution.from_csv(path)
    assert info.value.field == "service.csv"
    with pytest.raises(ServiceCsvError, match="line 3"):
        distribution_from_params("empirical", {"csv": path.name}, base_dir=tmp_path)


def test_distribution_from_params_keeps_a_column_index(tmp_path: Path) -> None:
    _csv(tmp_path, "0\n2\n4\n")  # the header '0' would be a name; the index 0 reads it as data
    dist = distribution_from_params("empirical", {"csv": "lat.csv", "column": 0, "unit": "s"}, base_dir=tmp_path)
    assert dist.mean_s == pytest.approx(2.0)


@pytest.mark.parametrize("samples", [[], [1.0, math.nan], [0.5, -1.0], [math.inf]])
def test_empirical_refuses_bad_samples_instead_of_dropping_them(samples: list[float]) -> None:
    with pytest.raises(ConfigurationError, match=r"service\.samples") as info:
        ServiceDistribution.empirical(samples)
    if samples:
        assert info.value.field == f"service.samples[{len(samples) - 1}]"


def _scenario(tmp_path: Path, csv_text: str, extra: str = "") -> Path:
    _csv(tmp_path, csv_text)
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(extra=extra))
    return path


def test_scenario_error_names_scenario_key_path_and_csv_line(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, "value\n1\n2x\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario)
    err = info.value
    assert err.path == "nodes[0].service.csv"
    csv_path = tmp_path / "lat.csv"
    assert str(err) == (
        f"{scenario}: nodes[0].service.csv: {csv_path} line 3: '2x' is not a non-negative number "
        "(column 'value': not a number)"
    )
    scenario = _scenario(tmp_path, "latency\n1\n", ", column: latncy")
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario)
    assert info.value.path == "nodes[0].service.column" and "did you mean 'latency'?" in str(info.value)


def test_scenario_with_a_good_csv_loads_every_sample(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, "# ms\nvalue\n1\n\n3\n", ", scale: 2")
    assert load_scenario(scenario).nodes[0].service.samples == pytest.approx((0.002, 0.006))


def test_cli_reports_the_bad_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = _scenario(tmp_path, "value\n-1\n")
    assert main(["scenario", "check", str(scenario)]) == 1
    out = capsys.readouterr()
    assert "nodes[0].service.csv" in out.out + out.err and "line 2: '-1'" in out.out + out.err
    assert main(["run", str(scenario), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{scenario}: nodes[0].service.csv: {tmp_path / 'lat.csv'} line 2: '-1'" in err
    assert not (tmp_path / "out").exists()


# --- properties ---------------------------------------------------------------------------------------------------

_VALUES = st.lists(st.floats(0.0, 1e12, allow_nan=False), min_size=1, max_size=30)
_JUNK = st.sampled_from(["", "   ", "# comment", "#", " # indented comment, with a comma"])


@settings(max_examples=60, deadline=None)
@given(values=_VALUES, junk=st.lists(st.tuples(st.integers(0, 40), _JUNK), max_size=6), crlf=st.booleans())
def test_every_written_value_is_read_back_exactly(
    tmp_path_factory: pytest.TempPathFactory, values: list[float], junk: list[tuple[int, str]], crlf: bool
) -> None:
    lines = ["timestamp,value", *(f"t{i},{v!r}" for i, v in enumerate(values))]
    for at, text in junk:
        lines.insert(min(at, len(lines)), text)
    path = tmp_path_factory.mktemp("csv") / "lat.csv"
    path.write_text(("\r\n" if crlf else "\n").join(lines) + "\n", encoding="utf-8", newline="")
    assert read_service_csv(path) == tuple(values)
    dist = ServiceDistribution.from_csv(path, unit="s")
    assert dist.mean_s == pytest.approx(float(np.mean(values)))


@settings(max_examples=60, deadline=None)
@given(
    values=_VALUES,
    data=st.data(),
    bad=st.sampled_from(["x", "nan", "inf", "-1", "-0.5", "1,5", "1e400", "0x10"]),
)
def test_any_bad_cell_is_reported_at_its_line(
    tmp_path_factory: pytest.TempPathFactory, values: list[float], data: st.DataObject, bad: str
) -> None:
    where = data.draw(st.integers(0, len(values) - 1))
    cells = [repr(v) for v in values]
    cells[where] = f'"{bad}"' if "," in bad else bad
    path = tmp_path_factory.mktemp("csv") / "lat.csv"
    path.write_text("value\n" + "\n".join(cells) + "\n", encoding="utf-8")
    err = _error(path)
    assert err.line == where + 2 and err.value == bad and f"line {where + 2}: {bad!r}" in str(err)
