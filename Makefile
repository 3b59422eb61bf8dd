# The README's quick start: `make run` (set up, demo data, serve on SQLite) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# The lock (README "Dependencies"): what `make run`/`make test` install, and the benchmarks' set.
LOCK := requirements/test.txt
BENCH_LOCK := requirements/bench.txt
UPGRADE ?=
PIP_COMPILE = CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
	$(if $(filter 1,$(UPGRADE)),--upgrade)

.PHONY: setup run manage test test-sqlite test-postgres lint bench load fuzz clean lock lock-check

# Dependencies only from the lock, every file checked against its hash; then the project.
$(STAMP): pyproject.toml $(LOCK)
	@$(PY) requirements/lockfile.py check
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
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

# Any management command, as `make run` runs them: the project's virtualenv, DEBUG on unless
# set, the database `make run` uses unless DATABASE_URL says otherwise. E.g.
#   make manage ARGS="verify_events --full"
ARGS ?= help
manage: $(STAMP)
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py $(ARGS)

# Fails when pyproject.toml's dependency lists changed since the lock was made.
lock-check:
	@$(PY) requirements/lockfile.py check

# Re-resolves both locks from pyproject.toml, keeping every pin that still fits its range;
# UPGRADE=1 takes the newest versions the ranges allow. Prints the versions that changed.
lock:
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python requirements/lockfile.py platform
	@$(BIN)/python -c 'import piptools' 2>/dev/null || $(BIN)/pip install -q 'pip-tools>=7.6,<7.7'
	@old=$$(mktemp -d) && cp $(LOCK) $(BENCH_LOCK) $$old/ 2>/dev/null; \
	if $(PIP_COMPILE) --extra test -o $(LOCK) pyproject.toml && \
		$(PIP_COMPILE) --extra test --extra bench -c $(LOCK) -o $(BENCH_LOCK) pyproject.toml && \
		$(BIN)/python requirements/lockfile.py stamp; then \
		$(BIN)/python requirements/lockfile.py diff $$old; rm -rf $$old; \
	else \
		cp $$old/*.txt requirements/ 2>/dev/null; rm -rf $$old; \
		echo "make lock failed: the lock files are left as they were." >&2; exit 1; \
	fi

lint: lock-check $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	DEBUG=true $(BIN)/mypy
	DEBUG=true $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

# The suite runs twice: on SQLite, then on PostgreSQL. Outside CI an unreachable
# PostgreSQL is reported and its pass left out; in CI (CI=true) it is an error.
# The two database passes run side by side (one per core; each has its own database, and
# the NATS tests their own streams): about 40 % less wall time than one after the other.
# Each pass prints its whole output when it ends; SERIAL=1 runs them one after the other.
test: lint
	@if [ -n "$${SERIAL:-}" ]; then \
		$(MAKE) --no-print-directory test-sqlite test-postgres; \
	else \
		echo "make test: the SQLite and PostgreSQL passes run in parallel; each prints its report when it ends."; \
		$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres; \
	fi

# Redocly's OpenAPI linter (tests/api/test_openapi_lint.py), pinned in package-lock.json.
NODE_TOOLS := node_modules/.bin/redocly
$(NODE_TOOLS): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_TOOLS)

test-sqlite: $(STAMP) $(NODE_TOOLS)
	DEBUG=true DATABASE_URL= SQLITE_TEST_NAME=$(CURDIR)/test-db.sqlite3 \
		$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(STAMP) $(NODE_TOOLS)
	@if $(BIN)/python -c "import psycopg; psycopg.connect('$(TEST_DATABASE_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		DEBUG=true DATABASE_URL='$(TEST_DATABASE_URL)' $(BIN)/pytest $(PYTEST_ARGS); \
	elif [ "$${CI:-}" = "true" ]; then \
		echo "PostgreSQL is not reachable at $(TEST_DATABASE_URL); CI requires it." >&2; exit 1; \
	else \
		echo "PostgreSQL is not reachable at $(TEST_DATABASE_URL): its pass was left out. Start it, or set TEST_DATABASE_URL." >&2; \
	fi

bench: lock-check $(STAMP)
	$(BIN)/pip install -q --require-hashes -r $(BENCH_LOCK)
	DEBUG=true $(BIN)/python bench/run_all.py

# The load test: gunicorn + run_projections on PostgreSQL, 32 clients for 30 s, then checks.
load: $(STAMP)
	$(BIN)/python bench/load_test.py --clients $${CLIENTS:-32} --seconds $${SECONDS_:-30}

# A larger schemathesis budget than the suite's (SQLite; set DATABASE_URL for PostgreSQL).
fuzz: $(STAMP)
	DEBUG=true SCHEMATHESIS_MAX_EXAMPLES=$${EXAMPLES:-500} $(BIN)/pytest tests/api/test_schemathesis.py

clean:
	rm -rf $(VENV) db.sqlite3* test-db.sqlite3* .pytest_cache

# The growth benchmark (issue 22): a store of 5,000,000 events seeded by COPY beside an empty
# one. It takes tens of minutes, so `make bench` leaves it out. EVENTS=200000 for a quick
# run; KEEP=1 keeps the seeded database and reuses it on the next run with the same EVENTS.
.PHONY: bench-growth
bench-growth: $(STAMP)
	DEBUG=true $(BIN)/python bench/growth_bench.py --events $${EVENTS:-5000000} \
		$(if $(filter 1,$(KEEP)),--keep)
