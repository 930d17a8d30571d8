# flows -> BigQuery with Singer. The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export FLOWS_API_PORT ?= 5055
export BQ_EMULATOR_PORT ?= 9050
export GCS_EMULATOR_PORT ?= 4443
export BQ_PROJECT ?= flows-local
export DEMO_ROWS ?= 1000000

VENV := .venv/bin
PYTEST := $(CURDIR)/$(VENV)/python -m pytest
TEST_DIRS := flows-api tap-flows target-bigquery-lite .

.PHONY: help install up down status test lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: ## create .venv (3.11) and .venv-bq (emulator, >= 3.13); quick when nothing changed
	@scripts/install.sh

up: install ## start flows-api, Cloud Storage (fake-gcs-server) and the BigQuery emulator (.run/)
	@$(VENV)/dev-services up

down: ## stop the services 'make up' started (safe to run twice)
	@if [[ -x $(VENV)/dev-services ]]; then $(VENV)/dev-services down; else echo "nothing to stop"; fi

status: ## show whether the services run
	@$(VENV)/dev-services status

test: install ## lint, then every test suite against real local services
	@$(MAKE) --no-print-directory lint
	@for d in $(TEST_DIRS); do \
	  if compgen -G "$$d/tests/test_*.py" >/dev/null; then \
	    echo "==> pytest $$d/tests"; \
	    (cd $$d && $(PYTEST) -q -p no:cacheprovider $${PYTEST_ARGS:-} tests) || exit 1; \
	  fi; \
	done

lint: ## ruff check and format check
	@$(VENV)/ruff check --quiet . && $(VENV)/ruff format --check --quiet .

format: ## apply ruff's fixes and formatting
	@$(VENV)/ruff check --fix --quiet . ; $(VENV)/ruff format --quiet .

clean: down ## remove runtime files (.run/), keep the environments
	rm -rf .run

.PHONY: demo
demo: install ## generate data, run the pipeline twice with meltano (backfill, incremental), check the rows
	@$(VENV)/python scripts/demo.py

.PHONY: bench
ROWS ?= 1000000
bench: install ## measure every configuration on ROWS rows (default 1M; 10000000 for memory), CONFIGS=tap,z3,...
	@bench/install-z3.sh
	@$(VENV)/python -m bench.bench --rows $(ROWS) $(if $(CONFIGS),--only $(CONFIGS))

.PHONY: backfill
PARTITIONS ?= 4
backfill: up ## backfill make up's data into BigQuery with PARTITIONS parallel pipes (default 4), checked
	@$(VENV)/python scripts/backfill.py --partitions $(PARTITIONS) --state-dir .run/backfill \
	  --check-db $${FLOWS_DB:-.run/flows.db}

.PHONY: reliability
KILLS ?= 200
reliability: install ## long kill-loop (KILLS=200, SEED=n to repeat one) and the full API load test
	@$(VENV)/python -m tests.reliability.kill_loop --kills $(KILLS) $(if $(SEED),--seed $(SEED))
	@$(VENV)/python -m tests.reliability.api_load --generate 1000000 --readers 16 --burst 2000
