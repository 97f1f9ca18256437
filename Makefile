# The two commands of the README's quick start: `make cluster` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install cluster test test-sqlite test-postgres lint bench

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Start a local cluster (name node + 2 data nodes on 127.0.0.1), show it working, keep it running.
cluster: install
	$(BIN)/pydfs cluster up

# The test suite: everything on the default SQLite metadata (unit tests, then real processes on
# loopback: integration and fault tests), the PostgreSQL store's own tests included; then the
# integration and fault tests again with every cluster's metadata in PostgreSQL.
test: test-sqlite test-postgres

test-sqlite: install
	$(BIN)/pytest

test-postgres: install
	$(BIN)/pytest --store postgres tests/integration tests/fault

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/run.py
