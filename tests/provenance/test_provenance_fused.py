"""Fused qkv / gate_up tensors and stacked experts are split into the parts the tests pair.

A copy of a foreign model that only re-packs its weights (Phi-3-style fused projections)
must still be found: the parts are byte ranges of the fused tensor, so exact reuse sees
the very same bytes as the unfused original.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from kaieval.provenance import check_independence, open_model
from kaieval.provenance.weight_tests import hash_index


def _fuse(parent: Path, out: Path) -> None:
    """The parent's weights re-packed: q/k/v stacked by rows, gate/up stacked by rows."""
    out.mkdir()
    state = load_file(str(parent / "model.safetensors"))
    fused: dict[str, np.ndarray] = {}
    for name, w in state.items():
        if name.endswith(("k_proj.weight", "v_proj.weight", "up_proj.weight")):
            continue
        if name.endswith("q_proj.weight"):
            stem = name[:-len("q_proj.weight")]
            fused[f"{stem}qkv_proj.weight"] = np.concatenate(
                [w, state[f"{stem}k_proj.weight"], state[f"{stem}v_proj.weight"]])
        elif name.endswith("gate_proj.weight"):
            stem = name[:-len("gate_proj.weight")]
            fused[f"{stem}gate_up_proj.weight"] = np.concatenate(
                [w, state[f"{stem}up_proj.weight"]])
        else:
            fused[name] = w
    save_file(fused, str(out / "model.safetensors"))
    for f in ("config.json", "tokenizer.json"):
        shutil.copy(parent / f, out / f)


def test_fused_copy_is_split_and_found(models: dict[str, Path], tmp_path: Path) -> None:
    src = models["independent"]  # fp32 on disk: the safetensors numpy API can re-pack it
    fused = tmp_path / "fused"
    _fuse(src, fused)
    w = open_model(fused)
    assert not any(n.endswith(("qkv_proj.weight", "gate_up_proj.weight")) for n in w.names())
    assert set(w.names()) == set(open_model(src).names())
    # byte ranges of the fused tensors: identical hashes to the unfused original's tensors
    assert hash_index(w) == hash_index(open_model(src))
    v = check_independence(fused, [src], stage_id="s", team_id="t")
    assert v.verdict == "derived"


def test_unmatched_sizes_stay_fused(models: dict[str, Path], tmp_path: Path) -> None:
    fused = tmp_path / "fused"
    _fuse(models["independent"], fused)
    cfg = json.loads((fused / "config.json").read_text())
    cfg["num_key_value_heads"] = 1  # q/k/v row counts no longer add up: never guessed
    (fused / "config.json").write_text(json.dumps(cfg))
    names = open_model(fused).names()
    assert any(n.endswith("qkv_proj.weight") for n in names)
    assert any(n.endswith("gate_proj.weight") for n in names)  # gate/up needs no config


def test_stacked_experts_are_sliced_per_expert(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stacked = rng.standard_normal((4, 6, 10)).astype(np.float32)
    folder = tmp_path / "moe"
    folder.mkdir()
    save_file({"model.layers.0.mlp.experts.gate_up_proj": stacked,
               "model.norm.weight": np.ones(6, dtype=np.float32)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"num_local_experts": 4}))
    w = open_model(folder)
    parts = [f"model.layers.0.mlp.experts.{e}.gate_up_proj.weight" for e in range(4)]
    assert set(parts) <= set(w.names())
    for e, name in enumerate(parts):
        assert np.array_equal(w.load(name), stacked[e])
