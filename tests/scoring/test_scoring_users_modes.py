"""Users components both ways: rating mode (1-5 scores mapped to points, bootstrap over
raters) and the arena's explicit handling of "both bad"."""

from __future__ import annotations

import numpy as np
import pytest

from kaieval.arena.bradley_terry import WIN_SHARE, fit_strengths, win_matrix
from kaieval.records import Record, UserRating, UserVote, Vote
from kaieval.scoring.leaf_points import BootstrapPlan, leaf_scores
from kaieval.spec.program import Component

RATING = Component.model_validate({
    "id": "panel", "points": 25, "kind": "users", "mode": "rating",
    "criteria": [{"id": "useful", "title": "Usefulness"}, {"id": "korean", "title": "Korean"}]})
ARENA = Component.model_validate({"id": "users", "points": 20, "kind": "users"})
TEAMS = ("a", "b", "c")


def _rating(team: str, rater: str, useful: float, korean: float) -> UserRating:
    return UserRating(stage_id="s1", team_id=team, source="users", component_id="panel",
                      rater_id=rater, scores={"useful": useful, "korean": korean})


def _plan(reps: int = 400) -> BootstrapPlan:
    return BootstrapPlan(replicates=reps, rng=np.random.default_rng(7), evaluator_weights=None,
                         evaluators=())


def test_rating_points_are_mean_of_rater_means_mapped_from_1_to_5() -> None:
    records: list[Record] = [_rating("a", "u1", 5, 5), _rating("a", "u2", 4, 3),
                             _rating("b", "u1", 1, 1), _rating("b", "u2", 2, 1)]
    leaf = leaf_scores(RATING, "s1", TEAMS, [None] * 3, records, None)
    # a: rater means 5 and 3.5 -> shares 1 and 0.625 -> mean 0.8125 of 25 points
    assert leaf.points[0] == pytest.approx(25 * 0.8125)
    # b: rater means 1 and 1.5 -> shares 0 and 0.125 -> 0.0625
    assert leaf.points[1] == pytest.approx(25 * 0.0625)
    assert np.isnan(leaf.points[2]) and "no user rated" in leaf.detail[2]
    assert leaf.sources[0] == {"users"} and any("useful" in e for e in leaf.evidence[0])


def test_rating_bootstrap_resamples_raters() -> None:
    rng = np.random.default_rng(1)
    records: list[Record] = []
    for k in range(30):
        records.append(_rating("a", f"u{k}", int(rng.integers(3, 6)), int(rng.integers(3, 6))))
        records.append(_rating("b", f"u{k}", int(rng.integers(1, 4)), int(rng.integers(1, 4))))
    leaf = leaf_scores(RATING, "s1", TEAMS, [None] * 3, records, _plan())
    assert leaf.replicates is not None and leaf.replicates.shape == (400, 3)
    assert "user raters" in leaf.resampled
    for i in (0, 1):
        lo, hi = np.percentile(leaf.replicates[:, i], [2.5, 97.5])
        assert lo < leaf.points[i] < hi and hi - lo > 0.1  # raters vary: a real interval
    assert np.isnan(leaf.replicates[:, 2]).all()
    assert (leaf.replicates[:, 0] > leaf.replicates[:, 1]).all()


def test_ratings_of_another_component_or_stage_are_ignored() -> None:
    other = UserRating(stage_id="s2", team_id="a", source="users", component_id="panel",
                       rater_id="u1", scores={"useful": 1, "korean": 1})
    leaf = leaf_scores(RATING, "s1", TEAMS, [None] * 3, [other, _rating("a", "u1", 5, 5)], None)
    assert leaf.points[0] == pytest.approx(25)


def test_both_bad_is_mapped_explicitly_and_counts_as_a_tie() -> None:
    assert set(WIN_SHARE) == {"a", "b", "tie", "both_bad"}  # every Vote.winner is mapped
    tie = [Vote(voter_id="u", a="a", b="b", winner="tie")]
    bad = [Vote(voter_id="u", a="a", b="b", winner="both_bad")]
    assert (win_matrix(bad, TEAMS) == win_matrix(tie, TEAMS)).all()
    votes: list[Record] = [UserVote(stage_id="s1", team_id="*", source="users",
                                    vote=Vote(voter_id=f"u{k}", a="a", b="b", winner=w))
                           for k, w in enumerate(["a", "a", "both_bad", "both_bad", "b"])]
    leaf = leaf_scores(ARENA, "s1", ("a", "b"), [None] * 2, votes, _plan(50))
    assert np.isfinite(leaf.points).all() and leaf.replicates is not None
    assert np.isfinite(leaf.replicates).all()
    assert leaf.points[0] == pytest.approx(20) and leaf.points[1] < 20
    p = fit_strengths(win_matrix([v.vote for v in votes if isinstance(v, UserVote)], ("a", "b")))
    assert p[0] > p[1]
