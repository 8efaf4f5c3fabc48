"""User evaluation, both ways a programme's ``users`` component can ask for it.

*Rating* (``mode: rating``, what stage 1 did): a user scores each entrant on the
component's criteria, 1 (매우 미흡) to 5 (매우 우수), seeing names when the spec says
``show_names`` and blind codes otherwise. A submitted rating is a ``UserRating``
record, checked by ``kaieval.intake`` and stored with ``replace=False``: locked.

*Blind pairwise arena* (``mode: arena``): a user is given a battle -- one prompt of the
stage's prompt set and the cached responses of two randomly drawn teams, left and right
in random order -- and votes left, right, tie or both bad. The battle is an object
``battle/<stage>/<user>/<id>`` recording the prompt and which team was shown on which
side; the vote becomes a ``UserVote`` with ``a`` = the left team (so the first-shown
side is always ``a``) through the same intake. One vote per battle (a second is refused),
one open battle per user at a time (reloading cannot re-roll a battle), at most the
stage's cap of votes per user (``setting/<stage>/arena_cap``, default ``DEFAULT_CAP``).
Responses that name their model or team are never drawn (``arena.responses.withheld``).

The office sees Bradley–Terry ratings with bootstrap intervals, the points the stage
engine gives (``scoring.leaf_points.user_scores``, the same code), and the share of
decided votes won by the left side: a position-bias check (about 50 % when unbiased;
FastChat's shipped pairwise judgments gave the first-shown answer 52.6 %).
"""

from __future__ import annotations

import copy
import datetime as dt
import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np

from kaieval.arena import responses as rs
from kaieval.arena.bradley_terry import fit_strengths, win_matrix
from kaieval.errors import KaiError
from kaieval.intake import Intake
from kaieval.records import UserRating, UserVote, Vote
from kaieval.scoring.leaf_points import BootstrapPlan, user_scores
from kaieval.spec.program import RATING_SCALE, Component, ComponentKind, Stage
from kaieval.web.accounts import Account
from kaieval.web.committee import blind_code, entrants
from kaieval.web.context import WebContext

DEFAULT_CAP = 200
CHOICES = {"left": "a", "right": "b", "tie": "tie", "both_bad": "both_bad"}
BOOTSTRAP = 200
_RANDOM = secrets.SystemRandom()


class Conflict(KaiError):
    """Already done (a second vote, a second rating): HTTP 409."""

    http_status = 409


class OverCap(KaiError):
    """The user reached the stage's vote cap: HTTP 429."""

    http_status = 429


def users_components(stage: Stage, mode: str) -> list[Component]:
    return [c for c in stage.leaves() if c.kind is ComponentKind.USERS and c.mode == mode]


def rating_component(ctx: WebContext, stage_id: str, component_id: str) -> Component:
    """The rating-mode users component, else a ``KaiError`` (404 for the routes)."""
    stage = next((s for s in ctx.program.stages if s.id == stage_id), None)
    comp = next((c for c in users_components(stage, "rating") if c.id == component_id),
                None) if stage else None
    if comp is None:
        raise KaiError(f"no rating component {stage_id}/{component_id}")
    return comp


def arena_stage(ctx: WebContext, stage_id: str) -> Stage:
    stage = next((s for s in ctx.program.stages if s.id == stage_id), None)
    if stage is None or not users_components(stage, "arena"):
        raise KaiError(f"stage {stage_id!r} has no arena")
    return stage


# -- rating ---------------------------------------------------------------------------------

def _label(ctx: WebContext, comp: Component, stage_id: str, team_id: str) -> str:
    if comp.show_names:
        d = ctx.dossier(team_id)
        return d.team.name if d else team_id
    return blind_code(stage_id, team_id, [d.team.id for d in entrants(ctx, stage_id)])


def rating_forms(ctx: WebContext, me: Account) -> list[dict[str, Any]]:
    """Each rating component of each stage with its teams and the user's own ratings."""
    mine = {r.natural_key(): r for r in ctx.store.records(kind="rating")
            if isinstance(r, UserRating) and r.rater_id == me.name}
    out = []
    for stage in ctx.program.stages:
        for comp in users_components(stage, "rating"):
            teams = []
            for d in entrants(ctx, stage.id):
                key = f"rating/{stage.id}/{comp.id}/{d.team.id}/{me.name}"
                done = mine.get(key)
                teams.append({"team_id": d.team.id,
                              "label": _label(ctx, comp, stage.id, d.team.id),
                              "scores": dict(done.scores) if done else None})
            teams.sort(key=lambda t: str(t["label"]))
            out.append({"stage_id": stage.id, "component_id": comp.id,
                        "title": comp.title or comp.id, "show_names": comp.show_names,
                        "criteria": [{"id": c.id, "title": c.title} for c in comp.criteria],
                        "scale": list(RATING_SCALE), "teams": teams})
    return out


