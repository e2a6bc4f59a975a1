# One entry point. Every target creates .venv when it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv test test-slow lint format bench bench-save bench-gate demo compat clean

help:
	@echo "make demo       create .venv, install, run the main job and write a report"
	@echo "make test       create .venv, install, lint, run the test suite"
	@echo "make test-slow  the long live/soak tests (deselected from make test)"
	@echo "make lint       ruff format --check, ruff check, mypy --strict on wsfinal/"
	@echo "make bench      pytest-benchmark microbenchmarks (deselected from make test)"
	@echo "make compat     the official Bitfinex client (bitfinex-api-py, own venv .venv-bfx) against the fake exchange"
	@echo "make bench-gate compare the microbenchmarks against the saved run (fails on median regressions)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python -m pytest -q -m benchmark --benchmark-only --benchmark-sort=name

bench-save: $(STAMP)
	$(BIN)/python -m pytest -q -m benchmark --benchmark-only --benchmark-autosave

bench-gate: $(STAMP)
	$(BIN)/python -m pytest -q -m benchmark --benchmark-only --benchmark-compare --benchmark-compare-fail=median:25%

demo: $(STAMP)
	$(BIN)/wsfinal demo

compat: $(STAMP)
	bash tools/compat_venv.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow tests/test_official_client.py

clean:
	rm -rf $(VENV) .venv-bfx .pytest_cache .mypy_cache .ruff_cache .benchmarks build *.egg-info
