"""Tensor name -> component, on transformers' real Llama names and a few other layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaieval.provenance import component_of, group_by_component, is_norm, open_model
from kaieval.provenance.tensor_groups import is_language_model


@pytest.mark.parametrize(("name", "component"), [
    ("model.embed_tokens.weight", "embeddings"),
    ("model.layers.3.mlp.up_proj.weight", "block.3.mlp"),
    ("model.layers.12.self_attn.k_proj.weight", "block.12.attention"),
    ("model.layers.0.input_layernorm.weight", "norms"),
    ("model.layers.0.self_attn.q_norm.weight", "norms"),
    ("model.norm.weight", "norms"),
    ("lm_head.weight", "head"),
    ("transformer.wte.weight", "embeddings"),
    ("gpt_neox.embed_in.weight", "embeddings"),  # GPT-NeoX (Polyglot-Ko, Pythia)
    ("embed_out.weight", "head"),
    ("gpt_neox.layers.4.attention.query_key_value.weight", "block.4.attention"),
    ("gpt_neox.layers.4.mlp.dense_h_to_4h.weight", "block.4.mlp"),
    ("transformer.h.5.attn.c_attn.weight", "block.5.attention"),
    ("transformer.h.5.mlp.c_fc.weight", "block.5.mlp"),
    ("transformer.ln_f.weight", "norms"),
    ("model.layers.2.mlp.experts.7.down_proj.weight", "block.2.mlp"),
    ("visual.blocks.0.attn.qkv.weight", "vision_encoder"),
    ("audio_tower.layers.0.fc1.weight", "audio_encoder"),
    ("multi_modal_projector.linear_1.weight", "projector"),
    ("vision_encoder/blocks.0.norm1.weight", "vision_encoder"),
    ("audio_encoder/model.layers.0.mlp.up_proj.weight", "audio_encoder"),
    ("rotary.inv_freq", "other"),
])
def test_component_of(name: str, component: str) -> None:
    assert component_of(name) == component


def test_norm_detection() -> None:
    assert is_norm("model.layers.1.post_attention_layernorm.weight")
    assert not is_norm("model.layers.1.mlp.down_proj.weight")
    assert not is_norm("model.normalizer.layers.0.mlp.up_proj.weight")


def test_real_llama_maps_every_tensor(models: dict[str, Path]) -> None:
    groups = group_by_component(open_model(models["parent"]).names())
    assert list(groups)[:3] == ["embeddings", "block.0.attention", "block.0.mlp"]
    assert set(groups) == {"embeddings", "norms", "head", "vision_encoder"} | {
        f"block.{i}.{p}" for i in range(4) for p in ("attention", "mlp")}
    assert len(groups["block.2.attention"]) == 4
    assert len(groups["norms"]) == 9
    assert is_language_model("block.2.mlp") and is_language_model("head")
    assert not is_language_model("vision_encoder") and not is_language_model("norms")
