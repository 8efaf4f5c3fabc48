"""Each engine's part of a stage measurement: its input key and its run.

``key`` names everything a job's result depends on (content hashes of the model,
references, dossier and tasks; settings; the engine's own source code), without
running the engine; ``run`` measures and returns typed records. Both raise
``KaiError`` for a team's bad or missing input, which the executor stores as
"not measured" with that reason while the other teams go on.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import kaieval
from kaieval.artifacts import check_tree, dossier_root
from kaieval.errors import KaiError
from kaieval.hashing import sha256_bytes, sha256_file, sha256_json
from kaieval.pipeline.bench_checks import has_chat_template, needs_chat, no_room
from kaieval.pipeline.plan import SHARED, Engine, Job, StageInputs, folder_hash
from kaieval.records import (
    BenchmarkResult,
    IndependenceVerdict,
    Measurement,
    Record,
)
from kaieval.spec.dossier import Submission
from kaieval.spec.load import LoadedDossier
from kaieval.spec.program import BenchmarkRef, ComponentKind

# Source folders (under kaieval/) whose code decides each engine's numbers.
_ENGINE_CODE: dict[Engine, tuple[str, ...]] = {
    "bench": ("bench", "pipeline/bench_checks.py"),
    "provenance": ("provenance", "registry"),
    "audit": ("audit",),
    "tokenizer": ("audit/tokenizer_efficiency.py", "audit/data", "tokenizer"),
}


@dataclass
class Output:
    records: list[Record] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@functools.cache
def engine_version(engine: Engine) -> str:
    """Hash of the source and data files of ``engine``: a rerun measures again only when
    the code that computes the number changed (not on every unrelated commit)."""
    root = Path(kaieval.__file__).parent
    files: list[Path] = [root / "pipeline" / "engines.py", root / "records.py"]
    for rel in _ENGINE_CODE[engine]:
        p = root / rel
        files += sorted(q for q in p.rglob("*") if q.is_file() and "__pycache__" not in q.parts
                        ) if p.is_dir() else [p]
    return sha256_json({str(f.relative_to(root)): sha256_file(f) for f in files})


def _sub(inputs: StageInputs, job: Job) -> tuple[LoadedDossier, Submission]:
    ld = inputs.dossier(job.team_id)
    return ld, ld.dossier.submissions[inputs.stage.id]


def _local(ld: LoadedDossier, rel: str, what: str, *, file_ok: bool = False) -> Path:
    """A dossier-relative folder (or, with ``file_ok``, a file), checked now (the dossier
    was loaded without file checks, so that one team's missing folder does not stop the
    others)."""
    root = ld.folder.resolve()
    where = f"{ld.path}: {what}"
    if Path(rel).is_absolute() or not (root / rel).resolve().is_relative_to(root):
        raise KaiError(f"{rel} leads outside the dossier's folder; not read", where=where)
    path = (root / rel).resolve()
    if not (path.is_dir() or (file_ok and path.exists())):
        kind = "tokenizer" if file_ok else "model folder"
        raise KaiError(f"{kind} {rel} not found (looked in {root})", where=where)
    if path.is_dir():
        with dossier_root(root):
            check_tree(path)  # special files, oversized files, links out of the dossier's folder
    return path


def _in_dossier(run: Callable[..., Output]) -> Callable[..., Output]:
    """Run an engine with the team's dossier folder as the root links may lead into."""

    @functools.wraps(run)
    def wrapped(inputs: StageInputs, job: Job, *args: Any, **kwargs: Any) -> Output:
        if job.team_id == SHARED:
            return run(inputs, job, *args, **kwargs)
        with dossier_root(inputs.dossier(job.team_id).folder):
            return run(inputs, job, *args, **kwargs)

    return wrapped


def _refs(inputs: StageInputs) -> list[BenchmarkRef]:
    return [b for c in inputs.stage.leaves() if c.kind is ComponentKind.BENCHMARKS
            for b in c.benchmarks]


