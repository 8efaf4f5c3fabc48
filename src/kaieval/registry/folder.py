"""A registry folder: ``registry.yaml`` plus the fingerprint files it owns.

Why a folder and not the database: references are large files, shared between
programmes and stages, and reviewed by people (which models does the gate check
against, from which country, under which licence). A folder with one YAML file is
easy to read, copy, put under version control and sign off; the store keeps the
results, which name the references by their content hash.

Each entry is either a **fingerprint** (written by ``kai provenance fingerprint``;
about 5 % of the weights, read in seconds) or a **folder** link to a full model
(every weight test at full power, read in full each time). ``kai registry add`` on a
model folder writes a fingerprint unless ``--link`` asks for the folder itself. Every
entry records the content hash it had when added; a reference whose content changed
since is refused when it is used, so a gate never checks against a file nobody
registered.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import shutil
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field

from kaieval.errors import KaiError
from kaieval.hashing import sha256_file
from kaieval.spec.messages import COUNTRY_PATTERN
from kaieval.spec.program import Strict

REGISTRY_FILE = "registry.yaml"
SCHEMA = "kaieval/registry/v1"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$"
_LOCK = ".registry.lock"


class RegistryEntry(Strict):
    """One reference model and what is known about it."""

    name: str = Field(pattern=NAME_PATTERN, description="unique within the registry")
    family: str = Field(default="", description="model family, e.g. llama, qwen")
    origin: str = Field(pattern=COUNTRY_PATTERN + "|^unknown$",
                        description="country of the organisation that released it")
    licence: str = "unknown"
    released: str = Field(default="", description="release date as published (YYYY-MM[-DD])")
    kind: Literal["fingerprint", "folder"]
    file: str = Field(min_length=1, description="fingerprint file inside the registry folder, "
                                                "or the model folder (absolute path)")
    sha256: str = Field(pattern=r"^sha256:[0-9a-f]{64}$",
                        description="content hash when added (file hash, or model-folder hash)")
    added_from: str = ""
    added_at: str = ""


class RegistryFile(Strict):
    schema_: Literal["kaieval/registry/v1"] = Field(alias="schema")
    references: tuple[RegistryEntry, ...] = ()

    model_config = Strict.model_config | {"populate_by_name": True}


@dataclass(frozen=True)
class Registry:
    folder: Path
    entries: tuple[RegistryEntry, ...]

    def path_of(self, entry: RegistryEntry) -> Path:
        p = Path(entry.file)
        return p if p.is_absolute() else self.folder / p

    def find(self, name: str) -> RegistryEntry | None:
        key = _fold(name)
        return next((e for e in self.entries if _fold(e.name) == key), None)

    def current_hash(self, entry: RegistryEntry) -> str:
        """The entry's content hash now; a ``KaiError`` naming the entry if it is gone."""
        path = self.path_of(entry)
        where = f"{self.folder / REGISTRY_FILE}: reference '{entry.name}'"
        if entry.kind == "fingerprint":
            if not path.is_file():
                raise KaiError(f"fingerprint file {path} is missing", where=where)
            st = path.stat()  # every team's job checks every reference: hash each file once
            sig = (str(path.resolve()), st.st_size, st.st_mtime_ns)
            if sig not in _FILE_HASHES:
                _FILE_HASHES[sig] = sha256_file(path)
            return _FILE_HASHES[sig]
        from kaieval.artifacts import model_hash

        if not path.is_dir():
            raise KaiError(f"model folder {path} is missing", where=where)
        return "sha256:" + model_hash(path)

    def verified_path(self, entry: RegistryEntry, current: str | None = None) -> Path:
        """The entry's file or folder, refused if its content changed since it was added."""
        now = current if current is not None else self.current_hash(entry)
        if now != entry.sha256:
            raise KaiError(f"content changed since it was registered ({entry.sha256[:19]}… "
                           f"then, {now[:19]}… now); re-add it with --replace if intended",
                           where=f"{self.folder / REGISTRY_FILE}: reference '{entry.name}'")
        return self.path_of(entry)


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def default_registry_dir() -> Path:
    """``$KAI_REGISTRY`` or ``./registry`` (beside the default store, ``./kaieval.sqlite``)."""
    env = os.environ.get("KAI_REGISTRY")
    return Path(env) if env else Path("registry")


