"""Token-string vocabularies from ``tokenizer.json``, to line up embedding rows across tokenizers.

Why: a team that takes a foreign model and swaps or extends its tokenizer still
carries the foreign embedding rows of every token the two vocabularies share.
Comparing rows by token *string* (not id) finds them; comparing by id, or
giving up because the shapes differ, would miss them. The file is read as plain
JSON -- no ``transformers`` and no tokenizer code is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kaieval.errors import KaiError
from kaieval.io import TOKENIZER_MAX_BYTES, load_json_file
from kaieval.tokenizer.model import normalise


def read_vocab(path: Path) -> dict[str, int]:
    """Token string -> id from a ``tokenizer.json`` (BPE, WordPiece, WordLevel or Unigram).

    On a collision after normalisation the lower id is kept, so the map is deterministic.
    """
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
    vocab: dict[str, int] = {}
    for token, idx in sorted(pairs, key=lambda p: p[1]):
        vocab.setdefault(normalise(token), idx)
    return vocab


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
