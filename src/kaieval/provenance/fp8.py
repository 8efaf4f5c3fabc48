"""FP8 weights (E4M3, E5M2) as fp32, with the scales stored beside them.

Why: large open models now ship FP8 checkpoints (DeepSeek-V3 and its derivatives with
128 x 128 block scales, compressed-tensors / FBGEMM exports with per-tensor or
per-channel scales). A derivation test on the raw FP8 codes would compare numbers
that are off by a different factor in every block, so each weight is decoded
through a 256-entry table and multiplied by its scale -- ``W = fp8(W) * s`` for both
``weight_scale_inv`` (DeepSeek's name; its dequantisation multiplies) and
``weight_scale`` -- before any statistic sees it.

The scale tensor is attached to its weight and removed from the list of tensors
compared (it is part of that weight, not a weight of its own); its bytes still enter
the weight's exact-reuse hash and the input file hashes. The block size comes from
``config.json`` (``quantization_config.weight_block_size``) when given, else 128 x 128,
and is used only when the shapes agree exactly: anything else is refused with a clear
error rather than guessed.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kaieval.errors import KaiError
from kaieval.io import CONFIG_MAX_BYTES, load_json_file

FP8_DTYPES = frozenset({"F8_E4M3", "F8_E5M2"})
SCALE_SUFFIXES = ("_scale_inv", "_scale")
"""Suffixes appended to a weight's name for its scale (``x.weight`` -> ``x.weight_scale_inv``)."""

DEFAULT_BLOCK = (128, 128)
"""Block size assumed when config.json names none (DeepSeek-V3's and Qwen3-FP8's). Why not
infer it from the shapes: ceil(300 / b) = 3 for every b in 100..149, so shapes alone
rarely determine it, and a wrong guess scales whole blocks by the wrong factor."""


def _table(exp_bits: int, man_bits: int, *, ieee_specials: bool) -> npt.NDArray[np.float32]:
    """fp32 value of each of the 256 codes of a 1-sign / exp / mantissa 8-bit float.

    E4M3 (the "fn" variant every checkpoint uses) has no infinities; only S.1111.111 is
    NaN. E5M2 follows IEEE: exponent all ones is infinity (mantissa 0) or NaN.
    """
    codes = np.arange(256, dtype=np.int64)
    sign = np.where(codes >> 7, -1.0, 1.0)
    exp = (codes >> man_bits) & ((1 << exp_bits) - 1)
    man = codes & ((1 << man_bits) - 1)
    bias = (1 << (exp_bits - 1)) - 1
    normal = (1.0 + man / (1 << man_bits)) * np.exp2(exp.astype(np.float64) - bias)
    subnormal = (man / (1 << man_bits)) * 2.0 ** (1 - bias)
    value = sign * np.where(exp == 0, subnormal, normal)
    top = (1 << exp_bits) - 1
    if ieee_specials:
        value = np.where((exp == top) & (man == 0), sign * np.inf, value)
        value = np.where((exp == top) & (man != 0), np.nan, value)
    else:
        value = np.where((exp == top) & (man == (1 << man_bits) - 1), np.nan, value)
    return value.astype(np.float32)


LUT: dict[str, npt.NDArray[np.float32]] = {
    "F8_E4M3": _table(4, 3, ieee_specials=False),
    "F8_E5M2": _table(5, 2, ieee_specials=True),
}


def decode(raw: npt.NDArray[np.uint8], dtype: str) -> npt.NDArray[np.float32]:
    """FP8 codes to fp32 values (exact: every FP8 value is an fp32 value)."""
    return LUT[dtype][raw]


_NO_CONFIG = " (the default: config.json gives no quantization_config.weight_block_size)"


def _config_block(root: Path | None) -> tuple[int, int] | None:
    if root is None or not (root / "config.json").is_file():
        return None
    try:
        cfg = load_json_file(root / "config.json", max_bytes=CONFIG_MAX_BYTES,
                             what="config files")
    except KaiError:
        return None
    q = cfg.get("quantization_config") if isinstance(cfg, dict) else None
    size = q.get("weight_block_size") if isinstance(q, dict) else None
    if (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        return size[0], size[1]
    return None


def _block_of(shape: tuple[int, ...], scale: tuple[int, ...],
              configured: tuple[int, int] | None) -> tuple[int, int] | None:
    """Rows x columns of weight covered by one scale, or None if the shapes disagree."""
    if len(shape) != 2:
        return (max(1, math.prod(shape)), 1) if math.prod(scale) == 1 else None
    r, c = shape
    if math.prod(scale) == 1:
        return r, c  # one scale for the tensor
    if scale in ((r,), (r, 1)):
        return 1, c  # per output channel
    if len(scale) != 2:
        return None
    b = configured or DEFAULT_BLOCK
    return b if (-(-r // b[0]), -(-c // b[1])) == scale else None


def attach_scales(tensors: dict[str, Any], root: Path | None) -> dict[str, Any]:
    """``tensors`` with each FP8 weight's scale attached to it and dropped from the list.

    ``tensors`` maps names to :class:`~kaieval.safetensors_header.TensorInfo`
    (typed loosely here because that module imports this one).
    """
    fp8 = [n for n, t in tensors.items() if t.dtype in FP8_DTYPES]
    if not fp8:
        return tensors
    configured = _config_block(root)
    out = dict(tensors)
    for name in fp8:
        info = tensors[name]
        for suffix in SCALE_SUFFIXES:
            sname = name + suffix
            scale = tensors.get(sname)
            if scale is None:
                continue
            if scale.dtype not in ("F32", "BF16", "F16"):
                raise KaiError(f"scale {sname!r} has dtype {scale.dtype}; expected F32, BF16 or "
                               "F16", where=str(scale.file))
            block = _block_of(info.shape, scale.shape, configured)
            if block is None:
                raise KaiError(f"scale {sname!r} of shape {list(scale.shape)} does not tile "
                               f"{name!r} of shape {list(info.shape)}"
                               f" in blocks of {list(configured or DEFAULT_BLOCK)}"
                               f"{'' if configured else _NO_CONFIG}",
                               where=str(scale.file))
            out[name] = dataclasses.replace(info, scale=scale, scale_block=block)
            del out[sname]
            break
    return out


def scale_factors(scale: npt.NDArray[np.float32], block: tuple[int, int],
                  rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp],
                  ) -> npt.NDArray[np.float32]:
    """The scale of each selected element of a 2-D weight (``len(rows) x len(cols)``)."""
    grid = scale.reshape(-1, 1) if scale.ndim < 2 else scale
    if grid.size == 1:
        return np.full((len(rows), len(cols)), grid.reshape(-1)[0], dtype=np.float32)
    out: npt.NDArray[np.float32] = grid[np.ix_(rows // block[0], cols // block[1])]
    return out
