# Build / run / test entry points.
#
#   make install                 create .venv and install the project (+ test extras)
#   make run                     embedded local run: runserver + celery worker + beat
#   make test                    whole suite on SQLite, then on PostgreSQL 15 (+ Redis)
#   make test ARGS="-k webhook"  extra arguments are passed through to pytest
#                                (PYTEST_ARGS works too)
#   make bench                   benchmarks on PostgreSQL + Redis (throwaway, as in make test) with production
#                                settings: benchmarks/results/<date>.json and a table. BENCH_SCALE=smoke for a
#                                quick pass; ARGS="--only tokenize,crypto" to choose

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: install run test bench

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install -e '.[test]'
	touch $@

run: install
	scripts/run.sh

test: install
	scripts/test.sh $(ARGS) $(PYTEST_ARGS)

bench: install
	scripts/bench.sh $(ARGS)
