"""Hugging Face ``tokenizer.json`` (BPE, Unigram, WordPiece, WordLevel), read as data.

Why parse the JSON ourselves when ``tokenizers`` can load it: lineage needs the
merge order, which tokens are special and which were added by hand, and a bad
file must be refused with a message that names the entry (a duplicated token, a
merge naming a token the vocabulary lacks) rather than the Rust loader's first
line. The encoder is the Rust tokenizer built from the same text, on demand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.io import parse_json
from kaieval.tokenizer.model import (
    HfEncoder,
    TokenizerFile,
    canonical_byte_level,
    canonical_map,
    learned_order,
    normalise,
)


class NotThisFormat(Exception):
    """The bytes are not this format (the loader then tries the next one)."""


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing a JSON object that repeats a key (a duplicated token)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate token {key!r}")
            seen.add(key)
    return out


def has_type(node: Any, wanted: str) -> bool:
    """Is there a ``{"type": wanted}`` anywhere in this pre-tokenizer/decoder tree?"""
    if isinstance(node, dict):
        return node.get("type") == wanted or any(has_type(v, wanted) for v in node.values())
    if isinstance(node, list):
        return any(has_type(v, wanted) for v in node)
    return False


def _int_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def sniff(raw: bytes) -> bool:
    """Looks like JSON (a vocab.json is JSON too, and is tried next)."""
    return looks_like_json(raw)


def looks_like_json(raw: bytes) -> bool:
    """An object, or an array of arrays / objects (a ``vocab.txt`` starting ``[PAD]`` is not)."""
    head = raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] == b"{":
        return True
    return head[:1] == b"[" and head[1:].lstrip(b" \t\r\n")[:1] in (b"[", b"{", b"]", b"")


def read(path: Path, raw: bytes, digest: str) -> TokenizerFile:
    """Read a ``tokenizer.json``; ``NotThisFormat`` when it is not one, ``KaiError`` when bad."""
    where = str(path)
    if not looks_like_json(raw):
        raise NotThisFormat("does not start with '{'")
    # JSON from here on: a file that does not parse is a broken tokenizer.json, said so
    data = parse_json(raw, where, object_pairs_hook=no_duplicate_keys)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        raise NotThisFormat("no 'model' object")
    added_raw = data.get("added_tokens") or []
    if not isinstance(added_raw, list):
        raise KaiError("added_tokens is not a list", where=where)
    specials: dict[str, int] = {}
    user: list[tuple[str, int]] = []
    for i, t in enumerate(added_raw):
        if not (isinstance(t, dict) and isinstance(t.get("content"), str) and _int_id(t.get("id"))):
            raise KaiError(f"added_tokens[{i}] has no string content and integer id", where=where)
        if t.get("special"):
            specials[t["content"]] = int(t["id"])
        else:
            user.append((t["content"], int(t["id"])))
    byte_level = has_type(data.get("pre_tokenizer"), "ByteLevel") or has_type(
        data.get("decoder"), "ByteLevel")
    canon = canonical_byte_level if byte_level else normalise
    vocab_raw = model.get("vocab")
    merges = model.get("merges")
    kind = str(model.get("type") or ("BPE" if merges is not None else "Unigram")).lower()
    pairs: list[tuple[str, int]] = []
    scores: list[tuple[float, int, str]] = []
    if isinstance(vocab_raw, dict):
        for token, idx in vocab_raw.items():
            if not _int_id(idx):
                raise KaiError(f"model.vocab[{token!r}] is not an integer id", where=where)
            pairs.append((token, idx))
    elif isinstance(vocab_raw, list):
        seen: set[str] = set()
        for i, item in enumerate(vocab_raw):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], int | float) and not isinstance(item[1], bool)):
                raise KaiError(f"model.vocab[{i}] is not a [piece, score] pair", where=where)
            if item[0] in seen:
                raise KaiError(f"model.vocab[{i}]: duplicate token {item[0]!r}", where=where)
            seen.add(item[0])
            pairs.append((item[0], i))
            scores.append((-float(item[1]), i, item[0]))
    else:
        raise KaiError("model.vocab is missing (expected an object or a list)", where=where)
    ids = [i for _, i in pairs]
    if len(set(ids)) != len(ids):
        raise KaiError("model.vocab gives two tokens the same id", where=where)
    in_vocab = {t for t, _ in pairs}
    skip = set(specials) | {t for t, _ in user}
    learned = canonical_map((canon(t), i) for t, i in pairs if t not in skip)
    added = canonical_map((normalise(t), i) for t, i in user if t not in in_vocab)
    byte_fallback = bool(model.get("byte_fallback"))
    if kind == "bpe":
        if not isinstance(merges, list):
            raise KaiError("model.merges is missing or not a list", where=where)
        created: list[str] = []
        for i, m in enumerate(merges):
            if isinstance(m, str) and m.count(" ") >= 1:
                left, right = m.split(" ", 1)
            elif isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m):
                left, right = m
            else:
                raise KaiError(f"model.merges[{i}] is not 'a b' or [a, b]", where=where)
            for part in (left, right, left + right):
                if part not in in_vocab:
                    raise KaiError(f"model.merges[{i}] names {part!r}, which is not in "
                                   "model.vocab", where=where)
            created.append(left + right)
        order = learned_order(canon(t) for t in created if t not in skip)
    elif scores:  # unigram: pieces by decreasing score (frequency order)
        order = learned_order(canon(p) for _, _, p in sorted(scores) if p not in skip)
    else:  # wordpiece / wordlevel: ids are the only order there is
        order = learned_order(canon(t) for t, _ in sorted(pairs, key=lambda p: p[1])
                              if t not in skip)
    unk_id: int | None = None
    unk = model.get("unk_token")
    if isinstance(unk, str):
        unk_id = next((i for t, i in pairs if t == unk), specials.get(unk))
    elif _int_id(model.get("unk_id")) and int(model["unk_id"]) < len(pairs):
        unk_id = pairs[int(model["unk_id"])][1]
    fallback_ids = frozenset(i for t, i in pairs if _is_byte_piece(t)) if byte_fallback \
        else frozenset()
    size = 1 + max([*ids, *specials.values(), *(i for _, i in user)], default=-1)
    notes = _notes(data)

    def build() -> HfEncoder:
        from kaieval.tokenizer.load import import_or_explain

        tokenizers = import_or_explain("tokenizers", where)
        try:
            tok = tokenizers.Tokenizer.from_str(raw.decode("utf-8-sig"))
        except Exception as e:  # the Rust loader raises a bare Exception
            raise KaiError(f"not a valid tokenizer.json: {str(e).splitlines()[0]}",
                           where=where) from None
        return HfEncoder(tok)

    return TokenizerFile(path, (path,), "tokenizer.json", kind, digest, size, learned, added,
                         specials, order, unk_id, fallback_ids, notes, build)


def _is_byte_piece(token: str) -> bool:
    """``<0xAB>``: a byte-fallback piece (SentencePiece and HF BPE/Unigram spell them so)."""
    return len(token) == 6 and token.startswith("<0x") and token.endswith(">") \
        and all(c in "0123456789ABCDEFabcdef" for c in token[3:5])


def _notes(data: dict[str, Any]) -> tuple[str, ...]:
    """What the normaliser does to Korean text, said where it is not the identity."""
    norm = data.get("normalizer")
    notes = []
    if has_type(norm, "Lowercase") or (isinstance(norm, dict) and norm.get("lowercase")):
        notes.append("normaliser lower-cases text")
    bert_strips = False
    if isinstance(norm, dict) and norm.get("type") == "BertNormalizer":
        strip = norm.get("strip_accents")
        bert_strips = bool(strip) or (strip is None and bool(norm.get("lowercase")))
    if has_type(norm, "StripAccents") or bert_strips:
        notes.append("normaliser strips accents: Hangul syllables are decomposed into jamo")
    for form in ("NFKC", "NFKD", "NFD"):
        if has_type(norm, form):
            notes.append(f"normaliser applies {form}")
    return tuple(notes)
