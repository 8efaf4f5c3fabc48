"""Black-box provenance test for endpoint-only submissions: greedy-output agreement.

When a team submits only an endpoint there are no weights to compare. What remains is
behaviour: a fine-tune of a reference keeps most of the reference's greedy continuations,
while an independently trained model agrees with it only as much as any unrelated model
does (Nikolić et al., NeurIPS 2025, use the same idea with a Holm correction). "As much
as any unrelated model" is the whole point: two models trained on similar data share
frequent phrases, so raw agreement means nothing without **controls** -- models known to
be unrelated to the candidate, run on the same prompts.

The test, per reference R:

* each model continues every prompt of a fixed, bundled prompt set greedily
  (``data/blackbox_prompts.jsonl``, Korean and English; its sha256 is recorded);
* per prompt i, ``x[i, 0]`` is the agreement of the candidate's output with R's and
  ``x[i, j]`` with control j's: the common character prefix of the two outputs (whitespace
  collapsed, the first ``compare_chars`` characters) over the compared length -- character
  level, so models with different tokenizers and endpoints that return text compare;
* statistic ``T = Σ_i x[i, 0]``; under H0 (R is just another unrelated model: it is
  exchangeable with the controls) the label "reference" could sit on any of the 1 + K
  columns of each prompt independently. The p-value is the share of ``n_permutations``
  seeded random relabellings whose statistic is at least ``T``, ``(1 + #) / (B + 1)``
  (floor 1 / (B + 1)); with one control this is the exact sign-flip test;
* Holm's step-down correction at ``alpha`` across the references.

The effect size is the mean agreement with R minus the mean agreement with the controls.
A significant result says the candidate behaves like R beyond what unrelated models
share; it cannot tell weight reuse from distillation on R's outputs (both are dependence
on R for the programme's purposes, but the verdict should say "behavioural evidence").
A non-significant one says nothing about unlisted references.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from kaieval.bench.api import Backend, GenerationRequest
from kaieval.errors import KaiError
from kaieval.io import DATA_MAX_BYTES, parse_jsonl, read_bounded_bytes
from kaieval.records import ComponentEvidence

PROMPTS_FILE = "blackbox_prompts.jsonl"


@dataclass(frozen=True)
class ModelSpec:
    """A model that can generate greedily: a local HF directory or an OpenAI-compatible
    endpoint (``url`` ending in ``/v1`` plus the served model name). The API key is read
    from the environment variable ``api_key_env`` at use and is never stored."""

    name: str
    path: Path | None = None
    url: str | None = None
    served_model: str | None = None
    api_key_env: str | None = None
    chat: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    trust_remote_code: bool = False
    timeout_s: float = 60.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        if (self.path is None) == (self.url is None):
            raise KaiError("give exactly one of a model directory or an endpoint URL",
                           where=self.name or "model spec")
        if self.url is not None and not self.served_model:
            raise KaiError("an endpoint needs the served model name (URL#NAME)",
                           where=self.url)

    @property
    def is_endpoint(self) -> bool:
        return self.url is not None

    def describe(self) -> dict[str, Any]:
        """What the record keeps: where the model is, never a key."""
        if self.url is not None:
            return {"name": self.name, "endpoint": self.url, "served_model": self.served_model,
                    "chat": self.chat}
        return {"name": self.name, "path": str(self.path), "dtype": self.dtype,
                "chat": self.chat}


def parse_model_spec(text: str, *, name: str | None = None, served_model: str | None = None,
                     api_key_env: str | None = "OPENAI_API_KEY") -> ModelSpec:
    """``http(s)://host:port/v1#served-name`` (or ``served_model=``) -> an endpoint spec;
    anything else is a local model directory, which must exist."""
    if text.startswith(("http://", "https://")):
        url, _, inline = text.partition("#")
        model = served_model or inline
        return ModelSpec(name=name or text, url=url.rstrip("/"), served_model=model or None,
                         api_key_env=api_key_env)
    path = Path(text).expanduser()
    if not path.is_dir():
        raise KaiError("model directory not found (or give an http(s):// endpoint URL#NAME)",
                       where=text)
    return ModelSpec(name=name or path.name, path=path)


def open_backend(spec: ModelSpec, *, seed: int = 0) -> Backend:
    """The bench backend for a spec: ``hf`` for a directory, ``openai`` for an endpoint."""
    from kaieval.bench.backends import get_backend

    if spec.url is not None:
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        return get_backend("openai", base_url=spec.url, model=spec.served_model,
                           api_key=key, chat=spec.chat, timeout=spec.timeout_s,
                           max_retries=spec.max_retries, concurrency=4, backoff_base=0.2,
                           seed=seed)
    return get_backend("hf", path=spec.path, dtype=spec.dtype, device=spec.device,
                       trust_remote_code=spec.trust_remote_code)


@dataclass(frozen=True)
class Prompt:
    id: str
    lang: str
    prompt: str


def load_prompts(path: Path | None = None) -> tuple[tuple[Prompt, ...], str]:
    """The bundled prompt set (or a JSONL file of ``{"id", "lang", "prompt"}``) and its sha256."""
    if path is None:
        raw = resources.files("kaieval.provenance").joinpath("data", PROMPTS_FILE).read_bytes()
        where = PROMPTS_FILE
    else:
        raw = read_bounded_bytes(path, DATA_MAX_BYTES, "prompt files")
        where = str(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise KaiError(f"prompts are not UTF-8 ({err.reason} at byte {err.start})",
                       where=where) from None
    prompts: list[Prompt] = []
    for at, row in parse_jsonl(text, where):
        if not (isinstance(row.get("prompt"), str) and row["prompt"]):
            raise KaiError("prompt: missing or not a non-empty string", where=at)
        line = at.rsplit(":", 1)[1]  # an unnamed prompt is named by its line number
        prompts.append(Prompt(str(row.get("id", line)), str(row.get("lang", "")), row["prompt"]))
    if len(prompts) < 5:
        raise KaiError(f"need at least 5 prompts, found {len(prompts)}", where=where)
    return tuple(prompts), hashlib.sha256(raw).hexdigest()


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values: reject where adjusted p <= alpha (same decisions
    as :func:`kaieval.provenance.weight_tests.holm`, but a number to report)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = running
    return out


def agreement(a: str, b: str, compare_chars: int) -> float:
    """Common prefix of two outputs (whitespace collapsed, first ``compare_chars``
    characters) over the compared length; two empty outputs agree fully."""
    x, y = " ".join(a.split())[:compare_chars], " ".join(b.split())[:compare_chars]
    m = max(len(x), len(y))
    if m == 0:
        return 1.0
    k = 0
    for ca, cb in zip(x, y, strict=False):
        if ca != cb:
            break
        k += 1
    return k / m


def label_permutation_p(x: np.ndarray, n_permutations: int, seed: int) -> float:
    """P-value of ``Σ_i x[i, 0]`` when, per row, column 0 is exchangeable with the others.

    Monte Carlo over independent per-row relabellings, ``(1 + #{T* >= T}) / (B + 1)``;
    a small tolerance keeps float ties counted as ties.
    """
    n, cols = x.shape
    if cols < 2:
        raise KaiError("the black-box test needs at least one control model", where="controls")
    observed = float(x[:, 0].sum())
    rng = np.random.default_rng(seed)
    hits = 0
    done = 0
    while done < n_permutations:
        b = min(2000, n_permutations - done)
        pick = rng.integers(0, cols, size=(b, n))
        sims = x[np.arange(n)[None, :], pick].sum(axis=1)
        hits += int(np.sum(sims >= observed - 1e-9))
        done += b
    return (1 + hits) / (n_permutations + 1)


@dataclass(frozen=True)
class ReferenceAgreement:
    """The test of the candidate against one reference."""

    reference: str
    mean_reference: float  # mean agreement of candidate with the reference
    mean_controls: float  # mean agreement of candidate with the controls (all of them)
    effect: float  # mean_reference - mean_controls
    wins: float  # share of prompts where the reference beats every control
    p_value: float
    p_holm: float
    significant: bool
    per_prompt_reference: tuple[float, ...]
    per_prompt_controls: tuple[tuple[float, ...], ...]  # [control][prompt]


@dataclass(frozen=True)
class BlackBoxResult:
    """Everything a reader needs to redo the black-box test."""

    candidate: dict[str, Any]
    references: tuple[ReferenceAgreement, ...]
    controls: tuple[dict[str, Any], ...]
    prompt_ids: tuple[str, ...]
    prompts_sha256: str
    alpha: float
    seed: int
    n_permutations: int
    max_new_tokens: int
    compare_chars: int
    outputs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model name -> outputs
    method: str = ("character-prefix agreement of greedy outputs; per-prompt label "
                   "permutation test of reference vs controls; Holm across references")

    @property
    def significant(self) -> tuple[str, ...]:
        return tuple(r.reference for r in self.references if r.significant)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (every field is plain data)."""
        return dataclasses.asdict(self)


def blackbox_evidence(result: BlackBoxResult) -> list[ComponentEvidence]:
    """Evidence lines for the verdict record, component ``behaviour``, one per reference.

    ``p_value`` is the raw permutation p (Holm's adjusted p is in ``detail``), so a caller
    that runs its own Holm over every line does not correct twice.
    """
    lines = []
    for r in result.references:
        lines.append(ComponentEvidence(
            component="behaviour", verdict="derived" if r.significant else "no_evidence",
            test="blackbox_agreement", statistic=r.effect, p_value=r.p_value,
            reference=r.reference,
            detail=(f"greedy-output agreement {r.mean_reference:.3f} with the reference vs "
                    f"{r.mean_controls:.3f} with {len(result.controls)} controls on "
                    f"{len(result.prompt_ids)} prompts; Holm p {r.p_holm:.3g}; behavioural "
                    f"evidence (cannot tell weight reuse from distillation)")))
    return lines


Model = ModelSpec | Backend


def _generate(model: Model, prompts: Sequence[Prompt], max_new_tokens: int,
              seed: int) -> tuple[str, ...]:
    """Greedy outputs; a backend we open for this is dropped afterwards (one model in
    memory at a time)."""
    backend = open_backend(model, seed=seed) if isinstance(model, ModelSpec) else model
    chat = model.chat if isinstance(model, ModelSpec) else False
    requests = [GenerationRequest(p.prompt, max_tokens=max_new_tokens, chat=chat)
                for p in prompts]
    out = tuple(r.text for r in backend.generate(requests))
    del backend
    return out


def _label(model: Model, i: int, role: str) -> dict[str, Any]:
    if isinstance(model, ModelSpec):
        return model.describe()
    return {"name": f"{role}{i}", **model.describe()}


def blackbox_test(candidate: Model, references: Model | Sequence[Model],
                  controls: Sequence[Model], prompts: Path | None = None, *,
                  alpha: float = 0.01, max_new_tokens: int = 24, compare_chars: int = 48,
                  seed: int = 0, n_permutations: int = 9999) -> BlackBoxResult:
    """Is the candidate's greedy behaviour closer to a reference than to unrelated controls?

    ``prompts`` is a JSONL file (default: the bundled set). Each model generates once.
    """
    if not 0 < alpha < 1:
        raise KaiError(f"alpha must be in (0, 1), got {alpha}", where="--alpha")
    if max_new_tokens < 1 or compare_chars < 1 or n_permutations < 99:
        raise KaiError("max_new_tokens and compare_chars must be >= 1, n_permutations >= 99",
                       where="blackbox_test")
    refs: list[Model] = ([references] if isinstance(references, ModelSpec | Backend)
                         else list(references))
    if not refs:
        raise KaiError("no reference model given", where="--ref")
    if not controls:
        raise KaiError("the black-box test needs at least one unrelated control model",
                       where="controls")
    items, digest = load_prompts(prompts)
    cand_label = _label(candidate, 0, "candidate")
    ref_labels = [_label(m, i, "reference") for i, m in enumerate(refs)]
    ctrl_labels = [_label(m, i, "control") for i, m in enumerate(controls)]
    cand_out = _generate(candidate, items, max_new_tokens, seed)
    ref_out = [_generate(m, items, max_new_tokens, seed) for m in refs]
    ctrl_out = [_generate(m, items, max_new_tokens, seed) for m in controls]
    ctrl_agree = np.array([[agreement(c, o, compare_chars) for c, o in zip(cand_out, outs,
                                                                           strict=True)]
                           for outs in ctrl_out])  # [control, prompt]
    raw: list[tuple[np.ndarray, float]] = []
    for k, outs in enumerate(ref_out):
        ref_agree = np.array([agreement(c, o, compare_chars)
                              for c, o in zip(cand_out, outs, strict=True)])
        x = np.column_stack([ref_agree, ctrl_agree.T])
        raw.append((ref_agree, label_permutation_p(x, n_permutations, seed + k)))
    adjusted = holm_adjusted([p for _, p in raw])
    results = []
    for (ref_agree, p), p_adj, label in zip(raw, adjusted, ref_labels, strict=True):
        mean_ref, mean_ctrl = float(ref_agree.mean()), float(ctrl_agree.mean())
        wins = float(np.mean(ref_agree > ctrl_agree.max(axis=0)))
        results.append(ReferenceAgreement(
            str(label["name"]), mean_ref, mean_ctrl, mean_ref - mean_ctrl, wins, p, p_adj,
            p_adj <= alpha, tuple(float(v) for v in ref_agree),
            tuple(tuple(float(v) for v in row) for row in ctrl_agree)))
    outputs = {str(cand_label["name"]): cand_out}
    outputs.update({str(lab["name"]): o for lab, o in zip(ref_labels, ref_out, strict=True)})
    outputs.update({str(lab["name"]): o for lab, o in zip(ctrl_labels, ctrl_out, strict=True)})
    return BlackBoxResult(cand_label, tuple(results), tuple(ctrl_labels),
                          tuple(p.id for p in items), digest, alpha, seed, n_permutations,
                          max_new_tokens, compare_chars, outputs)
