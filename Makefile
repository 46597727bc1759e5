# Modelyard developer commands. Each target creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BENCH_VENV := .venv-bench

.PHONY: help quickstart test lint bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-quickstart: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[quickstart]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-quickstart

quickstart: $(VENV)/.installed-quickstart  ## set up, then train and track a few models on the embedded store
	$(BIN)/modelyard quickstart

test: $(VENV)/.installed-test  ## set up, then run the whole test suite
	$(BIN)/pytest -q

lint: $(VENV)/.installed-test  ## ruff and mypy
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

$(BENCH_VENV)/.installed: pyproject.toml
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e '.[bench,server]'
	touch $@

bench: $(BENCH_VENV)/.installed  ## Modelyard vs MLflow side by side (tracking, server, registry, pipelines), with ratios
	$(BENCH_VENV)/bin/python bench/tracking.py
	$(BENCH_VENV)/bin/python bench/server.py
	$(BENCH_VENV)/bin/python bench/registry.py
	$(BENCH_VENV)/bin/python bench/pipelines.py

clean:  ## remove virtual environments and caches
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
