"""Held-out bits per character on real (tiny) stand-ins built in a temp folder."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from kaieval.bench.heldout import heldout_bits_per_char, heldout_measurement
from kaieval.errors import KaiError
from kaieval.hashing import sha256_bytes
from kaieval.spec.program import Source
from kaieval.synth.build import build_models
from kaieval.synth.corpus import corpus_text
from kaieval.synth.recipes import Recipe


def recipe(name: str, steps: int) -> Recipe:
    return Recipe.model_validate({
        "name": name, "role": "test", "tokenizer": {"vocab_size": 400, "seed": 1,
                                                    "train_chars": 20_000},
        "architecture": {"hidden_size": 32, "layers": 1, "heads": 2, "intermediate_size": 64,
                         "max_position_embeddings": 128},
        "init": {"mode": "scratch", "seed": 1},
        "train": {"steps": steps, "lr": 3e-3, "batch_size": 8, "seq_len": 32,
                  "corpus_chars": 20_000}})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths: dict[str, Path] = build_models(
        tmp_path_factory.mktemp("cache"), [recipe("untrained", 0), recipe("trained", 40)])
    return paths


TEXT = corpus_text("heldout", 3000)


def test_bits_per_char_is_finite_and_training_lowers_it(models: dict[str, Path]) -> None:
    untrained = heldout_bits_per_char(models["untrained"], TEXT, max_len=64)
    trained = heldout_bits_per_char(models["trained"], TEXT, max_len=64)
    assert all(math.isfinite(v) and v > 0 for v in (untrained, trained))
    # an untrained model is near uniform over its vocabulary: log2(V) bits per token
    tokens = len(__import__("transformers").AutoTokenizer.from_pretrained(
        models["untrained"]).encode(TEXT, add_special_tokens=False))
    assert untrained == pytest.approx(math.log2(400) * tokens / len(TEXT), rel=0.05)
    assert trained < untrained - 0.5


def test_result_does_not_depend_on_batch_size(models: dict[str, Path]) -> None:
    values = [heldout_bits_per_char(models["trained"], TEXT, max_len=48, batch_size=b)
              for b in (1, 3, 8)]
    assert max(values) - min(values) < 1e-6


def test_window_length_changes_context_only_a_little(models: dict[str, Path]) -> None:
    short = heldout_bits_per_char(models["trained"], TEXT, max_len=16)
    long = heldout_bits_per_char(models["trained"], TEXT, max_len=120)
    assert short != long and abs(short - long) < 0.5 * long


def test_measurement_record_names_its_inputs(models: dict[str, Path]) -> None:
    rec = heldout_measurement(models["trained"], TEXT, stage_id="stage-1", team_id="lg",
                              max_len=64)
    assert rec.source == Source.MEASURED and rec.name == "heldout_bits_per_char"
    assert rec.value == pytest.approx(heldout_bits_per_char(models["trained"], TEXT,
                                                            max_len=64), abs=1e-12)
    assert rec.input_hashes["text"] == sha256_bytes(TEXT.encode())
    assert "model/model.safetensors" in rec.input_hashes
    assert rec.settings["max_len"] == 64 and rec.settings["n_chars"] == len(TEXT)
    assert rec.settings["forward"] == "kaieval"  # a plain Llama: the backend's own loader
    assert rec.natural_key() == "measurement/stage-1/lg/heldout_bits_per_char"


def test_pickle_checkpoints_are_refused_unread(models: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(models["trained"], bad)
    (bad / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(KaiError, match=r"pickle checkpoint pytorch_model\.bin refused"):
        heldout_bits_per_char(bad, TEXT)
    (bad / "pytorch_model.bin").unlink()
    (bad / "vision").mkdir()
    (bad / "vision" / "w.ckpt").write_bytes(b"x")
    with pytest.raises(KaiError, match="pickle"):
        heldout_measurement(bad, TEXT, stage_id="s", team_id="t")


@pytest.mark.parametrize("problem", ["missing", "no-weights", "empty-text", "too-long",
                                     "bad-tokenizer"])
def test_bad_input_is_one_line_kai_error(models: dict[str, Path], tmp_path: Path,
                                         problem: str) -> None:
    target, text, max_len = models["trained"], TEXT, 64
    if problem == "missing":
        target = tmp_path / "nowhere"
    elif problem == "no-weights":
        target = tmp_path / "copy"
        shutil.copytree(models["trained"], target)
        (target / "model.safetensors").unlink()
    elif problem == "bad-tokenizer":  # read by kaieval.tokenizer before the weights
        target = tmp_path / "copy"
        shutil.copytree(models["trained"], target)
        (target / "tokenizer.json").write_text("{not json", encoding="utf-8")
    elif problem == "empty-text":
        text = ""
    else:
        max_len = 4096
    with pytest.raises(KaiError) as err:
        heldout_bits_per_char(target, text, max_len=max_len)
    assert "\n" not in str(err.value)
