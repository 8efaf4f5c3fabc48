"""FP8 weights: exact decoding, block / per-channel / per-tensor scales, and a verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kaieval.errors import KaiError
from kaieval.provenance import check_independence, open_model
from kaieval.provenance.fp8 import LUT, decode

E4M3_MAX = 448.0


@pytest.mark.parametrize("dtype,torch_dtype", [("F8_E4M3", torch.float8_e4m3fn),
                                               ("F8_E5M2", torch.float8_e5m2)])
def test_every_code_decodes_like_torch(dtype: str, torch_dtype: torch.dtype) -> None:
    want = torch.arange(256, dtype=torch.uint8).view(torch_dtype).float().numpy()
    got = decode(np.arange(256, dtype=np.uint8), dtype)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])
    assert LUT[dtype].dtype == np.float32


def _quantize(w: torch.Tensor, block: tuple[int, int] | None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-style: per block amax / 448, codes = w / scale (None: one scale)."""
    r, c = w.shape
    if block is None:
        s = w.abs().max() / E4M3_MAX
        return (w / s).to(torch.float8_e4m3fn), s.reshape(())
    b0, b1 = block
    grid = torch.zeros(-(-r // b0), -(-c // b1))
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            grid[i, j] = w[i * b0:(i + 1) * b0, j * b1:(j + 1) * b1].abs().max() / E4M3_MAX
    full = grid.repeat_interleave(b0, 0)[:r].repeat_interleave(b1, 1)[:, :c]
    return (w / full).to(torch.float8_e4m3fn), grid


def test_block_scaled_weight_reads_as_its_values(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(300, 260, generator=g) * torch.linspace(0.01, 3.0, 260)  # uneven blocks
    codes, grid = _quantize(w, (128, 128))
    assert grid.shape == (3, 3)
    save_file({"x.weight": codes, "x.weight_scale_inv": grid, "n.weight": torch.ones(4)},
              str(tmp_path / "model.safetensors"))
    m = open_model(tmp_path)
    assert m.names() == ["n.weight", "x.weight"]  # the scale belongs to its weight
    assert m.tensors["x.weight"].scale_block == (128, 128)
    got = m.load("x.weight")
    rel = np.abs(got - w.numpy()) / (np.abs(w.numpy()) + 1e-3)
    assert np.median(rel) < 0.05  # fp8 rounding only; unscaled codes would be off by 1e2-1e4
    unscaled = codes.float().numpy()
    assert np.median(np.abs(unscaled - w.numpy()) / (np.abs(w.numpy()) + 1e-3)) > 1.0
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, 300, 50), np.sort(rng.choice(260, 70, replace=False))
    np.testing.assert_array_equal(m.block("x.weight", rows, cols), got[rows][:, cols])


@pytest.mark.parametrize("suffix,kind", [("_scale", "channel"), ("_scale", "tensor"),
                                         ("_scale_inv", "tensor")])
def test_per_channel_and_per_tensor_scales(tmp_path: Path, suffix: str, kind: str) -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(64, 48, generator=g)
    if kind == "channel":
        s = w.abs().amax(dim=1, keepdim=True) / E4M3_MAX
        codes = (w / s).to(torch.float8_e4m3fn)
    else:
        codes, s = _quantize(w, None)
    save_file({"x.weight": codes, f"x.weight{suffix}": s}, str(tmp_path / "m.safetensors"))
    m = open_model(tmp_path / "m.safetensors")
    want = codes.float().numpy() * s.numpy()
    np.testing.assert_allclose(m.load("x.weight"), want, rtol=1e-6)
    np.testing.assert_allclose(m.block("x.weight", np.array([5, 1]), np.array([3, 40])),
                               want[[5, 1]][:, [3, 40]], rtol=1e-6)


def test_a_scale_that_does_not_tile_is_refused(tmp_path: Path) -> None:
    codes = torch.zeros(256, 256).to(torch.float8_e4m3fn)
    save_file({"x.weight": codes, "x.weight_scale_inv": torch.ones(3, 5)},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(KaiError, match="does not tile"):
        open_model(tmp_path)
    # the configured block size must agree with the shapes too
    save_file({"x.weight": codes, "x.weight_scale_inv": torch.ones(2, 2)},
              str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(
        {"quantization_config": {"weight_block_size": [64, 64]}}))
    with pytest.raises(KaiError, match=r"in blocks of \[64, 64\]"):
        open_model(tmp_path)


def _fp8_copy(src: Path, out: Path) -> None:
    """``src`` with every 2-D weight in block-scaled FP8, as a DeepSeek-style export."""
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.safetensors", "vision_encoder"))
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(src / "model.safetensors"), "pt") as f:
        for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            t = f.get_tensor(name).float()
            if t.ndim == 2 and name.endswith(".weight"):
                tensors[name], tensors[name + "_scale_inv"] = _quantize(t, (32, 32))
            else:
                tensors[name] = t.to(torch.bfloat16)
    save_file(tensors, str(out / "model.safetensors"))
    cfg = json.loads((out / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [32, 32]}
    (out / "config.json").write_text(json.dumps(cfg))


def test_fp8_export_of_a_model_is_derived_from_it(models: dict[str, Path],
                                                  tmp_path: Path) -> None:
    _fp8_copy(models["parent"], tmp_path / "fp8")
    assert any(t.scale is not None for t in open_model(tmp_path / "fp8").tensors.values())
    v = check_independence(tmp_path / "fp8", [models["parent"]], stage_id="s", team_id="t")
    assert v.verdict == "derived"
    other = check_independence(tmp_path / "fp8", [models["independent"]], stage_id="s",
                               team_id="t")
    assert other.verdict == "no_evidence"
