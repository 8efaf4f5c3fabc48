"""Model folders as untrusted input: the one folder check and the one content hash.

A model folder is only ever read as safetensors: pickle checkpoints (``.bin``,
``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) are refused and never opened, because
unpickling runs code. :func:`check_model_dir` is what every loader calls
before it touches a folder; :func:`model_hash` is the content hash that keys
cached measurements and request caches to the exact files measured.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NoReturn

from kaieval.errors import KaiError

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".ckpt"})
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


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
    for the same folders' hashes.
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
    for file in files:
        inner = hashlib.sha256()
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                inner.update(block)
        outer.update(f"{file.relative_to(path).as_posix()}\0{inner.hexdigest()}\n".encode())
    _HASHES[sig] = outer.hexdigest()
    return _HASHES[sig]


_HASHES: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}
