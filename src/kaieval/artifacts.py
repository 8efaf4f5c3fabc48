"""Model folders as untrusted input: the one folder check and the one content hash.

A model folder is only ever read as safetensors: pickle checkpoints (``.bin``,
``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) are refused and never opened, because
unpickling runs code. :func:`check_model_dir` is what every loader calls
before it touches a folder; :func:`model_hash` is the content hash that keys
cached measurements and request caches to the exact files measured.

:func:`check_tree` is the part every engine shares (``check_model_dir`` and the
provenance reader call it): everything in the folder must be a regular file or a folder
(a FIFO would hang a reader, a device never ends), known small files must be within
their size limits (:mod:`kaieval.io`), and a symbolic link must resolve inside the
allowed root (:func:`allowed_roots`): the folder itself, or the folder of the dossier
that names it, or -- for a Hugging Face cache snapshot, whose files link to
``../../blobs/`` -- the cache's ``models--ORG--NAME`` folder. Links to folders are
refused (the cache never makes them; they could loop).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from kaieval.errors import KaiError
from kaieval.filehash import sha256_hex
from kaieval.io import CONFIG_MAX_BYTES, INDEX_MAX_BYTES, TOKENIZER_MAX_BYTES, size_error

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".ckpt"})
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


SIZE_LIMITS: dict[str, tuple[int, str]] = {
    **dict.fromkeys(("config.json", "generation_config.json", "tokenizer_config.json",
                     "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                     "chat_template.json", "preprocessor_config.json",
                     "processor_config.json"), (CONFIG_MAX_BYTES, "config files")),
    "model.safetensors.index.json": (INDEX_MAX_BYTES, "safetensors index files"),
    **dict.fromkeys(("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt",
                     "spiece.model", "sentencepiece.bpe.model", "vocab.txt"),
                    (TOKENIZER_MAX_BYTES, "tokenizer files")),
}
"""Files read whole (by kaieval or by a library it hands the folder to) and their limits."""

_DOSSIER_ROOT: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "kaieval_dossier_root", default=None)


@contextlib.contextmanager
def dossier_root(folder: Path) -> Iterator[None]:
    """While inside, model folders under ``folder`` may hold links anywhere inside it.

    The pipeline's engines run in this context with the dossier's folder, so a model
    folder a dossier names follows the dossier rule (links stay in the dossier's folder)
    without every reader taking the dossier as an argument.
    """
    token = _DOSSIER_ROOT.set(Path(folder).resolve())
    try:
        yield
    finally:
        _DOSSIER_ROOT.reset(token)


def allowed_roots(folder: Path) -> tuple[Path, ...]:
    """Where links inside ``folder`` may lead: the folder, the dossier's folder when the
    model folder is inside it, and a Hugging Face cache repo (``models--*``) when the
    folder is inside one of its ``snapshots/``."""
    real = Path(folder).resolve()
    roots = [real]
    dossier = _DOSSIER_ROOT.get()
    if dossier is not None and real.is_relative_to(dossier):
        roots.append(dossier)
    for parent in real.parents:
        if parent.name.startswith("models--") and real.is_relative_to(parent / "snapshots"):
            roots.append(parent)
            break
    return tuple(roots)


def check_tree(folder: Path) -> None:
    """Refuse special files, oversized known files and links that leave the allowed roots.

    Walks ``folder`` without following links (hidden entries are skipped, as by the
    readers). One-line :class:`KaiError` naming the entry.
    """
    folder = Path(folder)
    roots = allowed_roots(folder)
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath)
        for name in sorted(dirnames + [f for f in filenames if not f.startswith(".")]):
            entry = base / name
            where = str(entry)
            if entry.is_symlink():
                target = entry.resolve()
                if not any(target.is_relative_to(r) for r in roots):
                    raise KaiError(f"is a symbolic link to {target}, outside "
                                   f"{roots[-1] if len(roots) > 1 else roots[0]}: refused",
                                   where=where)
                if target.is_dir():
                    raise KaiError("is a symbolic link to a folder: refused (link the "
                                   "files, or copy the folder)", where=where)
            try:
                st = entry.stat()
            except OSError:
                continue  # a dangling link: absent, as far as the readers are concerned
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket"
                        if stat.S_ISSOCK(st.st_mode) else "a device"
                        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                        else "not a regular file")
                raise KaiError(f"is {kind}, not a regular file: refused", where=where)
            limit = SIZE_LIMITS.get(name)
            if limit is not None and st.st_size > limit[0]:

                raise size_error(st.st_size, limit[0], limit[1], where)


def is_pickle(path: Path) -> bool:
    """Whether a file name says pickle checkpoint (by suffix; the file is never opened)."""
    return path.suffix.lower() in PICKLE_SUFFIXES


def refuse_pickle(path: Path, where: Path | None = None) -> NoReturn:
    """Raise the one error for a pickle checkpoint (``where``: the folder it was found in)."""
    name = path.relative_to(where) if where is not None else path.name
    raise KaiError(f"pickle checkpoint {name} refused (never unpickled); convert the weights "
                   "to safetensors", where=str(where if where is not None else path))


def check_model_dir(path: Path, *, pickles_beside_safetensors: bool = False) -> list[Path]:
    """Refuse what must not be loaded; return the folder's top-level ``*.safetensors`` files.

    The folder must exist and hold ``config.json``, safetensors weights and a
    tokenizer. A pickle checkpoint anywhere in it (sub-folders included) is refused,
    unless ``pickles_beside_safetensors``: then pickles are tolerated next to the
    safetensors weights that are loaded instead (a loader that passes
    ``use_safetensors=True``), and refused only where they would be the weights.
    """
    path = Path(path)
    if not path.is_dir():
        raise KaiError("model directory not found", where=str(path))
    check_tree(path)
    weights = sorted(p for p in path.glob("*.safetensors") if p.is_file())
    if not (pickles_beside_safetensors and weights):
        pickles = sorted(p for p in path.rglob("*") if p.is_file() and is_pickle(p))
        if pickles:
            refuse_pickle(pickles[0], path)
    if not weights:
        raise KaiError("no *.safetensors weights in the model directory", where=str(path))
    if not (path / "config.json").is_file():
        raise KaiError("no config.json: not a Hugging Face model folder", where=str(path))
    if not any((path / n).is_file() for n in TOKENIZER_FILES):
        raise KaiError("model directory has no tokenizer (tokenizer.json, tokenizer.model or "
                       "vocab.json)", where=str(path))
    return weights


def model_hash(path: Path) -> str:
    """sha256 over every file's relative path and content, sub-folders included.

    Weights, tokenizer, configs and chat templates all count; hidden files
    (build stamps, temp files) do not, so rebuilding identical files keeps the hash.
    Computed once per process for files whose names, sizes and modification times are
    unchanged: planning a stage, keying its jobs and checking its references all ask
    for the same folders' hashes. Across processes, each large file's digest is
    remembered by its identity and state (:mod:`kaieval.filehash`), so a run does not
    read every weight before its first forward pass.
    """
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    sig = (str(path.resolve()), tuple((f.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns)
                                      for f in files for st in (f.stat(),)))
    known = _HASHES.get(sig)
    if known is not None:
        return known
    outer = hashlib.sha256()
    for file in files:  # each large file's digest is remembered across processes
        outer.update(f"{file.relative_to(path).as_posix()}\0{sha256_hex(file)}\n".encode())
    _HASHES[sig] = outer.hexdigest()
    return _HASHES[sig]


_HASHES: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}
