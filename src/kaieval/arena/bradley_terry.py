"""Bradley–Terry strengths from pairwise user votes, and their mapping to points.

Users compare two anonymous answers and pick the better one (or a tie). The
Bradley–Terry model P(i beats j) = p_i / (p_i + p_j) turns those votes into one
strength per team. We fit it with Hunter's (2004) minorise-maximise iteration,
which needs no step size and always increases the likelihood; a tie counts as
half a win for each side; a weak prior (one virtual tie of every team against
an average opponent) keeps a team that won or lost every vote finite.

"Both bad" counts as a tie too (``WIN_SHARE``): the user found neither answer better,
which is what a tie says about the *relative* strengths the model measures; Chatbot
Arena counts its "tie (bothbad)" the same way. Every outcome is mapped explicitly, so
a new one fails loudly instead of turning ratings into NaN (as it did in one fork).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from kaieval.records import Vote

Array = NDArray[np.float64]

WIN_SHARE: dict[str, float] = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
"""Side a's share of the win for each outcome of a vote (side b gets the rest)."""


def win_share(winner: str) -> float:
    """Side a's share of the win; a ``KeyError`` names an outcome nobody mapped."""
    return WIN_SHARE[winner]


def win_matrix(votes: Sequence[Vote], teams: Sequence[str]) -> Array:
    """W[i, j] = wins of i over j (ties and both-bad count 1/2 each, ``WIN_SHARE``).

    Votes naming other teams are ignored."""
    index = {t: i for i, t in enumerate(teams)}
    w = np.zeros((len(teams), len(teams)))
    for v in votes:
        if v.a not in index or v.b not in index or v.a == v.b:
            continue
        i, j = index[v.a], index[v.b]
        share = win_share(v.winner)
        w[i, j] += share
        w[j, i] += 1.0 - share
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
