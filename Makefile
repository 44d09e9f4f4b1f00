# The two commands of a fresh machine: `make up` (start everything) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test up bench bench-quick lint clean mutation

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[services,dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# Ports, workers and the bot: see scripts/up.sh (e.g. `make up INFERENCE_PORT=9000 EXPLAIN_WORKERS=2`).
up: $(STAMP)
	VENV=$(VENV) scripts/up.sh

bench: $(STAMP)
	$(PY) -m bench

bench-quick: $(STAMP)
	$(PY) -m bench --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check diseaseid services tests bench scripts

# Mutation testing of the safety-critical modules ([tool.mutmut] in pyproject.toml; docs/testing.md). Not part
# of `make test`: slow. Restrict it with mutant-name globs, e.g.
#   make mutation MUTANTS='diseaseid.train.distill.* services.common.body_limit.*'
# Results stay in mutants/ (resumable); MUTATION_MIN is the per-module score that `make mutation` requires.
MUTANTS ?=
MUTATION_MIN ?= 85
mutation: $(STAMP)
	DISEASEID_WEIGHTS=$(CURDIR)/weights DISEASEID_TEST_THREADS=1 nice -n 19 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS)
	$(PY) -m tests.mutation_report --mutmut $(VENV)/bin/mutmut --min $(MUTATION_MIN)

