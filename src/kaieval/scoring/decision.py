"""Who advances: the cut (or the top places) on points, then the repechage vote.

Both steps take the ranked rows (``stage.rank_teams``) and return new rows with
``decision`` and ``reason`` set; the rules are in docs/formulas.md (*Ranking and
the cut*, *Repechage*, *Decisions in words*).

Every reason states a team's standing with the same two ranks, so that a reason
can never contradict the places: the rank **on points** among all teams of the
stage (``TeamResult.rank``, gated teams included), and, when a gate removed any
team, the rank **among the teams that passed the gates**, which is the rank the
places are given by. For example "4th of 5 on points; 3rd among the 4 teams that
passed the gates; 3 places advance".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from kaieval.records import Record, RepechageVote
from kaieval.scoring.results import Decision, RepechageOutcome
from kaieval.scoring.rows import Entrant, TeamRow
from kaieval.spec.program import Stage


@dataclass(frozen=True)
class Cut:
    """The stage's rule applied to its teams."""

    rule: str
    """The rule in words, as the report quotes it."""
    places: int
    """Teams that advance on points."""
    ranked: int
    """Teams ranked on points (every entrant, gated or not)."""
    eligible: int
    """Teams that passed every gate: the only ones that can take a place."""


def decide_cut(stage: Stage, rows: Sequence[TeamRow]) -> tuple[list[TeamRow], Cut]:
    """Gated teams are out; of the others, in rank order, the first ``places`` advance.

    ``rows`` come from ``rank_teams`` (``rank`` and ``eligible_rank`` set); their
    order is kept.
    """
    eligible = sum(1 for r in rows if not r.gated)
    if stage.advance is not None:
        places = min(stage.advance, eligible)
        rule = (f"the top {stage.advance} teams that pass every gate advance"
                + (f" (of {stage.entrants} applicants on record)" if stage.entrants else ""))
    else:
        places = max(eligible - (stage.cut or 0), 0)
        rule = (f"the lowest-scoring {stage.cut} team(s) among those passing every gate are cut; "
                "a team failing a gate is out whatever its score")
    cut = Cut(rule=rule, places=places, ranked=len(rows), eligible=eligible)
    out = []
    for row in rows:
        if row.eligible_rank is None:
            failed = "; ".join(f"gate '{g.gate_id}' failed: {g.reason}"
                               for g in row.failed_gates())
            out.append(replace(row, decision="gated", reason=f"{standing(row, cut)}; {failed}"))
        else:
            decision: Decision = "advance" if row.eligible_rank <= places else "cut"
            out.append(replace(row, decision=decision, reason=standing(row, cut)))
    return out, cut


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def standing(row: TeamRow, cut: Cut) -> str:
    """A team's standing in words, the same way for every decision.

    "4th of 5 on points; 3rd among the 4 teams that passed the gates; 3 places
    advance". The second part is left out when no team was removed by a gate
    (the two ranks are then equal); a gated team gets only the first, since the
    places are not given to it.
    """
    parts = [f"{ordinal(row.rank)} of {cut.ranked} on points"]
    if row.eligible_rank is None:
        return parts[0]
    if cut.eligible == 1 < cut.ranked:
        parts.append("the only team that passed the gates")
    elif cut.eligible < cut.ranked:
        parts.append(f"{ordinal(row.eligible_rank)} among the {cut.eligible} teams "
                     "that passed the gates")
    parts.append("no place advances" if cut.places == 0
                 else "1 place advances" if cut.places == 1
                 else f"{cut.places} places advance")
    return "; ".join(parts)


def decide_repechage(stage: Stage, rows: Sequence[TeamRow], records: Sequence[Record],
                     applicants: Sequence[Entrant],
                     ) -> tuple[list[TeamRow], RepechageOutcome | None]:
    """Evaluators' votes bring back cut teams (and, if the stage allows, applicants).

    Candidates are the teams cut on points, in entrant order, then the applicants
    who are not entrants; the ``slots`` candidates with the most votes win if each
    has more than ``majority`` of the voting evaluators. A winning entrant's
    decision becomes ``repechage`` and its reason keeps its standing from
    ``decide_cut``; a winning applicant is listed in the outcome.
    """
    rp = stage.repechage
    if rp is None:
        return list(rows), None
    by_entry = sorted(rows, key=lambda r: r.index)
    entrant_ids = {r.team_id for r in by_entry}
    cands = [r.team_id for r in by_entry if r.decision == "cut"]
    if rp.candidates == "cut_and_applicants":
        cands += [a.team_id for a in applicants if a.team_id not in entrant_ids]
    names = {e.team_id: e.name for e in (*(r.entrant for r in by_entry), *applicants)}
    votes = [r for r in records if isinstance(r, RepechageVote)]
    counts = Counter(v.team_id for v in votes if v.team_id in cands)
    n_eval = len({v.evaluator_id for v in votes})
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    winners = tuple(c for c, n in ranked[:rp.slots] if n_eval and n / n_eval > rp.majority)
    out = [replace(r, decision="repechage",
                   reason=f"{r.reason}; cut on score, then won the repechage with "
                          f"{counts[r.team_id]} of {n_eval} votes")
           if r.team_id in winners else r for r in rows]
    if not votes:
        reason = "no repechage votes stored"
    elif winners:
        reason = ", ".join(f"{names.get(w, w)} won {counts[w]} of {n_eval} votes "
                           f"(> {rp.majority:.0%})" for w in winners)
    else:
        reason = f"no candidate won more than {rp.majority:.0%} of {n_eval} votes"
    outcome = RepechageOutcome(
        candidates=tuple(cands), candidate_names={c: names.get(c, c) for c in cands},
        votes=dict(sorted(counts.items())), evaluators=n_eval,
        majority=rp.majority, winners=winners, reason=reason,
        source=",".join(sorted({v.source.value for v in votes})) or "none")
    return out, outcome
