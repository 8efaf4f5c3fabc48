"""tiktoken rank files: ``*.tiktoken`` and the tiktoken-format ``tokenizer.model``.

Why they need their own reader: Llama 3 and later ship a file named
``tokenizer.model`` that is not SentencePiece at all but lines of
``base64(token bytes) rank``; the rank is both the token id and the merge
order. The pre-tokenisation pattern is not in the file: it comes from the
registry (:mod:`kaieval.tokenizer.encodings`) or ``--pattern``, and the result
says which. Parsing is strict (``binascii`` in strict mode, integer ranks, no
repeated token or rank), and a bad line is named by number.
"""

from __future__ import annotations

import binascii
import json
import re
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.tokenizer.encodings import identify
from kaieval.tokenizer.hf_json import NotThisFormat
from kaieval.tokenizer.model import TokenizerFile, byte_alphabet, canonical_bytes, learned_order

_LINE = re.compile(rb"^[A-Za-z0-9+/=]+ [0-9]+\r?$")


def sniff(raw: bytes) -> bool:
    """The first line is ``base64 rank``."""
    first = raw[:400].split(b"\n", 1)[0]
    return bool(_LINE.match(first))


def parse_ranks(raw: bytes, where: str) -> dict[bytes, int]:
    """Token bytes -> rank, every line checked (one-line error naming the line)."""
    if not sniff(raw):
        raise NotThisFormat("line 1 is not 'base64 rank'")
    ranks: dict[bytes, int] = {}
    seen_ranks: set[int] = set()
    for n, line in enumerate(raw.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if not line:
            continue
        parts = line.split(b" ")
        if len(parts) != 2 or not parts[1].isdigit():
            raise KaiError("not a tiktoken line: expected 'base64 rank'", where=f"{where}:{n}")
        try:
            token = binascii.a2b_base64(parts[0], strict_mode=True)
        except binascii.Error as e:
            raise KaiError(f"bad base64 ({e})", where=f"{where}:{n}") from None
        rank = int(parts[1])
        if token in ranks:
            raise KaiError(f"token {token!r} repeated (rank {ranks[token]} and {rank})",
                           where=f"{where}:{n}")
        if rank in seen_ranks:
            raise KaiError(f"rank {rank} given twice", where=f"{where}:{n}")
        ranks[token] = rank
        seen_ranks.add(rank)
    return ranks


class TiktokenEncoder:
    """A ``tiktoken.Encoding``: threaded ordinary encode (no special tokens), batch decode."""

    def __init__(self, enc: Any) -> None:
        self.enc = enc

    def encode(self, texts: list[str]) -> list[list[int]]:
        out: list[list[int]] = self.enc.encode_ordinary_batch(texts)
        return out

    def decode(self, ids: list[list[int]]) -> list[str]:
        out: list[str] = self.enc.decode_batch(ids)
        return out


def bpe_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merges a rank file implies, in rank order (as transformers' ``TikTokenConverter``).

    tiktoken merges, at each step, the adjacent pair whose concatenation has the
    lowest rank; a BPE whose merges are every split of a token into two ranked
    parts, ordered by the token's rank (then by the parts' ranks), merges the same
    way. Single bytes need no merge.
    """
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return [(a, b) for _, _, _, a, b in merges]


def hf_tokenizer(ranks: dict[bytes, int], pattern: str,
                 added: list[tuple[str, int, bool]], where: str) -> Any:
    """A ``tokenizers.Tokenizer`` encoding as ``tiktoken`` does with ``pattern``.

    Byte-level BPE over GPT-2's byte alphabet, merges from :func:`bpe_merges`,
    ``ignore_merges`` (a piece that is itself ranked is one token, as in tiktoken),
    the pattern as an isolating split before the byte-level mapping. ``added``
    (content, id, special) are placed at their ids: a rank file has none of its
    own, they come from the encoding registry and ``tokenizer_config.json``.
    """
    from kaieval.tokenizer.load import import_or_explain

    tk = import_or_explain("tokenizers", where)
    to_char = byte_alphabet()[0]

    def spell(b: bytes) -> str:
        return "".join(to_char[c] for c in b)

    vocab = {spell(t): r for t, r in ranks.items()}
    taken = {r: t for t, r in vocab.items()}
    for content, idx, _ in added:
        if taken.get(idx, content) != content:
            raise KaiError(f"added token {content!r} has id {idx}, which the rank file gives "
                           f"to {taken[idx]!r}", where=where)
        if vocab.setdefault(content, idx) != idx:
            raise KaiError(f"added token {content!r} has id {idx} but rank {vocab[content]} "
                           "in the rank file", where=where)
        taken[idx] = content
    merges = [(spell(a), spell(b)) for a, b in bpe_merges(ranks)]
    spec: dict[str, Any] = {"version": "1.0", "added_tokens": [], "normalizer": None,
                            "pre_tokenizer": None, "post_processor": None, "decoder": None,
                            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                                      "continuing_subword_prefix": None,
                                      "end_of_word_suffix": None, "fuse_unk": False,
                                      "byte_fallback": False, "ignore_merges": True,
                                      "vocab": vocab, "merges": merges}}
    tok = tk.Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
    try:
        split = tk.pre_tokenizers.Split(tk.Regex(pattern), behavior="isolated")
    except Exception as e:  # the Rust regex compiler
        raise KaiError(f"pre-tokenisation pattern does not compile: {e}", where=where) from None
    tok.pre_tokenizer = tk.pre_tokenizers.Sequence(
        [split, tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = tk.decoders.ByteLevel()
    for content, _, special in added:  # already in the vocabulary: ids are kept
        token = tk.AddedToken(content, special=special, normalized=not special)
        (tok.add_special_tokens if special else tok.add_tokens)([token])
    return tok


def read(path: Path, raw: bytes, digest: str, *, pattern: str | None = None) -> TokenizerFile:
    """Read a rank file; ``NotThisFormat`` when line 1 is not ``base64 rank``."""
    where = str(path)
    ranks = parse_ranks(raw, where)
    ident = identify(digest, len(ranks), pattern)
    known = ident.encoding
    specials = dict(known.special_tokens) if known is not None else {}
    learned: dict[str, int] = {}
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        learned.setdefault(canonical_bytes(token), rank)
    order = learned_order(learned)  # dict order is rank order
    notes = [ident.how]
    if known is not None and known.special_count:
        notes.append(f"{known.special_count} special tokens in {known.name} "
                     f"({known.source}); not in the rank file")
    size = 1 + max([*ranks.values(), *specials.values()], default=-1)
    if known is not None and known.special_count:
        size = max(size, known.ranks + known.special_count)

    def build() -> TiktokenEncoder:
        from kaieval.tokenizer.load import import_or_explain

        if ident.pattern is None:
            raise KaiError(ident.how, where=where)
        tiktoken = import_or_explain("tiktoken", where)
        try:
            enc = tiktoken.Encoding(f"kaieval:{path.name}", pat_str=ident.pattern,
                                    mergeable_ranks=ranks, special_tokens=specials)
        except Exception as e:  # the Rust core rejects a bad pattern with a bare error
            raise KaiError(f"tiktoken refused the encoding: {str(e).splitlines()[0]}",
                           where=where) from None
        return TiktokenEncoder(enc)

    def build_hf() -> Any:
        from kaieval.tokenizer.bpe_folder import config_added_tokens, read_config

        if ident.pattern is None:
            raise KaiError(ident.how, where=where)
        # tokenizer_config.json beside the file names the ids of a model folder's specials
        cfg = config_added_tokens(read_config(path.parent),
                                  str(path.parent / "tokenizer_config.json"))
        named = {c for c, _, _ in cfg}
        added = sorted([*cfg, *((c, i, True) for c, i in specials.items() if c not in named)],
                       key=lambda t: t[1])
        return hf_tokenizer(ranks, ident.pattern, added, where)

    return TokenizerFile(path, (path,), "tiktoken", "bpe", digest, size, learned, {}, specials,
                         order, None, frozenset(), tuple(notes), build, build_hf)
