# The two quick-start commands: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test setup lint bench-controllers

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

setup: $(VENV)/.installed
	bash scripts/system-packages

# The embedded default: SQLite, in-process worker and scheduler, file outbox, 127.0.0.1:5000.
# Two addresses (issue 11 item 6): privacy@ opens a DSR for every new message, support@ is for everything else.
run: export PRIVACY_ADDRESS ?= privacy@desk.localhost
run: export SUPPORT_ADDRESS ?= support@desk.localhost
run: $(VENV)/.installed
	$(PY) -m flask --app wsgi db upgrade
	$(PY) -m flask --app wsgi demo seed
	$(PY) -m flask --app wsgi serve

# The whole suite: Postgres + Redis when TEST_DATABASE_URL / TEST_BROKER_URL are set, else SQLite + in-process.
test: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
