# The two commands of a fresh machine: `make up` (start everything) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test up bench bench-quick lint clean mutation compose-test

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

# docker compose for real: build the image, start the stack (unique project, free ports), check it as a client
# would, kill a worker mid-job, restart Redis, scale the workers, run the bot against a fake Bot API, then
# `down -v` (dev/compose_test.py; results in docs/deploy.md). Needs Docker and Compose >= 2.24, says SKIP
# without them. Not part of `make test`: minutes, and a multi-GB image. E.g. COMPOSE_TEST_ARGS=--no-build.
COMPOSE_TEST_ARGS ?=
compose-test: $(STAMP)
	PY=$(PY) dev/compose_test.sh $(COMPOSE_TEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench

bench-quick: $(STAMP)
	$(PY) -m bench --quick

lint: $(STAMP)
	$(VENV)/bin/ruff check diseaseid services tests bench scripts dev

# Mutation testing of the safety-critical modules ([tool.mutmut] in pyproject.toml; docs/testing.md). Not part
# of `make test`: slow (21 minutes with MUTATION_JOBS=2 on the idle 2-core machine, more when it is busy).
# Restrict it with mutant-name globs, e.g.
#   make mutation MUTANTS='diseaseid.train.distill.* services.common.body_limit.*'
# The default runs every configured module; of trainer.py only the loss functions. Results stay in mutants/
# (resumable); MUTATION_MIN is the per-module score that `make mutation` requires; MUTATION_JOBS mutants run at
# a time.
MUTANTS ?= diseaseid.serving.predictor.* diseaseid.serving.study.* diseaseid.ood.detector.* \
	diseaseid.ood.features.* diseaseid.train.calibration.* \
	diseaseid.train.distill.* diseaseid.train.trainer.x_batch_loss* diseaseid.train.trainer.x_loss_class_weights* \
	diseaseid.data.* services.*
MUTATION_MIN ?= 85
MUTATION_JOBS ?= 2
mutation: $(STAMP)
	DISEASEID_WEIGHTS=$(CURDIR)/weights DISEASEID_TEST_THREADS=1 OMP_NUM_THREADS=1 nice -n 19 \
		$(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) $(foreach m,$(MUTANTS),'$(m)')
	$(PY) -m dev.mutation_report --mutmut $(VENV)/bin/mutmut --min $(MUTATION_MIN)

