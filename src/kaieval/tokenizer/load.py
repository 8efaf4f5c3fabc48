"""The one tokenizer loader: a file or a model folder in, a :class:`TokenizerFile` out.

Why by content: Llama 3's ``tokenizer.model`` is a tiktoken rank file under a
SentencePiece name, a ``vocab.txt`` may be WordPiece or something else, and a
file handed over on the command line may be called anything. A folder is
searched by the names models ship (``tokenizer.json``, ``tokenizer.model``,
``vocab.json`` + ``merges.txt``, ``vocab.txt``, one ``*.tiktoken``); the chosen
file's bytes then decide the format. Formats whose signature matches are tried
first; a reader that recognises its format but finds it broken stops the search
with its own one-line error (naming the entry or line); a file no reader
recognises gets one line naming every format tried and why each refused it.

Untrusted input (docs/untrusted-files.md): a folder is walked by
``artifacts.check_tree`` first (FIFOs, devices, oversized known files, links out
of the folder); every file is read by ``read_bounded_bytes`` (regular files
only, the tokenizer size limit checked before reading); nothing is unpickled and
no repository code runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from kaieval.errors import KaiError
from kaieval.hashing import sha256_bytes
from kaieval.io import TOKENIZER_MAX_BYTES, read_bounded_bytes
from kaieval.tokenizer import (
    bpe_folder,
    hf_json,
    sentencepiece_model,
    tiktoken_file,
    wordpiece_vocab,
)
from kaieval.tokenizer.hf_json import NotThisFormat
from kaieval.tokenizer.model import TokenizerFile

#: Where a model folder keeps its tokenizer, in the order they are looked for.
FOLDER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json + merges.txt", "vocab.txt",
                "*.tiktoken")


def import_or_explain(module: str, where: str, package: str | None = None) -> ModuleType:
    """Import a tokenizer library, or one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - optional dependency
        raise KaiError(f"reading this tokenizer needs the `{package or module}` package "
                       "(pip install 'kaieval[hf]')", where=where) from None


def _folder_file(folder: Path) -> Path:
    """The tokenizer file of a model folder (``vocab.json`` stands for the BPE pair)."""
    for name in ("tokenizer.json", "tokenizer.model"):
        if (folder / name).is_file():
            return folder / name
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder / "vocab.json"
    if (folder / "vocab.txt").is_file():
        return folder / "vocab.txt"
    ranks = sorted(folder.glob("*.tiktoken"))
    if len(ranks) == 1:
        return ranks[0]
    if len(ranks) > 1:
        raise KaiError(f"{len(ranks)} *.tiktoken files in the folder: name one",
                       where=str(folder))
    raise KaiError("no tokenizer in the folder (looked for " + ", ".join(FOLDER_FILES) + ")",
                   where=str(folder))


def load_tokenizer(path: Path, *, pattern: str | None = None) -> TokenizerFile:
    """Read the tokenizer at ``path`` (a file or a model folder), detecting its format.

    ``pattern`` overrides the pre-tokenisation pattern of tiktoken files and
    ``vocab.json`` + ``merges.txt`` folders. Bad input -> one-line ``KaiError``.
    """
    path = Path(path)
    if not path.exists():
        raise KaiError("tokenizer not found", where=str(path))
    if path.is_dir():
        from kaieval.artifacts import check_tree

        check_tree(path)  # special files, oversized tokenizers, links out of the folder
        file = _folder_file(path)
    else:
        file = path
    raw = read_bounded_bytes(file, TOKENIZER_MAX_BYTES, "tokenizer files")
    digest = sha256_bytes(raw)
    where = str(file)

    def vocab_json(p: Path, r: bytes, d: str) -> TokenizerFile:
        if r.lstrip()[:1] != b"{":
            raise NotThisFormat("not a JSON object")
        if not (p.parent / "merges.txt").is_file():
            raise NotThisFormat("no merges.txt beside it")
        return bpe_folder.read(p.parent, pattern=pattern)

    readers: list[tuple[str, Callable[[bytes], bool], Callable[[], TokenizerFile]]] = [
        ("tokenizer.json", hf_json.sniff, lambda: hf_json.read(file, raw, digest)),
        ("vocab.json + merges.txt", lambda r: r.lstrip()[:1] == b"{",
         lambda: vocab_json(file, raw, digest)),
        ("tiktoken", tiktoken_file.sniff,
         lambda: tiktoken_file.read(file, raw, digest, pattern=pattern)),
        ("SentencePiece", lambda r: r[:1] == b"\x0a",
         lambda: sentencepiece_model.read(file, raw, digest)),
        ("WordPiece vocab.txt", wordpiece_vocab.sniff,
         lambda: wordpiece_vocab.read(file, raw, digest)),
    ]
    # formats whose signature matches go first; the rest are still tried
    readers.sort(key=lambda r: not r[1](raw))
    why: list[str] = []
    for name, _, read in readers:
        try:
            return read()
        except NotThisFormat as e:
            why.append(f"{name} ({e})")
    raise KaiError("not a tokenizer file kaieval can read; tried " + "; ".join(why),
                   where=where)
