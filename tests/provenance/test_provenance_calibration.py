"""The calibration machinery on a reduced suite: real tiny models, real training, real verdicts.

What must hold whatever the engine's details: a fine-tune of the parent is found,
a same-shape model from another seed is not (although its norms' raw cosine is
above 0.95), builds are byte-for-byte reproducible, and the interval arithmetic
is right on values known in closed form.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from kaieval.errors import KaiError
from kaieval.hashing import sha256_file
from kaieval.provenance.calibration import (
    DETECTED,
    Outcome,
    SuiteConfig,
    build_suite,
    clopper_pearson,
    evaluate,
    measured_rates,
    null_p_spread,
    suite_pairs,
    summarise,
)
from kaieval.provenance.calibration_controls import _surgery as _surgery
from kaieval.provenance.safetensors_io import open_model
from kaieval.provenance.vocab import read_vocab

TINY = SuiteConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64, vocab_size=300,
                   other_vocab_sizes=(), parent_steps=20, finetune_steps=8, heal_steps=4,
                   independent_seeds=1, corpus_chars=12_000, tokenizer_chars=10_000,
                   kinds=("finetune", "permuted-finetune"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_suite(tmp_path_factory.mktemp("calib"), TINY)


@pytest.fixture(scope="module")
def outcomes(built: dict[str, Path]) -> list[Outcome]:
    return evaluate(suite_pairs(TINY), built, alpha=0.01)


def _by_candidate(outcomes: list[Outcome]) -> dict[str, Outcome]:
    return {o.pair.candidate: o for o in outcomes}


def test_pairs_cover_derived_and_all_independent_pairs() -> None:
    pairs = suite_pairs(SuiteConfig())
    derived = [p for p in pairs if p.role == "derived"]
    independent = [p for p in pairs if p.role == "independent"]
    assert len(derived) == 15
    copy = next(p for p in derived if p.kind == "permuted-copy")
    assert copy.must_be == ("copied",) and "block.3.attention" in copy.must_name
    assert all(p.reference == "parent" for p in derived if p.kind != "encoder-copied")
    assert len(independent) == math.comb(1 + 5 + 2, 2)  # parent, 5 seeds, 2 tokenizers
    assert len({(p.candidate, p.reference) for p in pairs}) == len(pairs)


def test_partial_copy_must_name_the_copied_blocks() -> None:
    pair = next(p for p in suite_pairs(SuiteConfig()) if p.kind == "partial-copy")
    assert pair.must_name == ("block.0.attention", "block.0.mlp", "block.1.attention",
                              "block.1.mlp")
    wrong = Outcome(pair, "partial", 0.0, derived_components=["head"])
    right = Outcome(pair, "partial", 0.0, derived_components=[*pair.must_name, "norms"],
                    kinds={c: "derived_by_training" for c in pair.must_name})
    assert wrong.detected and not wrong.as_expected and right.as_expected
    assert not Outcome(pair, "no_evidence", 0.0).detected


def test_partial_controls_must_show_the_kind_and_nothing_else_strong() -> None:
    pair = next(p for p in suite_pairs(SuiteConfig()) if p.kind == "frozen-copy-2")
    assert pair.expected == ("partial",) and pair.must_be == ("copied",)
    kinds = {c: "copied" for c in pair.must_name}
    ok = Outcome(pair, "partial", 0.0, derived_components=[*pair.must_name, "head"],
                 kinds={**kinds, "head": "co_adapted", "embeddings": "no_evidence"})
    assert ok.as_expected
    trained = Outcome(pair, "partial", 0.0, derived_components=list(pair.must_name),
                      kinds={**kinds, "block.0.mlp": "derived_by_training"})
    assert not trained.as_expected  # copied as-is, so "derived by training" is the wrong label
    more = Outcome(pair, "partial", 0.0, derived_components=[*pair.must_name, "head"],
                   kinds={**kinds, "head": "derived_by_training"})
    assert not more.as_expected  # the rest was trained by the team
    assert not Outcome(pair, "derived", 0.0, derived_components=list(pair.must_name),
                       kinds=kinds).as_expected
    enc = next(p for p in suite_pairs(SuiteConfig()) if p.kind == "encoder-copied")
    assert (enc.reference, enc.must_name) == ("parent-vision", ("vision_encoder",))


def test_frozen_control_needs_enough_layers() -> None:
    with pytest.raises(KaiError, match="copies 4 blocks; the models have 2"):
        SuiteConfig(layers=2, kinds=("frozen-copy-4",))


def test_finetune_is_derived_and_other_seed_is_not(outcomes: list[Outcome]) -> None:
    got = _by_candidate(outcomes)
    assert got["finetune"].verdict == "derived"
    assert got["permuted-finetune"].verdict in DETECTED
    seed = got["seed-1"]
    assert seed.pair.reference == "parent" and seed.verdict not in DETECTED
    # the Solar case in miniature: norms look alike by raw cosine, and that is not evidence
    assert seed.raw_norm_cosine is not None and seed.raw_norm_cosine > 0.95


def test_summary_rates_and_measured_rates(outcomes: list[Outcome], tmp_path: Path) -> None:
    summary = summarise(outcomes, alpha=0.01, config=TINY)
    tp, fp = summary["true_positive"], summary["false_positive"]
    assert (tp["n"], fp["n"]) == (2, 1)
    # measured on the fine-tune: every trained component meets its own bar
    bars = summary["effect_thresholds"]["by_type"]
    assert bars and summary["effect_thresholds"]["controls"] == ["finetune"]
    fine = _by_candidate(outcomes)["finetune"]
    assert all(fine.effects[c] is None or fine.effects[c] >= bars[c.rsplit(".", 1)[-1]]
               or fine.kinds[c] != "derived_by_training" for c in fine.kinds)
    assert summary["effect_thresholds"]["max_trained"] < 0.9999
    assert tp["k"] == sum(o.detected for o in outcomes if o.pair.role == "derived")
    assert tp["ci95"] == list(clopper_pearson(tp["k"], tp["n"]))
    assert summary["high_norm_cosine"]["pairs"] == 1
    assert [p["candidate"] for p in summary["pairs"]] == [o.pair.candidate for o in outcomes]
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary), encoding="utf-8")
    rates = measured_rates(path)
    assert (rates.detected, rates.derived_pairs) == (tp["k"], 2)
    assert (rates.false_positives, rates.independent_pairs) == (fp["k"], 1)
    assert rates.code_sha256 == summary["code_sha256"]
    assert f"{tp['k']}/2 derived controls" in rates.sentence()


def test_builds_are_deterministic(built: dict[str, Path], tmp_path: Path) -> None:
    config = SuiteConfig(**{**TINY.__dict__, "kinds": ("permuted-finetune",),
                            "independent_seeds": 0})
    again = build_suite(tmp_path, config)
    for name in ("parent", "permuted-finetune"):
        assert sha256_file(again[name] / "model.safetensors") == \
            sha256_file(built[name] / "model.safetensors"), name
    assert sha256_file(again["parent"] / "model.safetensors") != \
        sha256_file(built["seed-1"] / "model.safetensors")


@pytest.mark.parametrize("kind", ["pruned-depth", "pruned-width", "depth-upscaled",
                                  "vocab-extended", "partial-copy", "residual-permuted",
                                  "moe-upcycled", "frozen-copy-2", "embeddings-copied"])
def test_surgery_changes_what_it_says(built: dict[str, Path], tmp_path: Path,
                                      kind: str) -> None:
    """Each transform, before healing: the shapes and copied tensors it promises."""
    parent = open_model(built["parent"])
    _surgery(kind, built["parent"], tmp_path / kind, seed=5)
    out = open_model(tmp_path / kind)
    blocks = {int(n.split(".")[2]) for n in out.names() if n.startswith("model.layers.")}
    up = "model.layers.0.mlp.up_proj.weight"
    rows = out.tensors["model.embed_tokens.weight"].shape[0]
    assert rows == len(read_vocab(tmp_path / kind / "tokenizer.json"))
    if kind == "pruned-depth":
        assert len(blocks) == TINY.layers - 1
    elif kind == "depth-upscaled":
        m = TINY.layers // 4  # SOLAR: two copies, m blocks trimmed at the seam of each
        assert len(blocks) == 2 * TINY.layers - 2 * m
        second = f"model.layers.{TINY.layers - m}.mlp.up_proj.weight"  # 2nd copy's first
        assert (out.load(second) == parent.load(f"model.layers.{m}.mlp.up_proj.weight")).all()
    elif kind == "pruned-width":
        assert out.tensors[up].shape == (TINY.intermediate_size * 3 // 4, TINY.hidden_size)
    elif kind == "vocab-extended":
        assert rows > TINY.vocab_size
        assert (out.load("model.embed_tokens.weight")[:TINY.vocab_size]
                == parent.load("model.embed_tokens.weight")).all()
    elif kind == "moe-upcycled":  # every expert is the dense MLP (logits checked unchanged)
        assert up not in out.tensors
        for e in range(4):
            w3 = f"model.layers.0.block_sparse_moe.experts.{e}.w3.weight"
            assert (out.load(w3) == parent.load(up)).all()
    elif kind == "residual-permuted":  # (the surgery itself checks the logits are unchanged)
        emb = out.load("model.embed_tokens.weight")
        before = parent.load("model.embed_tokens.weight")
        assert not np.array_equal(emb, before)
        # every column is a parent column, possibly negated: a signed permutation
        assert sorted(map(tuple, np.abs(emb).T)) == sorted(map(tuple, np.abs(before).T))
        assert not (out.load(up) == parent.load(up)).all()
    elif kind == "frozen-copy-2":  # attention and MLP of blocks 0-1 copied, norms fresh
        q = "model.layers.1.self_attn.q_proj.weight"
        assert (out.load(q) == parent.load(q)).all() and (out.load(up) == parent.load(up)).all()
        norm = "model.layers.0.input_layernorm.weight"
        emb = "model.embed_tokens.weight"
        assert not (out.load(emb) == parent.load(emb)).all()
        assert out.tensors[norm].shape == parent.tensors[norm].shape
    elif kind == "embeddings-copied":
        emb = "model.embed_tokens.weight"
        assert (out.load(emb) == parent.load(emb)).all()
        assert not (out.load(up) == parent.load(up)).all()
    else:  # partial-copy: block 0 copied, block 1 and the embeddings fresh
        assert (out.load(up) == parent.load(up)).all()
        last = "model.layers.1.mlp.up_proj.weight"
        assert not (out.load(last) == parent.load(last)).all()
        emb = "model.embed_tokens.weight"
        assert not (out.load(emb) == parent.load(emb)).all()


def test_clopper_pearson_known_values() -> None:
    lo, hi = clopper_pearson(0, 90)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 90), rel=1e-9)  # 0.0402
    lo, hi = clopper_pearson(8, 8)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 8), rel=1e-9)  # 0.631
    assert clopper_pearson(5, 10) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    ci = stats.binomtest(3, 28).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(3, 28) == pytest.approx((ci.low, ci.high), rel=1e-9)
    for bad in ((3, 2), (-1, 5), (0, 0)):
        with pytest.raises(KaiError, match="clopper_pearson"):
            clopper_pearson(*bad)


def test_null_spread_tells_uniform_from_piled_up() -> None:
    uniform = null_p_spread([(i + 0.5) / 200 for i in range(200)])
    assert uniform["ks_p"] > 0.99 and uniform["decile_counts"] == [20] * 10
    piled = null_p_spread([1e-4 * (i + 1) for i in range(50)])
    assert piled["ks_p"] < 1e-10 and piled["below_0.01"] == 50


def test_measured_rates_refuses_bad_files(tmp_path: Path) -> None:
    with pytest.raises(KaiError, match="cannot read calibration summary"):
        measured_rates(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"alpha": 0.01}', encoding="utf-8")
    with pytest.raises(KaiError, match="not a calibration summary") as err:
        measured_rates(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_unknown_kind_is_one_line_error() -> None:
    with pytest.raises(KaiError, match="unknown control kind"):
        SuiteConfig(kinds=("distilled",))
