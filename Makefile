# The two commands of a fresh machine: `make up` (start everything) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test up bench bench-quick lint clean

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
