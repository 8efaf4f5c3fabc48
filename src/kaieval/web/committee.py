"""The expert committee: assignments with conflicts excluded, drafts, locked submissions,
and what the office sees (progress, trimmed means, agreement, outlier sheets).

A submitted sheet is an ordinary ``CommitteeSheet`` record, checked by the same
``kaieval.intake`` rules as ``kai records import`` and stored with ``replace=False``:
once it is in the store it cannot be changed from here (the office can retract it).
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kaieval.errors import KaiError, KaiErrors
from kaieval.intake import Intake, normal_name, team_organisations
from kaieval.records import MAX_TEXT, CommitteeSheet
from kaieval.spec.dossier import Dossier
from kaieval.spec.program import Component, ComponentKind, Stage
from kaieval.web.accounts import Account, Role, accounts
from kaieval.web.context import WebContext


class Locked(KaiError):
    """The sheet is already submitted: nothing can change it from the web app (HTTP 409)."""

    http_status = 409


@dataclass(frozen=True)
class Slot:
    """One sheet to write: an evaluator, a team, a committee component of a stage."""

    stage_id: str
    component_id: str
    team_id: str
    evaluator: str

    @property
    def key(self) -> str:
        return f"{self.stage_id}/{self.component_id}/{self.team_id}/{self.evaluator}"

    @property
    def sheet_key(self) -> str:
        """The natural key the submitted ``CommitteeSheet`` gets."""
        return f"sheet/{self.stage_id}/{self.component_id}/{self.team_id}/{self.evaluator}"


def conflicted(account: Account, dossier: Dossier) -> bool:
    """True when the evaluator's affiliation is the team or one of its consortium members."""
    return bool(account.affiliation) and \
        normal_name(account.affiliation) in team_organisations(dossier.team)


def committee_components(stage: Stage) -> list[Component]:
    """The stage's committee leaves, in document order."""
    return [c for c in stage.leaves() if c.kind is ComponentKind.COMMITTEE]


def committee_component(ctx: WebContext, stage_id: str, component_id: str,
                        ) -> Component | None:
    """The committee component ``component_id`` of stage ``stage_id``, or None."""
    stage = next((s for s in ctx.program.stages if s.id == stage_id), None)
    return None if stage is None else next(
        (c for c in committee_components(stage) if c.id == component_id), None)


def entrants(ctx: WebContext, stage_id: str) -> list[Dossier]:
    """Dossiers with a submission for the stage, by team id."""
    return sorted((d for d in ctx.dossiers if stage_id in d.submissions),
                  key=lambda d: d.team.id)


def blind_code(stage_id: str, team_id: str, team_ids: Sequence[str]) -> str:
    """A team's code in blind mode: letters by a hash order, stable within the stage."""
    order = sorted(team_ids, key=lambda t: hashlib.sha256(f"{stage_id}/{t}".encode()).digest())
    i = order.index(team_id)
    return f"Team {string.ascii_uppercase[i % 26]}{'' if i < 26 else i // 26}"


def assignments(ctx: WebContext, stage_id: str | None = None) -> list[Slot]:
    """Stored assignments (all stages, or one)."""
    prefix = "assignment/" + (f"{stage_id}/" if stage_id else "")
    out = []
    for key in ctx.store.objects(prefix):
        parts = key.split("/")
        if len(parts) == 5:
            out.append(Slot(*parts[1:]))
    return out


def check_slot(ctx: WebContext, account: Account, stage_id: str, component_id: str,
               team_id: str) -> Slot:
    """The slot if ``account`` is assigned to it and not conflicted, else a ``KaiError``.

    The conflict is re-checked here, not only at assignment time: an affiliation or a
    consortium that changed later still closes the sheet.
    """
    slot = Slot(stage_id, component_id, team_id, account.name)
    dossier = ctx.dossier(team_id)
    if dossier is None or committee_component(ctx, stage_id, component_id) is None \
            or ctx.store.get_object(f"assignment/{slot.key}") is None:
        raise KaiError("not assigned to you")
    if conflicted(account, dossier):
        raise KaiError("conflict of interest: you are affiliated with this team")
    return slot


def auto_assign(ctx: WebContext, stage_id: str, per_team: int, actor: str) -> int:
    """Assign each team ``per_team`` experts per committee component, least loaded first.

    Conflicted experts are never assigned; existing assignments are kept and counted.
    Deterministic (ties broken by name). Returns how many assignments were added.
    """
    stage = ctx.program.stage(stage_id)
    experts = [a for a in accounts(ctx.store) if a.role is Role.EXPERT and not a.disabled]
    existing = {(s.component_id, s.team_id, s.evaluator) for s in assignments(ctx, stage_id)}
    load: dict[str, int] = {a.name: 0 for a in experts}
    for _, _, ev in existing:
        load[ev] = load.get(ev, 0) + 1
    added: dict[str, dict[str, Any] | None] = {}
    for comp in committee_components(stage):
        for dossier in entrants(ctx, stage_id):
            have = {ev for c, t, ev in existing if c == comp.id and t == dossier.team.id}
            free = sorted((a for a in experts if a.name not in have
                           and not conflicted(a, dossier)),
                          key=lambda a: (load[a.name], a.name))
            for a in free[:max(per_team - len(have), 0)]:
                slot = Slot(stage_id, comp.id, dossier.team.id, a.name)
                added[f"assignment/{slot.key}"] = {"by": actor}
                load[a.name] += 1
    if added:
        ctx.store.put_objects(added, actor=actor)
    return len(added)


