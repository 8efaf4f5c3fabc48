"""Embedding-row vocabularies (``read_vocab``) from every tokenizer format the loader reads.

The same tokenizer written as tokenizer.json, as vocab.json + merges.txt, as a tiktoken
rank file (specials named in tokenizer_config.json) and, for WordPiece, as vocab.txt must
give the same token -> id map, spelled as tokenizer.json has always been read (fingerprint
files store that spelling), so rows line up across formats.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import tokfiles as tf
from kaieval.errors import KaiError
from kaieval.provenance import open_model, read_vocab
from kaieval.provenance.vocab import model_vocab


@pytest.fixture(scope="module")
def bpe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vocab_formats")
    tj = tf.train_bpe(tf.korean(20000, 0), 500, root / "json" / "tokenizer.json")
    folder = tf.write_bpe_folder(tj, root / "pair")
    tik = root / "tik"
    tik.mkdir()
    tf.write_tiktoken(tj, tik / "tokenizer.model")
    shutil.copy(folder / "tokenizer_config.json", tik / "tokenizer_config.json")
    return {"json": tj, "pair": folder, "tiktoken": tik}


def test_bpe_formats_give_the_tokenizer_json_vocabulary(bpe: dict[str, Path]) -> None:
    want = read_vocab(bpe["json"])
    assert len(want) == 500 and want["<s>"] == 0
    assert read_vocab(bpe["json"].parent) == want  # the folder reads its tokenizer.json
    assert read_vocab(bpe["pair"]) == want
    assert read_vocab(bpe["pair"] / "vocab.json") == want
    assert read_vocab(bpe["tiktoken"]) == want
    assert read_vocab(bpe["tiktoken"] / "tokenizer.model") == want


def test_wordpiece_vocab_txt_gives_the_tokenizer_json_vocabulary(tmp_path: Path) -> None:
    tj = tf.train_wordpiece(tf.korean(20000, 2), 300, tmp_path / "wp" / "tokenizer.json")
    txt = tf.write_vocab_txt(tj, tmp_path / "txt", config=None)
    assert read_vocab(txt) == read_vocab(txt.parent) == read_vocab(tj)


def test_sentencepiece_pieces_are_read_with_the_space_marker_as_a_space(
        tmp_path: Path) -> None:
    model = tf.train_sentencepiece(tf.korean(20000, 3), 1000, tmp_path / "sp")
    vocab = read_vocab(model)
    assert len(vocab) <= 1000 and min(vocab.values()) == 0
    assert not any(t.startswith("\u2581") for t in vocab)
    assert any(t.startswith(" ") for t in vocab)


def _model(folder: Path, rows: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    emb = np.random.default_rng(0).standard_normal((rows, 16)).astype(np.float32)
    save_file({"model.embed_tokens.weight": emb}, str(folder / "model.safetensors"))
    return folder


def test_model_folders_align_rows_whatever_the_tokenizer_format(
        bpe: dict[str, Path], tmp_path: Path) -> None:
    with_json = _model(tmp_path / "a", 500)
    shutil.copy(bpe["json"], with_json / "tokenizer.json")
    with_pair = _model(tmp_path / "b", 500)
    for f in bpe["pair"].iterdir():
        shutil.copy(f, with_pair / f.name)
    want = model_vocab(open_model(with_json))
    assert want is not None and model_vocab(open_model(with_pair)) == want
    broken = _model(tmp_path / "c", 500)
    (broken / "tokenizer.model").write_bytes(b"\x0a\x05not a model")
    assert model_vocab(open_model(broken)) is None  # rows stay unaligned, as with none
    bad_json = _model(tmp_path / "d", 500)
    (bad_json / "tokenizer.json").write_text(json.dumps({"model": {}}), encoding="utf-8")
    with pytest.raises(KaiError, match=r"no model\.vocab"):  # tokenizer.json: as before
        model_vocab(open_model(bad_json))