def load_registry(folder: Path) -> Registry:
    """The registry in ``folder``; an absent folder or file is an empty registry."""
    from kaieval.spec.yamlload import load_yaml, parse_model

    folder = Path(folder)
    path = folder / REGISTRY_FILE
    if folder.exists() and not folder.is_dir():
        raise KaiError("not a folder (give the registry's folder)", where=str(folder))
    if not path.exists():
        return Registry(folder, ())
    parsed = parse_model(RegistryFile, load_yaml(path))
    seen: set[str] = set()
    for e in parsed.references:
        if _fold(e.name) in seen:
            raise KaiError(f"reference name '{e.name}' appears twice", where=str(path))
        seen.add(_fold(e.name))
    return Registry(folder, parsed.references)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer at a time: two ``kai registry add`` in parallel must not lose an entry."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / _LOCK).open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write(registry: Registry) -> None:
    from kaieval.io import atomic_write_text

    data = {"schema": SCHEMA,
            "references": [e.model_dump(mode="json") for e in registry.entries]}
    text = ("# kaieval reference registry: `kai registry add` writes this file.\n"
            + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    atomic_write_text(registry.folder / REGISTRY_FILE, text)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def add_reference(folder: Path, source: Path, *, name: str, origin: str, licence: str = "unknown",
                  family: str = "", released: str = "", link: bool = False,
                  replace: bool = False) -> RegistryEntry:
    """Register ``source`` (a model folder or a fingerprint file) under ``name``.

    A model folder becomes a fingerprint inside the registry unless ``link`` keeps a
    reference to the folder itself. Nothing is written unless the whole entry is valid.
    """
    from pydantic import ValidationError

    from kaieval.provenance.fingerprint import is_fingerprint, write_fingerprint

    source = Path(source)
    if not source.exists():
        raise KaiError("not found (give a model folder or a fingerprint file)",
                       where=str(source))
    if source.is_file() and not is_fingerprint(source):
        raise KaiError("not a kaieval fingerprint (give a model folder, or a file written by "
                       "`kai provenance fingerprint`)", where=str(source))
    if not source.is_file() and not source.is_dir():
        raise KaiError("not a regular file or folder", where=str(source))
    if link and source.is_file():
        raise KaiError("--link keeps a model folder; a fingerprint file is copied",
                       where=str(source))
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    base = {"name": name, "origin": origin, "licence": licence, "family": family,
            "released": released, "added_from": str(source.resolve()), "added_at": now}
    try:  # check the metadata before any slow work
        RegistryEntry.model_validate({**base, "kind": "folder", "file": "x",
                                      "sha256": "sha256:" + "0" * 64})
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise KaiError(f"{field}: {first['msg']}", where="kai registry add") from None
    folder = Path(folder)
    with _locked(folder):
        reg = load_registry(folder)
        old = reg.find(name)
        if old is not None and not replace:
            raise KaiError(f"a reference named '{old.name}' is already registered (use "
                           "--replace to supersede it)", where=str(folder / REGISTRY_FILE))
        if link:
            from kaieval.artifacts import model_hash

            entry = RegistryEntry(**base, kind="folder", file=str(source.resolve()),
                                  sha256="sha256:" + model_hash(source))
        else:
            target = folder / f"{_slug(name)}.fp.safetensors"
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                if source.is_dir():
                    write_fingerprint(source, tmp)
                else:
                    shutil.copyfile(source, tmp)
                digest = sha256_file(tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            entry = RegistryEntry(**base, kind="fingerprint", file=target.name, sha256=digest)
        kept = tuple(e for e in reg.entries if old is None or e.name != old.name)
        _write(Registry(folder, (*kept, entry)))
    return entry
