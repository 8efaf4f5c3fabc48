"""Loading and cross-checking programmes and dossiers (what ``kai validate`` runs).

Checks that need more than one field live here rather than in the models:
files a dossier names must exist inside the dossier's folder, team ids must be
unique across dossiers, and a dossier's stages must exist in the programme.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kaieval.errors import KaiError, KaiErrors
from kaieval.hashing import sha256_file
from kaieval.spec.dossier import Dossier
from kaieval.spec.program import Program
from kaieval.spec.yamlload import LoadedYaml, load_yaml, load_yaml_text, parse_model

TEMPLATES = ("k-ai-2025",)


@dataclass(frozen=True)
class LoadedDossier:
    dossier: Dossier
    path: Path
    sha256: str
    doc: LoadedYaml

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve(self, rel: str) -> Path:
        """A dossier-relative path, already checked to stay inside the dossier's folder."""
        return (self.folder / rel).resolve()


def template_text(name: str) -> str:
    if name not in TEMPLATES:
        raise KaiError(f"unknown programme template '{name}' (known: {', '.join(TEMPLATES)})")
    return (resources.files("kaieval.spec") / "templates" / f"{name}.yaml").read_text("utf-8")


def load_program(ref: str | Path) -> tuple[Program, str]:
    """A programme from a YAML path or a built-in template name; returns it and its hash."""
    path = Path(ref)
    if isinstance(ref, str) and ref in TEMPLATES and not path.exists():
        text = template_text(ref)
        doc = load_yaml_text(text, Path(f"<template {ref}>"))
        from kaieval.hashing import sha256_bytes

        return parse_model(Program, doc), sha256_bytes(text.encode())
    doc = load_yaml(path)
    return parse_model(Program, doc), sha256_file(path)


def load_dossier(path: Path, *, check_files: bool = True) -> LoadedDossier:
    doc = load_yaml(path)
    dossier = parse_model(Dossier, doc)
    loaded = LoadedDossier(dossier=dossier, path=path, sha256=sha256_file(path), doc=doc)
    if check_files:
        errs = _check_paths(loaded)
        if errs:
            raise KaiErrors(errs)
    return loaded


def _check_paths(ld: LoadedDossier) -> list[KaiError]:
    errs: list[KaiError] = []
    root = ld.folder.resolve()
    for loc, rel in ld.dossier.local_paths():
        field = ".".join(str(p) for p in loc)
        if Path(rel).is_absolute():
            errs.append(KaiError(f"{field}: absolute path '{rel}' not allowed; give it relative "
                                 "to the dossier's folder", where=ld.doc.where(loc)))
            continue
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            errs.append(KaiError(f"{field}: path '{rel}' escapes the dossier's folder",
                                 where=ld.doc.where(loc)))
        elif not target.exists():
            errs.append(KaiError(f"{field}: '{rel}' does not exist", where=ld.doc.where(loc)))
    return errs


def load_dossiers(paths: list[Path], program: Program | None = None) -> list[LoadedDossier]:
    """Load several dossiers, collecting every error before raising."""
    errs: list[KaiError] = []
    out: list[LoadedDossier] = []
    seen: dict[str, Path] = {}
    for p in paths:
        try:
            ld = load_dossier(p)
        except KaiErrors as e:
            errs.extend(e.errors)
            continue
        except KaiError as e:
            errs.append(e)
            continue
        tid = ld.dossier.team.id
        if tid in seen:
            errs.append(KaiError(f"team.id: duplicate team id '{tid}' (also in {seen[tid]})",
                                 where=ld.doc.where(("team", "id"))))
            continue
        seen[tid] = p
        if program is not None:
            stages = {s.id for s in program.stages}
            for sid in ld.dossier.submissions:
                if sid not in stages:
                    errs.append(KaiError(
                        f"submissions.{sid}: no stage '{sid}' in programme '{program.id}' "
                        f"(stages: {', '.join(sorted(stages))})",
                        where=ld.doc.where(("submissions", sid))))
        out.append(ld)
    if errs:
        raise KaiErrors(errs)
    return out


def detect_kind(doc: LoadedYaml) -> str:
    """'program' or 'dossier' from the document's ``schema`` field."""
    schema = doc.data.get("schema") if isinstance(doc.data, dict) else None
    if schema == "kaieval/program/v1":
        return "program"
    if schema == "kaieval/dossier/v1":
        return "dossier"
    if schema is None:
        raise KaiError("schema: missing; expected 'kaieval/program/v1' or 'kaieval/dossier/v1'",
                       where=f"{doc.path}:1")
    raise KaiError(f"schema: unknown schema '{schema}'", where=doc.where(("schema",)))


def validate_paths(paths: list[Path]) -> tuple[list[str], list[KaiError]]:
    """Validate programmes and dossiers; returns (ok lines, errors). Writes nothing."""
    ok: list[str] = []
    errs: list[KaiError] = []
    program: Program | None = None
    dossier_paths: list[Path] = []
    for p in paths:
        try:
            doc = load_yaml(p)
            kind = detect_kind(doc)
            if kind == "program":
                program = parse_model(Program, doc)
                ok.append(f"{p}: programme '{program.id}' with {len(program.stages)} stages")
            else:
                dossier_paths.append(p)
        except KaiErrors as e:
            errs.extend(e.errors)
        except KaiError as e:
            errs.append(e)
    if dossier_paths:
        try:
            for ld in load_dossiers(dossier_paths, program):
                ok.append(f"{ld.path}: dossier for team '{ld.dossier.team.id}'")
        except KaiErrors as e:
            errs.extend(e.errors)
    return ok, errs
