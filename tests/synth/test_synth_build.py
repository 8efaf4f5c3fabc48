"""Synthetic model builder: builds are cached, atomic, deterministic, and the copy /
fine-tune relations the provenance engine must detect are really in the weights."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from kaieval.errors import KaiError
from kaieval.synth import build as synth_build
from kaieval.synth.build import STAMP, build_models
from kaieval.synth.recipes import Recipe, TokenizerRecipe, check_recipes

ENC = {"hidden_size": 32, "layers": 1, "heads": 2, "intermediate_size": 64}
ARCH = {"hidden_size": 32, "layers": 1, "heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 128}
TRAIN = {"lr": 3e-3, "batch_size": 4, "seq_len": 32, "corpus_chars": 20_000}


def tiny(base_seed: int = 1) -> list[Recipe]:
    """A foreign base, a Naver-like copier, a Kakao-like fine-tune and an independent model."""
    raw: list[dict[str, Any]] = [
        {"name": "base", "role": "foreign base",
         "tokenizer": {"vocab_size": 400, "seed": 1, "train_chars": 20_000},
         "architecture": ARCH, "init": {"mode": "scratch", "seed": base_seed},
         "train": {"steps": 12, "seed": 1, **TRAIN},
         "vision_encoder": {"mode": "scratch", "seed": 2, "architecture": ENC, "steps": 3},
         "audio_encoder": {"mode": "scratch", "seed": 3, "architecture": ENC, "steps": 3}},
        {"name": "copier", "role": "own LM, copied encoders",
         "tokenizer": {"vocab_size": 450, "seed": 2, "train_chars": 20_000},
         "architecture": ARCH, "init": {"mode": "scratch", "seed": 7},
         "train": {"steps": 4, "seed": 2, **TRAIN},
         "vision_encoder": {"mode": "copy", "source": "base", "finetune_steps": 3, "lr": 1e-4},
         "audio_encoder": {"mode": "copy", "source": "base", "finetune_steps": 0}},
        {"name": "tuned", "role": "fine-tune of base", "tokenizer": {"shared": "base"},
         "init": {"mode": "finetune", "source": "base"},
         "train": {"steps": 4, "seed": 3, **TRAIN}},
        {"name": "solo", "role": "independent, same shape as base",
         "tokenizer": {"vocab_size": 400, "seed": 9, "train_chars": 20_000},
         "architecture": ARCH, "init": {"mode": "scratch", "seed": 99},
         "train": {"steps": 4, "seed": 4, **TRAIN}},
    ]
    return [Recipe.model_validate(r) for r in raw]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths: dict[str, Path] = build_models(tmp_path_factory.mktemp("cache"), tiny())
    return paths


def tensors(path: Path) -> dict[str, np.ndarray]:
    return load_file(str(path / "model.safetensors"))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_dependency_cycles_are_refused() -> None:
    recipes = tiny()
    base = recipes[0].model_copy(update={
        "tokenizer": TokenizerRecipe(shared="tuned")})
    with pytest.raises(KaiError, match=r"cycle: base -> tuned -> base"):
        check_recipes([base, *recipes[1:]])


def test_built_folders_are_loadable_hugging_face_models(built: dict[str, Path]) -> None:
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    assert set(built) == {"base", "copier", "tuned", "solo"}
    base = built["base"]
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "generation_config.json", STAMP):
        assert (base / f).is_file(), f
    assert not list(base.rglob("*.bin"))
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    ids = tok("정부는 인공지능 정책을 발표했다.", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == "정부는 인공지능 정책을 발표했다."
    assert model.config.vocab_size == len(tok) and tok.bos_token == "<s>"
    kinds = {"vision_encoder": "vit", "audio_encoder": "audio-spectrogram-transformer"}
    for slot, kind in kinds.items():
        enc = AutoModel.from_pretrained(base / slot, use_safetensors=True)
        assert enc.config.model_type == kind
    assert sorted(p.name for p in built.values() if (p / "vision_encoder").is_dir()) == \
        ["base", "copier"]


def test_second_build_is_cached_and_touches_nothing(built: dict[str, Path]) -> None:
    cache = built["base"].parent
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    said: list[str] = []
    start = time.perf_counter()
    again = build_models(cache, tiny(), progress=said.append)
    assert time.perf_counter() - start < 0.5
    assert again == built and said == []
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == before
    assert not list(cache.glob(".tmp-*"))


def test_copied_audio_is_identical_and_copied_vision_is_close(built: dict[str, Path]) -> None:
    base, copier = built["base"], built["copier"]
    assert ((base / "audio_encoder" / "model.safetensors").read_bytes()
            == (copier / "audio_encoder" / "model.safetensors").read_bytes())
    a, b = tensors(base / "vision_encoder"), tensors(copier / "vision_encoder")
    assert a.keys() == b.keys()
    changed = [k for k in a if not np.array_equal(a[k], b[k])]
    assert changed, "fine-tuning must move the copied vision encoder"
    big = [k for k in a if a[k].ndim == 2]
    assert min(cosine(a[k], b[k]) for k in big) > 0.99


def test_fine_tune_is_correlated_with_its_base_and_scratch_is_not(
        built: dict[str, Path]) -> None:
    base, tuned, solo = (tensors(built[n]) for n in ("base", "tuned", "solo"))
    matrices = [k for k in base if base[k].ndim == 2 and "embed" not in k and "lm_head" not in k]
    assert matrices and all(base[k].shape == solo[k].shape for k in matrices)
    assert min(cosine(base[k], tuned[k]) for k in matrices) > 0.9
    assert max(abs(cosine(base[k], solo[k])) for k in matrices) < 0.2
    assert not all(np.array_equal(base[k], tuned[k]) for k in matrices)
    assert ((built["base"] / "tokenizer.json").read_bytes()
            == (built["tuned"] / "tokenizer.json").read_bytes())


def test_same_recipe_gives_bit_identical_files(built: dict[str, Path], tmp_path: Path) -> None:
    again = build_models(tmp_path, tiny(), names=["solo"])
    assert set(again) == {"solo"}
    for f in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again["solo"] / f).read_bytes() == (built["solo"] / f).read_bytes(), f


def test_changed_recipe_rebuilds_it_and_its_dependants_only(tmp_path: Path) -> None:
    build_models(tmp_path, tiny())
    stamps = {n: (tmp_path / n / STAMP).read_text() for n in ("base", "tuned", "solo")}
    said: list[str] = []
    build_models(tmp_path, tiny(base_seed=2), progress=said.append)
    after = {n: (tmp_path / n / STAMP).read_text() for n in stamps}
    assert after["solo"] == stamps["solo"]
    assert after["base"] != stamps["base"] and after["tuned"] != stamps["tuned"]
    assert any(m.startswith("copier:") and "cached" not in m for m in said)
    assert json.loads(after["base"])["recipe"]["init"]["seed"] == 2
    reworded = [r.model_copy(update={"role": "new words"}) for r in tiny(base_seed=2)]
    said.clear()
    build_models(tmp_path, reworded, progress=said.append)
    assert said == []  # prose is not part of the build hash


def test_interrupted_build_leaves_nothing_that_looks_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(synth_build, "train_language_model", boom)
    with pytest.raises(KeyboardInterrupt):
        build_models(tmp_path, tiny(), names=["solo"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".kaieval-build.lock"]


def test_unknown_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KaiError, match=r"unknown stand-in\(s\): nobody"):
        build_models(tmp_path, tiny(), names=["nobody"])


def test_tokenizers_carry_a_chat_template_that_hugging_face_applies(
        built: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    from kaieval.synth.tokenizers import CHAT_TEMPLATE

    for name in ("base", "tuned"):  # trained, and shared (copied)
        config = json.loads((built[name] / "tokenizer_config.json").read_text("utf-8"))
        assert config["chat_template"] == CHAT_TEMPLATE
    tok = AutoTokenizer.from_pretrained(built["tuned"])
    text = tok.apply_chat_template([{"role": "user", "content": "안녕하세요"}],
                                   tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>\n안녕하세요\n<|assistant|>\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids) == text
