# The README's quick start: `make run` (set up, demo data, serve on SQLite) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: setup run test test-sqlite test-postgres lint bench load fuzz clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# The server and, beside it, the projection follower that keeps the read models current.
run: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --no-input
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py seed_demo
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py verify_events --full --verbosity 0
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py run_projections --verbosity 0 & \
		follower=$$!; trap 'kill $$follower 2>/dev/null' EXIT INT TERM; \
		DEBUG=$${DEBUG:-true} $(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	DEBUG=true $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

# The suite runs twice: on SQLite, then on PostgreSQL. Outside CI an unreachable
# PostgreSQL is reported and its pass left out; in CI (CI=true) it is an error.
test: lint test-sqlite test-postgres

test-sqlite: $(STAMP)
	DEBUG=true DATABASE_URL= SQLITE_TEST_NAME=$(CURDIR)/test-db.sqlite3 \
		$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(STAMP)
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(TEST_DATABASE_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		DEBUG=true DATABASE_URL='$(TEST_DATABASE_URL)' $(BIN)/pytest $(PYTEST_ARGS); \
	elif [ "$${CI:-}" = "true" ]; then \
		echo "PostgreSQL is not reachable at $(TEST_DATABASE_URL); CI requires it." >&2; exit 1; \
	else \
		echo "PostgreSQL is not reachable at $(TEST_DATABASE_URL): its pass was left out. Start it, or set TEST_DATABASE_URL." >&2; \
	fi

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	DEBUG=true $(BIN)/python bench/run_all.py

# The load test: gunicorn + run_projections on PostgreSQL, 32 clients for 30 s, then checks.
load: $(STAMP)
	$(BIN)/python bench/load_test.py --clients $${CLIENTS:-32} --seconds $${SECONDS_:-30}

# A larger schemathesis budget than the suite's (SQLite; set DATABASE_URL for PostgreSQL).
fuzz: $(STAMP)
	DEBUG=true SCHEMATHESIS_MAX_EXAMPLES=$${EXAMPLES:-500} $(BIN)/pytest tests/api/test_schemathesis.py

clean:
	rm -rf $(VENV) db.sqlite3* test-db.sqlite3* .pytest_cache
