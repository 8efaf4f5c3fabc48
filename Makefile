# Two commands do all set-up on a fresh machine:
#   make demo   -> creates .venv, installs kaieval with its model extras, runs `kai demo`
#   make test   -> creates .venv, installs the test extras, runs the whole test suite
# torch is pinned in pyproject (an unpinned torch pulls a multi-GB CUDA build).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test lint typecheck clean

$(VENV)/.ok-run: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[hf,ifeval]'
	touch $@

$(VENV)/.ok-dev: pyproject.toml $(VENV)/.ok-run
	$(PY) -m pip install -q -e '.[hf,postgres,web,dev]'
	touch $@

demo: $(VENV)/.ok-run
	$(VENV)/bin/kai demo

test: $(VENV)/.ok-dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

# The Ray executor's tests: installs the `ray` extra, starts a local cluster on
# 127.0.0.1 (2 CPUs, small object store, bounded waits), runs the tests marked `ray`,
# stops the cluster. Needs KAI_TEST_POSTGRES_URL (.ci/postgres.sh).
.PHONY: test-ray
test-ray: $(VENV)/.ok-dev
	$(PY) -m pip install -q -e '.[hf,postgres,web,dev,ray]'
	VENV=$(VENV) bash .ci/ray-tests.sh

lint: $(VENV)/.ok-dev
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: $(VENV)/.ok-dev
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) kai-demo .pytest_cache .mypy_cache .ruff_cache
