# faceid: `make run` serves the whole platform locally, `make test` runs the whole test suite.
# Both create .venv (Python 3.11) and install the pinned requirements on first use
# (requirements/local.txt for `make run`, requirements/dev.txt for `make test`).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv deps dev-deps run manage test chromium lint format stop-services clean docker-config

help:
	@echo "make run    - embedded PostgreSQL+pgvector and Redis (unless DATABASE_URL/REDIS_URL), migrate,"
	@echo "              demo organization, Celery worker, web on http://127.0.0.1:8000 (Ctrl-C stops all)"
	@echo "make manage ARGS='create_organization acme ...' - a management command against the local stack"
	@echo "make test   - the whole test suite (PYTEST_ARGS='-m \"not slow\"' or '-k ...' to narrow it)"
	@echo "make lint   - ruff"
	@echo "make stop-services - stop embedded servers a killed run left behind"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "faceid needs Python 3.11 (Django 5.2, mediapipe 0.10.21); set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)

venv: $(PY)

# Stamps: reinstall only when a requirements file changes. Each file includes the one before it:
# web.txt (web image) < worker.txt (worker image) < local.txt (`make run`) < dev.txt (`make test`).
LOCAL_REQUIREMENTS := requirements/web.txt requirements/worker.txt requirements/local.txt

$(VENV)/.deps-installed: $(LOCAL_REQUIREMENTS) | $(PY)
	$(PIP) install -r requirements/local.txt
	@touch $@

$(VENV)/.dev-deps-installed: requirements/dev.txt $(LOCAL_REQUIREMENTS) | $(PY)
	$(PIP) install -r requirements/dev.txt
	@touch $(VENV)/.deps-installed $@

deps: $(VENV)/.deps-installed
dev-deps: $(VENV)/.dev-deps-installed

run: deps
	$(PY) scripts/run_local.py

# One management command with the settings, secrets and embedded servers of `make run` (its own
# servers are reused while it runs), e.g. make manage ARGS="create_api_key acme --scopes verify".
manage: deps
	@$(PY) scripts/run_local.py manage $(ARGS)

# The browser tests drive Debian's chromium: installed here when missing (as root, with apt).
chromium:
	@$(PYTHON) scripts/chromium.py --install

# Tests need a SECRET_KEY (DEBUG is off in tests); a throwaway one unless the environment has one.
# A cache key prefix of the run's own: rate-limit and login counters of an earlier run on the same
# Redis never leak into this one.
test: dev-deps chromium
	SECRET_KEY="$${SECRET_KEY:-insecure-test-only-key}" \
	CACHE_KEY_PREFIX="$${CACHE_KEY_PREFIX:-faceid-test-$$$$}" \
	  $(PY) scripts/localstack.py exec --database faceid -- $(PY) -m pytest $(PYTEST_ARGS)

lint: dev-deps
	$(VENV)/bin/ruff check .

format: dev-deps
	$(VENV)/bin/ruff check --fix .

stop-services: deps
	$(PY) scripts/localstack.py stop

# Needs Docker's compose plugin (no engine needed); the development and CI machines lack it.
docker-config:
	@docker compose version >/dev/null 2>&1 || { echo "docker compose plugin not installed"; exit 1; }
	docker compose -f docker/compose.yaml --env-file docker/.env.example config --quiet && echo "compose.yaml OK"

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
	@echo "kept var/ (local database, secrets); remove it by hand to start afresh"
