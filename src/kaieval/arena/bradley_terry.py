"""Bradley–Terry strengths from pairwise user votes, and their mapping to points.

Users compare two anonymous answers and pick the better one (or a tie). The
Bradley–Terry model P(i beats j) = p_i / (p_i + p_j) turns those votes into one
strength per team. We fit it with Hunter's (2004) minorise-maximise iteration,
which needs no step size and always increases the likelihood; a tie counts as
half a win for each side; a weak prior (one virtual tie of every team against
an average opponent) keeps a team that won or lost every vote finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from kaieval.records import Vote

Array = NDArray[np.float64]


def win_matrix(votes: Sequence[Vote], teams: Sequence[str]) -> Array:
    """W[i, j] = wins of i over j (ties count 1/2 each). Votes naming other teams are ignored."""
    index = {t: i for i, t in enumerate(teams)}
    w = np.zeros((len(teams), len(teams)))
    for v in votes:
        if v.a not in index or v.b not in index or v.a == v.b:
            continue
        i, j = index[v.a], index[v.b]
        if v.winner == "a":
            w[i, j] += 1
        elif v.winner == "b":
            w[j, i] += 1
        else:
            w[i, j] += 0.5
            w[j, i] += 0.5
    return w


def fit_strengths(w: Array, *, prior: float = 1.0, iters: int = 500, tol: float = 1e-10) -> Array:
    """Strengths p (geometric mean 1) maximising the BT likelihood of win matrix ``w``.

    Works on a stack of matrices too (shape [..., T, T]) so bootstrap replicates
    are fitted together.
    """
    w = np.asarray(w, dtype=np.float64)
    t = int(w.shape[-1])
    wins = w.sum(axis=-1) + prior / 2  # prior: a virtual tie vs an opponent of strength 1
    games = w + np.swapaxes(w, -1, -2)
    p = np.ones(w.shape[:-1])
    for _ in range(iters):
        denom = (games / (p[..., :, None] + p[..., None, :])).sum(axis=-1) + prior / (p + 1.0)
        new = wins / denom
        new /= np.exp(np.log(new).mean(axis=-1, keepdims=True))
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    out: Array = np.asarray(p, dtype=np.float64)
    assert out.shape[-1] == t
    return out


def expected_win_rate(p: Array) -> Array:
    """Each team's mean chance of beating each other team: the quantity users experience."""
    t = p.shape[-1]
    pair = p[..., :, None] / (p[..., :, None] + p[..., None, :])
    return np.asarray((pair.sum(axis=-1) - 0.5) / max(t - 1, 1), dtype=np.float64)


def user_points(p: Array, points: float) -> Array:
    """Points relative to the best team: the best team gets full points (as LG did, 25/25)."""
    e = expected_win_rate(p)
    return np.asarray(points * e / e.max(axis=-1, keepdims=True), dtype=np.float64)
