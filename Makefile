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

lint: $(VENV)/.ok-dev
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: $(VENV)/.ok-dev
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) kai-demo .pytest_cache .mypy_cache .ruff_cache
