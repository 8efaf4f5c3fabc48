"""Who advances: the cut (or the top places) on points, then the repechage vote.

Both steps take the ranked rows (``stage.rank_teams``) and return new rows with
``decision`` and ``reason`` set; the rules are in docs/formulas.md (*Ranking and
the cut*, *Repechage*).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from kaieval.records import Record, RepechageVote
from kaieval.scoring.results import RepechageOutcome
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

    ``rows`` must be in rank order with ``eligible_rank`` set (``rank_teams``).
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
            reason = "; ".join(f"gate '{g.gate_id}' failed: {g.reason}"
                               for g in row.failed_gates())
            out.append(replace(row, decision="gated", reason=reason))
        elif row.eligible_rank <= places:
            out.append(replace(row, decision="advance",
                               reason=f"rank {row.rank}; within the {places} places that advance"))
        else:
            out.append(replace(row, decision="cut",
                               reason=f"rank {row.rank}; below the {places} places that advance"))
    return out, cut


def decide_repechage(stage: Stage, rows: Sequence[TeamRow], records: Sequence[Record],
                     applicants: Sequence[Entrant],
                     ) -> tuple[list[TeamRow], RepechageOutcome | None]:
    """Evaluators' votes bring back cut teams (and, if the stage allows, applicants).

    Candidates are the teams cut on points, in entrant order, then the applicants
    who are not entrants; the ``slots`` candidates with the most votes win if each
    has more than ``majority`` of the voting evaluators. A winning entrant's
    decision becomes ``repechage``; a winning applicant is listed in the outcome.
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
                   reason=f"cut on score (rank {r.rank}), then won the repechage with "
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
