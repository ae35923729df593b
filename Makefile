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

.PHONY: help install run test test-unit lint lint-workflows docs format benchmark perf-docs explore mlflow-ui team-up team-down \
	data-check champion-pull pr-gate deploy-canary loop-once clean

# The state folder (tagops' default, or TAGOPS_HOME) and where `tagops data pull` keeps the files.
HOME_DIR := $(or $(TAGOPS_HOME),$(CURDIR)/.tagops)
DATA_DIR := $(HOME_DIR)/data/raw
# The workflows' knobs (.github/workflows): where the team's champion is pulled to and the gate writes,
# the canary's share and how long CD waits for the rollout policy, the scheduled loop's config.
CHAMPION_DIR ?= $(HOME_DIR)/production-champion
GATE_DIR ?= $(HOME_DIR)/reports/gate
WEIGHT ?= 10
WAIT ?= 2h
EVERY ?= 60s
LOOP_CONFIG ?= configs/loop.yaml
ROLLOUT_CONFIG ?=

help: ## Show this help.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: a CPU wheel of 2.13.0; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install tagops with its dev tools (once; again when pyproject changes).

run: $(STAMP) ## Main job: pull -> warehouse build -> validate -> train on ZenML, embedded; ends with a champion.
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

lint: $(STAMP) ## ruff, mypy and the import layers, as CI and pre-commit run them; the Dockerfile, compose file and workflows.
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check docker
	$(BIN)/ruff format --check docker
	$(BIN)/shellcheck docker/install.sh docker/start.sh
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/zizmor --offline --no-progress .github/workflows
	$(BIN)/shellcheck .ci/run

# The image's scripts without a Docker engine: docker/install.sh into a fresh venv, then docker/start.sh serving
# from it, checked through /readyz, /v1/predict, docker/healthcheck.py and SIGTERM (a few minutes: the install).
.PHONY: image-check
image-check: $(STAMP) ## Install with docker/install.sh into a fresh venv and serve from it with docker/start.sh.
	TAGOPS_RUN_SLOW=1 $(BIN)/python -m pytest tests/integration/test_image_scripts.py

# The GitHub workflows against GitHub's own schema, and zizmor's audits of what they may do (offline:
# its audits that would ask GitHub's API are left out here).
lint-workflows: $(STAMP) ## Check .github/workflows: the workflow schema and zizmor's security audits.
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/zizmor --offline --no-progress .github/workflows

docs: $(STAMP) ## Write the reference pages from the code, then build the site into site/ (mkdocs --strict).
	$(BIN)/python docs/generate.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

format: $(STAMP) ## Apply ruff fixes and formatting.
	$(BIN)/ruff check --fix src tests benchmarks docs
	$(BIN)/ruff format src tests benchmarks docs

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

# The steps of .github/workflows: each is one of these targets, and each target is run by the test suite
# (tests/integration/test_workflows.py) or by .ci/run, so no workflow step is untested.
data-check: $(STAMP) ## Pull the data (checksums), check each file's contract and the holdout's leakage, run the data tests.
	$(BIN)/tagops data pull
	$(BIN)/tagops data validate $(DATA_DIR)/dataset.csv
	$(BIN)/tagops data validate $(DATA_DIR)/holdout.csv --against $(DATA_DIR)/dataset.csv
	TAGOPS_DATA_MIRROR=$(DATA_DIR) $(BIN)/python -m pytest -p xdist -n auto -m data tests/data

champion-pull: $(STAMP) ## Download the registry's champion (MLFLOW_TRACKING_URI: the team's) into CHAMPION_DIR.
	$(BIN)/tagops models pull models:/tagops@champion --output $(CHAMPION_DIR)

pr-gate: $(STAMP) ## Gate this checkout's champion (after `make run`) against CHAMPION_DIR; gate.md in GATE_DIR; fails if refused.
	$(BIN)/tagops gate --challenger models:/tagops@champion --champion $(CHAMPION_DIR) --config $(CONFIG) --output $(GATE_DIR)

deploy-canary: $(STAMP) ## Canary the challenger on WEIGHT % of the service's traffic; promote or abort it by the policy (waits up to WAIT).
	$(BIN)/tagops rollout start --weight $(WEIGHT) $(if $(ROLLOUT_CONFIG),--config $(ROLLOUT_CONFIG))
	$(BIN)/tagops rollout check --apply --wait $(WAIT) --every $(EVERY) $(if $(ROLLOUT_CONFIG),--config $(ROLLOUT_CONFIG))

loop-once: $(STAMP) ## One turn of the loop: monitor the last window, then retrain --if-needed (LOOP_CONFIG).
	$(BIN)/tagops loop run --once --config $(LOOP_CONFIG)

clean: ## Remove the embedded state (.tagops) and caches; keeps .venv.
	rm -rf .tagops .pytest_cache .mypy_cache .ruff_cache
