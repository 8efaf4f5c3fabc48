"""Simulated committee sheets, user votes and repechage votes for the demo.

These stand in for people, so they are generated from a fixed seed and every
record is labelled ``simulated``. They are not written to produce a given
outcome: each simulated evaluator perceives a *signal* per rubric item computed
from the team's dossier (declared facts) and from what kaieval measured on the
team's stand-in model (held-out loss, independence verdict), then adds their
own leniency and noise. Change a stand-in's recipe or a dossier fact and the
sheets, the votes and therefore the cut change with it. The signal for each
rubric item is documented in docs/demo.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kaieval.records import (
    ArenaVotes,
    CommitteeSheet,
    IndependenceVerdict,
    RepechageVote,
    UserVote,
    Vote,
)
from kaieval.spec.dossier import Dossier, Ownership, Submission
from kaieval.spec.program import ComponentKind, Source, Stage

EVALUATOR_AFFILIATIONS = (
    "KAIST", "Seoul National University", "Korea University", "Yonsei University", "ETRI",
    "KISTI", "POSTECH", "Sungkyunkwan University", "NIA", "TTA", "UNIST", "Hanyang University",
)


@dataclass(frozen=True)
class TeamFacts:
    """What a simulated evaluator sees of one team."""

    team_id: str
    dossier: Dossier
    submission: Submission
    quality: float | None  # 0..1 from the measured held-out loss, relative to the field
    verdict: IndependenceVerdict | None


def quality_from_loss(bits_per_char: Mapping[str, float]) -> dict[str, float]:
    """Map measured held-out bits per character to 0..1 (0.5 = field mean, one s.d. = 0.2)."""
    if not bits_per_char:
        return {}
    v = np.array(list(bits_per_char.values()))
    sd = float(v.std()) or 1.0
    return {k: float(np.clip(0.5 + 0.2 * (v.mean() - x) / sd, 0.0, 1.0))
            for k, x in bits_per_char.items()}


def _acc(sub: Submission) -> tuple[float, float, float]:
    accs = sub.compute.accelerators
    n = sum(a.count for a in accs) or 1
    own = sum(a.count for a in accs if a.ownership is not Ownership.RENTED) / n
    owned = sum(a.count for a in accs if a.ownership is Ownership.OWNED) / n
    domestic = sum(a.count for a in accs if a.domestic) / n
    return own, owned, domestic


def _korean_data(sub: Submission) -> float:
    ds = [d for d in sub.data.datasets if d.tokens]
    total = sum(d.tokens or 0 for d in ds)
    if not total:
        return 0.0
    kr = sum((d.tokens or 0) * d.languages.get("ko", 0.0) for d in ds if d.origin == "KR")
    public = any(d.public and d.origin == "KR" for d in ds)
    return min(1.0, 0.3 + 1.2 * kr / total + (0.1 if public else 0.0))


def _foreign(sub: Submission) -> int:
    dep = sub.dependencies
    return len(dep.base_models) + len(dep.foreign_apis) + len(dep.partnerships)


def _open_share(sub: Submission) -> float:
    if sub.ecosystem.open_release_pledge is not None:
        return sub.ecosystem.open_release_pledge
    rel = sub.releases
    return sum(r.open for r in rel) / len(rel) if rel else 0.0


def _verdict_signal(f: TeamFacts) -> float:
    if f.verdict is None:
        return 0.6
    return {"no_evidence": 0.9, "inconclusive": 0.6, "partial": 0.35, "derived": 0.1}[
        f.verdict.verdict]


def _q(f: TeamFacts) -> float:
    return 0.5 if f.quality is None else f.quality


SIGNALS: dict[str, Callable[[TeamFacts], float]] = {
    "from_scratch_plan": lambda f: max(0.0, 0.95 - 0.35 * len(f.submission.dependencies.base_models)
                                       - 0.15 * len(f.submission.dependencies.foreign_apis)
                                       - 0.1 * len(f.submission.dependencies.partnerships)),
    "track_record": _q,
    "compute": lambda f: 0.2 + 0.5 * _acc(f.submission)[0] + 0.3 * _acc(f.submission)[2] * 3,
    "korean_data": lambda f: _korean_data(f.submission),
    "foreign_dependence": lambda f: max(0.0, 1.0 - 0.22 * _foreign(f.submission)),
    "domestic_stack": lambda f: 0.3 + 0.4 * _acc(f.submission)[1]
    + min(0.3, 3 * _acc(f.submission)[2]),
    "public_value": lambda f: min(1.0, 0.4 + 0.25 * len(f.submission.ecosystem.public_pilots)),
    "consortium": lambda f: min(1.0, math.log1p(
        f.dossier.team.consortium_size or len(f.dossier.team.consortium)) / math.log(30)),
    "open_release": lambda f: min(1.0, 0.2 + _open_share(f.submission)),
    "diffusion": lambda f: min(1.0, 0.15 * (len(f.submission.ecosystem.apis)
                                            + 2 * len(f.submission.ecosystem.public_pilots)
                                            + 0.5 * len(f.submission.ecosystem.partners))),
    "report_quality": _q,
    "training_evidence": lambda f: 0.5 * _verdict_signal(f) + 0.5 * _q(f),
    "data_sovereignty": lambda f: _korean_data(f.submission),
    "openness_plan": lambda f: min(1.0, 0.2 + _open_share(f.submission)),
    "ecosystem_result": lambda f: min(1.0, 0.1 * len(f.submission.ecosystem.partners)
                                      + 0.2 * len(f.submission.ecosystem.public_pilots)),
}


def signal(item_id: str, facts: TeamFacts) -> float:
    """An evaluator's noiseless perception (0..1) of a team on a rubric item."""
    fn = SIGNALS.get(item_id, _q)
    return float(np.clip(fn(facts), 0.0, 1.0))


