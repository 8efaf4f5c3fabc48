"""Releases against the licence registry: what is open, what the files say, what is inherited.

The dossier declares each release's licence; the registry
(``kaieval.audit.licence_registry``) says whether that licence is open in the Model
Openness Framework's sense and what duties it carries; the files the release
points at say which licence was actually shipped. A release counts as open
only when it is declared open, its licence is open, and -- when the dossier
names its files -- the files agree. Anything else is a flag, never a silent pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaieval.audit.measures import AuditContext, Figure, Flag
from kaieval.errors import KaiError


@dataclass(frozen=True)
class ReleaseCheck:
    """One declared release after checking its licence."""

    component: str
    declared: str
    found_id: str | None  # None: no files named; "unknown": files name no known licence
    licence_open: bool | None  # of the effective licence; None when it is unknown
    mismatch: str | None
    counts_open: bool
    summary: str


def check_releases(ctx: AuditContext) -> tuple[list[ReleaseCheck], list[Flag]]:
    """Check every release of the submission; return the checks and the flags they raise."""
    from kaieval.audit.licence_registry import check_declared, detect_licence, lookup

    checks: list[ReleaseCheck] = []
    flags: list[Flag] = []
    for i, rel in enumerate(ctx.submission.releases):
        where = ctx.where("releases", i, "licence")
        decl = lookup(rel.licence)
        if decl is None:
            flags.append(Flag("licence_unknown", f"release '{rel.component}': licence "
                              f"'{rel.licence}' is not in the licence registry", where))
        effective = decl
        found_id: str | None = None
        mismatch: str | None = None
        files_ok = True
        if rel.artifact:
            path = ctx.inside(rel.artifact)
            if path is None or not path.exists():
                files_ok = False  # file_flags reports the missing or escaping path
            else:
                try:
                    match = detect_licence(path)
                except KaiError as e:
                    files_ok = False
                    flags.append(Flag("malformed", f"release '{rel.component}': {e}", where))
                else:
                    found_id = match.id
                    mm = check_declared(rel.licence, match)
                    if mm is not None:
                        mismatch = f"{rel.component}: {mm.message}"
                        kind = "licence_unknown" if mm.kind == "unverified" else "licence_mismatch"
                        flags.append(Flag(kind, mismatch, where))  # type: ignore[arg-type]
                    for c in match.conflicts:
                        flags.append(Flag("licence_mismatch", f"release '{rel.component}': "
                                          f"its files disagree ({c})", where))
                    if match.known:
                        effective = lookup(match.id)
        lic_open = effective.is_open if effective is not None else None
        if rel.open and effective is not None and not effective.is_open:
            flags.append(Flag("not_open", f"release '{rel.component}' is declared open, but "
                              f"{effective.id} is not an open licence (MOF/MOT lists)", where))
        counts = bool(rel.open and lic_open and files_ok)
        eff = effective.id if effective is not None else "unknown licence"
        state = ("files not checked" if found_id is None and not rel.artifact
                 else "files missing" if not files_ok else f"files say {found_id}")
        checks.append(ReleaseCheck(
            component=rel.component, declared=rel.licence, found_id=found_id,
            licence_open=lic_open, mismatch=mismatch, counts_open=counts,
            summary=f"{eff} ({'open' if lic_open else 'not open'}; {state})"))
    return checks, flags


def inherited_figure(ctx: AuditContext, checks: list[ReleaseCheck]) -> Figure:
    """Duties inherited from declared base models' licences (registry, by licence or family).

    A base model whose licence cannot be resolved counts as one duty ("licence
    unknown"): an unresolved upstream is a risk, not an absence of one.
    """
    from kaieval.audit.licence_registry import inherited_obligations

    del checks  # the releases' own licences are the team's choice, not inherited
    bases = ctx.submission.dependencies.base_models
    where = ctx.where("dependencies", "base_models")
    if not bases:
        return Figure("sovereignty.inherited_restrictions", 0.0, where, "no base model declared")
    obs = inherited_obligations(list(bases))
    n = sum(len(o.duties) for o in obs)
    detail = "; ".join(f"{o.upstream} -> {o.licence_id}: {', '.join(o.duties) or 'no duties'}"
                       for o in obs)
    return Figure("sovereignty.inherited_restrictions", float(n), where, detail)
