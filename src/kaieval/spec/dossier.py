"""Team dossier: who the team is, and per stage what it submitted and declared.

Everything in a dossier is *declared*; the engines measure what they can from
the artifacts it names and the report keeps the two apart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Discriminator, Field, HttpUrl, Tag, model_validator

from kaieval.spec.messages import COUNTRY_PATTERN, ORIGIN_PATTERN, spec_error
from kaieval.spec.program import Id, Name, Strict

Share = Annotated[float, Field(ge=0, le=1, strict=True)]


class OrgType(StrEnum):
    LARGE_COMPANY = "large_company"
    STARTUP = "startup"
    SME = "sme"
    UNIVERSITY = "university"
    RESEARCH_INSTITUTE = "research_institute"
    PUBLIC_BODY = "public_body"


class Member(Strict):
    name: Name
    type: OrgType
    role: str = ""
    country: str = Field(default="KR", pattern=COUNTRY_PATTERN)


class Team(Strict):
    id: Id
    name: Name
    lead: Annotated[Name, Field(description="lead organisation")]
    consortium: tuple[Member, ...] = ()
    consortium_size: int | None = Field(default=None, ge=1, strict=True,
                                        description="organisations in all, when not all are listed")


class ModelArtifact(Strict):
    """A local Hugging Face directory or an OpenAI-compatible endpoint (exactly one)."""

    path: str | None = Field(default=None, min_length=1)
    endpoint: HttpUrl | None = None
    model_name: str | None = None
    tokenizer: str | None = Field(
        default=None, min_length=1,
        description="an endpoint's tokenizer (file or folder, any format kaieval reads): "
                    "log-likelihood prompts are then split into its token ids")
    components: dict[str, Annotated[str, Field(min_length=1)]] = Field(
        default_factory=dict,
        description="named sub-components (e.g. vision_encoder) -> folder inside the model")

    @model_validator(mode="after")
    def _one(self) -> ModelArtifact:
        if self.path is not None and self.endpoint is not None:
            raise spec_error("give either 'path' (a local model folder) or 'endpoint' (an "
                             "OpenAI-compatible server), not both", "endpoint")
        if self.path is None and self.endpoint is None:
            raise spec_error("give one of 'path' (a local model folder) or 'endpoint' (an "
                             "OpenAI-compatible server)")
        if self.endpoint is not None and not self.model_name:
            raise spec_error("an endpoint needs 'model_name' (the model to ask the server for)",
                             "endpoint")
        if self.endpoint is None and self.model_name is not None:
            raise spec_error("'model_name' only applies to an endpoint", "model_name")
        if self.tokenizer is not None and self.endpoint is None:
            raise spec_error("'tokenizer' is for an endpoint (a local model folder's own "
                             "tokenizer is used)", "tokenizer")
        if self.components and self.path is None:
            raise spec_error("'components' are folders inside a local model 'path'",
                             "components")
        return self


class ScoreProtocol(Strict):
    """How a benchmark figure was produced; two figures compare only under the same one.

    ``harness`` and ``version`` name the evaluation code (``lm-eval`` ``0.4.13``; kaieval's
    default catalogue variants reproduce lm-eval's definitions and report that protocol),
    ``variant`` the task definition (``default`` = the harness's own), ``shots`` the
    number of few-shot examples.
    """

    harness: str = Field(min_length=1)
    version: str = Field(min_length=1)
    variant: str = "default"
    shots: int = Field(ge=0, strict=True)

    def describe(self) -> str:
        return f"{self.harness} {self.version} {self.variant} {self.shots}-shot"


class PublishedScore(ScoreProtocol):
    """A published score with the protocol it was produced with."""

    score: Share

    def protocol(self) -> ScoreProtocol:
        return ScoreProtocol(harness=self.harness, version=self.version, variant=self.variant,
                        shots=self.shots)


def _published_kind(value: object) -> str:
    """A mapping is a score with its protocol; anything else must be a bare number."""
    if isinstance(value, dict | PublishedScore):
        return "protocol"
    return "number"


# Tagged so that a malformed entry gets one message, from the form it was written in.
Published = Annotated[Annotated[Share, Tag("number")] | Annotated[PublishedScore,
                                                                   Tag("protocol")],
                      Discriminator(_published_kind)]


class Target(Strict):
    """The declared global reference model (KPI: >= 95 % of a recent frontier model)."""

    name: str = Field(min_length=1)
    released: str = ""
    path: str | None = Field(default=None, min_length=1,
                             description="local copy, measured by the same engine")
    published: dict[str, Published] = Field(
        default_factory=dict, description="benchmark id -> published score (declared), a "
                                          "fraction 0-1 like every benchmark score, or "
                                          "{score, harness, version, variant, shots}")

    def published_score(self, benchmark: str) -> float:
        value = self.published[benchmark]
        return value.score if isinstance(value, PublishedScore) else float(value)

    def published_protocol(self, benchmark: str) -> ScoreProtocol | None:
        """The declared figure's protocol; None when the dossier gives a bare number."""
        value = self.published.get(benchmark)
        return value.protocol() if isinstance(value, PublishedScore) else None


class Ownership(StrEnum):
    OWNED = "owned"
    GOVERNMENT = "government_allocated"
    RENTED = "rented"


class Accelerator(Strict):
    vendor: str
    model: str
    count: int = Field(ge=1, strict=True)
    ownership: Ownership
    domestic: bool = Field(default=False, strict=True)


class Compute(Strict):
    accelerators: tuple[Accelerator, ...] = ()
    notes: str = ""


class Dataset(Strict):
    name: str
    origin: str = Field(pattern=ORIGIN_PATTERN)
    languages: dict[str, Share] = Field(default_factory=dict,
                                        description="language code -> share of tokens")
    tokens: float | None = Field(default=None, ge=0, strict=True)
    licence: str = "unknown"
    public: bool = Field(default=False, strict=True)

    @model_validator(mode="after")
    def _mix(self) -> Dataset:
        total = sum(self.languages.values())
        if self.languages and abs(total - 1.0) > 0.01:
            raise spec_error(f"language shares add up to {total:g}, not 1 (write shares as "
                             "fractions, e.g. ko: 0.7, en: 0.3)", "languages")
        return self


class Data(Strict):
    datasets: tuple[Dataset, ...] = ()


class Release(Strict):
    component: str
    licence: str
    location: str = ""
    open: bool = Field(default=True, strict=True)
    artifact: str | None = Field(
        default=None, min_length=1,
        description="the released files (folder or LICENSE file) inside the dossier's folder; "
                    "the audit reads their licence and flags a mismatch with 'licence'")


class Partnership(Strict):
    name: str
    country: str = Field(pattern=COUNTRY_PATTERN)
    kind: str = ""


class Dependencies(Strict):
    base_models: tuple[str, ...] = ()
    foreign_apis: tuple[str, ...] = ()
    partnerships: tuple[Partnership, ...] = ()


class Ecosystem(Strict):
    partners: tuple[str, ...] = ()
    public_pilots: tuple[str, ...] = ()
    apis: tuple[str, ...] = ()
    downloads: int | None = Field(default=None, ge=0, strict=True)
    derivatives: int | None = Field(default=None, ge=0, strict=True,
                                    description="public derivative models (declared)")
    hub_repos: tuple[str, ...] = Field(
        default=(), description="Hugging Face repo ids, for `kai audit --online` download counts")
    open_release_pledge: float | None = Field(default=None, ge=0, le=1, strict=True,
                                              description="share of outputs pledged open")


class Serving(Strict):
    """How the submitted model is served; ``None`` means the team did not say."""

    requires_foreign_api: bool | None = Field(default=None, strict=True)
    notes: str = ""


class Submission(Strict):
    """What a team hands in for one stage."""

    model: ModelArtifact | None = None
    target: Target | None = None
    technical_report: str | None = Field(default=None, min_length=1)
    compute: Compute = Compute()
    data: Data = Data()
    releases: tuple[Release, ...] = ()
    dependencies: Dependencies = Dependencies()
    ecosystem: Ecosystem = Ecosystem()
    serving: Serving = Serving()
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
            if sub.model and sub.model.tokenizer:
                out.append(((*base, "model", "tokenizer"), sub.model.tokenizer))
            if sub.target and sub.target.path:
                out.append(((*base, "target", "path"), sub.target.path))
            if sub.technical_report:
                out.append(((*base, "technical_report"), sub.technical_report))
            for i, release in enumerate(sub.releases):
                if release.artifact:
                    out.append(((*base, "releases", i, "artifact"), release.artifact))
        return out
