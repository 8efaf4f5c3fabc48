"""Fused and stacked tensors as the separate tensors the tests compare.

Some checkpoints store what another model keeps apart: Phi-3-style ``qkv_proj`` (query,
key and value projections stacked by rows), ``gate_up_proj`` (the MLP's gate and up
projections stacked by rows) and mixture-of-experts weights stacked along a leading
expert axis (``experts.gate_up_proj`` of shape ``[experts, ...]``). The tests pair tensors
by name, so a fused copy of a foreign model would otherwise escape them.

Every split here is a *row range* of a row-major tensor, which is a contiguous byte range
of the file: the parts are plain :class:`TensorInfo` entries pointing into the same bytes,
so nothing is copied and exact-reuse hashes of a part equal the hash of an unfused copy.
Splits are only made when the sizes add up exactly from ``config.json``; anything else is
left fused (compared by hash and same-name tests only), never guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.io import CONFIG_MAX_BYTES, load_json_file
from kaieval.safetensors_header import DTYPE_SIZES, TensorInfo


def _config(root: Path) -> dict[str, Any]:
    """The model's config.json (the text model's part when nested), or {} when unusable."""
    try:
        data = load_json_file(root / "config.json", max_bytes=CONFIG_MAX_BYTES,
                              what="config files")
    except KaiError:
        return {}
    if not isinstance(data, dict):
        return {}
    text = data.get("text_config")
    return {**data, **text} if isinstance(text, dict) else data


def _int(cfg: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _rows(info: TensorInfo, name: str, first: int, count: int) -> TensorInfo:
    """Rows ``first .. first+count`` of a tensor (any rank; rows = the leading axis)."""
    row_bytes = info.nbytes // info.shape[0]
    return TensorInfo(name, info.dtype, (count, *info.shape[1:]), info.file,
                      info.start + first * row_bytes, count * row_bytes)


def attention_layout(cfg: dict[str, Any]) -> tuple[int, int, int] | None:
    """(query heads, key/value heads, head_dim) from a config's fields; None where they are
    missing or do not fit together (head_dim not given and not hidden / heads exactly, or
    query heads not a multiple of key/value heads)."""
    heads = _int(cfg, "num_attention_heads", "n_head")
    if heads is None:
        return None
    kv = _int(cfg, "num_key_value_heads") or heads
    hidden = _int(cfg, "hidden_size", "n_embd")
    head_dim = _int(cfg, "head_dim") or (
        hidden // heads if hidden is not None and hidden % heads == 0 else None)
    if head_dim is None or heads % kv:
        return None
    return heads, kv, head_dim


def _qkv_sizes(cfg: dict[str, Any]) -> tuple[int, int, int] | None:
    lay = attention_layout(cfg)
    if lay is None:
        return None
    heads, kv, head_dim = lay
    return heads * head_dim, kv * head_dim, kv * head_dim


def split_fused(tensors: dict[str, TensorInfo], root: Path) -> dict[str, TensorInfo]:
    """``tensors`` with fused/stacked entries replaced by their parts (when sizes agree)."""
    fused = [n for n, t in tensors.items() if n.endswith((".qkv_proj.weight",
                                                          ".gate_up_proj.weight"))
             or (".experts." in n and len(t.shape) == 3)]
    if not fused:
        return tensors
    cfg = _config(root)
    out = dict(tensors)
    qkv = _qkv_sizes(cfg)
    experts = _int(cfg, "num_local_experts", "num_experts", "n_routed_experts")
    for name in fused:
        info = tensors[name]
        if (info.dtype not in DTYPE_SIZES or not info.shape or info.shape[0] == 0
                or info.scale is not None):  # a scaled FP8 weight's blocks span the parts
            continue
        parts: list[TensorInfo] = []
        if name.endswith(".qkv_proj.weight") and qkv and len(info.shape) == 2 \
                and sum(qkv) == info.shape[0]:
            stem = name[:-len("qkv_proj.weight")]
            q, k, _ = qkv
            parts = [_rows(info, f"{stem}q_proj.weight", 0, q),
                     _rows(info, f"{stem}k_proj.weight", q, k),
                     _rows(info, f"{stem}v_proj.weight", q + k, qkv[2])]
        elif name.endswith(".gate_up_proj.weight") and len(info.shape) == 2 \
                and info.shape[0] % 2 == 0:
            stem, half = name[:-len("gate_up_proj.weight")], info.shape[0] // 2
            parts = [_rows(info, f"{stem}gate_proj.weight", 0, half),
                     _rows(info, f"{stem}up_proj.weight", half, half)]
        elif len(info.shape) == 3 and experts == info.shape[0]:
            stem, _, leaf = name.rpartition(".")
            suffix = "" if leaf.endswith("weight") else ".weight"
            parts = [TensorInfo(f"{stem}.{e}.{leaf}{suffix}", info.dtype, info.shape[1:],
                                info.file, p.start, p.nbytes)
                     for e, p in enumerate(_rows(info, name, i, 1)
                                           for i in range(info.shape[0]))]
        if parts and not any(p.name in out for p in parts):
            del out[name]
            out.update({p.name: p for p in parts})
    return out
