"""Token-string vocabularies of a model's tokenizer, to line up embedding rows across tokenizers.

Why: a team that takes a foreign model and swaps or extends its tokenizer still
carries the foreign embedding rows of every token the two vocabularies share.
Comparing rows by token *string* (not id) finds them; comparing by id, or
giving up because the shapes differ, would miss them. Files are read as data --
no ``transformers`` and no tokenizer code is loaded.

Every format :mod:`kaieval.tokenizer` reads is accepted (the loader detects and
validates it first). Tokens are spelled as the file spells them -- byte-level
BPE's printable alphabet, SentencePiece's pieces -- with the leading-space
marker written as a space: the spelling ``tokenizer.json`` has always been read
with, which fingerprint files store. A tiktoken rank file's bytes are written in
the byte-level alphabet, as transformers converts such files to
``tokenizer.json``, so a tiktoken ``tokenizer.model`` lines up with the
``tokenizer.json`` of the same tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from kaieval.errors import KaiError
from kaieval.io import TOKENIZER_MAX_BYTES, load_json_file
from kaieval.tokenizer.model import normalise

if TYPE_CHECKING:
    from kaieval.provenance.safetensors_io import ModelWeights


def read_vocab(path: Path) -> dict[str, int]:
    """Token string -> id of a tokenizer file or model folder, in any format the loader reads.

    ``tokenizer.json`` (BPE, WordPiece, WordLevel or Unigram) is read as before; other
    formats by :func:`_other_format_pairs`. On a collision after normalisation the lower
    id is kept, so the map is deterministic.
    """
    path = Path(path)
    if path.is_file() and path.name == "tokenizer.json":
        return _tokenizer_json(path)
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return _tokenizer_json(path / "tokenizer.json")
    return _lowest_ids(_other_format_pairs(path))


def model_vocab(weights: ModelWeights) -> dict[str, int] | None:
    """The row vocabulary of an opened model, or ``None`` when it has no usable tokenizer.

    A ``tokenizer.json`` is read as it always was (a broken one is an error). A folder
    whose tokenizer is in another format is read through the loader; one the loader
    cannot read leaves the rows unaligned (by id), as a folder without a tokenizer did.
    """
    if weights.tokenizer is not None:
        return read_vocab(weights.tokenizer)
    if not weights.root.is_dir():
        return None
    try:
        return read_vocab(weights.root)
    except KaiError:
        return None


def _lowest_ids(pairs: list[tuple[str, int]]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for token, idx in sorted(pairs, key=lambda p: p[1]):
        vocab.setdefault(normalise(token), idx)
    return vocab


def _other_format_pairs(path: Path) -> list[tuple[str, int]]:
    """(token as the file spells it, id) of a tokenizer that is not ``tokenizer.json``."""
    from kaieval.io import read_bounded_bytes
    from kaieval.tokenizer import load_tokenizer
    from kaieval.tokenizer import sentencepiece_model as spm
    from kaieval.tokenizer.bpe_folder import config_added_tokens, read_config
    from kaieval.tokenizer.model import byte_alphabet
    from kaieval.tokenizer.tiktoken_file import parse_ranks
    from kaieval.tokenizer.wordpiece_vocab import parse_vocab

    loaded = load_tokenizer(path)  # detects the format; a bad file is its one-line error
    if loaded.format == "tokenizer.json":
        return list(_tokenizer_json(loaded.files[0]).items())
    file = loaded.files[0]
    where = str(file)
    raw = read_bounded_bytes(file, TOKENIZER_MAX_BYTES, "tokenizer files")
    folder = file.parent
    pairs: list[tuple[str, int]] = []
    if loaded.format == "vocab.json + merges.txt":
        vocab = load_json_file(file, max_bytes=TOKENIZER_MAX_BYTES, what="tokenizer files")
        pairs = [(t, i) for t, i in vocab.items()]
    elif loaded.format == "SentencePiece":
        pieces, _ = spm.parse_model(raw)
        pairs = [(p, i) for i, (p, _, _) in enumerate(pieces)]
    elif loaded.format == "WordPiece vocab.txt":
        pairs = [(t, i) for i, t in enumerate(parse_vocab(raw, where))]
    elif loaded.format == "tiktoken":
        to_char = byte_alphabet()[0]
        pairs = [("".join(to_char[b] for b in t), r) for t, r in parse_ranks(raw, where).items()]
        pairs += list(loaded.specials.items())
    else:  # pragma: no cover - every loader format is listed above
        raise KaiError(f"no vocabulary reader for {loaded.format}", where=where)
    if loaded.format in ("vocab.json + merges.txt", "tiktoken"):
        # added tokens live in tokenizer_config.json, at the ids it gives
        pairs += [(c, i) for c, i, _ in config_added_tokens(
            read_config(folder), str(folder / "tokenizer_config.json"))]
    return pairs


def _tokenizer_json(path: Path) -> dict[str, int]:
    """Token string -> id from a ``tokenizer.json``."""
    where = str(path)
    data = load_json_file(path, max_bytes=TOKENIZER_MAX_BYTES, what="tokenizer files")
    model = data.get("model") if isinstance(data, dict) else None
    raw = model.get("vocab") if isinstance(model, dict) else None
    pairs: list[tuple[str, int]] = []
    if isinstance(raw, dict):
        pairs = [(t, i) for t, i in raw.items() if isinstance(i, int)]
        if len(pairs) != len(raw):
            raise KaiError("model.vocab has a non-integer id", where=where)
    elif isinstance(raw, list):  # Unigram: [[piece, score], ...], id = position
        for i, item in enumerate(raw):
            if not (isinstance(item, list) and item and isinstance(item[0], str)):
                raise KaiError(f"model.vocab[{i}] is not a [piece, score] pair", where=where)
            pairs.append((item[0], i))
    else:
        raise KaiError("no model.vocab (expected an object or a list)", where=where)
    for tok in data.get("added_tokens") or []:
        if isinstance(tok, dict) and isinstance(tok.get("content"), str) \
                and isinstance(tok.get("id"), int):
            pairs.append((tok["content"], tok["id"]))
    return _lowest_ids(pairs)


@dataclass(frozen=True)
class SharedRows:
    """Row indices of the tokens two vocabularies share, in matching order."""

    candidate: npt.NDArray[np.intp]
    reference: npt.NDArray[np.intp]
    candidate_size: int
    reference_size: int

    @property
    def count(self) -> int:
        return len(self.candidate)

    @property
    def fraction(self) -> float:
        """Share of the candidate's vocabulary also in the reference's (0 when empty)."""
        return self.count / self.candidate_size if self.candidate_size else 0.0

    @property
    def identical(self) -> bool:
        """Same strings at the same ids: rows can be compared directly."""
        return (self.count == self.candidate_size == self.reference_size
                and bool(np.array_equal(self.candidate, self.reference)))


def shared_rows(candidate: dict[str, int], reference: dict[str, int], *,
                candidate_rows: int, reference_rows: int) -> SharedRows:
    """Pair rows by token string, keeping only ids inside each embedding matrix."""
    tokens = sorted(t for t in candidate.keys() & reference.keys()
                    if candidate[t] < candidate_rows and reference[t] < reference_rows)
    tokens.sort(key=lambda t: candidate[t])
    return SharedRows(
        np.array([candidate[t] for t in tokens], dtype=np.intp),
        np.array([reference[t] for t in tokens], dtype=np.intp),
        len(candidate), len(reference))
