"""Programme and dossier specs, validated with pydantic and loaded with file:line errors."""

from kaieval.spec.dossier import Dossier, Submission, Team
from kaieval.spec.load import (
    LoadedDossier,
    load_dossier,
    load_dossiers,
    load_program,
    validate_paths,
)
from kaieval.spec.program import Component, ComponentKind, Gate, Program, Source, Stage

__all__ = [
    "Component", "ComponentKind", "Dossier", "Gate", "LoadedDossier", "Program", "Source",
    "Stage", "Submission", "Team", "load_dossier", "load_dossiers", "load_program",
    "validate_paths",
]
