"""Hidden-unit matching (matching.py): statistics, their nulls, and permuted derivations."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from kaieval.provenance import check_independence, open_model, read_vocab
from kaieval.provenance.fingerprint import load_reference
from kaieval.provenance.layers import match_reference
from kaieval.provenance.matching import UnitSketch, find_sites, match, rank_log_p


def _sketch(parts: dict[str, np.ndarray], units: np.ndarray | None = None) -> UnitSketch:
    n = next(iter(parts.values())).shape[0]
    normed = {k: (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
              for k, v in parts.items()}
    return UnitSketch("x", 0, None, np.arange(n) if units is None else units, n, normed)


def _random_parts(seed: int, n: int = 96, k: int = 48) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {p: rng.standard_normal((n, k)).astype(np.float32) for p in ("gate", "up", "down")}


def test_rank_test_floor_and_null() -> None:
    x = np.arange(100)
    rho, lp = rank_log_p(x, x)
    assert rho == pytest.approx(1.0)
    assert lp == pytest.approx(-math.lgamma(101))  # floored at the exact 1/n!
    rng = np.random.default_rng(0)
    ps = [math.exp(rank_log_p(x, rng.permutation(100))[1]) for _ in range(300)]
    assert stats.kstest(ps, "uniform").pvalue > 0.01  # uniform under random matchings
    ref = stats.spearmanr(x, y := rng.permutation(100))
    rho2, lp2 = rank_log_p(x, y)
    assert rho2 == pytest.approx(ref.statistic)
    assert math.exp(lp2) == pytest.approx(stats.t.sf(
        ref.statistic * math.sqrt(98 / (1 - ref.statistic ** 2)), 98))


def test_fine_tune_keeps_identity_order() -> None:
    ref = _random_parts(0)
    noise = _random_parts(1)
    cand = {p: ref[p] + 0.5 * noise[p] for p in ref}
    res = match(_sketch(cand), _sketch(ref))
    assert res.rho_identity > 0.99 and res.log_p_identity < math.log(1e-50)
    assert res.agreement is not None and res.agreement > 0.95


def test_permuted_units_fail_identity_but_pass_gate_up() -> None:
    ref = _random_parts(0)
    perm = np.random.default_rng(2).permutation(96)
    noise = _random_parts(1)
    cand = {p: ref[p][perm] + 0.5 * noise[p] for p in ref}
    res = match(_sketch(cand), _sketch(ref))
    assert res.log_p_identity > math.log(1e-3)  # the order is gone...
    assert res.rho_gate_up is not None and res.rho_gate_up > 0.99  # ...the units are not
    assert res.log_p < math.log(1e-50) and res.mean_similarity > 0.8


def test_independent_units_are_not_matched() -> None:
    res = match(_sketch(_random_parts(0)), _sketch(_random_parts(1)))
    assert res.log_p > math.log(1e-3) and res.agreement is not None and res.agreement < 0.1


def test_subsampled_units_keep_the_order() -> None:
    ref = _random_parts(0)
    sub = np.sort(np.random.default_rng(3).choice(96, 40, replace=False))
    cand = {p: v[sub] + 0.3 * _random_parts(1)[p][sub] for p, v in ref.items()}
    res = match(_sketch(cand, units=sub), _sketch(ref))
    assert res.candidate_units == 40 and res.rho_identity > 0.99


def test_sites_found_in_llama_and_mixtral_layouts(models: dict[str, Path],
                                                  variants: dict[str, Path]) -> None:
    dense = find_sites(open_model(models["parent"]))
    assert [(s.block, s.expert, s.units, s.dim) for s in dense] == \
        [(b, None, 128, 64) for b in range(4)]
    assert set(dense[0].parts) == {"gate", "up", "down"}
    moe = find_sites(open_model(variants["moe_upcycled"]))
    assert len(moe) == 16 and moe[5].expert == 1 and moe[5].block == 1
    assert moe[5].parts["gate"].endswith("experts.1.w1.weight")


def test_permuted_then_finetuned_is_derived(models: dict[str, Path],
                                            variants: dict[str, Path]) -> None:
    """Same-position correlation misses it; the gate/up matching does not."""
    v = check_independence(variants["permuted_finetune"], [models["parent"]], stage_id="s",
                           team_id="t")
    assert v.verdict == "derived"
    for b in range(4):
        e = next(e for e in v.evidence if e.component == f"block.{b}.mlp")
        assert e.verdict == "derived" and "hidden_unit_matching" in e.test
        assert "gate/up matchings agree on 100%" in e.detail
        fisher = float(e.detail.split("Fisher chi2=")[1].split(" p=")[1].split(";")[0])
        assert fisher > 0.01  # the same-position correlations alone show nothing


def test_matching_null_p_values_spread_out(models: dict[str, Path]) -> None:
    """Independent pairs: per-block matching p-values are not piled near zero."""
    ps: list[float] = []
    for a, b in itertools.permutations(["parent", "independent", "naver", "finetune"], 2):
        if {a, b} == {"parent", "finetune"}:
            continue
        cand = open_model(models[a])
        ref = load_reference(models[b])
        vocabs = (read_vocab(models[a] / "tokenizer.json"), ref.vocab or {})
        _, found, _ = match_reference(cand, find_sites(cand), ref, vocabs, 1, 0.01)
        ps += [math.exp(f.result.log_p) for f in found if f.result is not None]
    assert len(ps) == 10 * 4
    assert min(ps) > 1e-4
    assert np.mean(np.array(ps) < 0.05) < 0.2
    assert stats.kstest(ps, "uniform").pvalue > 0.001


def test_non_finite_weights_do_not_crash(models: dict[str, Path], tmp_path: Path) -> None:
    """NaN/inf in a hostile candidate: a verdict, not a traceback from the assignment."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(models["independent"] / "model.safetensors"))
    for name in ("model.layers.0.mlp.up_proj.weight", "model.embed_tokens.weight"):
        bad = tensors[name].copy()
        bad[:5] = np.nan
        bad[5:7] = np.inf
        tensors[name] = bad
    (tmp_path / "m").mkdir()
    save_file(tensors, str(tmp_path / "m" / "model.safetensors"))
    (tmp_path / "m" / "tokenizer.json").write_bytes(
        (models["independent"] / "tokenizer.json").read_bytes())
    v = check_independence(tmp_path / "m", [models["parent"]], stage_id="s", team_id="t")
    assert v.verdict in ("no_evidence", "inconclusive")


def test_rank_log_p_of_a_reversed_order_is_finite() -> None:
    """rho = -1 (four heads in reverse order: 1 in 24 by chance) is the weakest evidence."""
    from kaieval.provenance.matching import rank_log_p

    rho, lp = rank_log_p(np.arange(4), np.arange(4)[::-1].copy())
    assert rho == -1.0 and -1e-9 < lp <= 0.0
