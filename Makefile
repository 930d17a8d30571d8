# flows -> BigQuery with Singer. The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export FLOWS_API_PORT ?= 5055
export BQ_EMULATOR_PORT ?= 9050
export GCS_EMULATOR_PORT ?= 4443
export BQ_PROJECT ?= flows-local
export DEMO_ROWS ?= 1000000
export DAGSTER_PORT ?= 3000

VENV := .venv/bin
PYTEST := $(CURDIR)/$(VENV)/python -m pytest
TEST_DIRS := flows-api tap-flows target-bigquery-lite .

.PHONY: help install up down status test lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

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

.PHONY: tap-fixtures
tap-fixtures: install ## re-record the target's real-tap fixtures (needs a local PostgreSQL server), ONLY=a,b
	@$(VENV)/python scripts/record-tap-fixtures.py $(if $(ONLY),--only $(ONLY))

# Meltano's dev environment, pointed at make up's services on whatever ports they use.
LOCAL_SERVICES_ENV = TAP_FLOWS_API_URL=$${TAP_FLOWS_API_URL:-http://127.0.0.1:$(FLOWS_API_PORT)} \
  TARGET_BIGQUERY_LITE_API_ENDPOINT=$${TARGET_BIGQUERY_LITE_API_ENDPOINT:-http://127.0.0.1:$(BQ_EMULATOR_PORT)} \
  TARGET_BIGQUERY_LITE_PROJECT=$${TARGET_BIGQUERY_LITE_PROJECT:-$(BQ_PROJECT)}

.PHONY: backfill orchestrate ui-screenshot
PARTITIONS ?= 4
backfill: up ## Dagster backfill of make up's data in PARTITIONS ranges (4; CONCURRENCY, NEW_PLAN=1), checked
	@$(LOCAL_SERVICES_ENV) $(VENV)/flows-orchestration backfill --partitions $(PARTITIONS) \
	  $(if $(CONCURRENCY),--concurrency $(CONCURRENCY)) $(if $(NEW_PLAN),--new-plan) \
	  --check-db $${FLOWS_DB:-.run/flows.db}

orchestrate: up ## dagster dev (UI, schedules, backfills) on 127.0.0.1:$DAGSTER_PORT against make up's services
	@$(LOCAL_SERVICES_ENV) $(VENV)/flows-orchestration dev

ui-screenshot: install ## the backfill's partitions page of the Dagster UI, headless Chromium -> .run/
	@$(LOCAL_SERVICES_ENV) $(VENV)/flows-orchestration screenshot --out .run/dagster-partitions.png

.PHONY: reliability
KILLS ?= 200
reliability: install ## long kill-loop (KILLS=200, SEED=n to repeat one) and the full API load test
	@$(VENV)/python -m tests.reliability.kill_loop --kills $(KILLS) $(if $(SEED),--seed $(SEED))
	@$(VENV)/python -m tests.reliability.api_load --generate 1000000 --readers 16 --burst 2000
