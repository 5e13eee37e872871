# drillbook — the front door. Everything the project needs is installed from
# pyproject.toml + uv.lock into .venv; uv itself is bootstrapped into .tools if
# it is not on PATH. Needs only python3 (3.11+) and make.

PYTHON ?= python3
VENV   := .venv
TOOLS  := .tools
UV     ?= $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
BIN    := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
# Trust the platform's certificate store: networks with a TLS-inspecting proxy
# present their own CA, which uv's bundled roots do not know (UV_NATIVE_TLS for older uv).
export UV_SYSTEM_CERTS ?= 1
export UV_NATIVE_TLS ?= 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install test test-fast test-e2e lint fmt bench demo up findings-doc clean

help:
	@echo "make demo   - install everything, run the drills once against the embedded demo environment"
	@echo "make test   - install everything and run the test suite (real PostgreSQL, moto, Slack emulator)"
	@echo "make test-fast - the suite without airflow standalone, the bench smoke and e2e (the inner loop)"
	@echo "make lint   - ruff check (incl. Airflow AIR rules), ruff format --check and mypy"
	@echo "make bench  - benchmarks in bench/ (ratios against a baseline measured in the same run)"
	@echo "make up     - start Airflow (airflow standalone) on http://localhost:8080 with drillbook's DAGs"
	@echo "make test-e2e - docker-compose.yaml's services run natively (CeleryExecutor, Redis on 127.0.0.1:6379, PostgreSQL on 127.0.0.1:5432)"

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv>=0.8"

# __init__.py holds the version (pyproject reads it): a bump re-syncs the install's metadata
$(VENV)/.installed: pyproject.toml uv.lock plugins/drillbook/__init__.py | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/pytest

# The inner loop: everything but `airflow standalone`, the bench smoke (`slow`) and e2e.
test-fast: install
	$(BIN)/pytest -m 'not e2e and not slow'

# Needs Redis on 127.0.0.1:6379 and PostgreSQL (superuser postgres, trust auth) on 127.0.0.1:5432.
test-e2e: install
	$(BIN)/pytest -m e2e tests/deploy

lint: install
	$(BIN)/ruff check plugins dags tests bench scripts
	$(BIN)/ruff format --check plugins dags tests bench scripts
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix plugins dags tests bench scripts
	$(BIN)/ruff format plugins dags tests bench scripts

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit $$?; done

demo: install
	$(BIN)/python -m scripts.demo

up: install
	$(BIN)/python -m scripts.demo --up

findings-doc: install
	$(BIN)/drillbook findings --markdown > docs/findings.md

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache
