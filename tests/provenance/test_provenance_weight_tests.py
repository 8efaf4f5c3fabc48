"""The statistics: calibrated nulls, Fisher without underflow, Holm, exact reuse, norms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from scipy import stats

from kaieval.provenance import (
    correlation_test,
    exact_reuse,
    fisher_combine,
    hash_index,
    holm,
    open_model,
)
from kaieval.provenance.weight_tests import compare_tensor


def test_unit_null_is_uniform_for_independent_matrices() -> None:
    rng = np.random.default_rng(0)
    ps = []
    for _ in range(300):
        r = correlation_test("w", rng.standard_normal((50, 60)).astype(np.float32),
                             rng.standard_normal((50, 60)).astype(np.float32), rng=rng)
        assert r is not None and r.method == "unit_clt"
        ps.append(r.p_value)
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert 0.0 < np.mean(np.array(ps) < 0.05) < 0.1


def test_shared_row_structure_is_not_evidence() -> None:
    """Trained independent matrices share row scales (token frequency) but not units.

    The i.i.d.-element null calls them dependent; the unit-permutation null must not.
    """
    rng = np.random.default_rng(8)
    scale = np.exp(rng.standard_normal(4000))  # shared per-row magnitude, e.g. frequency
    iid_ps, unit_ps = [], []
    for _ in range(60):
        u, v = rng.standard_normal(32), rng.standard_normal(32)  # independent directions
        x = (scale[:, None] * u + 0.1 * rng.standard_normal((4000, 32))).astype(np.float32)
        y = (scale[:, None] * v + 0.1 * rng.standard_normal((4000, 32))).astype(np.float32)
        res = correlation_test("head", x, y, rng=rng, rows_exchangeable=False)
        assert res is not None and res.iid_log_p is not None
        iid_ps.append(math.exp(res.iid_log_p))
        unit_ps.append(res.p_value)
    assert np.mean(np.array(iid_ps) < 0.01) > 0.5  # the naive null fires on most pairs
    assert np.mean(np.array(unit_ps) < 0.01) < 0.1  # the unit null does not
    assert stats.kstest(unit_ps, "uniform").pvalue > 0.01


def test_iid_p_is_erfc_formula_and_few_units_use_monte_carlo() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 10)).astype(np.float32)
    y = (0.03 * x + rng.standard_normal((500, 10))).astype(np.float32)
    r = correlation_test("w", x, y, rng=np.random.default_rng(3))
    assert r is not None and r.iid_log_p is not None
    assert r.r == pytest.approx(np.corrcoef(x.ravel(), y.ravel())[0, 1], abs=1e-6)
    assert math.exp(r.iid_log_p) == pytest.approx(
        math.erfc(abs(r.r) * math.sqrt(5000) / math.sqrt(2)), rel=1e-9)
    assert r.method == "unit_permutation" and r.permutations == 999
    same = correlation_test("w", x, x + 0.1 * y, rng=np.random.default_rng(3))
    assert same is not None and same.p_value == pytest.approx(1e-3)


def test_chunked_correlation_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large tensors are correlated in row blocks (float32 products summed in float64);
    the block size changes r and z only at float32 rounding, far below any decision."""
    import kaieval.provenance.weight_tests as tw

    monkeypatch.setattr(tw, "CHUNK", 1000)
    rng = np.random.default_rng(4)
    x = (3 + rng.standard_normal((70, 90))).astype(np.float32)
    y = (0.2 * x + rng.standard_normal((70, 90))).astype(np.float32)
    r = correlation_test("w", x, y, rng=rng)
    monkeypatch.setattr(tw, "CHUNK", 1 << 22)
    whole = correlation_test("w", x, y, rng=rng)
    assert r is not None and whole is not None
    assert r.r == pytest.approx(np.corrcoef(x.ravel(), y.ravel())[0, 1], abs=1e-9)
    assert r.statistic == pytest.approx(whole.statistic, rel=1e-6)
    bad = x.copy()
    bad[0, 0] = np.nan
    assert correlation_test("w", bad, y, rng=rng) is None


def test_small_tensors_use_a_seeded_permutation_null() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal(100).astype(np.float32)
    a = correlation_test("b", x, x + 0.1 * rng.standard_normal(100).astype(np.float32),
                         rng=np.random.default_rng(5), permutations=199)
    assert a is not None and a.method == "permutation" and a.permutations == 199
    assert a.p_value == pytest.approx(1 / 200)  # the floor 1/(T+1)
    nulls = [correlation_test("b", rng.standard_normal(100).astype(np.float32),
                              rng.standard_normal(100).astype(np.float32),
                              rng=rng, permutations=199) for _ in range(150)]
    ps = [r.p_value for r in nulls if r is not None]
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    again = correlation_test("b", x, x + 0.5, rng=np.random.default_rng(5), permutations=199)
    assert again is not None and again.p_value == a.p_value


def test_norm_raw_cosine_is_high_but_not_evidence() -> None:
    """Two independent 'trained' norm vectors: raw cosine ~1, centred r ~0, p not small."""
    rng = np.random.default_rng(3)
    a = (1 + 0.05 * rng.standard_normal(2048)).astype(np.float32)
    b = (1 + 0.05 * rng.standard_normal(2048)).astype(np.float32)
    res = correlation_test("model.norm.weight", a, b, rng=rng, norm=True)
    assert res is not None and res.test == "norm_correlation" and res.method == "permutation"
    assert res.raw_cosine is not None and res.raw_cosine > 0.99
    assert abs(res.r) < 0.1 and res.p_value > 0.01
    derived = correlation_test("model.norm.weight", a, a + 0.001 * rng.standard_normal(2048)
                               .astype(np.float32), rng=rng, norm=True)
    assert derived is not None and derived.r > 0.99 and derived.p_value == pytest.approx(1e-3)
    assert correlation_test("n", np.ones(64, np.float32), a[:64], rng=rng, norm=True) is None


def test_fisher_matches_scipy_and_never_underflows() -> None:
    ps = [0.2, 0.03, 0.5, 0.9]
    res = fisher_combine([math.log(p) for p in ps])
    want = stats.combine_pvalues(ps, method="fisher")
    assert res.statistic == pytest.approx(want.statistic)
    assert res.p_value == pytest.approx(want.pvalue, rel=1e-9)
    assert res.df == 8
    tiny = fisher_combine([-3000.0, -2000.0, -1.0])
    assert math.isfinite(tiny.log_p) and tiny.log_p < -4900
    assert fisher_combine([0.0]).log_p == 0.0


def test_holm_step_down() -> None:
    logs = [math.log(p) for p in (0.01, 0.04, 0.03, 0.005)]
    assert holm(logs, 0.05) == [True, False, False, True]
    assert holm([math.log(0.02)] * 2, 0.05) == [True, True]
    assert holm([-5000.0, math.log(0.5)], 0.01) == [True, False]


def test_exact_reuse_by_hash_regardless_of_name(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 16, generator=g)
    save_file({"vision.proj": w, "ones": torch.ones(256), "zeros": torch.zeros(128, 2),
               "small": torch.randn(8, generator=g)}, str(tmp_path / "ref.safetensors"))
    save_file({"encoder.renamed": w.clone(), "bf16": w.to(torch.bfloat16),
               "ones": torch.ones(256), "zeros": torch.zeros(128, 2),
               "other": torch.randn(32, 16, generator=g)}, str(tmp_path / "cand.safetensors"))
    ref, cand = open_model(tmp_path / "ref.safetensors"), open_model(tmp_path / "cand.safetensors")
    ref_hashes = hash_index(ref)
    assert set(ref_hashes) == {"vision.proj"}  # constant and tiny tensors are not evidence
    matches = exact_reuse(hash_index(cand), ref_hashes)
    assert [(m.candidate, m.reference) for m in matches] == [("encoder.renamed", "vision.proj")]
    assert matches[0].digest.startswith("sha256:")


def test_compare_tensor_streams_two_models(models: dict[str, Path]) -> None:
    parent, tuned = open_model(models["parent"]), open_model(models["finetune"])
    name = "model.layers.1.mlp.down_proj.weight"
    res = compare_tensor(tuned, parent, name, rng=np.random.default_rng(0))
    assert res is not None and res.r > 0.9 and res.log_p < -100 and res.n == 64 * 128


@pytest.mark.parametrize("shape,exchangeable", [((3000, 700), True), ((600, 2600), True),
                                                 ((90, 40), True), ((2600, 900), False),
                                                 ((20, 30), True)])
def test_streamed_sub_matrix_gives_the_whole_tensors_result(
        tmp_path: Path, shape: tuple[int, int], exchangeable: bool) -> None:
    """Reading only the planned sub-matrix changes nothing: bit-identical r, z and p."""
    from kaieval.provenance.weight_tests import correlation_test, plan_null

    g = torch.Generator().manual_seed(3)
    x = torch.randn(*shape, generator=g)
    y = (0.3 * x + torch.randn(*shape, generator=g)).to(torch.bfloat16)
    save_file({"w": x.to(torch.bfloat16)}, str(tmp_path / "x.safetensors"))
    save_file({"w": y}, str(tmp_path / "y.safetensors"))
    wx, wy = open_model(tmp_path / "x.safetensors"), open_model(tmp_path / "y.safetensors")

    def rng() -> np.random.Generator:
        return np.random.default_rng([7, 11])

    whole = correlation_test("w", wx.load("w"), wy.load("w"), rng=rng(),
                             rows_exchangeable=exchangeable)
    r = rng()
    plan = plan_null(shape, rows_exchangeable=exchangeable, rng=r)
    part = correlation_test("w", wx.block("w", plan.rows, plan.cols),
                            wy.block("w", plan.rows, plan.cols), rng=r,
                            rows_exchangeable=exchangeable, plan=plan)
    assert whole is not None and part is not None
    assert whole == part
    assert (part.subsample is not None) == plan.cut
    assert part.n == len(plan.rows) * len(plan.cols)  # the elements actually correlated
    assert part.log_p <= math.log(0.01)  # related: significant (MC floor 1/1000 when few units)


def test_exact_reuse_finds_identical_bytes_and_not_a_last_or_middle_byte_off(
        tmp_path: Path) -> None:
    """The quick prefilter (ends of each tensor) then the full hash: a copy is found, a
    tensor one byte off -- at the end, or in the middle the prefilter does not read -- is not."""
    from kaieval.provenance.weight_tests import collisions, quick_index

    rng = np.random.default_rng(5)
    base = {n: torch.from_numpy(rng.standard_normal((256, 512)).astype(np.float32))
            for n in ("copy", "last", "middle")}
    other = {n: t.clone() for n, t in base.items()}
    for name, at in (("last", -1), ("middle", 128 * 512 + 7)):  # 64 KiB from either end
        raw = other[name].numpy().reshape(-1).view(np.uint8)
        raw[at * 4 if at >= 0 else -1] ^= 1  # one bit of one byte
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    save_file(base, str(tmp_path / "a" / "model.safetensors"))
    save_file(other, str(tmp_path / "b" / "model.safetensors"))
    a, b = open_model(tmp_path / "a"), open_model(tmp_path / "b")
    want, ref_want = collisions(quick_index(a), quick_index(b))
    assert want == ["copy", "middle"] and ref_want == ["copy", "middle"]  # last: quick differs
    found = exact_reuse(hash_index(a, want), hash_index(b, ref_want))
    assert [(m.candidate, m.reference) for m in found] == [("copy", "copy")]
    assert exact_reuse(hash_index(a), hash_index(b)) == found  # the same without prefilter
