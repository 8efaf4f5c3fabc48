"""The black-box test's null distributions: what "the candidate behaves like the reference
beyond what unrelated models share" is measured against (:mod:`.blackbox`).

Double-centring removes what is not specific to a pair of models; the pair-level
prediction t compares the (candidate, reference) pair with the pairs of controls; the
per-prompt permutation test relabels pairs; Holm adjusts across references and
statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


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


def centred(sims: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Double-centred similarity of every pair of models, per prompt: ``[prompt, pair]``.

    ``D(a, b) = S(a, b) - mean_k S(a, k) - mean_k S(b, k) + mean_{k<l} S(k, l)``, with k, l
    the other models. Why: some models are closer to *every* model (a better-trained one,
    a text that is easier to predict), which says nothing about lineage; under an additive
    model ``S(a, b) = mu + q_a + q_b`` every D is zero, so only what is specific to the pair
    is left. Needs at least four models.
    """
    n, m = sims.shape[:2]
    pairs = [(a, b) for a in range(m) for b in range(a + 1, m)]
    out = np.empty((n, len(pairs)))
    for p, (a, b) in enumerate(pairs):
        rest = [k for k in range(m) if k not in (a, b)]
        among = [sims[:, k, q] for i, k in enumerate(rest) for q in rest[i + 1:]]
        out[:, p] = (sims[:, a, b] - sims[:, a, rest].mean(axis=1)
                     - sims[:, b, rest].mean(axis=1) + np.mean(among, axis=0))
    return out, pairs


def pair_permutation_p(d: np.ndarray, observed: int, n_permutations: int, seed: int
                       ) -> float:
    """P-value of ``Σ_i d[i, observed]`` when, per prompt, the pair of models labelled
    (candidate, reference) could be any pair: under H0 all the models are mutually
    independent, so their labels are exchangeable. ``(1 + #{T* >= T}) / (B + 1)``."""
    n, pairs = d.shape
    obs = float(d[:, observed].sum())
    rng = np.random.default_rng(seed)
    hits = done = 0
    while done < n_permutations:
        b = min(2000, n_permutations - done)
        sims = d[np.arange(n)[None, :], rng.integers(0, pairs, size=(b, n))].sum(axis=1)
        hits += int(np.sum(sims >= obs - 1e-9))
        done += b
    return (1 + hits) / (n_permutations + 1)


def pair_outlier_t(observed: np.ndarray, null: np.ndarray) -> tuple[float, float]:
    """Does the (candidate, reference) pair stand out among unrelated pairs? ``observed``
    its centred similarity per prompt (centred on the controls), ``null`` [prompt, pair]
    that of every pair of controls (centred on the other controls). Their means over
    the prompts; the observed one against the null ones as a new draw (prediction t,
    one-sided, Student t with pairs - 1 df).

    Why besides the per-prompt permutation: independent models are not all equally alike
    (training order, chance), so with enough prompts *some* unrelated pair always beats
    the others per prompt. What lineage gives is a pair far outside the spread of the
    unrelated pairs; this test measures that spread. The null pairs never involve the
    candidate or the reference, so a large effect does not widen its own yardstick.
    """
    from scipy import stats

    others = null.mean(axis=0)
    sd = float(others.std(ddof=1)) if len(others) > 1 else 0.0
    if not sd > 0:
        return math.nan, 1.0
    t = float((observed.mean() - others.mean()) / (sd * math.sqrt(1 + 1 / len(others))))
    return t, float(stats.t.sf(t, len(others) - 1))
