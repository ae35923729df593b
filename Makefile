# tagops — `make help` lists the targets. Two commands matter on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= configs/pipeline.yaml

# Offline machines (this one, CI) read the data from the shared mirror; elsewhere it is downloaded.
MIRROR_DIR := $(abspath ../shared/datasets/madewithml)
ifneq ($(wildcard $(MIRROR_DIR)/dataset.csv),)
export TAGOPS_DATA_MIRROR ?= $(MIRROR_DIR)
endif

.PHONY: help install run test test-unit lint format benchmark perf-docs explore mlflow-ui team-up team-down clean

help: ## Show this help.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: a CPU wheel of 2.13.0; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install tagops with its dev tools (once; again when pyproject changes).

run: $(STAMP) ## Main job: the ZenML training pipeline on the embedded default; ends with a champion.
	$(BIN)/tagops pipeline train --config $(CONFIG)

# The suite is spread over one worker process per CPU (pytest-xdist). `--dist loadgroup` keeps the tests that
# share an expensive fixture (a module's trained home or server, the Ray cluster) on one worker: see
# worker_scope in tests/conftest.py.
test: $(STAMP) ## Run the whole test suite (unit, data, model, integration) with coverage (fails under 85 %).
	$(BIN)/python -m pytest -p xdist -n auto --dist loadgroup --cov=tagops --cov-report=term-missing:skip-covered

# Unit tests live in tests/unit; collecting only that folder keeps the integration modules' imports (Ray,
# MLflow, ZenML) out of the quick loop. Tests there also marked integration (a CLI run in a subprocess) are
# left to `make test`. The tests are spread over one worker process per CPU (pytest-xdist).
test-unit: $(STAMP) ## Run the fast unit tests only (no coverage, on every CPU: the quick loop while editing).
	$(BIN)/python -m pytest -p xdist -n auto -m "unit and not integration" tests/unit

lint: $(STAMP) ## ruff (lint + format check), mypy and the import layers, exactly as CI and pre-commit run them.
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP) ## Apply ruff fixes and formatting.
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

benchmark: $(STAMP) ## Model quality on the real holdout (table + benchmarks/results/quality.json).
	$(BIN)/python benchmarks/quality.py

perf-docs: $(STAMP) ## Write docs/performance.md and the README's results table from benchmarks/results/*.json.
	$(BIN)/python benchmarks/report.py

explore: $(STAMP) ## HTML report of the data (class balance, lengths, top terms).
	$(BIN)/tagops data explore

mlflow-ui: $(STAMP) ## Browse runs and the registry of the embedded store on http://127.0.0.1:5000.
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath .tagops)/mlflow/mlflow.db --host 127.0.0.1

team-up: $(STAMP) ## The team stack here: MLflow and the prediction log on PostgreSQL (TAGOPS_TEAM_POSTGRES); prints its env.
	$(BIN)/tagops team up

team-down: $(STAMP) ## Stop the team stack's MLflow server (databases and artifacts stay).
	$(BIN)/tagops team down

clean: ## Remove the embedded state (.tagops) and caches; keeps .venv.
	rm -rf .tagops .pytest_cache .mypy_cache .ruff_cache
