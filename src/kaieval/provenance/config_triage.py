"""Config triage: compare two ``config.json`` files to choose which weight tests to run.

TRIAGE ONLY. Architectures are copied all the time (Yi used Llama's), so an identical
config proves nothing; and a derived model can have a different one (depth up-scaling,
pruning, MoE upcycling, vocabulary extension all change shapes). What the comparison is
good for is planning: same widths mean blocks can be compared by position; a different
layer count calls for the block search; a different vocabulary for shared-token
alignment. The result says so in every field that could be mistaken for evidence.

Field names differ between model families (``n_embd`` vs ``hidden_size``; transformers 5
moved ``rope_theta`` into ``rope_parameters``), so each field is read under its aliases,
and from ``text_config`` for multimodal configs. The file is read as JSON only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.io import CONFIG_MAX_BYTES, load_json_file

TRIAGE_NOTE = ("TRIAGE ONLY: a shared configuration is not evidence of derivation and a "
               "different one is not evidence of independence; it only chooses which weight "
               "tests and block mappings to run.")

# canonical field -> aliases, first found wins
FIELDS: dict[str, tuple[str, ...]] = {
    "model_type": ("model_type",),
    "architectures": ("architectures",),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "n_kv_heads",
                            "multi_query_group_num"),
    "head_dim": ("head_dim",),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size"),
    "moe_intermediate_size": ("moe_intermediate_size",),
    "num_experts": ("num_experts", "num_local_experts", "n_routed_experts"),
    "num_experts_per_tok": ("num_experts_per_tok", "moe_top_k"),
    "vocab_size": ("vocab_size", "padded_vocab_size"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "seq_length"),
    "rope_theta": ("rope_theta", "rotary_emb_base"),
    "norm_eps": ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_eps"),
    "activation": ("hidden_act", "activation_function", "hidden_activation"),
    "tie_word_embeddings": ("tie_word_embeddings",),
    "attention_bias": ("attention_bias", "qkv_bias"),
    "sliding_window": ("sliding_window",),
}


@dataclass(frozen=True)
class ConfigTriage:
    """Identical and differing fields, and the tests the differences suggest."""

    candidate: Path
    reference: Path
    identical: dict[str, Any]
    differing: dict[str, tuple[Any, Any]]  # field -> (candidate, reference)
    only_candidate: dict[str, Any]
    only_reference: dict[str, Any]
    suggestions: tuple[str, ...]
    remote_code: tuple[bool, bool]  # auto_map present (code the engine will never run)
    note: str = TRIAGE_NOTE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the TRIAGE ONLY note comes first so no reader misses it."""
        return {"note": self.note, "candidate": str(self.candidate),
                "reference": str(self.reference), "identical": self.identical,
                "differing": {k: list(v) for k, v in self.differing.items()},
                "only_candidate": self.only_candidate, "only_reference": self.only_reference,
                "suggestions": list(self.suggestions), "remote_code": list(self.remote_code)}


def _config_file(path: Path) -> Path:
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise KaiError("config.json not found", where=str(path))
    return file


def read_config(path: Path) -> tuple[dict[str, Any], bool]:
    """Canonical fields of a ``config.json`` (or a model directory) and whether it has
    ``auto_map`` (repository code)."""
    file = _config_file(path)
    data = load_json_file(file, max_bytes=CONFIG_MAX_BYTES, what="config files")
    if not isinstance(data, dict):
        raise KaiError("config is not a JSON object", where=str(file))
    sources: list[dict[str, Any]] = [data]
    text = data.get("text_config")
    if isinstance(text, dict):
        sources.insert(0, text)  # multimodal: the language model's fields first
    rope = data.get("rope_parameters")
    if isinstance(rope, dict):
        sources.append(rope)
    out: dict[str, Any] = {}
    for name, aliases in FIELDS.items():
        for src in sources:
            hit = next((src[a] for a in aliases if a in src and src[a] is not None), None)
            if hit is not None:
                out[name] = hit
                break
    for key, value in data.items():
        if key.endswith("_config") and isinstance(value, dict) and key != "text_config":
            out[f"has_{key}"] = True  # vision_config, audio_config: towers to test separately
    return out, "auto_map" in data


def _suggest(c: dict[str, Any], r: dict[str, Any]) -> list[str]:
    tips: list[str] = []

    def differs(k: str) -> bool:
        return k in c and k in r and c[k] != r[k]

    if all(k in c and k in r and c[k] == r[k]
           for k in ("hidden_size", "num_hidden_layers", "intermediate_size")):
        tips.append("same widths and depth: compare tensors block by block at the same index")
    if differs("num_hidden_layers"):
        tips.append("different layer counts: run the block-to-block search (depth up-scaling, "
                    "pruning, inserted layers)")
    if differs("hidden_size"):
        tips.append("different hidden sizes: only width-robust tests apply (hidden-unit "
                    "matching on slices, black-box agreement)")
    if differs("intermediate_size"):
        tips.append("different MLP widths: match hidden units (pruned or widened MLPs)")
    if ("num_experts" in c) != ("num_experts" in r) or differs("num_experts"):
        tips.append("expert layout differs: test experts against each other and against a "
                    "dense reference MLP (upcycling)")
    if differs("vocab_size"):
        tips.append("different vocabularies: align embeddings through shared tokens and run "
                    "the tokenizer lineage test")
    return tips


def compare_configs(candidate: Path, reference: Path) -> ConfigTriage:
    """Field-by-field comparison of two configs (files or model directories). TRIAGE ONLY."""
    c, c_code = read_config(candidate)
    r, r_code = read_config(reference)
    identical = {k: c[k] for k in c if k in r and c[k] == r[k]}
    differing = {k: (c[k], r[k]) for k in c if k in r and c[k] != r[k]}
    return ConfigTriage(candidate, reference, identical, differing,
                        {k: v for k, v in c.items() if k not in r},
                        {k: v for k, v in r.items() if k not in c},
                        tuple(_suggest(c, r)), (c_code, r_code))
