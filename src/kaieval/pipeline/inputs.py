"""Turning a programme, a stage id and loaded dossiers into :class:`StageInputs`.

Callers load the dossiers with ``load_dossiers(..., check_files=False)``: a team whose
model folder is missing must not stop the other teams' measurement; its jobs fail
with that reason instead (:mod:`kaieval.pipeline.engines` checks each path, inside the
dossier's folder, when it needs it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from kaieval.errors import KaiError
from kaieval.pipeline.plan import StageInputs, stage_teams
from kaieval.registry import Registry, default_registry_dir, load_registry
from kaieval.spec.load import LoadedDossier
from kaieval.spec.program import GateKind, Program, Stage


def program_stage(program: Program, stage_id: str) -> Stage:
    """The programme's stage ``stage_id``; a missing one is a one-line input error."""
    try:
        return program.stage(stage_id)
    except KeyError:
        known = ", ".join(s.id for s in program.stages)
        raise KaiError(f"no stage '{stage_id}' in programme '{program.id}' (stages: {known})",
                       where="--stage") from None


def resolve_registry(stage: Stage, program_path: Path | None, override: Path | None) -> Registry:
    """``--registry``, else the independence gate's ``registry`` (relative to the programme
    file), else the default folder."""
    if override is not None:
        return load_registry(override)
    for g in stage.gates:
        if g.kind is GateKind.INDEPENDENCE and g.registry is not None:
            base = program_path.parent if program_path is not None else Path.cwd()
            return load_registry(base / g.registry)
    return load_registry(default_registry_dir())




def gate_alpha(stage: Stage) -> float:
    return next((g.alpha for g in stage.gates if g.kind is GateKind.INDEPENDENCE), 0.01)


def stage_inputs(program: Program, program_hash: str, stage_id: str,
                 dossiers: Sequence[LoadedDossier], *, cache_dir: Path,
                 program_path: Path | None = None, registry: Path | None = None,
                 teams: Iterable[str] | None = None, reference_tokenizer: Path | None = None,
                 audit_dir: Path | None = None, batch_size: int = 16,
                 bench_backend: str = "hf", tensor_parallel_size: int = 1) -> StageInputs:
    check_bench_backend(bench_backend, tensor_parallel_size)
    stage = program_stage(program, stage_id)
    chosen = stage_teams(dossiers, stage_id, teams)
    if not chosen:
        raise KaiError(f"none of the dossiers has a submission for stage '{stage_id}'")
    if reference_tokenizer is not None and not reference_tokenizer.exists():
        raise KaiError("reference tokenizer not found", where=str(reference_tokenizer))
    return StageInputs(program=program, program_hash=program_hash, stage=stage,
                       dossiers=tuple(chosen),
                       registry=resolve_registry(stage, program_path, registry),
                       cache_dir=cache_dir, alpha=gate_alpha(stage),
                       reference_tokenizer=reference_tokenizer, batch_size=batch_size,
                       audit_dir=audit_dir, bench_backend=bench_backend,
                       tensor_parallel_size=tensor_parallel_size)


BENCH_BACKENDS = ("hf", "vllm")


def check_bench_backend(backend: str, tensor_parallel_size: int) -> None:
    """``kai stage measure --backend/--tensor-parallel-size``, checked before anything is
    loaded: the programme office picks the engine for every model folder of the run
    (endpoints are always served over HTTP), and only vLLM splits a model over GPUs."""
    if backend not in BENCH_BACKENDS:
        raise KaiError(f"unknown benchmark backend {backend!r}; use "
                       f"{' or '.join(BENCH_BACKENDS)}", where="--backend")
    if tensor_parallel_size < 1:
        raise KaiError(f"must be at least 1, got {tensor_parallel_size}",
                       where="--tensor-parallel-size")
    if tensor_parallel_size > 1 and backend != "vllm":
        raise KaiError("is for the vllm backend (--backend vllm)",
                       where="--tensor-parallel-size")
