"""Held-out bits per character: a tokenizer-independent measure of language-model quality.

Per-token loss cannot compare models with different tokenizers (a model with a
bigger vocabulary predicts fewer, harder tokens). Bits per *character* can: the
total negative log-likelihood of a text, in bits, divided by its length in
characters, is the number of bits the model needs to encode that text.

The text is tokenized once and scored in non-overlapping windows of ``max_len``
predicted tokens. Each window's input starts with the token just before its
targets (the beginning-of-sequence token for the first window), so every token
of the text is predicted exactly once. Full windows are batched together and the
shorter final window is scored on its own, so no padding is ever needed and the
result does not depend on the batch size. Model folders are untrusted: only
safetensors are read, pickle checkpoints are refused, remote code never runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kaieval.artifacts import check_model_dir
from kaieval.errors import KaiError
from kaieval.hashing import sha256_bytes, sha256_file
from kaieval.records import Measurement
from kaieval.spec.program import Source
from kaieval.tokenizer import load_tokenizer

METRIC = "heldout_bits_per_char"


def _load(model_dir: Path) -> tuple[Any, Any, str]:
    """Model, tokenizer and which forward runs the model (the HF backend's loader)."""
    from kaieval.bench.backends.common import load_hf_tokenizer
    from kaieval.bench.backends.hf import load_causal_lm

    # kaieval.tokenizer reads it (any format it knows); a bad one is one line, before weights
    tokenizer = load_hf_tokenizer(model_dir)
    model, forward, _why = load_causal_lm(model_dir)
    return model, tokenizer, forward


def _token_ids(tokenizer: Any, text: str) -> tuple[list[int], bool]:
    """Token ids of ``text`` preceded by a start token; whether the first token is scored."""
    tokenizer.model_max_length = max(len(text) + 16, 1 << 20)  # silence the length warning
    ids: list[int] = list(tokenizer.encode(text, add_special_tokens=False))
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None \
        else tokenizer.eos_token_id
    if start is None:
        return ids, False  # nothing to condition the first token on: it goes unscored
    return [int(start), *ids], True


def _score(model: Any, ids: list[int], max_len: int, batch_size: int) -> float:
    """Sum of negative log-likelihoods (nats) of ``ids[1:]``, each predicted once."""
    import torch

    n_targets = len(ids) - 1
    windows = [(s, min(s + max_len, n_targets)) for s in range(0, n_targets, max_len)]
    full = [w for w in windows if w[1] - w[0] == max_len]
    groups = [full[i:i + batch_size] for i in range(0, len(full), batch_size)]
    groups += [[w] for w in windows if w[1] - w[0] != max_len]
    seq = torch.tensor(ids, dtype=torch.long)
    total = 0.0
    with torch.inference_mode():
        for group in groups:
            batch = torch.stack([seq[a:b + 1] for a, b in group])
            logits = model(input_ids=batch[:, :-1]).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp.gather(-1, batch[:, 1:].unsqueeze(-1)).squeeze(-1)
            # float64 per window, summed in a fixed order: batch size cannot reorder it
            total -= sum(float(x) for x in picked.double().sum(dim=1))
    return total


def _bits_per_char(model_dir: Path, text: str, max_len: int,
                   batch_size: int) -> tuple[float, dict[str, Any]]:
    if not text:
        raise KaiError("held-out text is empty", where=str(model_dir))
    if max_len < 1 or batch_size < 1:
        raise KaiError(f"max_len and batch_size must be >= 1 (got {max_len}, {batch_size})")
    check_model_dir(model_dir)
    model, tokenizer, forward = _load(model_dir)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_len + 1 > int(limit):
        raise KaiError(f"max_len {max_len} exceeds the model's context of {limit} tokens",
                       where=str(model_dir))
    ids, first_scored = _token_ids(tokenizer, text)
    if len(ids) < 2:
        raise KaiError("held-out text is too short to score", where=str(model_dir))
    nats = _score(model, ids, max_len, batch_size)
    bpc = nats / math.log(2) / len(text)
    info = {"n_chars": len(text), "n_tokens": len(ids) - int(first_scored),
            "first_token_scored": first_scored, "forward": forward}
    return bpc, info


def heldout_bits_per_char(model_dir: Path, text: str, *, max_len: int = 256,
                          batch_size: int = 8) -> float:
    """Negative log-likelihood of ``text`` under the model, in bits per character."""
    return _bits_per_char(Path(model_dir), text, max_len, batch_size)[0]


def heldout_measurement(model_dir: Path, text: str, *, stage_id: str, team_id: str,
                        max_len: int = 256, batch_size: int = 8) -> Measurement:
    """:func:`heldout_bits_per_char` as a stored record naming the text and weights it used."""
    model_dir = Path(model_dir)
    value, info = _bits_per_char(model_dir, text, max_len, batch_size)
    hashes = {"text": sha256_bytes(text.encode("utf-8"))}
    for f in check_model_dir(model_dir):
        hashes[f"model/{f.name}"] = sha256_file(f)
    # the tokenizer's own files, in whatever format it shipped (the bits per character
    # depend on its tokens), and the config that sets its special tokens
    for f in (*load_tokenizer(model_dir).files, model_dir / "tokenizer_config.json"):
        if f.is_file():
            hashes[f"model/{f.name}"] = sha256_file(f)
    return Measurement(
        stage_id=stage_id, team_id=team_id, source=Source.MEASURED, name=METRIC,
        value=value, unit="bits/char", input_hashes=hashes,
        settings={"max_len": max_len, "batch_size": batch_size, "dtype": "float32",
                  "windows": "non-overlapping", **info},
        detail=f"{info['n_chars']} characters, {info['n_tokens']} tokens scored")
