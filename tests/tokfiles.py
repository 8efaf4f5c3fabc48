"""Tokenizers built here, in every format the loader reads (nothing downloaded).

A byte-level BPE is trained with ``tokenizers`` and written as ``tokenizer.json``,
as a ``vocab.json`` + ``merges.txt`` folder and as a tiktoken rank file (ranks =
its ids, so all three are the same tokenizer); a WordPiece as ``tokenizer.json``
and as ``vocab.txt``; SentencePiece models are trained with ``sentencepiece``.
Derived tokenizers are written from the BPE's JSON: extended (more merges of the
same training run), control tokens inserted in front (every id shifted),
ids permuted with the merge order kept, and pruned (last merges dropped).
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

from kaieval.synth.corpus import corpus_text
from kaieval.tokenizer.encodings import GPT2_PATTERN
from kaieval.tokenizer.model import byte_alphabet

SPECIALS = ["<s>", "</s>", "<pad>"]


def train_bpe(text: str, vocab_size: int, out: Path) -> Path:
    """A byte-level BPE (GPT-2 pre-tokenisation) saved as ``out`` (tokenizer.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text.split("\n"), trainer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return out


def train_wordpiece(text: str, vocab_size: int, out: Path) -> Path:
    """A cased WordPiece (BERT normaliser without lower-casing) saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False)
    tok.train_from_iterator(text.split("\n"), trainer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return out


def train_unigram(text: str, vocab_size: int, out: Path) -> Path:
    """A Unigram (Metaspace pre-tokenisation, byte fallback off) saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(text.split("\n"), trainer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    return out


def train_sentencepiece(text: str, vocab_size: int, prefix: Path, *, model_type: str = "bpe",
                        byte_fallback: bool = True) -> Path:
    """A SentencePiece model trained on ``text`` (identity normaliser, whitespace kept)."""
    import sentencepiece as spm

    corpus = prefix.with_suffix(".txt")
    corpus.write_text(text, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size,
        model_type=model_type, character_coverage=1.0, byte_fallback=byte_fallback,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        user_defined_symbols=["<k>"], minloglevel=2)
    return prefix.with_suffix(".model")


def _json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _merge(m: Any) -> tuple[str, str]:
    return (m[0], m[1]) if isinstance(m, list) else tuple(m.split(" ", 1))  # type: ignore


def write_bpe_folder(tokenizer_json: Path, folder: Path) -> Path:
    """``vocab.json`` + ``merges.txt`` + ``tokenizer_config.json`` of the same BPE."""
    data = _json(tokenizer_json)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(data["model"]["vocab"], ensure_ascii=False),
                                       encoding="utf-8")
    merges = [" ".join(_merge(m)) for m in data["model"]["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                       encoding="utf-8")
    added = {str(t["id"]): {"content": t["content"], "special": t["special"]}
             for t in data.get("added_tokens", [])}
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "added_tokens_decoder": added,
         "add_prefix_space": False}), encoding="utf-8")
    return folder


def write_tiktoken(tokenizer_json: Path, out: Path) -> Path:
    """The BPE's non-special tokens as a tiktoken rank file, rank = the BPE's id."""
    data = _json(tokenizer_json)
    table = byte_alphabet()[1]
    specials = {t["content"] for t in data.get("added_tokens", []) if t["special"]}
    lines = []
    for token, idx in sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1]):
        if token in specials:
            continue
        raw = bytes(table[c] for c in token)
        lines.append(f"{base64.b64encode(raw).decode()} {idx}")
    out.write_text("\n".join(lines) + "\n", encoding="ascii")
    return out


def write_vocab_txt(tokenizer_json: Path, folder: Path, *, config: dict[str, Any] | None
                    ) -> Path:
    """A WordPiece ``vocab.txt`` (id order), with ``tokenizer_config.json`` when given."""
    vocab = _json(tokenizer_json)["model"]["vocab"]
    folder.mkdir(parents=True, exist_ok=True)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder / "vocab.txt"


def write_shifted(tokenizer_json: Path, out: Path, controls: int) -> Path:
    """``controls`` new control tokens at ids 0.. in front; every other id shifted by that."""
    data = _json(tokenizer_json)
    data["model"]["vocab"] = {t: i + controls for t, i in data["model"]["vocab"].items()}
    added = [{**t, "id": t["id"] + controls} for t in data.get("added_tokens", [])]
    new = [{"id": i, "content": f"<|control_{i}|>", "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": True} for i in range(controls)]
    data["added_tokens"] = new + added
    out.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out


def write_permuted(tokenizer_json: Path, out: Path, seed: int) -> Path:
    """Every id permuted at random; the merges (and so the merge order) unchanged."""
    data = _json(tokenizer_json)
    vocab = data["model"]["vocab"]
    ids = list(vocab.values())
    random.Random(seed).shuffle(ids)
    data["model"]["vocab"] = dict(zip(vocab, ids, strict=True))
    by_content = data["model"]["vocab"]
    data["added_tokens"] = [{**t, "id": by_content[t["content"]]}
                            for t in data.get("added_tokens", [])]
    out.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out


def write_pruned(tokenizer_json: Path, out: Path, drop: int) -> Path:
    """The last ``drop`` merges and the tokens they made removed; other ids kept."""
    data = _json(tokenizer_json)
    merges = data["model"]["merges"]
    gone = {"".join(_merge(m)) for m in merges[-drop:]}
    data["model"]["merges"] = merges[:-drop]
    data["model"]["vocab"] = {t: i for t, i in data["model"]["vocab"].items() if t not in gone}
    out.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out


def korean(chars: int, seed: int) -> str:
    """Generated Korean text (the synth corpus generator), deterministic."""
    return corpus_text("train", chars, seed=seed)


__all__ = ["GPT2_PATTERN", "korean", "train_bpe", "train_sentencepiece", "train_unigram",
           "train_wordpiece", "write_bpe_folder", "write_permuted", "write_pruned",
           "write_shifted", "write_tiktoken", "write_vocab_txt"]
