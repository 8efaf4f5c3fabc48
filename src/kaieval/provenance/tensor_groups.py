"""Map tensor names to the model components the independence rule is judged on.

Why components: the programme's verdict is per part of the model. Naver's
stage-1 model had a from-scratch language model but a reused vision encoder;
that is a different finding ("partial") from a fine-tuned language model
("derived"), and only a per-component view can say which.

Names follow transformers' Llama-style layout (``model.layers.3.mlp.up_proj.weight``);
GPT-2 / NeoX style block names (``h.3.``, ``blocks.3.``) map the same way.
Tensors from a sub-folder component arrive qualified as ``<folder>/<name>``
(see :class:`~kaieval.provenance.safetensors_io.ModelWeights`) and belong to that
folder's component whatever their own names are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EMBEDDINGS = "embeddings"
HEAD = "head"
NORMS = "norms"
OTHER = "other"

_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")
_ATTENTION = ("attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("mlp", "ffn", "feed_forward", "experts", "gate_proj", "up_proj", "down_proj",
        "router", "gate.weight")
_TOWERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("visual.", "vision_tower.", "vision_model.", "vision_encoder.", "model.visual.",
      "model.vision_tower.", "model.vision_model."), "vision_encoder"),
    (("audio_tower.", "audio_model.", "audio_encoder.", "model.audio_tower."), "audio_encoder"),
    (("multi_modal_projector.", "mm_projector.", "model.multi_modal_projector."), "projector"),
)


def is_norm(name: str) -> bool:
    """Whether a tensor is a norm weight or bias (its values start near 1.0 or 0.0, not random)."""
    parts = name.split("/")[-1].split(".")
    return any("norm" in p.lower() or p in ("ln_f", "ln_1", "ln_2") for p in parts[-3:])


def component_of(name: str) -> str:
    """The component a (possibly folder-qualified) tensor name belongs to."""
    if "/" in name:
        return name.split("/", 1)[0]
    for prefixes, comp in _TOWERS:
        if name.startswith(prefixes):
            return comp
    if "embed_tokens" in name or re.search(r"(?:^|\.)(wte|word_embeddings|embed_in)\.", name):
        return EMBEDDINGS
    if name.startswith(("lm_head.", "embed_out.")) or ".lm_head." in name:
        return HEAD
    if is_norm(name):
        return NORMS
    m = _BLOCK.search(name)
    if m:
        rest = name[m.end():]
        if any(k in rest for k in _ATTENTION):
            return f"block.{m.group(1)}.attention"
        if any(k in rest for k in _MLP):
            return f"block.{m.group(1)}.mlp"
        return f"block.{m.group(1)}.other"
    return OTHER


def is_language_model(component: str) -> bool:
    """Embeddings, transformer blocks and the head: the parts that make the language model."""
    return component in (EMBEDDINGS, HEAD) or component.startswith("block.")


def group_by_component(names: Iterable[str]) -> dict[str, list[str]]:
    """Tensor names grouped by component, components in a stable readable order."""
    groups: dict[str, list[str]] = {}
    for n in sorted(names):
        groups.setdefault(component_of(n), []).append(n)
    return dict(sorted(groups.items(), key=lambda kv: _order(kv[0])))


def _order(component: str) -> tuple[int, int, str]:
    if component == EMBEDDINGS:
        return (0, 0, "")
    if component.startswith("block."):
        _, idx, part = component.split(".", 2)
        return (1, int(idx), part)
    rank = {NORMS: 2, HEAD: 3, OTHER: 5}.get(component, 4)
    return (rank, 0, component)
