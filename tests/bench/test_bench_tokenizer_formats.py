"""The benchmark engine runs on the tokenizer kaieval.tokenizer loaded (issue 13).

A model folder may ship its tokenizer as tokenizer.json, as a tiktoken
``tokenizer.model``, as ``vocab.json`` + ``merges.txt`` or as a WordPiece
``vocab.txt``: the stand-in model's byte-level BPE is re-written in each format
(same ids), and every format must give the same tokens, log-likelihoods, item
scores and held-out bits per character as its tokenizer.json.
"""

from __future__ import annotations

import json
import shutil
from importlib import util
from pathlib import Path
from typing import Any

import pytest

import tokfiles
from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest
from kaieval.bench.backends.common import load_hf_tokenizer
from kaieval.bench.backends.hf import HFBackend
from kaieval.bench.run import evaluate
from kaieval.errors import KaiError
from kaieval.tokenizer import load_tokenizer
from kaieval.tokenizer.encodings import GPT2_PATTERN

pytestmark = pytest.mark.slow  # builds the demo stand-in model (torch)

_spec = util.spec_from_file_location("engine_test_mod_formats", Path(__file__).with_name(
    "test_bench_engine.py"))
assert _spec is not None and _spec.loader is not None
_mod: Any = util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
MiniTask = _mod.MiniTask


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kaieval.demo.standins import build_standins

    return build_standins(tmp_path_factory.mktemp("standins"), names=["nc"])["nc"]


