"""SentencePiece ``.model`` files (a ``ModelProto``), read as data.

Why a protobuf reader of our own: the ``sentencepiece`` binding does not say
which pieces are user-defined, and ``protobuf`` is not a dependency. The
ModelProto fields we need (pieces with their type and score, the trainer's
``model_type`` and ``byte_fallback``, the normaliser's name and whitespace
rules) are a few dozen lines of wire-format reading, and the reader doubles as
the content check: a file that is not a ModelProto fails here, in one line,
before the native parser sees it. Encoding goes through ``sentencepiece``'s
threaded list encode, from the same bytes (the library never opens the path).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.tokenizer.hf_json import NotThisFormat
from kaieval.tokenizer.model import TokenizerFile, canonical_map, learned_order, normalise

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise NotThisFormat("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message; bytes for length-delimited."""
    out: list[tuple[int, int, Any]] = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise NotThisFormat("field number 0")
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise NotThisFormat(f"wire type {wire} is not used by ModelProto")
        if pos > end:
            raise NotThisFormat("a field runs past the end of the file")
        out.append((number, wire, value))
    return out


def parse_model(raw: bytes) -> tuple[list[tuple[str, float, int]], dict[str, Any]]:
    """The pieces (piece, score, type) and the settings we report, or ``NotThisFormat``."""
    top = fields(raw)
    pieces: list[tuple[str, float, int]] = []
    settings: dict[str, Any] = {"model_type": "unigram", "byte_fallback": False,
                                "normalizer": "nmt_nfkc", "remove_extra_whitespaces": True}
    for number, wire, value in top:
        if number == 1:
            if wire != 2:
                raise NotThisFormat("field 1 is not a piece message")
            piece, score, kind = None, 0.0, NORMAL
            for n, w, v in fields(value):
                if n == 1 and w == 2:
                    try:
                        piece = v.decode("utf-8")
                    except UnicodeDecodeError:
                        raise NotThisFormat("a piece is not UTF-8") from None
                elif n == 2 and w == 5:
                    score = struct.unpack("<f", v)[0]
                elif n == 3 and w == 0:
                    kind = v
            if piece is None:
                raise NotThisFormat("a piece message has no piece")
            pieces.append((piece, score, kind))
        elif number == 2 and wire == 2:
            for n, w, v in fields(value):
                if n == 3 and w == 0:
                    settings["model_type"] = MODEL_TYPES.get(v, str(v))
                elif n == 35 and w == 0:
                    settings["byte_fallback"] = bool(v)
        elif number == 3 and wire == 2:
            for n, w, v in fields(value):
                if n == 1 and w == 2:
                    settings["normalizer"] = v.decode("utf-8", "replace")
                elif n == 4 and w == 0:
                    settings["remove_extra_whitespaces"] = bool(v)
    if not pieces:
        raise NotThisFormat("no pieces")
    return pieces, settings


class SpEncoder:
    """``sentencepiece``: threaded list encode / decode, no BOS/EOS."""

    def __init__(self, sp: Any) -> None:
        self.sp = sp

    def encode(self, texts: list[str]) -> list[list[int]]:
        out: list[list[int]] = self.sp.encode(texts, out_type=int, add_bos=False,
                                              add_eos=False, num_threads=-1)
        return out

    def decode(self, ids: list[list[int]]) -> list[str]:
        out: list[str] = self.sp.decode(ids, num_threads=-1)
        return out


def read(path: Path, raw: bytes, digest: str) -> TokenizerFile:
    """Read a SentencePiece model; ``NotThisFormat`` when the bytes are not a ModelProto."""
    if raw[:1] != b"\x0a":  # every ModelProto starts with field 1 (a piece), wire type 2
        raise NotThisFormat("does not start with a piece (protobuf field 1)")
    pieces, settings = parse_model(raw)
    where = str(path)
    specials = {p: i for i, (p, _, k) in enumerate(pieces) if k in (UNKNOWN, CONTROL, UNUSED)}
    added = canonical_map((normalise(p), i) for i, (p, _, k) in enumerate(pieces)
                          if k == USER_DEFINED)
    learned = canonical_map((normalise(p), i) for i, (p, _, k) in enumerate(pieces)
                            if k in (NORMAL, BYTE))
    scored = sorted((-s, i, p) for i, (p, s, k) in enumerate(pieces) if k == NORMAL)
    order = learned_order(normalise(p) for _, _, p in scored)
    unk_id = next((i for i, (_, _, k) in enumerate(pieces) if k == UNKNOWN), None)
    fallback = frozenset(i for i, (_, _, k) in enumerate(pieces) if k == BYTE)
    notes = [f"SentencePiece {settings['model_type']}",
             "byte fallback on" if settings["byte_fallback"] else "no byte fallback"]
    if "nfkc" in str(settings["normalizer"]).lower():
        notes.append(f"normaliser {settings['normalizer']} (NFKC: compatibility jamo such as "
                     "ㅋ become conjoining jamo)")
    if settings["remove_extra_whitespaces"]:
        notes.append("removes extra whitespace (runs of spaces and line breaks collapse)")

    def build() -> SpEncoder:
        from kaieval.tokenizer.load import import_or_explain

        spm = import_or_explain("sentencepiece", where)
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(raw)
        except (RuntimeError, OSError, TypeError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise KaiError(f"not a SentencePiece model: {msg.split(' from ')[0]}",
                           where=where) from None
        return SpEncoder(sp)

    kind = settings["model_type"] if settings["model_type"] in ("bpe", "unigram") else "unigram"
    return TokenizerFile(path, (path,), "SentencePiece", kind, digest, len(pieces), learned,
                         added, specials, order, unk_id, fallback, tuple(notes), build)
