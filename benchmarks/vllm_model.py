"""The tiny model the vLLM checks run on: built here, deterministic, vLLM's CPU kernels take it.

A Llama with ``head_dim`` 64 (vLLM's CPU attention refuses 24, the demo stand-ins'
size), a byte-level BPE trained on the generated Korean corpus, and the stand-ins'
chat template, trained for a few seconds so its next-token distributions are far
from uniform (greedy generation on random weights is decided by near-ties, which
any two kernels may break differently). Built by :mod:`kaieval.synth` (seeded,
deterministic kernels), cached by recipe hash.

Also starts and stops a real vLLM OpenAI-compatible server on 127.0.0.1. Used by
``benchmarks/vllm_vs_hf.py`` and the vLLM tests (``tests/bench``), which load this
file by path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NAME = "vllm-tiny"


SIZES = {"tiny": (128, 2, 256), "small": (512, 8, 1376)}
"""hidden size, layers, MLP width; head_dim 64 either way. ``small`` (26M parameters) is
for throughput comparisons where a forward pass should outweigh an HTTP round trip."""


def build_model(cache_dir: Path, size: str = "tiny") -> Path:
    """Build (or reuse) the model under ``cache_dir`` and return its folder."""
    from kaieval.synth.build import build_models
    from kaieval.synth.recipes import Recipe

    hidden, layers, mlp = SIZES[size]
    name = NAME if size == "tiny" else f"vllm-{size}"
    recipe = Recipe.model_validate({
        "name": name,
        "role": f"{size} Llama for vLLM-vs-HF parity and throughput (head_dim 64)",
        "tokenizer": {"vocab_size": 1024, "seed": 15, "train_chars": 60_000},
        "architecture": {"hidden_size": hidden, "layers": layers, "heads": hidden // 64,
                         "intermediate_size": mlp, "max_position_embeddings": 512},
        "init": {"mode": "scratch", "seed": 15},
        "train": {"steps": 120, "lr": 3.0e-3, "batch_size": 8, "seq_len": 64, "seed": 15,
                  "corpus_chars": 60_000, "corpus_seed": 15},
    })
    return build_models(Path(cache_dir), [recipe])[name]


SERVED_NAME = "tiny"
START_TIMEOUT_S = 600  # a busy 2-core machine: imports + engine start take 1-3 minutes
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, log: Path, python: str | None = None
                 ) -> tuple[subprocess.Popen[bytes], str]:
    """vLLM's OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``:
    the ``vllm`` console script of ``vllm-cpu`` is broken) for ``model`` on a free
    127.0.0.1 port; returns the process and the base URL once ``/v1/models`` answers.
    The wait is bounded (``START_TIMEOUT_S``); the server runs in its own process group
    so :func:`stop_server` stops its engine process too."""
    import httpx

    port = free_port()
    cmd = [python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", str(model), "--served-model-name", SERVED_NAME, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "512",
           "--enforce-eager", "--enable-prefix-caching", "--seed", "0"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **CPU_ENV}, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text("utf-8", "replace")[-3000:]
            raise RuntimeError(f"vLLM server exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_server(proc)
    raise RuntimeError(f"vLLM server not up after {START_TIMEOUT_S} s (log: {log})")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
