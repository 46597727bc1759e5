# Modelyard developer commands. Each target creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BENCH_VENV := .venv-bench

.PHONY: help quickstart test lint bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

# Installs show pip's own progress (one line per package it collects, downloads or builds, then what it
# installed), each stage announced first: a first `make quickstart` spends a minute or two here.
PIP_INSTALL = $(BIN)/pip install --progress-bar on --no-input --disable-pip-version-check

$(BIN)/python:
	@echo "==> creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --quiet --upgrade pip

$(VENV)/.installed-quickstart: pyproject.toml | $(BIN)/python
	@echo "==> installing modelyard[quickstart] and its dependencies into $(VENV) (first run: a minute or two)"
	$(PIP_INSTALL) -e '.[quickstart]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	@echo "==> installing modelyard[test] and its dependencies into $(VENV) (first run: a few minutes)"
	$(PIP_INSTALL) -e '.[test]'
	touch $@ $(VENV)/.installed-quickstart

quickstart: $(VENV)/.installed-quickstart  ## set up, then train and track a few models on the embedded store
	@echo "==> running the quickstart (modelyard quickstart)"
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
	@echo "==> installing modelyard[bench,server] and the peers into $(BENCH_VENV) (first run: several minutes)"
	$(BENCH_VENV)/bin/pip install --progress-bar on --no-input --disable-pip-version-check -e '.[bench,server]'
	touch $@

# Every bench/*.py script runs here (tests/test_makefile.py checks it); serving.py needs `wrk` on PATH.
bench: $(BENCH_VENV)/.installed  ## Modelyard vs the peers side by side (tracking, server, registry, pipelines, serving), with ratios
	$(BENCH_VENV)/bin/python bench/tracking.py
	$(BENCH_VENV)/bin/python bench/server.py
	$(BENCH_VENV)/bin/python bench/registry.py
	$(BENCH_VENV)/bin/python bench/pipelines.py
	$(BENCH_VENV)/bin/python bench/serving.py

clean:  ## remove virtual environments and caches
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