def set_assignment(ctx: WebContext, slot: Slot, present: bool, actor: str) -> None:
    """Add or remove one assignment; a conflicted or unknown evaluator is refused."""
    account = next((a for a in accounts(ctx.store) if a.name == slot.evaluator), None)
    dossier = ctx.dossier(slot.team_id)
    if account is None or account.role is not Role.EXPERT:
        raise KaiError(f"no expert account {slot.evaluator!r}")
    if dossier is None:
        raise KaiError(f"no team {slot.team_id!r}")
    if committee_component(ctx, slot.stage_id, slot.component_id) is None:
        raise KaiError(f"no committee component {slot.component_id!r} in stage "
                       f"{slot.stage_id!r}")
    if present and conflicted(account, dossier):
        raise KaiError(f"{slot.evaluator} is affiliated with team {slot.team_id}: conflict "
                       "of interest")
    ctx.store.put_objects({f"assignment/{slot.key}": {"by": actor} if present else None},
                          actor=actor)


def draft(ctx: WebContext, slot: Slot) -> dict[str, Any]:
    """The saved draft of a slot (``{"scores": {...}, "comment": ...}``), or an empty one."""
    return ctx.store.get_object(f"draft/{slot.key}") or {"scores": {}, "comment": ""}


def submitted(ctx: WebContext, slot: Slot) -> CommitteeSheet | None:
    """The slot's submitted sheet, if any (it is then locked)."""
    r = ctx.store.record(slot.sheet_key)
    return r if isinstance(r, CommitteeSheet) else None


def states(ctx: WebContext, slots: Sequence[Slot]) -> dict[str, str]:
    """``slot.key -> "submitted" | "in_draft" | "not_started"`` for many slots in two
    queries (a page of assignments asked once per slot before)."""
    done = ctx.store.stored_keys(s.sheet_key for s in slots)
    drafts = ctx.store.get_objects(f"draft/{s.key}" for s in slots if s.sheet_key not in done)
    return {s.key: "submitted" if s.sheet_key in done else
            "in_draft" if drafts.get(f"draft/{s.key}") else "not_started" for s in slots}


def parse_scores(comp: Component, raw: dict[str, str]) -> tuple[dict[str, float], list[str]]:
    """Scores from form text; problems as one line per item (empty text is not scored)."""
    scores: dict[str, float] = {}
    problems: list[str] = []
    for item in comp.rubric:
        text = raw.get(item.id, "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            problems.append(f"{item.id}: {text!r} is not a number")
            continue
        if not np.isfinite(value) or not 0 <= value <= item.max:
            problems.append(f"{item.id}: {text} is outside 0–{item.max:g}")
            continue
        scores[item.id] = value
    return scores, problems


def save_draft(ctx: WebContext, slot: Slot, scores: dict[str, float], comment: str,
               actor: str) -> None:
    """Keep unfinished work; refused once the sheet is submitted."""
    if len(comment) > MAX_TEXT:
        raise KaiError(f"comment: at most {MAX_TEXT} characters")
    if submitted(ctx, slot) is not None:
        raise Locked("already submitted: the sheet is locked")
    ctx.store.put_objects({f"draft/{slot.key}": {"scores": scores, "comment": comment}},
                          actor=actor)


def submit(ctx: WebContext, slot: Slot, account: Account, scores: dict[str, float],
           comment: str) -> CommitteeSheet:
    """Store the sheet as a committee record (checked, never replacing); drop the draft."""
    from kaieval.store import Superseding

    stage = ctx.program.stage(slot.stage_id)
    comp = stage.component(slot.component_id)
    missing = [it.id for it in comp.rubric if it.id not in scores]
    if missing:
        raise KaiError(f"score every item before submitting (missing: {', '.join(missing)})")
    sheet = CommitteeSheet(stage_id=slot.stage_id, team_id=slot.team_id, source="committee",
                           component_id=slot.component_id, evaluator_id=account.name,
                           affiliation=account.affiliation, scores=scores, comment=comment,
                           input_hashes={"program": ctx.program_hash},
                           settings={"via": "kai serve"})
    checked = Intake(ctx.program, ctx.dossiers).check([(f"sheet {slot.key}", sheet)])
    try:
        # the sheet and the end of its draft in one transaction (one write lock)
        ctx.store.put(checked.records, actor=account.name, replace=False,
                      objects={f"draft/{slot.key}": None})
    except Superseding:
        raise Locked("already submitted: the sheet is locked") from None
    return sheet


def errors_text(exc: KaiError) -> list[str]:
    """The one-line messages of a ``KaiError`` (several for ``KaiErrors``)."""
    return [str(e) for e in exc.errors] if isinstance(exc, KaiErrors) else [str(exc)]
