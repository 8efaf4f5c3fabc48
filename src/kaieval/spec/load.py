"""Loading and cross-checking programmes and dossiers (what ``kai validate`` runs).

Checks that need more than one field live here rather than in the models:
files a dossier names must exist inside the dossier's folder, team ids must be
unique across dossiers, and a dossier's stages must exist in the programme.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kaieval.errors import KaiError, KaiErrors
from kaieval.hashing import sha256_file
from kaieval.spec.dossier import Dossier
from kaieval.spec.messages import fmt_loc, show
from kaieval.spec.program import Program
from kaieval.spec.yamlload import MAX_YAML_BYTES, LoadedYaml, load_yaml, load_yaml_text, parse_model

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
    """Every path a dossier names must exist, inside the dossier's folder, of the right kind.

    Artifacts are untrusted: a dossier may not point the engines at files
    outside its own folder, whether by '..', an absolute path or a symbolic link.
    """
    errs: list[KaiError] = []
    root = ld.folder.resolve()
    for loc, rel in ld.dossier.local_paths():
        problem = _path_problem(root, rel, loc[-1])
        if problem:
            errs.append(KaiError(f"{fmt_loc(loc)}: {problem}", where=ld.doc.where(loc)))
    return errs


def _path_problem(root: Path, rel: str, field: str | int) -> str | None:
    """What is wrong with dossier-relative path ``rel``, or None."""
    try:
        if Path(rel).is_absolute() or rel.startswith("~"):
            return (f"absolute path {show(rel)} not allowed; give it relative to the "
                    "dossier's folder")
        lexical = Path(os.path.normpath(root / rel))
        if not lexical.is_relative_to(root):
            return f"path {show(rel)} leads outside the dossier's folder ('..')"
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            return (f"path {show(rel)} is a symbolic link to a place outside the dossier's "
                    "folder")
        if not target.exists():
            return f"{show(rel)} does not exist (looked in {root})"
        if field == "technical_report" and not target.is_file():
            return f"{show(rel)} is not a file"
        if field == "path" and not target.is_dir():
            return f"{show(rel)} is not a folder (give the model's folder)"
    except (OSError, RuntimeError, ValueError) as e:
        return f"{show(rel)} is not a usable path ({e})"
    return None


def load_dossiers(paths: Sequence[Path], program: Program | None = None, *,
                  check_files: bool = True) -> list[LoadedDossier]:
    """Load several dossiers, collecting every error before raising.

    Team ids must be unique across the dossiers; with a programme, every
    submission must name one of its stages (and a repechage submission a stage
    that has a repechage). ``check_files=False`` leaves the named files to the
    engines that read them (``kai stage measure``: one team's missing model
    folder must not stop the others).
    """
    errs: list[KaiError] = []
    out: list[LoadedDossier] = []
    seen: dict[str, Path] = {}
    names: dict[str, str] = {}
    for p in paths:
        try:
            ld = load_dossier(p, check_files=check_files)
        except KaiErrors as e:
            errs.extend(e.errors)
            continue
        except KaiError as e:
            errs.append(e)
            continue
        tid = ld.dossier.team.id
        if tid in seen:
            errs.append(KaiError(f"team.id: team id '{tid}' is already used by {seen[tid]}",
                                 where=ld.doc.where(("team", "id"))))
            continue
        seen[tid] = p
        name = ld.dossier.team.name.casefold()  # already NFC (spec.messages.display_name)
        if name in names:
            errs.append(KaiError(f"team.name: '{ld.dossier.team.name}' reads the same as the "
                                 f"name of team '{names[name]}'; two teams need names a "
                                 "reader can tell apart", where=ld.doc.where(("team", "name"))))
        names.setdefault(name, tid)
        if program is not None:
            errs.extend(_check_against(ld, program))
        out.append(ld)
    if errs:
        raise KaiErrors(errs)
    return out


def parse_dossier_text(raw: bytes, name: str, program: Program) -> tuple[Dossier, LoadedYaml]:
    """A dossier from uploaded bytes, checked as ``kai validate`` checks a file against
    ``program``; problems raise ``KaiErrors`` of one-line ``name:line: field: message``.

    ``name`` is only shown (the upload's file name), never opened. The files the dossier
    names are not looked for: uploads are stored apart (kaieval.web.submissions).
    """
    where = Path(name)
    if len(raw) > MAX_YAML_BYTES:
        raise KaiError(f"{len(raw)} bytes exceeds the {MAX_YAML_BYTES} byte limit for YAML "
                       "files", where=name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise KaiError(f"not UTF-8 text: byte 0x{raw[e.start]:02x} cannot be read ({e.reason}); "
                       "save the file as UTF-8", where=f"{name}:{line}") from None
    doc = load_yaml_text(text, where)
    if detect_kind(doc) != "dossier":
        raise KaiError("schema: this is a programme; upload a team dossier "
                       "('schema: kaieval/dossier/v1')", where=doc.where(("schema",)))
    dossier = parse_model(Dossier, doc)
    ld = LoadedDossier(dossier=dossier, path=where, sha256="", doc=doc)
    errs = _check_against(ld, program)
    if errs:
        raise KaiErrors(errs)
    return dossier, doc


def _check_against(ld: LoadedDossier, program: Program) -> list[KaiError]:
    errs: list[KaiError] = []
    stages = {s.id: s for s in program.stages}
    for sid, sub in ld.dossier.submissions.items():
        loc: tuple[str | int, ...] = ("submissions", sid)
        if sid not in stages:
            errs.append(KaiError(
                f"submissions.{sid}: no stage '{sid}' in programme '{program.id}' "
                f"(stages: {', '.join(stages)})", where=ld.doc.where(loc)))
        elif sub.applies_to == "repechage" and stages[sid].repechage is None:
            errs.append(KaiError(
                f"submissions.{sid}.applies_to: stage '{sid}' of programme '{program.id}' has "
                "no repechage", where=ld.doc.where((*loc, "applies_to"))))
    return errs


SCHEMAS = {"kaieval/program/v1": "program", "kaieval/dossier/v1": "dossier"}


def detect_kind(doc: LoadedYaml) -> str:
    """'program' or 'dossier' from the document's ``schema`` field."""
    if not isinstance(doc.data, dict):
        raise KaiError(f"expected a mapping (key: value lines) at the top level, "
                       f"got {show(doc.data)}", where=doc.where(()))
    known = " or ".join(f"'{k}'" for k in SCHEMAS)
    if "schema" not in doc.data:
        raise KaiError("schema: missing; start the file with 'schema: kaieval/program/v1' (a "
                       "programme) or 'schema: kaieval/dossier/v1' (a dossier)",
                       where=doc.where(()))
    schema = doc.data["schema"]
    kind = SCHEMAS.get(schema) if isinstance(schema, str) else None
    if kind is None:
        raise KaiError(f"schema: unknown schema {show(schema)}; expected {known}",
                       where=doc.where(("schema",)))
    return kind


def validate_paths(paths: Sequence[Path | str]) -> tuple[list[str], list[KaiError]]:
    """Validate programmes and dossiers; returns (ok lines, errors). Writes nothing.

    Every file is checked on its own; dossiers are also checked together
    (unique team ids) and, when exactly one programme is among the paths and it
    is valid, against that programme. Each error's ``str`` is one line,
    ``file:line: field: message`` (or ``file: message`` when no line applies).
    Nothing is raised for bad input; an unexpected failure is reported as an
    internal error line rather than a traceback.
    """
    ok: list[str] = []
    errs: list[KaiError] = []
    programs: list[Program] = []
    dossier_paths: list[Path] = []
    unique: dict[str, Path] = {}
    for raw in paths:
        p = Path(raw)
        key = os.path.abspath(p)
        if key in unique:
            continue  # the same file named twice is checked once
        unique[key] = p
        try:
            doc = load_yaml(p)
            if detect_kind(doc) == "program":
                program = parse_model(Program, doc)
                programs.append(program)
                ok.append(f"{p}: programme '{program.id}' with {len(program.stages)} stages")
            else:
                dossier_paths.append(p)
        except KaiErrors as e:
            errs.extend(e.errors)
        except KaiError as e:
            errs.append(e)
        except Exception as e:  # a bug, not bad input: still one line, never a traceback
            errs.append(_internal(p, e))
    if dossier_paths:
        against = programs[0] if len(programs) == 1 else None
        try:
            for ld in load_dossiers(dossier_paths, against):
                ok.append(f"{ld.path}: dossier for team '{ld.dossier.team.id}'")
        except KaiErrors as e:
            errs.extend(e.errors)
        except Exception as e:
            errs.append(_internal(dossier_paths[0], e))
    return ok, errs


def _internal(path: Path, e: Exception) -> KaiError:
    detail = " ".join(str(e).split())[:200]
    return KaiError(f"internal error while validating ({type(e).__name__}: {detail}); "
                    "please report this", where=str(path))
