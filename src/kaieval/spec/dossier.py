"""Team dossier: who the team is, and per stage what it submitted and declared.

Everything in a dossier is *declared*; the engines measure what they can from
the artifacts it names and the report keeps the two apart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, HttpUrl, model_validator

from kaieval.spec.program import Id, Strict


class OrgType(StrEnum):
    LARGE_COMPANY = "large_company"
    STARTUP = "startup"
    SME = "sme"
    UNIVERSITY = "university"
    RESEARCH_INSTITUTE = "research_institute"
    PUBLIC_BODY = "public_body"


class Member(Strict):
    name: str = Field(min_length=1)
    type: OrgType
    role: str = ""
    country: str = Field(default="KR", pattern=r"^[A-Z]{2}$")


class Team(Strict):
    id: Id
    name: str = Field(min_length=1)
    lead: str = Field(min_length=1, description="lead organisation")
    consortium: tuple[Member, ...] = ()
    consortium_size: int | None = Field(default=None, ge=1,
                                        description="organisations in all, when not all are listed")


class ModelArtifact(Strict):
    """A local Hugging Face directory or an OpenAI-compatible endpoint (exactly one)."""

    path: str | None = None
    endpoint: HttpUrl | None = None
    model_name: str | None = None
    components: dict[str, str] = Field(
        default_factory=dict,
        description="named sub-components (e.g. vision_encoder) -> folder inside the model")

    @model_validator(mode="after")
    def _one(self) -> ModelArtifact:
        if (self.path is None) == (self.endpoint is None):
            raise ValueError("give exactly one of 'path' (local model folder) or 'endpoint'")
        if self.endpoint is not None and not self.model_name:
            raise ValueError("an endpoint needs 'model_name'")
        return self


class Target(Strict):
    """The declared global reference model (KPI: >= 95 % of a recent frontier model)."""

    name: str = Field(min_length=1)
    released: str = ""
    path: str | None = Field(default=None, description="local copy, measured by the same engine")
    published: dict[str, float] = Field(
        default_factory=dict, description="benchmark id -> published score (declared)")


class Ownership(StrEnum):
    OWNED = "owned"
    GOVERNMENT = "government_allocated"
    RENTED = "rented"


class Accelerator(Strict):
    vendor: str
    model: str
    count: int = Field(ge=1)
    ownership: Ownership
    domestic: bool = False


class Compute(Strict):
    accelerators: tuple[Accelerator, ...] = ()
    notes: str = ""


class Dataset(Strict):
    name: str
    origin: str = Field(pattern=r"^[A-Z]{2}$|^mixed$|^unknown$")
    languages: dict[str, float] = Field(default_factory=dict)
    tokens: float | None = Field(default=None, ge=0)
    licence: str = "unknown"
    public: bool = False

    @model_validator(mode="after")
    def _mix(self) -> Dataset:
        if self.languages and abs(sum(self.languages.values()) - 1.0) > 0.01:
            raise ValueError(f"language shares add up to {sum(self.languages.values()):g}, not 1")
        return self


class Data(Strict):
    datasets: tuple[Dataset, ...] = ()


class Release(Strict):
    component: str
    licence: str
    location: str = ""
    open: bool = True


class Partnership(Strict):
    name: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    kind: str = ""


class Dependencies(Strict):
    base_models: tuple[str, ...] = ()
    foreign_apis: tuple[str, ...] = ()
    partnerships: tuple[Partnership, ...] = ()


class Ecosystem(Strict):
    partners: tuple[str, ...] = ()
    public_pilots: tuple[str, ...] = ()
    apis: tuple[str, ...] = ()
    downloads: int | None = Field(default=None, ge=0)
    open_release_pledge: float | None = Field(default=None, ge=0, le=1,
                                              description="share of outputs pledged open")


class Submission(Strict):
    """What a team hands in for one stage."""

    model: ModelArtifact | None = None
    target: Target | None = None
    technical_report: str | None = None
    compute: Compute = Compute()
    data: Data = Data()
    releases: tuple[Release, ...] = ()
    dependencies: Dependencies = Dependencies()
    ecosystem: Ecosystem = Ecosystem()
    approach: str = Field(default="", description="the approach in the team's words")
    applies_to: Literal["stage", "repechage"] = "stage"


class Dossier(Strict):
    schema_: Literal["kaieval/dossier/v1"] = Field(alias="schema")
    team: Team
    submissions: dict[Id, Submission] = Field(min_length=1)

    model_config = Strict.model_config | {"populate_by_name": True}

    def local_paths(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Every file path the dossier names, with its YAML location (for checks)."""
        out: list[tuple[tuple[str | int, ...], str]] = []
        for sid, sub in self.submissions.items():
            base: tuple[str | int, ...] = ("submissions", sid)
            if sub.model and sub.model.path:
                out.append(((*base, "model", "path"), sub.model.path))
                for name, rel in sub.model.components.items():
                    out.append(((*base, "model", "components", name),
                                f"{sub.model.path.rstrip('/')}/{rel}"))
            if sub.target and sub.target.path:
                out.append(((*base, "target", "path"), sub.target.path))
            if sub.technical_report:
                out.append(((*base, "technical_report"), sub.technical_report))
        return out
