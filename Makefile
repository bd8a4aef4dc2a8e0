# The two commands: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
SIZE   ?= small
BENCH  ?=

.PHONY: demo test lint format bench install clean migration

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/oms demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run.py --size $(SIZE) $(if $(BENCH),--only $(BENCH),)

# Autogenerate a migration from tables.py: make migration MSG="what changed" REV=0002
migration: $(STAMP)
	@db=$$(mktemp -d)/oms-migration.db; \
	$(PY) -c "from oms.adapters.db.engine import make_engine; from oms.adapters.db import migrate; e = make_engine('sqlite:///$$db'); migrate.upgrade(e); migrate.make_revision(e, '$(MSG)', rev_id='$(REV)' or None)"; \
	status=$$?; rm -rf "$$(dirname $$db)"; exit $$status
	$(VENV)/bin/ruff format src/oms/adapters/db/migrations

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