# -- bench ----------------------------------------------------------------------------------

def _bench_model(inputs: StageInputs, job: Job) -> tuple[str, dict[str, Any]]:
    """``(model argument, key part)`` for the candidate or the shared target."""
    if job.team_id == SHARED:
        assert job.target is not None
        return str(job.target), {"model": folder_hash(job.target)}
    ld, sub = _sub(inputs, job)
    if sub.model is None:
        raise KaiError("no model submitted for this stage", where=str(ld.path))
    if sub.model.endpoint is not None:
        key: dict[str, Any] = {"endpoint": str(sub.model.endpoint),
                               "model_name": sub.model.model_name}
        if sub.model.tokenizer is not None:
            tok = _local(ld, sub.model.tokenizer, "model.tokenizer", file_ok=True)
            key["tokenizer"] = folder_hash(tok) if tok.is_dir() else sha256_file(tok)
        return str(sub.model.endpoint), key
    assert sub.model.path is not None
    path = _local(ld, sub.model.path, "model.path")
    return str(path), {"model": folder_hash(path)}


def _declared_target(inputs: StageInputs, job: Job) -> list[Record]:
    """The dossier's published target figures (no local copy), stored as ``declared``."""
    ld, sub = _sub(inputs, job)
    if sub.target is None or sub.target.path is not None:
        return []
    target = sub.target
    out: list[Record] = []
    for r in _refs(inputs):
        if r.id not in target.published:
            continue
        protocol = target.published_protocol(r.id)
        settings: dict[str, Any] = {"published_by": target.name}
        if protocol is not None:
            settings["protocol"] = protocol.model_dump()
        out.append(BenchmarkResult(stage_id=inputs.stage.id, team_id=job.team_id,
                                   source="declared", input_hashes={"dossier": ld.sha256},
                                   settings=settings, benchmark_id=r.id, task=r.task,
                                   role="target", model_ref=target.name,
                                   score=target.published_score(r.id)))
    return out


def bench_key(inputs: StageInputs, job: Job) -> dict[str, Any]:
    _, model = _bench_model(inputs, job)
    declared = ([] if job.team_id == SHARED else
                [r.model_dump(mode="json", exclude={"created_at", "code_version"})
                 for r in _declared_target(inputs, job)])
    tasks = sorted({(r.id, r.task, _task_file_hash(r.task)) for r in _refs(inputs)})
    return {**model, "tasks": tasks, "declared": declared}


def _task_file_hash(task: str) -> str | None:
    p = Path(task)
    return sha256_file(p) if p.suffix in (".yaml", ".yml") and p.is_file() else None


def bench_shards(inputs: StageInputs) -> list[str]:
    """The task shards a benchmark job splits into (one per distinct task), in a fixed
    order: the Ray executor answers each on its own worker, into the shared cache."""
    return sorted({r.task for r in _refs(inputs)})


def bench_backend(inputs: StageInputs, job: Job) -> tuple[str, str, dict[str, Any]]:
    """``(backend, model argument, backend options)`` of a benchmark job: what its
    ``evaluate`` builds, and what the Ray executor's engine actor loads once for all of
    the job's task shards. An endpoint is always the openai backend; a model folder the
    stage's ``--backend`` (hf, or vllm with its tensor-parallel size)."""
    model, _ = _bench_model(inputs, job)
    kwargs: dict[str, Any] = {}
    if model.startswith(("http://", "https://")):
        ld, sub = _sub(inputs, job)
        assert sub.model is not None
        kwargs["model_name"] = sub.model.model_name
        if sub.model.tokenizer is not None:  # else the server's /tokenize, or refused
            kwargs["tokenizer_path"] = _local(ld, sub.model.tokenizer, "model.tokenizer",
                                              file_ok=True)
        return "openai", model, kwargs
    if inputs.bench_backend == "vllm":
        kwargs["tensor_parallel_size"] = inputs.tensor_parallel_size
    return inputs.bench_backend, model, kwargs


