"""The stage engine's per-team data: who entered, and one typed row per team.

``run_stage`` fills a ``TeamRow`` in named steps (points, gates, ranks, the
decision, robustness); each step returns new rows (``dataclasses.replace``), so
a step can only read what earlier steps wrote, and every field has one name and
one type instead of a position in a tuple.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaieval.scoring.results import ComponentScore, Decision, GateOutcome
from kaieval.spec.dossier import Submission


@dataclass(frozen=True)
class Entrant:
    """A team taking part in a stage (or applying for its repechage)."""

    team_id: str
    name: str
    submission: Submission | None
    dossier_hash: str = ""


@dataclass(frozen=True)
class TeamRow:
    """One team in one stage run. Fields after ``axes`` are filled by later steps."""

    index: int
    """Position of the team among the entrants: its column in the leaf-point arrays."""
    entrant: Entrant
    components: tuple[ComponentScore, ...]
    """Top-level component trees, as the report shows them."""
    points: dict[str, float | None]
    """Points of every component at every level by id; None where not measured."""
    total: float
    """Sum of the measured top-level components."""
    max_measured: float
    """Points the total is out of: the maxima of the measured top-level components."""
    not_measured: tuple[str, ...]
    """Ids of the leaf components without a measurement."""
    axes: dict[str, float]
    """Axis subtotals."""
    gates: tuple[GateOutcome, ...] = ()
    """Outcome of each gate of the stage (``apply_gates``)."""
    rank: int = 0
    """Rank on points among all teams of the stage, 1 = highest (``rank_teams``)."""
    eligible_rank: int | None = None
    """Rank on points among the teams that passed every gate; None for a gated team."""
    decision: Decision | None = None
    """advance / cut / gated (``decide_cut``), repechage (``decide_repechage``)."""
    reason: str = ""
    """The decision in words."""
    survival: float | None = None
    """Share of bootstrap replicates in which the team survives (``assess_robustness``)."""
    interval: tuple[float, float] | None = None
    """Bootstrap percentile interval of the total."""

    @property
    def team_id(self) -> str:
        return self.entrant.team_id

    @property
    def name(self) -> str:
        return self.entrant.name

    @property
    def gated(self) -> bool:
        """True when the team failed a gate: out whatever its points."""
        return any(g.status == "fail" for g in self.gates)

    def failed_gates(self) -> tuple[GateOutcome, ...]:
        return tuple(g for g in self.gates if g.status == "fail")
