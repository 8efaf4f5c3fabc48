"""Measuring a stage and storing its results: the one pipeline the CLI and the demo call.

Programme + stage + dossiers + registry + store + cache in, typed records out:
:func:`plan_stage` says which engine runs for which team (and which target is
shared), :func:`measure_stage` runs the plan with failure isolation and resume,
:func:`save_stage_result` stores what ``run_stage`` decided.
"""

from kaieval.pipeline.inputs import program_stage, stage_inputs
from kaieval.pipeline.measure import JobOutcome, StageMeasurement, measure_stage
from kaieval.pipeline.plan import (
    ENGINES,
    Job,
    Plan,
    StageInputs,
    engines_asked,
    parse_only,
    plan_stage,
    stage_teams,
)
from kaieval.pipeline.results import (
    load_stage_results,
    quote_checkpoint,
    save_stage_result,
    stage_entrants,
)

__all__ = ["ENGINES", "Job", "JobOutcome", "Plan", "StageInputs", "StageMeasurement",
           "engines_asked", "load_stage_results", "measure_stage", "parse_only", "plan_stage",
           "program_stage", "quote_checkpoint", "save_stage_result", "stage_entrants",
           "stage_inputs", "stage_teams"]