def _rewrite(model_dir: Path, out: Path, fmt: str) -> Path:
    """The model folder with its tokenizer.json replaced by the same BPE in ``fmt``; the
    config keeps its special tokens and chat template and names the specials' ids (as a
    published folder without tokenizer.json does in ``added_tokens_decoder``)."""
    out.mkdir()
    for f in model_dir.iterdir():
        if f.name not in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(f, out / f.name)
    tj = model_dir / "tokenizer.json"
    config = json.loads((model_dir / "tokenizer_config.json").read_text("utf-8"))
    added = json.loads(tj.read_text("utf-8"))["added_tokens"]
    config["added_tokens_decoder"] = {str(t["id"]): {"content": t["content"], "special": True}
                                      for t in added}
    if fmt == "tiktoken":
        tokfiles.write_tiktoken(tj, out / "tokenizer.model")
    else:
        tokfiles.write_bpe_folder(tj, out)
    (out / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")
    return out


@pytest.fixture(scope="module")
def folders(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    return {"tokenizer.json": model_dir,
            "tiktoken": _rewrite(model_dir, root / "tiktoken", "tiktoken"),
            "vocab.json + merges.txt": _rewrite(model_dir, root / "bpe", "bpe")}


def _requests() -> list[LoglikelihoodRequest]:
    from kaieval.synth.corpus import corpus_text

    text = corpus_text("train", 4000, seed=3)
    reqs = [LoglikelihoodRequest(text[i * 300: i * 300 + 80] + " 정답:",
                                 " " + text[2000 + 30 * k: 2000 + 30 * k + 2 + 5 * k])
            for i in range(5) for k in range(3)]
    reqs.append(LoglikelihoodRequest("질문 \n\n", "답  끝"))
    reqs.append(LoglikelihoodRequest("", "처음부터 끝까지"))
    return reqs


def _backend(folder: Path, **kwargs: Any) -> HFBackend:
    pattern = GPT2_PATTERN if (folder / "tokenizer.model").is_file() else None
    return HFBackend(folder, tokenizer_pattern=pattern, **kwargs)


def test_the_folders_really_are_in_each_format(folders: dict[str, Path]) -> None:
    for fmt, folder in folders.items():
        assert load_tokenizer(folder, pattern=GPT2_PATTERN).format == fmt
    assert not (folders["tiktoken"] / "tokenizer.json").exists()
    assert not (folders["vocab.json + merges.txt"] / "tokenizer.json").exists()


def test_tokenizer_json_folder_encodes_as_auto_tokenizer(model_dir: Path) -> None:
    """The wrapper built from the loader's tokenizer is transformers' own, id for id."""
    from transformers import AutoTokenizer

    auto, ours = AutoTokenizer.from_pretrained(model_dir), load_hf_tokenizer(model_dir)
    texts = [tokfiles.korean(300, s) for s in range(8)] + ["<s>질문</s> 답", " 앞", "끝  \n"]
    for text in texts:
        assert ours.encode(text) == auto.encode(text)
        assert ours.encode(text, add_special_tokens=False) == auto.encode(
            text, add_special_tokens=False)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "chat_template",
                 "model_max_length"):
        assert getattr(ours, name) == getattr(auto, name)


def test_every_format_gives_the_same_tokens_and_loglikelihoods(
        folders: dict[str, Path]) -> None:
    reqs = _requests()
    reference = _backend(folders["tokenizer.json"])
    want_tokens = [reference.tokens(r) for r in reqs]
    want = reference.loglikelihood(reqs)
    gen = reference.generate([GenerationRequest("질문", max_tokens=6, chat=True)])
    for fmt in ("tiktoken", "vocab.json + merges.txt"):
        backend = _backend(folders[fmt])
        assert [backend.tokens(r) for r in reqs] == want_tokens, fmt
        assert backend.loglikelihood(reqs) == want, fmt
        assert backend.generate([GenerationRequest("질문", max_tokens=6, chat=True)]) == gen
        assert backend.chat_template_hash == reference.chat_template_hash


def test_every_format_gives_the_same_item_scores(folders: dict[str, Path],
                                                 tmp_path: Path) -> None:
    runs = {fmt: evaluate(str(folder), [MiniTask(n_docs=6)], batch_size=4,
                          cache_dir=tmp_path / fmt.replace(" ", ""), progress=False,
                          tokenizer_pattern=GPT2_PATTERN if fmt == "tiktoken" else None)
            for fmt, folder in folders.items()}
    want = runs["tokenizer.json"].tasks[0]
    assert len(want.item_scores) == 6
    for run in runs.values():
        assert run.tasks[0].item_scores == want.item_scores
        assert run.tasks[0].metrics["acc_norm"].value == want.metrics["acc_norm"].value


def test_heldout_bits_per_char_reads_a_vocab_merges_folder(folders: dict[str, Path]) -> None:
    from kaieval.bench.heldout import heldout_bits_per_char

    text = tokfiles.korean(400, 5)
    want = heldout_bits_per_char(folders["tokenizer.json"], text, max_len=64)
    assert heldout_bits_per_char(folders["vocab.json + merges.txt"], text,
                                 max_len=64) == want


def test_tiktoken_without_a_known_pattern_is_one_line_before_the_weights(
        folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("weights loaded for a tokenizer that cannot encode")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", never)
    with pytest.raises(KaiError, match=r"unknown encoding .*--pattern") as err:
        HFBackend(folders["tiktoken"])
    assert "\n" not in str(err.value)


def test_added_token_clashing_with_a_rank_is_refused(folders: dict[str, Path],
                                                     tmp_path: Path) -> None:
    bad = tmp_path / "clash"
    shutil.copytree(folders["tiktoken"], bad)
    config = json.loads((bad / "tokenizer_config.json").read_text("utf-8"))
    config["added_tokens_decoder"]["5"] = {"content": "<x>", "special": True}
    (bad / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")
    with pytest.raises(KaiError, match=r"added token '<x>' has id 5, which the rank file"):
        load_hf_tokenizer(bad, pattern=GPT2_PATTERN)


def test_wordpiece_vocab_txt_folder_builds_the_loaders_tokenizer(tmp_path: Path) -> None:
    """A BERT-style vocab.txt folder: the transformers tokenizer is the loader's WordPiece
    (casing from tokenizer_config.json), with its special tokens."""
    text = tokfiles.korean(20000, 1)
    tj = tokfiles.train_wordpiece(text, 300, tmp_path / "wp" / "tokenizer.json")
    folder = tmp_path / "vocab_txt"
    tokfiles.write_vocab_txt(tj, folder, config={"do_lower_case": False,
                                                 "unk_token": "[UNK]", "pad_token": "[PAD]"})
    ours = load_hf_tokenizer(folder)
    loaded = load_tokenizer(folder)
    sample = [tokfiles.korean(200, s) for s in range(4)]
    assert [ours.encode(t, add_special_tokens=False) for t in sample] == \
        loaded.encoder().encode(sample)
    assert ours.pad_token_id == 0 and ours.unk_token_id == 1


def test_sentencepiece_only_folder_encodes_as_sentencepiece(tmp_path: Path) -> None:
    """A Llama-2-style folder (``tokenizer.model`` SentencePiece + ``tokenizer_config.json``,
    no tokenizer.json) loads for the benchmark engine -- transformers converts it (with
    protobuf) -- and sends SentencePiece's own ids (identity normaliser, byte fallback)."""
    import sentencepiece as spm

    model = tokfiles.train_sentencepiece(tokfiles.korean(20000, 2), 1200, tmp_path / "sp")
    folder = tmp_path / "llama2_style"
    folder.mkdir()
    shutil.copy(model, folder / "tokenizer.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False}), "utf-8")
    ours = load_hf_tokenizer(folder)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    sample = [tokfiles.korean(200, s) for s in range(4)] + ["이모지 😀 와 Zürich"]
    assert [ours.encode(t, add_special_tokens=False) for t in sample] == \
        [sp.encode(t) for t in sample]
    assert ours.bos_token_id == sp.bos_id()


def test_heldout_record_hashes_the_tokenizer_files_of_any_format(
        folders: dict[str, Path]) -> None:
    """The stored measurement names the tokenizer files the loader read, not only a
    tokenizer.json: a vocab.json + merges.txt folder's record carries both files."""
    from kaieval.bench.heldout import heldout_measurement
    from kaieval.hashing import sha256_file

    folder = folders["vocab.json + merges.txt"]
    rec = heldout_measurement(folder, tokfiles.korean(200, 6), stage_id="s1", team_id="t",
                              max_len=64)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert rec.input_hashes[f"model/{name}"] == sha256_file(folder / name)
    assert "model/tokenizer.json" not in rec.input_hashes
