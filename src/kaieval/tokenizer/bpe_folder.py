"""A GPT-2-style folder: ``vocab.json`` + ``merges.txt`` (+ ``tokenizer_config.json``).

Why: several widely used model families publish their byte-level BPE this way,
without a ``tokenizer.json``. ``transformers`` would build it through the
model's tokenizer class, possibly with remote code; we never run that. The
encoder is built from the two files with the ``tokenizers`` library: ByteLevel
pre-tokenisation with GPT-2's pattern, or the pattern of a known
``tokenizer_class`` (:data:`~kaieval.tokenizer.encodings.FOLDER_PATTERNS`), or
``--pattern``; added tokens come from ``tokenizer_config.json``'s
``added_tokens_decoder`` at the ids it gives (checked, never renumbered).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.hashing import sha256_bytes
from kaieval.io import CONFIG_MAX_BYTES, TOKENIZER_MAX_BYTES, parse_json, read_bounded_bytes
from kaieval.tokenizer.encodings import FOLDER_PATTERNS
from kaieval.tokenizer.hf_json import NotThisFormat, no_duplicate_keys
from kaieval.tokenizer.model import (
    HfEncoder,
    TokenizerFile,
    canonical_byte_level,
    canonical_map,
    learned_order,
    normalise,
)

#: Tokenizer classes that pre-tokenise with GPT-2's own byte-level pattern.
GPT2_CLASSES = frozenset({"GPT2Tokenizer", "GPT2TokenizerFast", "RobertaTokenizer",
                          "RobertaTokenizerFast", "BartTokenizer", "BartTokenizerFast",
                          "CodeGenTokenizer", "CodeGenTokenizerFast", "GPTNeoXTokenizerFast"})


def read_config(folder: Path) -> dict[str, Any]:
    """``tokenizer_config.json`` of a folder (bounded, depth-checked), or ``{}`` when absent."""
    cfg = folder / "tokenizer_config.json"
    if not cfg.is_file():
        return {}
    data = parse_json(read_bounded_bytes(cfg, CONFIG_MAX_BYTES, "config files"), str(cfg))
    if not isinstance(data, dict):
        raise KaiError("not a JSON object", where=str(cfg))
    return data


def config_added_tokens(cfg: dict[str, Any], where: str) -> list[tuple[str, int, bool]]:
    """``added_tokens_decoder`` as (content, id, special), sorted by id."""
    table = cfg.get("added_tokens_decoder") or {}
    if not isinstance(table, dict):
        raise KaiError("added_tokens_decoder is not an object", where=where)
    out: list[tuple[str, int, bool]] = []
    for key, entry in table.items():
        if not (str(key).isdigit() and isinstance(entry, dict)
                and isinstance(entry.get("content"), str)):
            raise KaiError(f"added_tokens_decoder[{key!r}] is not an id with a content",
                           where=where)
        out.append((entry["content"], int(key), bool(entry.get("special", False))))
    return sorted(out, key=lambda t: t[1])


def parse_merges(raw: bytes, where: str) -> list[tuple[str, str]]:
    """``merges.txt``: an optional ``#version`` line, then one ``left right`` pair per line."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KaiError(f"not UTF-8 ({e.reason} at byte {e.start})", where=where) from None
    out: list[tuple[str, str]] = []
    for n, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise KaiError("not a merge: expected two tokens separated by one space",
                           where=f"{where}:{n}")
        out.append((parts[0], parts[1]))
    return out


