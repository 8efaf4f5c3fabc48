"""How close two models' next-token distributions are, when their tokenizers may differ.

Why it looks like this: a fine-tune changes the *style* of greedy continuations within a
few tokens, so greedy agreement only sees near-identical models; its next-token
distributions stay close to the parent's. Endpoints report them as top-k log-probs over
*token strings*, and a candidate's tokenizer need not be the reference's, so nothing
here compares token ids:

* **Where.** Distributions are compared at character offsets of the same text where
  both tokenizations start a token: there both models have seen exactly ``text[:offset]``
  and predict what follows. Offsets where only one model starts a token are skipped (with
  one tokenizer every offset is shared; with two, the shared ones are counted).
* **What.** Each top-k distribution is projected onto *next units*: a token's probability
  goes to its leading whitespace (one space, or one newline) plus its first other
  character; a token that decodes to an incomplete character (``\\ufffd``, part of a
  multi-byte character) goes to one "incomplete" unit. Two tokenizers that cut
  ``" 정부는"`` differently (``" 정부" + "는"`` vs ``" 정" + "부는"``) still agree on
  ``" 정"``. Where vocabularies are the same this loses little; where they differ it is
  what makes the comparison possible at all. A token that ends inside a character (or
  ``""``, how vLLM names one) is "incomplete" whatever it starts with (:func:`unit`).
* **Statistics** per shared offset (then averaged over a prompt's offsets): ``top1``
  (same most likely unit), ``topk`` (overlap of the two top-k unit sets over the larger
  set: rank agreement of the top-k) and ``js`` (1 - Jensen-Shannon divergence in bits
  between the two distributions renormalised on their shared support, times the
  geometric mean of the probability mass each puts on that support: one shared unit
  with little mass is not "identical").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

INCOMPLETE = "\ufffd"  # the unit of tokens that end inside a character
INSIDE = "\ufffd\ufffd"  # the unit of tokens that begin inside one (and finish it)
STATISTICS = ("top1", "topk", "js")
Dist = dict[str, float]  # next unit -> probability (top-k mass only; sums to <= 1)
TextDists = dict[int, Dist]  # character offset in the text -> distribution there


def unit(token: str) -> str:
    """The next unit a token string starts with. A token that does not finish its last
    character is the "incomplete" unit whatever it starts with: decoded alone it ends in
    ``"\ufffd"``, but vLLM reports it as ``""`` (and a server's completion text is ``""``
    for a special token too), so nothing else about it is the same on every server. One
    that begins inside a character (``"\ufffd가"``) is the "inside" unit."""
    if not token or token.endswith(INCOMPLETE):
        return INCOMPLETE
    stripped = token.lstrip()
    lead = token[: len(token) - len(stripped)]
    ws = ("\n" if "\n" in lead else " ") if lead else ""
    if not stripped:
        return ws
    first = stripped[0]
    return ws + (INSIDE if first == INCOMPLETE else first)


def project(top: Mapping[str, float], k: int) -> Dist:
    """An answer's top log-probs (token string -> log-prob) as a distribution over next
    units: the ``k + 1`` most likely entries (an OpenAI-style answer has the top-k and the
    text's own token), probabilities of one unit summed.

    Except the "incomplete" unit: vLLM names every token that ends inside a character
    ``""``, so its JSON answer keeps one of them (the last written, the least likely of
    the top-k), and a folder is read the same way (:mod:`.blackbox_models`). Where a
    server names them apart, the least likely is taken, which is the same entry unless
    the text's own token is one of them and outside the top-k."""
    best = sorted(top.items(), key=lambda kv: (-kv[1], kv[0]))[:k + 1]
    out: Dist = {}
    incomplete: list[float] = []
    for token, lp in best:
        u = unit(token)
        if u == INCOMPLETE:
            incomplete.append(lp)
        else:
            out[u] = out.get(u, 0.0) + math.exp(lp)
    if incomplete:
        out[INCOMPLETE] = math.exp(min(incomplete))
    return out


def _argmax(d: Dist) -> str:
    return min(d.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def _js_bits(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2
    def kl(a: np.ndarray) -> float:
        keep = a > 0
        return float(np.sum(a[keep] * np.log2(a[keep] / m[keep])))
    return max(0.0, min(1.0, 0.5 * kl(p) + 0.5 * kl(q)))


def compare(p: Dist, q: Dist) -> tuple[float, float, float]:
    """``(top1, topk, js)`` of two unit distributions at one offset (see module doc)."""
    if not p or not q:
        return 0.0, 0.0, 0.0
    top1 = float(_argmax(p) == _argmax(q))
    shared = sorted(set(p) & set(q))
    topk = len(shared) / max(len(p), len(q))
    if not shared:
        return top1, topk, 0.0
    a = np.array([p[u] for u in shared])
    b = np.array([q[u] for u in shared])
    mass = min(1.0, math.sqrt(float(a.sum()) * float(b.sum())))  # rounding: at most 1
    return top1, topk, mass * (1.0 - _js_bits(a / a.sum(), b / b.sum()))


def text_statistics(a: TextDists, b: TextDists) -> tuple[tuple[float, ...], int]:
    """Mean of each statistic over the offsets both models predict at, and how many
    offsets that is (NaNs when none: the prompt is left out of that comparison)."""
    offsets = sorted(set(a) & set(b))
    if not offsets:
        return tuple(math.nan for _ in STATISTICS), 0
    values = np.array([compare(a[o], b[o]) for o in offsets])
    return tuple(float(v) for v in values.mean(axis=0)), len(offsets)


def empirical(units: Sequence[str | None], k: int) -> Dist:
    """Sampled next units as a distribution over the ``k`` most frequent ones (the
    fallback for endpoints that return no log-probs)."""
    seen = [u for u in units if u is not None]
    if not seen:
        return {}
    counts: dict[str, int] = {}
    for u in seen:
        counts[u] = counts.get(u, 0) + 1
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return {u: c / len(seen) for u, c in best}
