"""Attention heads reordered: a copy is still a copy, and a fine-tune is not searched."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from kaieval.provenance import check_independence
from kaieval.provenance.evidence_kind import IDENTICAL_EFFECT
from kaieval.provenance.heads import Layout, layout, match_heads, screen
from kaieval.provenance.safetensors_io import open_model

ATTN = "model.layers.0.self_attn."
NAMES = {p: f"{ATTN}{p}.weight" for p in ("q_proj", "k_proj", "v_proj", "o_proj")}


def _kinds(v: object) -> dict[str, tuple[str | None, float | None, str]]:
    return {e.component: (e.kind, e.aligned_similarity, e.test)  # type: ignore[attr-defined]
            for e in v.evidence if e.component.endswith(".attention")}  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", ["heads_permuted", "both_permuted"])
def test_a_reordered_copy_reads_as_copied(head_variants: dict[str, Path],
                                          models: dict[str, Path], case: str) -> None:
    v = check_independence(head_variants[case], [models["parent"]], stage_id="s", team_id=case)
    assert v.verdict == "derived"
    got = _kinds(v)
    assert len(got) == 4
    for comp, (kind, sim, _test) in got.items():
        assert kind == "copied", (comp, kind, sim)
        # in place by chance (a block whose permutation was the identity) or matched
        assert sim is None or sim >= IDENTICAL_EFFECT
    assert any("attention_head_matching" in t for _, _, t in got.values())
    mlp = [e for e in v.evidence if e.component.endswith(".mlp")]
    assert all(e.kind == "copied" for e in mlp), [(e.component, e.kind) for e in mlp]
    assert "Copied as-is: attention and MLP of blocks 0-3" in v.sentence
    # copies are certain: the sentence does not quote a reordered head's weak p as its own
    assert "all copied" in v.sentence and "p <=" not in v.sentence


def test_an_attention_copied_alone_and_reordered_is_found(head_variants: dict[str, Path],
                                                          models: dict[str, Path]) -> None:
    """Block 1's attention copied into an independent model with no head left in place:
    nothing else depends on the parent, yet the screen's strong, distinct matches send it
    to head matching, and the verdict is partial, naming that attention as copied."""
    v = check_independence(head_variants["attention_only"], [models["parent"]],
                           stage_id="s", team_id="t")
    got = _kinds(v)
    assert got["block.1.attention"][0] == "copied", got
    assert v.verdict == "partial"
    strong = {e.component for e in v.evidence if e.kind in ("copied", "derived_by_training")}
    assert strong == {"block.1.attention"}, strong


def test_independent_models_are_screened_not_matched(models: dict[str, Path]) -> None:
    v = check_independence(models["independent"], [models["parent"]], stage_id="s",
                           team_id="t")
    assert v.verdict == "no_evidence"
    assert not any("head_matching" in e.test for e in v.evidence)


def test_a_fine_tune_keeps_its_heads_in_place(models: dict[str, Path],
                                              head_variants: dict[str, Path]) -> None:
    """The screen reads a few rows of o: a fine-tune's heads are each most like themselves."""
    parent, tuned = open_model(models["parent"]), open_model(models["finetune"])
    moved = open_model(head_variants["heads_permuted"])
    lay = layout(parent)
    assert lay == Layout(4, 2, 16) and layout(moved) == lay
    o = "model.layers.1.self_attn.o_proj.weight"
    assert not screen(tuned, parent, o, o, lay, seed=0).moved
    assert screen(moved, parent, o, o, lay, seed=0) == screen(moved, parent, o, o, lay, seed=0)
    v = check_independence(models["finetune"], [models["parent"]], stage_id="s", team_id="t")
    assert not any("head_matching" in e.test for e in v.evidence)


def _write(folder: Path, tensors: dict[str, np.ndarray], lay: Layout, hidden: int) -> Path:
    folder.mkdir()
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": hidden, "num_attention_heads": lay.heads,
        "num_key_value_heads": lay.kv_heads, "head_dim": lay.head_dim}))
    return folder


def _attention(rng: np.random.Generator, lay: Layout, hidden: int) -> dict[str, np.ndarray]:
    q, kv = lay.heads * lay.head_dim, lay.kv_heads * lay.head_dim
    return {NAMES["q_proj"]: rng.normal(size=(q, hidden)),
            NAMES["k_proj"]: rng.normal(size=(kv, hidden)),
            NAMES["v_proj"]: rng.normal(size=(kv, hidden)),
            NAMES["o_proj"]: rng.normal(size=(hidden, q))}


def _reorder(t: dict[str, np.ndarray], lay: Layout, rng: np.random.Generator,
             ) -> dict[str, np.ndarray]:
    group = lay.heads // lay.kv_heads
    kv = rng.permutation(lay.kv_heads)
    q = np.concatenate([kv[g] * group + rng.permutation(group) for g in range(lay.kv_heads)])
    rows = (q[:, None] * lay.head_dim + np.arange(lay.head_dim)).ravel()
    kv_rows = (kv[:, None] * lay.head_dim + np.arange(lay.head_dim)).ravel()
    return {NAMES["q_proj"]: t[NAMES["q_proj"]][rows], NAMES["k_proj"]: t[NAMES["k_proj"]][kv_rows],
            NAMES["v_proj"]: t[NAMES["v_proj"]][kv_rows],
            NAMES["o_proj"]: t[NAMES["o_proj"]][:, rows]}


