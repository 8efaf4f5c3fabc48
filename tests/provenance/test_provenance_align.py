"""Residual-stream alignment from shared-token embedding rows (align.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kaieval.provenance import check_independence
from kaieval.provenance.align import estimate_map, residual_axis, sketch_coordinates


def _emb(seed: int, n: int = 400, d: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_signed_permutation_is_recovered_and_undone() -> None:
    ref = _emb(0)
    perm = np.random.default_rng(1).permutation(32)
    sign = np.where(np.random.default_rng(2).random(32) < 0.5, -1.0, 1.0).astype(np.float32)
    cand = ref[:, perm] * sign + 0.05 * _emb(3)
    m = estimate_map(cand, ref, rng=_rng())
    assert m.kind == "permutation" and m.transforms and m.score > 0.9
    assert m.target is not None and np.array_equal(m.target, perm)
    w_ref = _emb(4, n=48)  # a Linear weight reading the residual stream (out x d)
    w_cand = w_ref[:, perm] * sign
    back = m.apply("model.layers.0.mlp.up_proj.weight", w_cand, m.dense())
    np.testing.assert_allclose(back, w_ref, atol=1e-6)
    o_cand = (w_ref[:, perm] * sign).T  # an output projection (d x in)
    np.testing.assert_allclose(m.apply("model.layers.0.self_attn.o_proj.weight", o_cand,
                                       m.dense()), w_ref.T, atol=1e-6)
    gain = 1 + 0.1 * _emb(5, n=1)[0]
    np.testing.assert_allclose(m.apply("model.norm.weight", gain[perm], m.dense()), gain,
                               atol=1e-6)


def test_same_basis_is_identity() -> None:
    ref = _emb(0)
    m = estimate_map(ref + 0.05 * _emb(1), ref, rng=_rng())
    assert m.kind == "identity" and m.score > 0.9 and not m.transforms
    assert "identity" in m.describe() and "400 shared-token" in m.describe()


def test_rotation_falls_back_to_procrustes() -> None:
    ref = _emb(0)
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((32, 32)))
    cand = (ref @ q.T).astype(np.float32)  # rotated basis: no single dimension survives
    m = estimate_map(cand, ref, rng=_rng())
    assert m.kind == "procrustes" and m.transforms and m.score > 0.99
    np.testing.assert_allclose(cand @ m.dense(), ref, atol=1e-3)


def test_independent_embeddings_map_nothing() -> None:
    m = estimate_map(_emb(0), _emb(1), rng=_rng())
    assert m.kind == "identity" and not m.transforms
    assert "no clean permutation" in m.note and "below the bar" in m.note


def test_shrunk_width_is_a_partial_assignment() -> None:
    ref = _emb(0)
    keep = np.sort(np.random.default_rng(1).choice(32, 24, replace=False))
    m = estimate_map(ref[:, keep] + 0.05 * _emb(2, d=24), ref, rng=_rng())
    assert m.kind == "permutation" and (m.cand_dim, m.ref_dim) == (24, 32)
    assert m.target is not None and np.array_equal(m.target, keep)
    assert m.mapped_shape("model.layers.0.mlp.gate_proj.weight", (128, 24)) == (128, 32)


def test_too_few_tokens_guess_nothing() -> None:
    m = estimate_map(_emb(0, n=5), _emb(0, n=5), rng=_rng())
    assert m.kind == "identity" and m.tokens == 0 and "only 5 shared tokens" in m.note


def test_residual_axis_by_role_and_shape() -> None:
    assert residual_axis("a.q_proj.weight", (64, 32), 32) == 1
    assert residual_axis("a.o_proj.weight", (32, 64), 32) == 0
    assert residual_axis("a.down_proj.weight", (32, 128), 32) == 0
    assert residual_axis("a.input_layernorm.weight", (32,), 32) == 0
    assert residual_axis("a.q_norm.weight", (8,), 32) is None
    coords = sketch_coordinates(2048, 256, seed=1)
    assert len(coords) == 256 and np.all(np.diff(coords) > 0)
    assert np.array_equal(coords, sketch_coordinates(2048, 256, seed=1))


def test_residual_permuted_copy_is_derived(models: dict[str, Path],
                                           variants: dict[str, Path]) -> None:
    """A function-preserving permutation of the residual stream does not hide the parent."""
    v = check_independence(variants["residual_permuted"], [models["parent"]], stage_id="s",
                           team_id="t")
    assert v.verdict == "derived"
    assert "signed permutation" in v.settings["matching"]["residual_maps"]["parent"]
    att = next(e for e in v.evidence if e.component == "block.0.attention")
    assert att.verdict == "derived" and "residual basis first" in att.detail
    emb = next(e for e in v.evidence if e.component == "embeddings")
    assert emb.verdict == "no_evidence"  # the rows that estimated the map are not re-tested