def parse_rating(comp: Component, raw: dict[str, Any]) -> dict[str, float]:
    """Form or JSON values -> scores; a ``KaiError`` listing what is wrong."""
    low, high = RATING_SCALE
    scores: dict[str, float] = {}
    problems = [f"{k}: unknown criterion" for k in sorted(set(raw) - {c.id for c in comp.criteria})]
    for c in comp.criteria:
        value = raw.get(c.id)
        try:
            number = int(str(value).strip()) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            problems.append(f"{c.id}: choose a whole number {low}–{high}")
        else:
            scores[c.id] = float(number)
    if problems:
        raise KaiError("; ".join(problems))
    return scores


def submit_rating(ctx: WebContext, me: Account, stage_id: str, component_id: str,
                  team_id: str, scores: dict[str, float]) -> UserRating:
    """Store one rating (checked; never replacing: a second one is a ``Conflict``)."""
    from kaieval.store import Superseding

    rating = UserRating(stage_id=stage_id, team_id=team_id, source="users",
                        component_id=component_id, rater_id=me.name, scores=scores,
                        input_hashes={"program": ctx.program_hash},
                        settings={"via": "kai serve"})
    checked = Intake(ctx.program, ctx.dossiers).check(
        [(f"rating {stage_id}/{component_id}/{team_id}", rating)])
    try:
        ctx.store.put(checked.records, actor=me.name, replace=False)
    except Superseding:
        raise Conflict("already rated: a rating is locked once submitted") from None
    return rating


# -- arena ----------------------------------------------------------------------------------

def cap(ctx: WebContext, stage_id: str) -> int:
    data = ctx.store.get_object(f"setting/{stage_id}/arena_cap") or {}
    return int(data.get("cap", DEFAULT_CAP))


def set_cap(ctx: WebContext, stage_id: str, value: int, actor: str) -> None:
    if not 1 <= value <= 100_000:
        raise KaiError("a vote cap is 1-100000")
    ctx.store.put_objects({f"setting/{stage_id}/arena_cap": {"cap": value}}, actor=actor)


def _battles(ctx: WebContext, stage_id: str, user: str) -> dict[str, dict[str, Any]]:
    prefix = f"battle/{stage_id}/{user}/"
    return {k[len(prefix):]: v for k, v in ctx.store.objects(prefix).items()}


