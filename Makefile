# The two commands of the README: `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test test-fast lint typecheck contracts bench clean

# (Re)install when pyproject.toml changes; editable, with the dev and local-server extras.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip uninstall --quiet --yes hybridq 2>/dev/null || true  # the name before hybridq-queue
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# mypy cannot follow the editable install's import hook: it sees `api/` as hybridq_api here.
	mkdir -p $(VENV)/mypy-path && ln -sfn ../../api $(VENV)/mypy-path/hybridq_api
	touch $(STAMP)

venv: $(STAMP)

## up: local PostgreSQL + Redis (embedded unless DATABASE_URL / REDIS_URL are set), migrate,
## a worker with the example handlers, demo jobs; Ctrl-C stops everything.
up: $(STAMP)
	$(BIN)/python -m queue_core.dev.devstack

## test: the whole suite against TEST_DATABASE_URL / TEST_REDIS_URL (default: local servers
## on 5432/6379, embedded ones when nothing listens there).
test: $(STAMP)
	$(BIN)/ruff check queue_core handlers api tests bench
	MYPYPATH=$(VENV)/mypy-path $(BIN)/mypy --strict -p queue_core -p hybridq_api
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check queue_core handlers api tests bench

contracts: $(STAMP)
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	MYPYPATH=$(VENV)/mypy-path $(BIN)/mypy --strict -p queue_core -p hybridq_api

clean:
	rm -rf $(VENV) .hybridq-data

## bench: hybridq's benchmarks (S1-S8) with peer queues side by side, against DATABASE_URL /
## REDIS_URL; makes .bench-venv for the peers when missing. ARGS=--quick for a smoke run.
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)