def simulate_sheets(stage: Stage, facts: Sequence[TeamFacts], *, evaluators: int, seed: int,
                    ) -> list[CommitteeSheet]:
    """One sheet per evaluator, team and committee component; conflicts of interest marked
    when the evaluator's (simulated) affiliation is a member of the team's consortium."""
    rng = np.random.default_rng([seed, 1])
    names = [f"expert-{k + 1:02d}" for k in range(evaluators)]
    affil = rng.choice(EVALUATOR_AFFILIATIONS, size=evaluators)
    leniency = rng.normal(0.0, 0.05, size=evaluators)
    out: list[CommitteeSheet] = []
    for comp in stage.leaves():
        if comp.kind is not ComponentKind.COMMITTEE:
            continue
        for f in facts:
            members = {m.name for m in f.dossier.team.consortium}
            for k, ev in enumerate(names):
                scores = {}
                for it in comp.rubric:
                    s = signal(it.id, f) + leniency[k] + rng.normal(0.0, 0.08)
                    scores[it.id] = float(np.round(np.clip(s, 0, 1) * it.max * 2) / 2)
                out.append(CommitteeSheet(
                    stage_id=stage.id, team_id=f.team_id, source=Source.SIMULATED,
                    component_id=comp.id, evaluator_id=ev, affiliation=str(affil[k]),
                    scores=scores, conflict_of_interest=str(affil[k]) in members,
                    comment=f"simulated evaluator affiliated with {affil[k]}",
                    settings={"seed": seed, "evaluators": evaluators}))
    return out


def simulate_votes(stage: Stage, facts: Sequence[TeamFacts], *, users: int, battles: int,
                   seed: int) -> list[UserVote]:
    """Each simulated user judges ``battles`` random pairs; P(a wins) rises with quality."""
    rng = np.random.default_rng([seed, 2])
    ids = [f.team_id for f in facts]
    q = {f.team_id: _q(f) for f in facts}
    votes = []
    for u in range(users):
        for n in range(battles):
            a, b = rng.choice(len(ids), size=2, replace=False)
            ta, tb = ids[a], ids[b]
            if rng.random() < 0.08:
                winner = "tie"
            else:
                pa = 1.0 / (1.0 + math.exp(-4.0 * (q[ta] - q[tb])))
                winner = "a" if rng.random() < pa else "b"
            votes.append(Vote(voter_id=f"user-{u + 1:02d}", a=ta, b=tb, winner=winner,
                              battle_id=f"battle-{u + 1:02d}-{n + 1:03d}"))
    return ArenaVotes(stage_id=stage.id, team_id="*", source=Source.SIMULATED, votes=tuple(votes),
                      settings={"seed": seed, "users": users, "battles_per_user": battles}
                      ).split()


def simulate_repechage(stage: Stage, candidates: Sequence[TeamFacts], *, evaluators: int,
                       seed: int, disallow: Sequence[str] = ("derived", "partial"),
                       ) -> list[RepechageVote]:
    """Each evaluator votes for the candidate they perceive as strongest among those whose
    measured independence verdict is acceptable."""
    rng = np.random.default_rng([seed, 3])
    ok = [f for f in candidates if f.verdict is None or f.verdict.verdict not in disallow]
    if not ok:
        return []
    out = []
    for k in range(evaluators):
        perceived = [_q(f) + rng.normal(0.0, 0.12) for f in ok]
        choice = ok[int(np.argmax(perceived))]
        out.append(RepechageVote(stage_id=stage.id, team_id=choice.team_id,
                                 source=Source.SIMULATED, evaluator_id=f"expert-{k + 1:02d}",
                                 settings={"seed": seed}))
    return out