def bench_settings(inputs: StageInputs, job: Job) -> dict[str, Any]:
    """The job key's settings for a benchmark job: the vllm backend and its tensor-parallel
    size when a model folder runs on it (another engine is another measurement); nothing
    for the default hf backend or an endpoint. Never raises: a team's missing model is
    the job's failure, found when it runs."""
    if inputs.bench_backend == "hf":
        return {}
    if job.team_id != SHARED:
        sub = inputs.dossier(job.team_id).dossier.submissions.get(inputs.stage.id)
        if sub is None or sub.model is None or sub.model.endpoint is not None:
            return {}
    return {"backend": inputs.bench_backend,
            "tensor_parallel_size": inputs.tensor_parallel_size}


@_in_dossier
def run_bench(inputs: StageInputs, job: Job, *, only: str | None = None,
              builder: Callable[..., Any] | None = None) -> Output:
    """Benchmark the candidate (or the shared target) on the stage's tasks; ``only`` one
    task shard (its answers land in the request cache; the job then reads them back);
    ``builder``: how ``evaluate`` gets its backend (the Ray engine actor's one load)."""
    from kaieval.bench.run import evaluate, to_benchmark_results
    from kaieval.bench.tasks import load_task

    out = Output()
    if job.team_id != SHARED:
        out.records += _declared_target(inputs, job)
    model, _ = _bench_model(inputs, job)
    endpoint = model.startswith(("http://", "https://"))
    refs = [r for r in _refs(inputs) if only is None or r.task == only]
    usable: list[BenchmarkRef] = []
    tasks: dict[str, Any] = {}
    for r in refs:
        if r.task not in tasks:
            try:
                tasks[r.task] = load_task(r.task)
            except KaiError as e:
                tasks[r.task] = e
        t = tasks[r.task]
        if isinstance(t, KaiError):
            out.notes.append(f"{r.id}: not measured ({t})")
        elif not endpoint and needs_chat(t) and not has_chat_template(Path(model)):
            out.notes.append(f"{r.id}: not measured (a chat task and the model has no chat "
                             "template)")
        elif not endpoint and (why := no_room(t, Path(model))):
            out.notes.append(f"{r.id}: not measured ({why})")
        else:
            usable.append(r)
    if not usable:
        raise KaiError("no benchmark could be measured: " + "; ".join(out.notes))
    backend, _, kwargs = bench_backend(inputs, job)
    names = sorted({r.task for r in usable})
    run = evaluate(model, [tasks[n] for n in names], backend=backend,
                   batch_size=inputs.batch_size, cache_dir=inputs.cache_dir, progress=False,
                   cache_url=inputs.cache_url, builder=builder, **kwargs)
    teams = job.teams if job.team_id == SHARED else (job.team_id,)
    role: Literal["candidate", "target"] = "target" if job.team_id == SHARED else "candidate"
    for tid in teams:
        by_task = {r.task: r for r in to_benchmark_results(run, stage_id=inputs.stage.id,
                                                            team_id=tid, role=role)}
        out.records += [by_task[r.task].model_copy(update={"benchmark_id": r.id})
                        for r in usable]
    return out


# -- provenance -----------------------------------------------------------------------------

def _base_name(text: str) -> str:
    """``foreign-base (stands in for ...)`` -> ``foreign-base``: the name before any note."""
    return re.split(r"\s*[(\[]", text.strip(), maxsplit=1)[0].strip()


