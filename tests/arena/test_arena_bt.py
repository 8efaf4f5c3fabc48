"""Bradley–Terry fitting: recovers known strengths, stays finite, fits stacks consistently."""

from __future__ import annotations

import numpy as np

from kaieval.arena.bradley_terry import (
    expected_win_rate,
    fit_strengths,
    user_points,
    win_matrix,
)
from kaieval.records import Vote


def _simulate(strengths: list[float], n: int, seed: int) -> list[Vote]:
    rng = np.random.default_rng(seed)
    teams = [f"t{i}" for i in range(len(strengths))]
    votes = []
    for k in range(n):
        i, j = rng.choice(len(teams), size=2, replace=False)
        p = strengths[i] / (strengths[i] + strengths[j])
        votes.append(Vote(voter_id=f"u{k % 7}", a=teams[i], b=teams[j],
                          winner="a" if rng.random() < p else "b"))
    return votes


def test_recovers_order_and_ratio_of_known_strengths() -> None:
    true = [4.0, 2.0, 1.0, 0.5]
    votes = _simulate(true, 6000, seed=1)
    p = fit_strengths(win_matrix(votes, ["t0", "t1", "t2", "t3"]), prior=0.0)
    assert list(np.argsort(-p)) == [0, 1, 2, 3]
    assert abs(np.log(p[0] / p[3]) - np.log(8.0)) < 0.25


def test_team_that_won_every_vote_stays_finite() -> None:
    votes = [Vote(voter_id="u", a="x", b="y", winner="a") for _ in range(20)]
    p = fit_strengths(win_matrix(votes, ["x", "y"]))
    assert np.all(np.isfinite(p)) and p[0] > p[1]


def test_ties_count_half_each_way() -> None:
    votes = [Vote(voter_id="u", a="x", b="y", winner="tie") for _ in range(10)]
    w = win_matrix(votes, ["x", "y"])
    assert w[0, 1] == w[1, 0] == 5.0
    p = fit_strengths(w)
    assert abs(p[0] - p[1]) < 1e-9


def test_votes_naming_unknown_teams_are_ignored() -> None:
    votes = [Vote(voter_id="u", a="x", b="ghost", winner="a")]
    assert win_matrix(votes, ["x", "y"]).sum() == 0


def test_stack_fit_equals_individual_fits() -> None:
    ws = np.stack([win_matrix(_simulate([3, 1, 2], 300, seed=s), ["t0", "t1", "t2"])
                   for s in range(4)])
    stacked = fit_strengths(ws)
    for k in range(4):
        np.testing.assert_allclose(stacked[k], fit_strengths(ws[k]), rtol=1e-8)


def test_best_team_gets_full_points() -> None:
    p = np.array([2.0, 1.0, 0.5])
    pts = user_points(p, 25.0)
    assert pts[0] == 25.0 and pts[1] < 25.0 and pts[2] < pts[1]
    e = expected_win_rate(p)
    assert abs(e.mean() - 0.5) < 1e-12