def _public(ctx: WebContext, stage_id: str, battle_id: str, b: dict[str, Any],
            prompts: Sequence[rs.Prompt] | None = None,
            resp: dict[tuple[str, str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """What the voter sees: the prompt and two anonymous responses, never a team.

    ``prompts``/``resp``: the stage's, when the caller has them; else only the prompt set
    and the battle's two responses are read (one query)."""
    pid = b["prompt_id"]
    if prompts is None or resp is None:
        keys = [f"arena/{stage_id}/prompts", *(f"response/{stage_id}/{pid}/{b[side]}"
                                               for side in ("left", "right"))]
        found = ctx.store.get_objects(keys)
        prompts = [rs.Prompt(str(p["id"]), str(p["prompt"]))
                   for p in found.get(keys[0], {}).get("prompts", [])]
        resp = {(pid, b[side]): found.get(key, {})
                for side, key in zip(("left", "right"), keys[1:], strict=True)}
    return {"battle_id": battle_id, "stage_id": stage_id,
            "prompt": next((p.prompt for p in prompts if p.id == pid), ""),
            "left": str(resp.get((pid, b["left"]), {}).get("text", "")),
            "right": str(resp.get((pid, b["right"]), {}).get("text", "")),
            "voted": b.get("winner")}


def progress(ctx: WebContext, stage_id: str, user: str) -> dict[str, int]:
    done = sum(1 for b in _battles(ctx, stage_id, user).values() if b.get("winner"))
    return {"votes": done, "cap": cap(ctx, stage_id)}


def _material(ctx: WebContext, stage_id: str) -> tuple[
        list[rs.Prompt], dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str], list[str]]]:
    """The stage's prompts, responses and withheld responses, read and checked once while
    none of them (nor the dossiers, whose names the check looks for) changes."""
    stamp = ctx.store.objects_stamp(f"response/{stage_id}/", f"arena/{stage_id}/prompts")

    def build() -> tuple[list[rs.Prompt], dict[tuple[str, str], dict[str, Any]],
                         dict[tuple[str, str], list[str]]]:
        have = rs.responses(ctx.store, stage_id)
        return (rs.stored_prompts(ctx.store, stage_id), have,
                rs.withheld(ctx.store, stage_id, ctx.dossiers, have))

    return ctx.memo(f"arena-material/{stage_id}", (stamp, tuple(ctx.dossiers)), build)


def next_battle(ctx: WebContext, me: Account, stage_id: str) -> dict[str, Any] | None:
    """The user's open battle, else a new one; None when no battle can be drawn.

    Drawn uniformly over (prompt, pair of teams) with both responses present and neither
    withheld, preferring pairs this user has not yet judged on that prompt; sides random.
    """
    arena_stage(ctx, stage_id)
    mine = _battles(ctx, stage_id, me.name)
    for bid, b in sorted(mine.items(), key=lambda kv: str(kv[1].get("created_at"))):
        if not b.get("winner"):
            return _public(ctx, stage_id, bid, b)
    limit = cap(ctx, stage_id)
    if sum(1 for b in mine.values() if b.get("winner")) >= limit:
        raise OverCap(f"you have reached this stage's cap of {limit} votes")
    teams = [d.team.id for d in entrants(ctx, stage_id)]
    prompts, have, hidden = _material(ctx, stage_id)
    seen = {(b["prompt_id"], frozenset((b["left"], b["right"]))) for b in mine.values()}
    fresh: list[tuple[str, str, str]] = []
    again: list[tuple[str, str, str]] = []
    for p in prompts:
        ok = [t for t in teams if (p.id, t) in have and (p.id, t) not in hidden]
        for i, x in enumerate(ok):
            for y in ok[i + 1:]:
                (again if (p.id, frozenset((x, y))) in seen else fresh).append((p.id, x, y))
    pool = fresh or again
    if not pool:
        return None
    pid, x, y = _RANDOM.choice(pool)
    left, right = (x, y) if _RANDOM.random() < 0.5 else (y, x)
    bid = secrets.token_hex(8)
    b = {"prompt_id": pid, "left": left, "right": right, "winner": None,
         "created_at": _now()}
    ctx.store.put_objects({f"battle/{stage_id}/{me.name}/{bid}": b}, actor=me.name,
                          create_only=[f"battle/{stage_id}/{me.name}/{bid}"])
    return _public(ctx, stage_id, bid, b, prompts, have)


def vote(ctx: WebContext, me: Account, stage_id: str, battle_id: str, choice: str,
         ) -> UserVote:
    """Record the user's verdict on their battle as a checked ``UserVote`` (a = left)."""
    from kaieval.store import Superseding

    arena_stage(ctx, stage_id)
    if choice not in CHOICES:
        raise KaiError(f"choice: one of {', '.join(CHOICES)}")
    key = f"battle/{stage_id}/{me.name}/{battle_id}"
    prompts_key = f"arena/{stage_id}/prompts"
    found = ctx.store.get_objects([key, prompts_key]) if "/" not in battle_id else {}
    b = found.get(key)
    if b is None:
        raise LookupError("no such battle of yours")
    if b.get("winner"):
        raise Conflict("already voted: one vote per battle")
    record = UserVote(stage_id=stage_id, team_id="*", source="users",
                      input_hashes={"program": ctx.program_hash,
                                    "prompts": str(found.get(prompts_key, {}).get("sha256", ""))},
                      settings={"via": "kai serve", "prompt_id": b["prompt_id"],
                                "left": b["left"], "right": b["right"]},
                      vote=Vote(voter_id=me.name, a=b["left"], b=b["right"],
                                winner=CHOICES[choice],  # type: ignore[arg-type]
                                battle_id=battle_id))
    checked = Intake(ctx.program, ctx.dossiers).check([(f"battle {battle_id}", record)])
    try:  # the vote and its closed battle in one transaction: never one without the other
        ctx.store.put(checked.records, actor=me.name, replace=False,
                      objects={key: {**b, "winner": choice, "voted_at": _now()}})
    except Superseding:
        raise Conflict("already voted: one vote per battle") from None
    return record


def arena_overview(ctx: WebContext, stage_id: str, replicates: int = BOOTSTRAP,
                   seed: int = 0) -> dict[str, Any]:
    """Ratings with 95 % bootstrap intervals, points, position bias, counts, withheld.

    Refitting Bradley–Terry ``replicates`` times is the costly part: the overview is kept
    while the audit log's head stays the same (any vote, retraction, cap or dossier
    change is a write, which moves it; so does any other write, which merely refits)."""
    arena_stage(ctx, stage_id)
    built = ctx.memo(f"arena/{stage_id}/{replicates}/{seed}", ctx.store.audit_head(),
                     lambda: _overview(ctx, stage_id, replicates, seed))
    return copy.deepcopy(built)


def _overview(ctx: WebContext, stage_id: str, replicates: int, seed: int) -> dict[str, Any]:
    stage = arena_stage(ctx, stage_id)
    comp = users_components(stage, "arena")[0]
    teams = [d.team.id for d in entrants(ctx, stage_id)]
    stored = [r for r in ctx.store.records(stage_id=stage_id, kind="vote")
              if isinstance(r, UserVote)]
    votes = [r.vote for r in stored]
    out: dict[str, Any] = {"stage_id": stage_id, "component_id": comp.id,
                           "votes": len(votes), "voters": len({v.voter_id for v in votes}),
                           "cap": cap(ctx, stage_id),
                           "position_bias": position_bias(votes),
                           "withheld": [{"prompt_id": p, "team_id": t, "named": w}
                                        for (p, t), w in sorted(rs.withheld(
                                            ctx.store, stage_id, ctx.dossiers).items())],
                           "responses": len(rs.responses(ctx.store, stage_id)),
                           "prompts": len(rs.stored_prompts(ctx.store, stage_id)),
                           "teams": []}
    if not votes:
        out["teams"] = [{"team_id": t, "rating": None, "interval": None, "points": None,
                         "battles": 0, "both_bad": 0} for t in teams]
        return out
    plan = BootstrapPlan(replicates=replicates, rng=np.random.default_rng(seed),
                         evaluator_weights=None, evaluators=())
    leaf = user_scores(comp, stage_id, teams, stored, plan)
    ratings, intervals = bt_ratings(votes, teams, replicates, seed)
    for i, tid in enumerate(teams):
        mine = [v for v in votes if tid in (v.a, v.b)]
        pts = float(leaf.points[i])
        lo, hi = (np.nanpercentile(leaf.replicates[:, i], [2.5, 97.5])
                  if leaf.replicates is not None and mine else (np.nan, np.nan))
        out["teams"].append({
            "team_id": tid, "battles": len(mine),
            "both_bad": sum(1 for v in mine if v.winner == "both_bad"),
            "rating": None if not mine else round(float(ratings[i]), 1),
            "interval": None if not mine else [round(float(x), 1) for x in intervals[i]],
            "points": None if np.isnan(pts) else round(pts, 3),
            "points_interval": None if np.isnan(lo) else [round(float(lo), 3),
                                                           round(float(hi), 3)]})
    ranked = sorted(out["teams"], key=lambda t: -(t["rating"] or -1e9))
    for t in ranked:  # rank = 1 + teams whose lower bound is above this one's upper bound
        t["rank"] = None if t["interval"] is None else 1 + sum(
            1 for o in ranked if o["interval"] and o["interval"][0] > t["interval"][1])
    return out


def bt_ratings(votes: Sequence[Vote], teams: Sequence[str], replicates: int,
               seed: int = 0) -> tuple[np.ndarray[Any, Any], list[tuple[float, float]]]:
    """Bradley–Terry ratings on the Elo-like scale (400 log10 units, mean 1000) and their
    95 % bootstrap intervals over votes (the arena leaderboard's presentation)."""
    w = win_matrix(votes, teams)
    rating = _scale(fit_strengths(w))
    rng = np.random.default_rng(seed)
    n = len(votes)
    reps = np.zeros((replicates, len(teams)))
    for r in range(replicates):
        pick = rng.integers(0, n, size=n)
        reps[r] = _scale(fit_strengths(win_matrix([votes[k] for k in pick], teams)))
    lo, hi = np.percentile(reps, [2.5, 97.5], axis=0)
    return rating, [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]


def _scale(p: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    logs = 400 * np.log10(p)
    return np.asarray(1000 + logs - logs.mean())


def position_bias(votes: Sequence[Vote]) -> dict[str, Any]:
    """The left (first-shown, ``a``) side's share of decided votes, with a 95 % interval."""
    decided = [v for v in votes if v.winner in ("a", "b")]
    n = len(decided)
    if not n:
        return {"decided": 0, "left_win_rate": None, "interval": None,
                "ties": len(votes), "both_bad": sum(v.winner == "both_bad" for v in votes)}
    k = sum(v.winner == "a" for v in decided)
    rate = k / n
    z = 1.96  # Wilson score interval
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"decided": n, "left_wins": k, "left_win_rate": round(rate, 4),
            "interval": [round(float(centre - half), 4), round(float(centre + half), 4)],
            "ties": sum(v.winner == "tie" for v in votes),
            "both_bad": sum(v.winner == "both_bad" for v in votes)}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