def _references(inputs: StageInputs, job: Job) -> tuple[list[tuple[str, Path, str]], list[str]]:
    """``[(name, path, content hash)]`` from the registry and the declared base models."""
    ld, sub = _sub(inputs, job)
    reg = inputs.registry
    refs = [(e.name, reg.path_of(e), reg.current_hash(e)) for e in reg.entries]
    for e, (_, _, now) in zip(reg.entries, refs, strict=True):
        reg.verified_path(e, now)  # a changed or tampered reference is refused, by name
    notes: list[str] = []
    root = ld.folder.resolve()
    for base in sub.dependencies.base_models:
        entry = reg.find(base) or reg.find(_base_name(base))
        if entry is not None:
            notes.append(f"declared base model '{base}' is registry reference '{entry.name}'")
            continue
        p = (root / base).resolve()
        if not Path(base).is_absolute() and p.is_relative_to(root) and p.exists():
            from kaieval.provenance.fingerprint import is_fingerprint

            h = folder_hash(p) if p.is_dir() else sha256_file(p)
            if p.is_dir() or is_fingerprint(p):
                refs.append((base, p, h))
                continue
        notes.append(f"declared base model '{base}' is neither a registry reference nor a "
                     "model folder or fingerprint in the dossier's folder: not tested")
    return refs, notes


def provenance_key(inputs: StageInputs, job: Job) -> dict[str, Any]:
    ld, sub = _sub(inputs, job)
    model = _candidate_folder(ld, sub)
    refs, _ = _references(inputs, job)
    return {"model": folder_hash(model), "alpha": inputs.alpha,
            "references": sorted((n, h) for n, _, h in refs)}


def _candidate_folder(ld: LoadedDossier, sub: Submission) -> Path:
    if sub.model is None:
        raise KaiError("no model submitted for this stage", where=str(ld.path))
    if sub.model.path is None:
        raise KaiError("endpoint-only submission: the weight tests need a local model folder "
                       "(run `kai provenance` black-box against reference endpoints)",
                       where=str(ld.path))
    return _local(ld, sub.model.path, "model.path")


@_in_dossier
def run_provenance(inputs: StageInputs, job: Job) -> Output:
    from kaieval.provenance.verdict import check_independence

    ld, sub = _sub(inputs, job)
    model = _candidate_folder(ld, sub)
    refs, notes = _references(inputs, job)
    if not refs:
        raise KaiError(f"no reference to test against: the registry {inputs.registry.folder} "
                       "is empty and the dossier declares no base model folder"
                       + (f" ({'; '.join(notes)})" if notes else ""))
    verdict = check_independence(model, [p for _, p, _ in refs], alpha=inputs.alpha,
                                 stage_id=inputs.stage.id, team_id=job.team_id,
                                 reference_names=[n for n, _, _ in refs])
    return Output(records=[verdict], notes=notes)


# -- audit and tokenizer --------------------------------------------------------------------

def _stage_files(ld: LoadedDossier, stage_id: str) -> dict[str, str | None]:
    """Content hashes of the files the dossier names for the stage (None: absent)."""
    root = ld.folder.resolve()
    out: dict[str, str | None] = {}
    for loc, rel in ld.dossier.local_paths():
        if loc[1] != stage_id:
            continue
        p = (root / rel).resolve()
        if not p.is_relative_to(root):
            out[rel] = None
        elif p.is_dir():
            out[rel] = folder_hash(p)
        else:
            out[rel] = sha256_file(p) if p.is_file() else None
    return out


def _ref_tokenizer_hash(inputs: StageInputs) -> str | None:
    ref = inputs.reference_tokenizer
    if ref is None:
        return None
    return folder_hash(ref) if ref.is_dir() else sha256_file(ref)


def audit_key(inputs: StageInputs, job: Job, verdict: IndependenceVerdict | None
              ) -> dict[str, Any]:
    ld, _ = _sub(inputs, job)
    return {"stage": inputs.stage.id, "dossier": ld.sha256, "program": inputs.program_hash,
            "files": _stage_files(ld, inputs.stage.id),
            "verdict": verdict.content_hash() if verdict is not None else None,
            "reference_tokenizer": _ref_tokenizer_hash(inputs)}


