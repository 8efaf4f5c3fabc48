"""From a document's responses to its metric values, and from those to aggregates.

Kept apart from request building so a new metric can re-score cached responses
without touching prompts. Under CircularEval a document counts as correct only
if it is correct under every rotation of its options.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kaieval.bench import metrics as M
from kaieval.bench.api import (
    DocRequests,
    DocScore,
    GenerationResponse,
    LoglikelihoodResponse,
    MetricSummary,
    Response,
)
from kaieval.bench.mathanswer import math_equiv
from kaieval.bench.stats import summarize
from kaieval.bench.tasks.config import TaskConfig
from kaieval.errors import KaiError
from kaieval.hashing import sha256_bytes

INSTRUCTION_METRICS = frozenset({"prompt_level_strict_acc", "inst_level_strict_acc",
                                 "prompt_level_loose_acc", "inst_level_loose_acc"})


def prompt_hash(prompt: str) -> str:
    return sha256_bytes(prompt.encode("utf-8"))


def _lls(resp: Sequence[Response], n: int, doc_id: str) -> list[float]:
    if len(resp) != n or not all(isinstance(r, LoglikelihoodResponse) for r in resp):
        raise KaiError(f"doc {doc_id}: expected {n} log-likelihood responses, got {len(resp)}")
    return [r.logprob for r in resp if isinstance(r, LoglikelihoodResponse)]


def _text(resp: Sequence[Response], doc_id: str) -> str:
    if len(resp) != 1 or not isinstance(resp[0], GenerationResponse):
        raise KaiError(f"doc {doc_id}: expected one generation response, got {len(resp)}")
    return resp[0].text


def _target_index(b: DocRequests) -> int:
    if not isinstance(b.target, int):
        raise KaiError(f"doc {b.doc.doc_id}: multiple-choice target must be an index")
    return b.target


CORPUS_METRICS = frozenset({"f1"})  # computed over all documents' (gold, prediction) pairs


def _score_mc(cfg: TaskConfig, built: Sequence[DocRequests],
              responses: Sequence[Sequence[Response]]) -> DocScore:
    names = [m.name for m in cfg.metrics if m.name not in CORPUS_METRICS]
    ok = {n: True for n in names}
    first_lls: list[float] = []
    first_pred = -1
    for i, (b, resp) in enumerate(zip(built, responses, strict=True)):
        lls = _lls(resp, len(b.choices), b.doc.doc_id)
        tgt = _target_index(b)
        pred = M.argmax(lls)
        if i == 0:
            first_lls, first_pred = lls, pred
        if "acc" in ok:
            ok["acc"] = ok["acc"] and pred == tgt
        if "acc_norm" in ok:
            ok["acc_norm"] = ok["acc_norm"] and M.acc_norm_pred(lls, list(b.choices)) == tgt
    b0 = built[0]
    return DocScore(doc_id=b0.doc.doc_id, prompt_hash=prompt_hash(b0.prompt),
                    metrics={n: 1.0 if ok[n] else 0.0 for n in names},
                    prediction=first_pred, target=b0.target,
                    loglikelihoods=tuple(first_lls))


def _score_mcg(cfg: TaskConfig, built: Sequence[DocRequests],
               responses: Sequence[Sequence[Response]]) -> DocScore:
    correct = True
    first_text, first_pred = "", -1
    for i, (b, resp) in enumerate(zip(built, responses, strict=True)):
        text = _text(resp, b.doc.doc_id)
        pred = M.extract_letter(text, len(b.choices))
        if i == 0:
            first_text, first_pred = text, -1 if pred is None else pred
        correct = correct and pred == _target_index(b)
    b0 = built[0]
    return DocScore(doc_id=b0.doc.doc_id, prompt_hash=prompt_hash(b0.prompt),
                    metrics={m.name: 1.0 if correct else 0.0 for m in cfg.metrics},
                    prediction=first_pred, target=b0.target, generation=first_text)


def apply_filter(cfg: TaskConfig, name: str, raw: str) -> str:
    """A generation reduced by the named pipeline ('' = the task's answer_regex, if any)."""
    if not name:
        f = cfg.regex_filter
        if f is None:
            return raw
        return M.regex_extract(raw, f.pattern, group_select=f.group_select, fallback=f.fallback)
    for fc in cfg.filters:
        if fc.name == name:
            if fc.kind == "choice_cascade":
                return M.choice_cascade(raw)
            return M.regex_extract(raw, fc.pattern, group_select=fc.group_select,
                                   fallback=fc.fallback)
    raise KaiError(f"unknown filter {name!r}")


def _score_gen(cfg: TaskConfig, b: DocRequests, resp: Sequence[Response]) -> DocScore:
    raw = _text(resp, b.doc.doc_id)
    first = cfg.metrics[0].filter if cfg.metrics else ""
    pred = apply_filter(cfg, first, raw)
    target = str(b.target)
    values: dict[str, float] = {}
    items: dict[str, tuple[float, ...]] = {}
    verdicts: dict[bool, list[bool]] = {}
    for m in cfg.metrics:
        if m.name == "exact_match":
            values[m.key] = M.exact_match(apply_filter(cfg, m.filter, raw), target, **m.kwargs())
        elif m.name == "numeric_match":
            values[m.key] = M.numeric_match(apply_filter(cfg, m.filter, raw), target)
        elif m.name == "math_equiv":
            values[m.key] = math_equiv(apply_filter(cfg, m.filter, raw), target)
        elif m.name in INSTRUCTION_METRICS:
            loose = "loose" in m.name
            if loose not in verdicts:
                verdicts[loose] = M.check_instructions(
                    raw, b.meta["instruction_ids"], b.meta["instruction_kwargs"], loose=loose,
                    checks=cfg.instruction_checks)
            v = verdicts[loose]
            if m.name.startswith("prompt"):
                values[m.name] = float(all(v))
            else:  # the doc's share; the aggregate pools every instruction (item_values)
                values[m.name] = sum(v) / len(v) if v else 1.0
                items[m.name] = tuple(float(x) for x in v)
        else:
            raise KaiError(f"metric {m.name!r} does not apply to generation tasks")
    return DocScore(doc_id=b.doc.doc_id, prompt_hash=prompt_hash(b.prompt), metrics=values,
                    prediction=pred, target=target, generation=raw, item_values=items)


def score_doc(cfg: TaskConfig, built: Sequence[DocRequests],
              responses: Sequence[Sequence[Response]]) -> DocScore:
    """Per-document metric values; ``responses[i]`` answers ``built[i].requests`` in order."""
    if not built:
        raise KaiError("nothing to score: no requests were built for the doc")
    if len(built) != len(responses):
        raise KaiError(f"doc {built[0].doc.doc_id}: {len(built)} request groups but "
                       f"{len(responses)} response groups")
    if cfg.output_type == "multiple_choice":
        return _score_mc(cfg, built, responses)
    if cfg.output_type == "multiple_choice_generate":
        return _score_mcg(cfg, built, responses)
    return _score_gen(cfg, built[0], responses[0])


def aggregate(names: Sequence[str], scores: Sequence[DocScore], *, seed: int,
              resamples: int = 1000) -> dict[str, MetricSummary]:
    """Mean, stderr and seeded bootstrap CI per metric.

    A metric with per-item values (IFEval's ``inst_level_*``) is the mean over all
    items of all docs, as IFEval and lm-eval define it -- not the mean of per-doc
    shares, which would over-weight prompts with few instructions; its ``n`` counts
    items.
    """
    if not scores:
        raise KaiError("no scored documents to aggregate")
    out = {}
    for name in names:
        if name in CORPUS_METRICS:
            out[name] = _f1_summary(scores, resamples=resamples, seed=seed)
            continue
        missing = [s.doc_id for s in scores if name not in s.metrics]
        if missing:
            raise KaiError(f"metric {name!r} missing for docs {missing[:5]}")
        if all(name in s.item_values for s in scores):
            values = [v for s in scores for v in s.item_values[name]]
            if not values:
                raise KaiError(f"metric {name!r}: no items in any document")
        else:
            values = [s.metrics[name] for s in scores]
        out[name] = summarize(values, resamples=resamples, seed=seed)
    return out


def _f1_summary(scores: Sequence[DocScore], *, resamples: int, seed: int) -> MetricSummary:
    """Macro-F1 over the docs' (gold, prediction) pairs; stderr and CI by a seeded bootstrap."""
    pairs = []
    for s in scores:
        if not isinstance(s.target, int) or not isinstance(s.prediction, int):
            raise KaiError(f"f1 needs choice indices (doc {s.doc_id})")
        pairs.append((s.target, s.prediction))
    value = M.macro_f1(pairs)
    boots = _bootstrap_macro_f1(pairs, resamples=resamples, seed=seed)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    stderr = float(np.std(boots, ddof=1)) if len(pairs) > 1 else math.nan
    return MetricSummary(value=value, stderr=stderr, ci_low=float(lo), ci_high=float(hi),
                         n=len(pairs))


def _bootstrap_macro_f1(pairs: Sequence[tuple[int, int]], *, resamples: int, seed: int
                        ) -> np.ndarray:
    """Macro-F1 of ``resamples`` seeded resamples of the pairs (labels present per resample)."""
    gold = np.array([g for g, _ in pairs])
    pred = np.array([p for _, p in pairs])
    idx = np.random.default_rng(seed).integers(0, len(pairs), size=(resamples, len(pairs)))
    g, p = gold[idx], pred[idx]
    total = np.zeros(resamples)
    present = np.zeros(resamples)
    for label in sorted(set(gold.tolist()) | set(pred.tolist())):
        gl, pl = g == label, p == label
        tp = (gl & pl).sum(axis=1)
        denom = gl.sum(axis=1) + pl.sum(axis=1)
        seen = denom > 0
        total += np.where(seen, 2 * tp / np.maximum(denom, 1), 0.0)
        present += seen
    return total / np.maximum(present, 1)
