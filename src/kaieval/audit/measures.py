"""The names of the figures an audit measures: the vocabulary of the rubric rule language.

Kept as plain data with no imports from the rest of kaieval so that the
programme spec can validate ``rule: {measure: ...}`` against it (an unknown
measure name is a ``file:line`` error when the programme is loaded, not a
silent zero when a stage is scored), and so that the audit engine and the
spec cannot drift apart: a test checks that the engine produces exactly these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from kaieval.records import IndependenceVerdict
    from kaieval.spec.dossier import Submission
    from kaieval.spec.load import LoadedDossier

MeasureType = Literal["number", "share", "count", "bool"]

# name -> (type, what it is). Shares are 0..1; counts are whole numbers >= 0.
MEASURES: dict[str, tuple[MeasureType, str]] = {
    # compute independence
    "sovereignty.accelerators": ("count", "accelerators declared in all"),
    "sovereignty.owned_share": ("share", "share of accelerators the consortium owns"),
    "sovereignty.government_share": ("share", "share of accelerators allocated by government"),
    "sovereignty.rented_share": ("share", "share of accelerators rented"),
    "sovereignty.controlled_share": ("share", "share owned or government-allocated (not rented)"),
    "sovereignty.domestic_accelerator_share": ("share", "share of accelerators made domestically"),
    # data sovereignty
    "sovereignty.korean_origin_share": ("share", "token share of datasets of Korean origin"),
    "sovereignty.disclosed_share": ("share", "token share of datasets with a disclosed origin"),
    "sovereignty.licensed_share": ("share", "token share of datasets with a stated licence"),
    "sovereignty.korean_language_share": ("share", "Korean share of training tokens"),
    # dependencies
    "sovereignty.base_models": ("count", "declared base models"),
    "sovereignty.foreign_apis": ("count", "declared foreign APIs"),
    "sovereignty.foreign_partnerships": ("count", "declared partnerships outside Korea"),
    "sovereignty.foreign_dependencies": ("count", "base models + foreign APIs + partnerships"),
    "sovereignty.inherited_restrictions": (
        "count", "restrictive terms inherited from upstream model licences"),
    "sovereignty.independent": ("bool", "provenance verdict: no evidence of derivation"),
    "sovereignty.servable_without_foreign_api": ("bool", "can be served with no foreign API"),
    # ecosystem
    "ecosystem.consortium_members": ("count", "consortium organisations (declared size)"),
    "ecosystem.domestic_partners": ("count", "Korean consortium members besides the lead"),
    "ecosystem.partner_types": ("count", "distinct organisation types in the consortium"),
    "ecosystem.startups_smes": ("count", "startups and SMEs in the consortium"),
    "ecosystem.academia": ("count", "universities and research institutes in the consortium"),
    "ecosystem.public_pilots": ("count", "public-sector pilot projects"),
    "ecosystem.apis": ("count", "APIs and toolkits offered"),
    "ecosystem.releases": ("count", "released components declared"),
    "ecosystem.open_releases": ("count", "released components under an open licence"),
    "ecosystem.open_release_share": ("share", "share of released components that are open"),
    "ecosystem.open_release_pledge": ("share", "share of outputs pledged open (declared)"),
    "ecosystem.mof_level": (
        "count", "Model Openness Framework class reached: 0 none, 1 III, 2 II, 3 I"),
    "ecosystem.mof_class3_progress": ("share", "completeness of MOF Class III (Open Model)"),
    "ecosystem.downloads": ("count", "downloads of released models"),
    "ecosystem.derivatives": ("count", "models built on the released models (Hub model tree)"),
    "ecosystem.licence_mismatches": (
        "count", "releases whose files carry another licence than declared"),
    # tokenizer
    "tokenizer.chars_per_token": ("number", "Korean characters per token"),
    "tokenizer.tokens_per_eojeol": ("number", "tokens per Korean word (eojeol)"),
    "tokenizer.efficiency_vs_reference": (
        "number", "chars/token relative to the reference tokenizer (1 = same)"),
}


def measure_type(name: str) -> MeasureType | None:
    """The type of a measure, or None when the name is unknown."""
    entry = MEASURES.get(name)
    return entry[0] if entry else None


FlagKind = Literal["missing_file", "licence_mismatch", "licence_unknown", "contradiction",
                   "malformed", "not_open", "unreachable"]


@dataclass(frozen=True)
class Figure:
    """One measured or declared figure with where it came from.

    ``value`` None means *not measured* (the input it needs is missing); the
    rubric then awards nothing and records nothing for items that use it,
    instead of a misleading zero. ``where`` is ``file:line (field)`` or a record.
    """

    measure: str
    value: float | bool | None
    where: str
    detail: str = ""
    source: Literal["declared", "measured"] = "declared"

    def shown(self) -> str:
        """The value as a reader would write it."""
        v = self.value
        if v is None:
            return "not measured"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if measure_type(self.measure) == "share":
            return f"{v:.1%}"
        if measure_type(self.measure) == "count":
            return f"{v:g}"
        return f"{v:.3f}"


@dataclass(frozen=True)
class Flag:
    """A problem a reader must see: a missing file, a licence mismatch, a contradiction."""

    kind: FlagKind
    message: str
    where: str


@dataclass(frozen=True)
class AuditContext:
    """What every audit part reads: one team's submission for one stage, and what was
    measured about it elsewhere (the provenance verdict, a reference tokenizer)."""

    loaded: LoadedDossier
    stage_id: str
    verdict: IndependenceVerdict | None = None
    reference_tokenizer: Path | None = None
    online: bool = False
    hub_endpoint: str | None = None

    @property
    def submission(self) -> Submission:
        return self.loaded.dossier.submissions[self.stage_id]

    @property
    def team_id(self) -> str:
        return self.loaded.dossier.team.id

    def inside(self, rel: str) -> Path | None:
        """``rel`` resolved against the dossier's folder, or None when it leaves the folder
        (by '..', an absolute path or a symbolic link): artifacts are untrusted and the
        audit reads nothing outside the folder (``file_flags`` reports such a path)."""
        root = self.loaded.folder.resolve()
        if Path(rel).is_absolute() or rel.startswith("~"):
            return None
        target = (root / rel).resolve()
        return target if target.is_relative_to(root) else None

    def where(self, *field: str | int, in_submission: bool = True) -> str:
        """``file:line (field.path)`` of a dossier field, for evidence lines."""
        loc: tuple[str | int, ...] = (("submissions", self.stage_id, *field) if in_submission
                                      else tuple(field))
        name = ".".join(str(x) for x in loc)
        line = self.loaded.doc.line_of(loc)
        return f"{self.loaded.path.name}:{line} ({name})"
