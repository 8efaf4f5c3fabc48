"""The demo's stand-in recipes: they validate, cover the scenario, and the bundled set
builds with held-out quality following the training budget."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kaieval.demo.standins import build_standins, demo_recipes
from kaieval.synth.recipes import CopyComponent, build_order


def test_bundled_recipes_validate_and_cover_the_scenario() -> None:
    recipes = demo_recipes()
    names = [r.name for r in recipes]
    assert set(names) == {"foreign-base", "lg", "naver", "upstage", "skt", "nc", "kt",
                          "kakao", "motif"}
    by = {r.name: r for r in recipes}
    order = [r.name for r in build_order(recipes)]
    assert order.index("foreign-base") < min(order.index("naver"), order.index("kakao"))
    assert by["upstage"].architecture == by["foreign-base"].architecture
    assert by["upstage"].tokenizer.vocab_size != by["foreign-base"].tokenizer.vocab_size
    assert by["kakao"].tokenizer.shared == "foreign-base"
    audio, vision = by["naver"].audio_encoder, by["naver"].vision_encoder
    assert isinstance(audio, CopyComponent) and audio.finetune_steps == 0
    assert isinstance(vision, CopyComponent) and vision.finetune_steps > 0
    budget = {r.name: r.train.steps * r.train.batch_size * r.train.seq_len for r in recipes}
    teams = [n for n in budget if n not in ("foreign-base", "kakao")]
    assert max(teams, key=budget.__getitem__) == "lg"
    assert min(teams, key=budget.__getitem__) == "nc"


@pytest.mark.slow
def test_bundled_set_builds_and_held_out_quality_follows_training_budget(
        tmp_path: Path) -> None:
    from kaieval.bench.heldout import heldout_bits_per_char
    from kaieval.synth.corpus import corpus_text

    start = time.perf_counter()
    paths = build_standins(tmp_path)
    build_seconds = time.perf_counter() - start
    assert set(paths) == {r.name for r in demo_recipes()}
    text = corpus_text("heldout", 20_000)
    bpc = {name: heldout_bits_per_char(path, text) for name, path in paths.items()}
    stage1 = ("lg", "naver", "upstage", "skt", "nc")
    assert min(stage1, key=bpc.__getitem__) == "lg"
    assert max(bpc, key=bpc.__getitem__) == "nc"
    start = time.perf_counter()
    assert build_standins(tmp_path) == paths
    assert time.perf_counter() - start < 1.0
    print(f"built in {build_seconds:.1f} s; bits/char:",
          ", ".join(f"{n} {v:.3f}" for n, v in sorted(bpc.items(), key=lambda kv: kv[1])))
