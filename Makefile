# Flywheel: each target is one line of intent. `make dev` starts the platform, `make test` runs
# every test. Both create the environment first from uv.lock (nothing else is needed but python3).

SHELL := /bin/bash
TOOLS := $(CURDIR)/.flywheel/tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
export DAGSTER_HOME := $(CURDIR)/.flywheel/dagster_home
DAGSTER_PORT := 3000
SERVING_PORT := 8800
# make demo: its own instance and data (replaced on every start) and the story it plays.
DEMO_DIR := $(CURDIR)/.flywheel/demo
SCENARIO := resources/scenarios/default.yaml
export UV_COMPILE_BYTECODE := 1
# Use the system trust store, so uv works behind TLS-inspecting proxies as pip does.
export UV_SYSTEM_CERTS := 1
export DO_NOT_TRACK := 1
# LightGBM's OpenMP threads spin up to 300,000 times at a barrier before they sleep: on two cores
# shared with the platform's other processes (or the other test worker) a 15 CPU-s training
# spent 37-43 CPU-s. 10,000 spins: 20 CPU-s there, and an idle machine's speed kept.
export GOMP_SPINCOUNT ?= 10000

MLFLOW_STORE := $(CURDIR)/.flywheel/data/mlflow
MLFLOW_PORT := 5000

.PHONY: dev demo mlflow test lint test-unit test-asset-graph test-sensor test-e2e test-integration bench env

## dev: create the environment and start `dagster dev` on http://127.0.0.1:3000 and the prediction
## service on http://127.0.0.1:8800 (loopback only; the service follows the registry's aliases);
## Ctrl-C stops every process of it within seconds (serving/dev.py)
dev: env $(DAGSTER_HOME)/dagster.yaml
	$(UV) run --no-sync python -m serving.dev --dagster-port $(DAGSTER_PORT) --serving-port $(SERVING_PORT)

## demo: play a scenario (SCENARIO=path, default resources/scenarios/default.yaml) on a compressed
## clock from an empty instance in .flywheel/demo: the same UI and service ports as make dev
demo: env
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)/dagster_home
	printf '%s\n' "$$DAGSTER_YAML" > $(DEMO_DIR)/dagster_home/dagster.yaml
	DAGSTER_HOME=$(DEMO_DIR)/dagster_home FLYWHEEL_DATA_DIR=$(DEMO_DIR)/data \
	$(UV) run --no-sync python -m serving.dev --dagster-port $(DAGSTER_PORT) \
		--serving-port $(SERVING_PORT) --scenario $(abspath $(SCENARIO))

## mlflow: MLflow's UI on http://127.0.0.1:5000 over make dev's tracking store and model registry
mlflow: env
	mkdir -p $(MLFLOW_STORE)
	$(UV) run --locked mlflow ui --backend-store-uri sqlite:///$(MLFLOW_STORE)/mlflow.db \
		--host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

## test: create the environment, lint, type-check and run the whole test suite
test: env lint
	$(UV) run --locked pytest

## lint: ruff (lint + format check) and pyright in standard mode
lint: env
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked pyright

## test-integration: start PostgreSQL and Redis on loopback (.ci/services) and run the integration
## tier: the loop on PostgreSQL, Redis, Dask and an MLflow server, two serving replicas
test-integration: env
	eval "$$(.ci/services)" && $(UV) run --locked pytest -m integration

test-unit test-asset-graph test-sensor test-e2e: env
	$(UV) run --locked pytest -m $(subst -,_,$(patsubst test-%,%,$@))

## bench: every benchmark in bench/ (minutes; not part of `make test`)
bench: env
	set -e; for script in bench/*.py; do $(UV) run --locked python $$script; done

## env: the project's virtualenv (.venv) exactly as locked, with uv bootstrapped into .flywheel/tools
env: $(UV)
	$(UV) sync --locked

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The Dagster instance of `make dev` and `make demo`: SQLite storage inside the project, no
# telemetry, no welcome dialog, the freshness daemon on so raw_transactions' freshness policy is
# evaluated, two runs at a time (two cores: a backfill of many days queues instead of starting
# every run at once), dequeued every second, one slot per concurrency pool (promotions run one at
# a time), and sensors evaluated side by side so that a slow one delays no other.
define DAGSTER_YAML
telemetry:
  enabled: false
nux:
  enabled: false
freshness:
  enabled: true
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
concurrency:
  runs:
    max_concurrent_runs: 2
  pools:
    default_limit: 1
sensors:
  use_threads: true
  num_workers: 4
endef
export DAGSTER_YAML

$(DAGSTER_HOME)/dagster.yaml: Makefile
	mkdir -p $(@D)
	printf '%s\n' "$$DAGSTER_YAML" > $@