def test_sixteen_heads_reordered_and_trained_agree_beyond_chance(tmp_path: Path) -> None:
    """With 16 query and 4 key/value heads the matchings on the two circuits agree (p tiny)
    on a reordered, noised copy, and not on an independent one; only the copy is a copy."""
    lay, hidden = Layout(16, 4, 8), 96
    rng = np.random.default_rng(5)
    ref_t = _attention(rng, lay, hidden)
    moved = _reorder(ref_t, lay, rng)
    tuned = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in moved.items()}
    ref = open_model(_write(tmp_path / "ref", ref_t, lay, hidden))
    cand = open_model(_write(tmp_path / "tuned", tuned, lay, hidden))
    other = open_model(_write(tmp_path / "other", _attention(rng, lay, hidden), lay, hidden))
    got = match_heads(cand, ref, NAMES, NAMES, lay, None, seed=0)
    assert got is not None
    assert got.rho > 0.99 and got.log_p < math.log(1e-6)
    assert 0.9 < got.similarity < IDENTICAL_EFFECT  # trained: not the same weights
    assert got.aligned_r > 0.9 and got.moved > 0
    null = match_heads(other, ref, NAMES, NAMES, lay, None, seed=0)
    assert null is not None and null.log_p > math.log(1e-3) and null.similarity < 0.2
    assert abs(null.aligned_r) < 0.1
    copy = open_model(_write(tmp_path / "copy", moved, lay, hidden))
    same = match_heads(copy, ref, NAMES, NAMES, lay, None, seed=0)
    assert same is not None and same.similarity >= IDENTICAL_EFFECT and same.aligned_r > 0.9999


def test_shapes_that_do_not_fit_the_layout_are_not_matched(tmp_path: Path) -> None:
    lay, hidden = Layout(4, 2, 8), 32
    rng = np.random.default_rng(1)
    ref = open_model(_write(tmp_path / "ref", _attention(rng, lay, hidden), lay, hidden))
    assert match_heads(ref, ref, NAMES, NAMES, Layout(8, 2, 8), None, seed=0) is None
    flat = _attention(rng, lay, hidden)
    flat[NAMES["o_proj"]] = np.ones(3)  # not a matrix at all (a hostile file)
    odd = open_model(_write(tmp_path / "odd", flat, lay, hidden))
    assert match_heads(odd, odd, NAMES, NAMES, lay, None, seed=0) is None
    assert not screen(odd, odd, NAMES["o_proj"], NAMES["o_proj"], lay, seed=0).moved
    (tmp_path / "noconfig").mkdir()
    save_file({NAMES["q_proj"]: np.zeros((4, 4), dtype=np.float32)},
              str(tmp_path / "noconfig" / "model.safetensors"))
    assert layout(open_model(tmp_path / "noconfig")) is None


def test_a_change_of_basis_inside_each_head_is_still_a_copy(tmp_path: Path) -> None:
    """v's rows and o's columns through an invertible map, q's and k's rows through a
    rotation of each frequency pair, heads reordered: every circuit is the parent's."""
    lay, hidden = Layout(8, 2, 8), 64
    rng = np.random.default_rng(9)
    ref_t = _attention(rng, lay, hidden)
    moved = _reorder(ref_t, lay, rng)
    half = lay.head_dim // 2
    angle = rng.uniform(0, 2 * np.pi, size=half)
    rot = np.zeros((lay.head_dim, lay.head_dim))
    for i, a in enumerate(angle):  # RoPE pairs dimension i with i + head_dim / 2
        c, s = np.cos(a), np.sin(a)
        rot[i, i], rot[i, i + half], rot[i + half, i], rot[i + half, i + half] = c, -s, s, c
    mix = rng.normal(size=(lay.head_dim, lay.head_dim)) + 3 * np.eye(lay.head_dim)
    inv = np.linalg.inv(mix)

    def per_head(x: np.ndarray, m: np.ndarray, n: int) -> np.ndarray:
        return np.concatenate([m @ b for b in np.split(x, n)])
    based = {NAMES["q_proj"]: per_head(moved[NAMES["q_proj"]], rot, lay.heads),
             NAMES["k_proj"]: per_head(moved[NAMES["k_proj"]], rot, lay.kv_heads),
             NAMES["v_proj"]: per_head(moved[NAMES["v_proj"]], mix, lay.kv_heads)}
    o = moved[NAMES["o_proj"]].copy()
    for h in range(lay.heads):  # o's columns of head h undo its group's v map
        cols = slice(h * lay.head_dim, (h + 1) * lay.head_dim)
        o[:, cols] = o[:, cols] @ inv
    based[NAMES["o_proj"]] = o
    ref = open_model(_write(tmp_path / "ref", ref_t, lay, hidden))
    cand = open_model(_write(tmp_path / "based", based, lay, hidden))
    got = match_heads(cand, ref, NAMES, NAMES, lay, None, seed=3)
    assert got is not None and got.similarity >= IDENTICAL_EFFECT, got
    assert got.moved > 0
