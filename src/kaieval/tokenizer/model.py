"""What a tokenizer file is, once read: :class:`TokenizerFile`, and its encoder.

Why split description and encoder: lineage needs only the vocabulary, the order
the tokens were learned in and which ids are special; building an encoder (a
Rust ``tokenizers`` object, a SentencePiece processor, a tiktoken ``Encoding``)
costs time and, for tiktoken, a pre-tokenisation pattern that may be unknown.
So the encoder is built on first use (:meth:`TokenizerFile.encoder`), and a
lineage run never pays for it.

Canonical token strings: byte-level BPE spells bytes with GPT-2's printable
alphabet (``Ġ`` is a space), SentencePiece marks a word start with ``▁``,
tiktoken stores raw bytes. Lineage compares tokens across formats, so every
reader writes its tokens in one canonical form: text where the bytes are whole
UTF-8, a leading space instead of ``Ġ``/``▁``, and the byte-level spelling for
a partial character (:func:`canonical_bytes`, :func:`canonical_byte_level`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

#: The formats the loader knows, by the name messages and results use.
FORMATS = ("tokenizer.json", "vocab.json + merges.txt", "SentencePiece", "WordPiece vocab.txt",
           "tiktoken")


class Encoder(Protocol):
    """Batch encode / decode, never adding BOS/EOS, keeping special tokens on decode."""

    def encode(self, texts: list[str]) -> list[list[int]]: ...

    def decode(self, ids: list[list[int]]) -> list[str]: ...


_SPACE_MARKERS = ("\u0120", "\u2581")  # byte-level BPE "Ġ", SentencePiece "▁"


def normalise(token: str) -> str:
    """Write the leading-space marker of byte-level BPE and SentencePiece the same way."""
    return " " + token[1:] if token[:1] in _SPACE_MARKERS else token


@functools.cache
def byte_alphabet() -> tuple[dict[int, str], dict[str, int]]:
    """GPT-2's printable alphabet for bytes (what ByteLevel pre-tokenizers use), both ways."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    to_char = {b: chr(c) for b, c in zip(bs, cs, strict=True)}
    return to_char, {c: b for b, c in to_char.items()}


def canonical_bytes(raw: bytes) -> str:
    """A token given as bytes (tiktoken): text if whole UTF-8, else its byte-level spelling."""
    try:
        return normalise(raw.decode("utf-8"))
    except UnicodeDecodeError:
        to_char = byte_alphabet()[0]
        return normalise("".join(to_char[b] for b in raw))  # as canonical_byte_level does


def _byte_level_to_latin1() -> dict[int, int]:
    """``str.translate`` table: each byte-level character to the code point of its byte
    (so ``.encode("latin-1")`` gives the bytes); a character below 256 that is not in the
    alphabet goes to one latin-1 cannot encode, as do all others above 255 by themselves."""
    table = {ord(c): b for c, b in byte_alphabet()[1].items()}
    for x in range(256):
        table.setdefault(x, 0x10FFFF)
    return table


_TO_LATIN1 = _byte_level_to_latin1()


def canonical_byte_level(token: str) -> str:
    """A byte-level BPE token back to text where it is whole UTF-8; markers to a space.

    One ``translate`` and two codecs per token, in C, and no per-call set-up: a 150k
    vocabulary and its merges are 300k tokens, and the per-character Python loop this
    replaced took seconds of a 2 s budget (docs/performance.md)."""
    try:  # noqa: SIM105 - contextlib.suppress costs a context manager per call
        token = token.translate(_TO_LATIN1).encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass  # a special token or a partial character keeps its byte-level spelling
    return " " + token[1:] if token[:1] in _SPACE_MARKERS else token


def learned_order(tokens: Iterable[str], skip: set[str] | None = None) -> tuple[str, ...]:
    """Canonical learned tokens of two characters or more, first occurrence only, in order."""
    out: list[str] = []
    seen: set[str] = set()
    for c in tokens:
        if (skip and c in skip) or len(c) < 2 or c in seen:
            continue
        seen.add(c)
        out.append(c)
    return tuple(out)


def canonical_map(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Canonical token -> id; on a collision after canonicalisation the lowest id wins."""
    out: dict[str, int] = {}
    for token, idx in sorted(pairs, key=lambda p: p[1]):
        out.setdefault(token, idx)
    return out


@dataclass
class TokenizerFile:
    """One tokenizer, read: what lineage and efficiency need, and its encoder on demand.

    ``learned`` holds the tokens the algorithm learned (canonical string -> id);
    ``added`` the user-defined tokens a team added that are not special;
    ``specials`` the control / special tokens (as spelled in the file -> id).
    ``order`` is the learned tokens of two characters or more in the order they
    were created: BPE merges, tiktoken ranks, SentencePiece / Unigram pieces by
    score, WordPiece by id (the only order a ``vocab.txt`` has).
    """

    path: Path
    files: tuple[Path, ...]
    format: str
    kind: str  # "bpe", "unigram", "wordpiece", "wordlevel"
    sha256: str
    vocab_size: int
    learned: dict[str, int]
    added: dict[str, int]
    specials: dict[str, int]
    order: tuple[str, ...]
    unk_id: int | None = None
    byte_fallback_ids: frozenset[int] = frozenset()
    notes: tuple[str, ...] = ()
    build: Callable[[], Encoder] | None = None
    build_hf: Callable[[], Any] | None = None
    _encoder: Encoder | None = field(default=None, init=False, repr=False)

    @property
    def vocab(self) -> dict[str, int]:
        """Learned and user-defined tokens, canonical -> id (specials left out)."""
        return {**self.learned, **self.added}

    def encoder(self) -> Encoder:
        """The encoder, built once (may raise ``KaiError``, e.g. an unknown tiktoken pattern)."""
        if self._encoder is None:
            if self.build is None:  # pragma: no cover - every reader sets it
                raise RuntimeError("tokenizer has no encoder")
            self._encoder = self.build()
        return self._encoder

    def hf_tokenizer(self) -> Any:
        """This tokenizer as a ``tokenizers.Tokenizer`` (what transformers' fast tokenizers wrap).

        Why: the benchmark engine runs models through transformers, and builds the
        model's tokenizer from what this loader read rather than from the
        repository's tokenizer class. ``tokenizer.json``, ``vocab.json`` +
        ``merges.txt`` and WordPiece ``vocab.txt`` encode with a Rust tokenizer
        already; a tiktoken rank file is rebuilt as byte-level BPE
        (:func:`kaieval.tokenizer.tiktoken_file.hf_tokenizer`). SentencePiece has no
        converter here (transformers' needs ``protobuf``): ``KaiError``.
        """
        if self.build_hf is not None:
            return self.build_hf()
        enc = self.encoder()
        if isinstance(enc, HfEncoder):
            return enc.tok
        from kaieval.errors import KaiError

        raise KaiError(f"a {self.format} tokenizer cannot be built as a Hugging Face "
                       "tokenizer here", where=str(self.path))


class HfEncoder:
    """A ``tokenizers.Tokenizer``: Rust batch encode / decode."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[list[int]]) -> list[str]:
        out: list[str] = self.tok.decode_batch(ids, skip_special_tokens=False)
        return out
