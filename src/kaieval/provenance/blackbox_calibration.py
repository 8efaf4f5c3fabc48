"""Calibration of the black-box test: the weight suite's controls, plus the issue's fine-tune.

Why another control: the case that the greedy test missed was a fine-tune on
instruction-style Q&A and code whose weights stay close to the parent's (cosine 0.985).
:func:`build_instruct_finetune` makes one deterministically from the suite's parent: a
few hundred AdamW steps on :func:`instruct_code_text` (Korean questions and answers in a
chat-like layout, and small Python functions), so its greedy style moves away from the
parent's corpus while its weights do not move far. Its cosine with the parent is measured
and recorded, not assumed.

:func:`calibration_pairs` lists the tests: each derived control against the parent with
every independent model but the parent as controls, and every pair of independent
models with the rest as controls. Rates get exact (Clopper-Pearson) intervals.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kaieval.hashing import sha256_file, sha256_json

INSTRUCT = "instruct-code"
STAMP = ".kaieval-blackbox-calibration.json"
VERSION = 1


def instruct_code_text(n_chars: int, seed: int) -> str:
    """Deterministic instruction Q&A (Korean) and code (Python) samples, ``n_chars`` long."""
    from kaieval.synth.corpus import attach, sentence

    r = random.Random(f"kaieval-instruct:{seed}")
    topics = ("인공지능", "반도체", "예산", "교통", "개인정보", "기후", "교육", "데이터", "의료",
              "오픈소스", "클라우드", "저작권")
    verbs = ("설명해 주세요", "요약해 주세요", "장단점을 알려 주세요", "예를 들어 주세요")
    names = ("total", "average", "count_words", "merge", "clean", "score", "parse_row")
    parts: list[str] = []
    size = 0
    while size < n_chars:
        if r.random() < 0.6:
            topic = r.choice(topics)
            answer = " ".join(sentence(r) for _ in range(r.randint(1, 3)))
            part = (f"<|user|>\n{attach(topic, '은')} 무엇인가요? {r.choice(verbs)}.\n"
                    f"<|assistant|>\n네, {attach(topic, '에')} 대해 답변드리겠습니다. "
                    f"{answer}\n")
        else:
            name, n = r.choice(names), r.randint(1, 9)
            part = (f"```python\ndef {name}(values):\n    result = 0\n"
                    f"    for v in values:\n        result += v * {n}\n"
                    f"    return result\n```\n")
        parts.append(part + "\n")
        size += len(part) + 1
    return "".join(parts)[:n_chars]


def weight_cosine(a: Path, b: Path) -> float:
    """Cosine of all same-name, same-shape tensors of two folders, concatenated."""
    from safetensors.numpy import load_file

    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    names = sorted(n for n in x if n in y and x[n].shape == y[n].shape)
    u = np.concatenate([x[n].ravel() for n in names]).astype(np.float64)
    v = np.concatenate([y[n].ravel() for n in names]).astype(np.float64)
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def build_instruct_finetune(parent: Path, out: Path, *, steps: int = 200, lr: float = 3e-4,
                            batch_size: int = 8, seq_len: int = 64, seed: int = 7) -> Path:
    """The parent fine-tuned on instruction Q&A and code; cached under a stamp."""
    key = sha256_json({"version": VERSION, "steps": steps, "lr": lr, "batch": batch_size,
                       "seq": seq_len, "seed": seed,
                       "parent": sha256_file(parent / "model.safetensors")})
    try:
        if json.loads((out / STAMP).read_text(encoding="utf-8"))["key"] == key:
            return out
    except (OSError, ValueError, KeyError, TypeError):
        pass
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from kaieval.synth.models import deterministic_torch

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with deterministic_torch():
        torch.manual_seed(seed)
        tok = Tokenizer.from_file(str(parent / "tokenizer.json"))
        data = torch.tensor(tok.encode(instruct_code_text(120_000, seed)).ids)
        model: Any = AutoModelForCausalLM.from_pretrained(parent, dtype=torch.float32,
                                                          use_safetensors=True)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(steps):
            starts = torch.randint(0, len(data) - seq_len - 1, (batch_size,), generator=gen)
            batch = torch.stack([data[s:s + seq_len + 1] for s in starts.tolist()])
            logits = model(input_ids=batch[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     batch[:, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        model.save_pretrained(tmp)
    for f in parent.glob("*token*.json"):
        shutil.copyfile(f, tmp / f.name)
    (tmp / STAMP).write_text(json.dumps({"key": key, "weight_cosine_with_parent":
                                         weight_cosine(tmp, parent)}), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


@dataclass(frozen=True)
class BlackBoxPair:
    """One black-box test with a known truth."""

    candidate: str
    reference: str
    controls: tuple[str, ...]
    kind: str
    role: str  # "derived" or "independent"


def calibration_pairs(derived: Sequence[str], independent: Sequence[str],
                      parent: str = "parent") -> list[BlackBoxPair]:
    """Each derived model vs the parent (controls: every other independent model); every
    pair of independent models (controls: the rest)."""
    others = tuple(m for m in independent if m != parent)
    pairs = [BlackBoxPair(d, parent, others, d, "derived") for d in derived]
    for i, a in enumerate(independent):
        for b in independent[i + 1:]:
            rest = tuple(m for m in independent if m not in (a, b))
            kind = "other-tokenizer" if "tokenizer-" in a + b else "same-tokenizer-seed"
            pairs.append(BlackBoxPair(b, a, rest, kind, "independent"))
    return pairs
