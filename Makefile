# postal: `make run` brings the whole stack up, `make test` runs the suite. Both create the
# virtualenv (.venv) and install pinned dependencies (constraints.txt) on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install system-packages run stop status test test-all lint typecheck check lock clean bench

help:
	@echo "make run       start Redis, the API and the workers under supervisord"
	@echo "make stop      stop them (workers finish their jobs first)"
	@echo "make status    supervisorctl status"
	@echo "make test      run the test suite (what CI runs)"
	@echo "make test-all  the suite including slow tests"
	@echo "make lint      ruff lint + format check;  make typecheck: mypy --strict"
	@echo "make lock      re-pin constraints.txt from the current virtualenv"
	@echo "make bench     benchmarks (~5-10 min): prints a table, writes docs/BENCHMARKS.md"

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages that some tests drive (tests/system-packages.txt); a no-op once present.
system-packages:
	tests/install-system-packages

run: $(STAMP)
	$(BIN)/postal-stack up

stop: $(STAMP)
	$(BIN)/postal-stack down

status: $(STAMP)
	$(BIN)/supervisorctl -c supervisord.conf status

test: $(STAMP) system-packages
	$(BIN)/python -m pytest

test-all: $(STAMP) system-packages
	$(BIN)/python -m pytest -m 'slow or not slow'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^postal' > constraints.txt

# Benchmarks (bench/): their own Redis, gunicorn and workers; writes docs/BENCHMARKS.md + chart.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache *.egg-info