def read(folder: Path, *, pattern: str | None = None) -> TokenizerFile:
    """Read ``folder/vocab.json`` + ``folder/merges.txt`` (+ config); bad entries -> KaiError."""
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    if not (vocab_path.is_file() and merges_path.is_file()):
        raise NotThisFormat("no vocab.json and merges.txt side by side")
    vraw = read_bounded_bytes(vocab_path, TOKENIZER_MAX_BYTES, "tokenizer files")
    mraw = read_bounded_bytes(merges_path, TOKENIZER_MAX_BYTES, "tokenizer files")
    vocab = parse_json(vraw, str(vocab_path), object_pairs_hook=no_duplicate_keys)
    if not isinstance(vocab, dict) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in vocab.values()):
        raise KaiError("not a token -> integer id object", where=str(vocab_path))
    if len(set(vocab.values())) != len(vocab):
        raise KaiError("two tokens have the same id", where=str(vocab_path))
    merges = parse_merges(mraw, str(merges_path))
    for n, (a, b) in enumerate(merges, start=1):
        for part in (a, b, a + b):
            if part not in vocab:
                raise KaiError(f"merge {n} names {part!r}, which is not in vocab.json",
                               where=str(merges_path))
    cfg = read_config(folder)
    cfg_where = str(folder / "tokenizer_config.json")
    added = config_added_tokens(cfg, cfg_where)
    specials = {c: i for c, i, special in added if special}
    user = [(c, i) for c, i, special in added if not special and c not in vocab]
    skip = set(specials) | {c for c, _ in user}
    learned = canonical_map((canonical_byte_level(t), i) for t, i in vocab.items()
                            if t not in skip)
    order = learned_order(canonical_byte_level(a + b) for a, b in merges if a + b not in skip)
    cls = str(cfg.get("tokenizer_class") or "")
    notes = []
    chosen = pattern or FOLDER_PATTERNS.get(cls)
    if pattern is not None:
        notes.append("pre-tokenisation pattern given with --pattern")
    elif chosen is not None:
        notes.append(f"pre-tokenisation pattern of {cls}")
    else:
        gpt2 = cls in GPT2_CLASSES
        notes.append("pre-tokenisation: GPT-2's byte-level pattern" + (
            f" ({cls})" if gpt2 else f" (assumed: tokenizer_class {cls or 'not given'} is "
            "not in the registry; --pattern overrides)"))
    add_prefix_space = bool(cfg.get("add_prefix_space", False))
    digest = sha256_bytes(b"vocab.json\n" + vraw + b"\nmerges.txt\n" + mraw)
    unk = cfg.get("unk_token")
    unk_name = unk.get("content") if isinstance(unk, dict) else unk
    unk_id = vocab.get(unk_name) if isinstance(unk_name, str) else None
    size = 1 + max([*vocab.values(), *(i for _, i, _ in added)], default=-1)
    where = str(folder)

    def build() -> HfEncoder:
        from kaieval.tokenizer.load import import_or_explain

        tk = import_or_explain("tokenizers", where)
        # handed to Rust as one JSON text: building BPE(vocab, merges) from Python
        # objects costs seconds at 150k merges, parsing the text a fraction of that
        spec: dict[str, Any] = {"version": "1.0", "added_tokens": [], "normalizer": None,
                "pre_tokenizer": None, "post_processor": None, "decoder": None,
                "model": {"type": "BPE", "dropout": None, "unk_token": None,
                          "continuing_subword_prefix": None, "end_of_word_suffix": None,
                          "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                          "vocab": vocab, "merges": merges}}
        tok = tk.Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
        if chosen is None:
            tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(
                add_prefix_space=add_prefix_space, use_regex=True)
        else:
            try:
                split = tk.pre_tokenizers.Split(tk.Regex(chosen), behavior="isolated")
            except Exception as e:  # the Rust regex compiler
                raise KaiError(f"pre-tokenisation pattern does not compile: {e}",
                               where=where) from None
            tok.pre_tokenizer = tk.pre_tokenizers.Sequence([split, tk.pre_tokenizers.ByteLevel(
                add_prefix_space=add_prefix_space, use_regex=False)])
        tok.decoder = tk.decoders.ByteLevel()
        for content, idx, special in added:
            if content in vocab:
                if vocab[content] != idx:
                    raise KaiError(f"added token {content!r} has id {idx} in "
                                   f"tokenizer_config.json but {vocab[content]} in vocab.json",
                                   where=cfg_where)
                if special:
                    tok.add_special_tokens([tk.AddedToken(content, special=True)])
                continue
            token = tk.AddedToken(content, special=special, normalized=not special)
            (tok.add_special_tokens if special else tok.add_tokens)([token])
            got = tok.token_to_id(content)
            if got != idx:
                raise KaiError(f"added token {content!r} should have id {idx} but the ids "
                               f"before it leave {got}", where=cfg_where)
        return HfEncoder(tok)

    return TokenizerFile(folder, (vocab_path, merges_path), "vocab.json + merges.txt", "bpe",
                         digest, size, learned,
                         canonical_map((normalise(c), i) for c, i in user), specials, order,
                         unk_id, frozenset(), tuple(notes), build)
