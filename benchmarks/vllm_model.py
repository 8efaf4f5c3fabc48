"""The tiny model the vLLM checks run on: built here, deterministic, vLLM's CPU kernels take it.

A Llama with ``head_dim`` 64 (vLLM's CPU attention refuses 24, the demo stand-ins'
size), a byte-level BPE trained on the generated Korean corpus, and the stand-ins'
chat template, trained for a few seconds so its next-token distributions are far
from uniform (greedy generation on random weights is decided by near-ties, which
any two kernels may break differently). Built by :mod:`kaieval.synth` (seeded,
deterministic kernels), cached by recipe hash.

Used by ``benchmarks/vllm_vs_hf.py`` and the vLLM tests (``tests/bench``), which
load this file by path.
"""

from __future__ import annotations

from pathlib import Path

NAME = "vllm-tiny"


def build_model(cache_dir: Path) -> Path:
    """Build (or reuse) the model under ``cache_dir`` and return its folder."""
    from kaieval.synth.build import build_models
    from kaieval.synth.recipes import Recipe

    recipe = Recipe.model_validate({
        "name": NAME,
        "role": "tiny Llama for vLLM-vs-HF parity (head_dim 64)",
        "tokenizer": {"vocab_size": 1024, "seed": 15, "train_chars": 60_000},
        "architecture": {"hidden_size": 128, "layers": 2, "heads": 2,
                         "intermediate_size": 256, "max_position_embeddings": 512},
        "init": {"mode": "scratch", "seed": 15},
        "train": {"steps": 120, "lr": 3.0e-3, "batch_size": 8, "seq_len": 64, "seed": 15,
                  "corpus_chars": 60_000, "corpus_seed": 15},
    })
    return build_models(Path(cache_dir), [recipe])[NAME]