@_in_dossier
def run_audit(inputs: StageInputs, job: Job, verdict: IndependenceVerdict | None) -> Output:
    from kaieval.audit.engine import audit_dossier

    ld, _ = _sub(inputs, job)
    rep = audit_dossier(ld, inputs.program, inputs.stage.id, verdict=verdict,
                        reference_tokenizer=inputs.reference_tokenizer)
    if inputs.audit_dir is not None:
        from kaieval.io import atomic_write_text

        inputs.audit_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(inputs.audit_dir / f"{inputs.stage.id}-{job.team_id}.json",
                          rep.model_dump_json(indent=2) + "\n")
    notes = [f"{f.kind}: {f.message}" for f in rep.flags]
    notes += [f"{s.component_id}/{s.item_id}: not measured ({s.reason})" for s in rep.not_scored]
    items: list[Record] = list(rep.items)
    return Output(records=items, notes=notes)


def tokenizer_key(inputs: StageInputs, job: Job) -> dict[str, Any]:
    from kaieval.tokenizer import load_tokenizer

    tok = load_tokenizer(_tokenizer_folder(inputs, job))  # any format; hash of what it read
    return {"tokenizer": tok.sha256, "reference": _ref_tokenizer_hash(inputs)}


def _tokenizer_folder(inputs: StageInputs, job: Job) -> Path:
    """The candidate's model folder: the tokenizer loader finds the file in any format."""
    ld, sub = _sub(inputs, job)
    return _candidate_folder(ld, sub)


@_in_dossier
def run_tokenizer(inputs: StageInputs, job: Job) -> Output:
    from kaieval.audit.tokenizer_efficiency import measure

    res = measure(_tokenizer_folder(inputs, job), reference=inputs.reference_tokenizer)
    o = res.overall
    hashes = {"tokenizer": res.tokenizer_sha256}
    ref_hash = _ref_tokenizer_hash(inputs)
    if ref_hash is not None:
        hashes["reference"] = ref_hash
    base = {"stage_id": inputs.stage.id, "team_id": job.team_id, "source": "measured",
            "input_hashes": hashes, "settings": {"corpus": "bundled Korean corpus"}}
    detail = (f"{res.tokenizer_format} ({res.tokenizer_kind}), vocab {res.vocab_size}, "
              f"{o.characters} characters"
              + ("" if res.comparable else "; NOT COMPARABLE: "
                 + "; ".join(res.not_comparable_because)))
    out: list[Record] = [
        Measurement(**base, name="tokenizer_chars_per_token", value=o.chars_per_token,
                    unit="chars/token", detail=detail),
        Measurement(**base, name="tokenizer_tokens_per_eojeol", value=o.tokens_per_eojeol,
                    unit="tokens/eojeol", detail=detail)]
    # a not-comparable tokenizer (or reference) gets no ratio: ratios are empty then
    ratio = (res.reference.ratios.get("overall", {}).get("chars_per_token")
             if res.reference is not None else None)
    if ratio is not None:
        out.append(Measurement(**base, name="tokenizer_efficiency_vs_reference", value=ratio,
                               unit="ratio", detail=f"relative to {inputs.reference_tokenizer}"))
    return Output(records=out)


KEYS: dict[Engine, Callable[..., dict[str, Any]]] = {
    "bench": bench_key, "provenance": provenance_key, "audit": audit_key,
    "tokenizer": tokenizer_key}
RUNS: dict[Engine, Callable[..., Output]] = {
    "bench": run_bench, "provenance": run_provenance, "audit": run_audit,
    "tokenizer": run_tokenizer}


def job_key(engine: Engine, inputs_key: dict[str, Any], settings: dict[str, Any]) -> str:
    return sha256_bytes(json.dumps({"engine": engine, "version": engine_version(engine),
                                    "inputs": inputs_key, "settings": settings},
                                   sort_keys=True, default=str).encode())
