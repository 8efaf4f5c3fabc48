"""Config triage: aliases across families, identical vs differing fields, the suggestions
the differences imply, the TRIAGE ONLY label, and one-line errors on bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaieval.errors import KaiError
from kaieval.provenance.config_triage import TRIAGE_NOTE, compare_configs, read_config

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
         "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 128, "vocab_size": 300, "rms_norm_eps": 1e-6,
         "hidden_act": "silu", "rope_parameters": {"rope_theta": 10000.0,
                                                    "rope_type": "default"}}


def _write(folder: Path, config: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_same_config_is_triage_not_evidence(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", LLAMA)
    b = _write(tmp_path / "b", LLAMA)
    res = compare_configs(a, b)
    assert not res.differing
    assert res.identical["rope_theta"] == 10000.0  # read from transformers-5 rope_parameters
    assert res.note == TRIAGE_NOTE and res.note.startswith("TRIAGE ONLY")
    assert any("block by block" in s for s in res.suggestions)


def test_depth_and_vocab_changes_suggest_tests(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", {**LLAMA, "num_hidden_layers": 6, "vocab_size": 400,
                                "auto_map": {"AutoModel": "x.Y"}})
    b = _write(tmp_path / "b", LLAMA)
    res = compare_configs(a, b)
    assert res.differing == {"num_hidden_layers": (6, 4), "vocab_size": (400, 300)}
    assert "hidden_size" in res.identical
    text = " ".join(res.suggestions)
    assert "block-to-block search" in text and "shared tokens" in text
    assert res.remote_code == (True, False)
    record = json.loads(json.dumps(res.to_dict()))
    assert next(iter(record)) == "note" and record["differing"]["vocab_size"] == [400, 300]


def test_moe_layout_suggests_upcycling_tests(tmp_path: Path) -> None:
    moe = {**LLAMA, "num_local_experts": 8, "num_experts_per_tok": 2}
    res = compare_configs(_write(tmp_path / "moe", moe), _write(tmp_path / "dense", LLAMA))
    assert res.only_candidate == {"num_experts": 8, "num_experts_per_tok": 2}
    assert any("upcycling" in s for s in res.suggestions)


def test_gpt2_aliases_line_up_with_llama(tmp_path: Path) -> None:
    gpt2 = {"model_type": "gpt2", "n_embd": 64, "n_layer": 4, "n_head": 4, "vocab_size": 300,
            "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "n_positions": 64}
    res = compare_configs(_write(tmp_path / "g", gpt2), _write(tmp_path / "l", LLAMA))
    assert res.identical == {"hidden_size": 64, "num_hidden_layers": 4,
                             "num_attention_heads": 4, "vocab_size": 300}
    assert res.differing["activation"] == ("gelu_new", "silu")
    assert res.differing["norm_eps"] == (1e-5, 1e-6)
    assert "max_position_embeddings" in res.only_candidate
    assert "intermediate_size" in res.only_reference


def test_multimodal_reads_text_config(tmp_path: Path) -> None:
    vl = {"model_type": "qwen2_5_vl", "text_config": {**LLAMA, "model_type": "qwen2"},
          "vision_config": {"depth": 2}}
    fields, code = read_config(_write(tmp_path / "vl", vl))
    assert fields["hidden_size"] == 64 and fields["model_type"] == "qwen2"
    assert fields["has_vision_config"] is True and code is False


@pytest.mark.parametrize("content, match", [("{oops", "not valid JSON"),
                                            ("[1, 2]", "not a JSON object")])
def test_bad_config_is_one_line(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "config.json").write_text(content, encoding="utf-8")
    with pytest.raises(KaiError, match=match) as err:
        compare_configs(tmp_path, tmp_path)
    assert "\n" not in str(err.value)


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(KaiError, match=r"config\.json not found"):
        compare_configs(tmp_path, tmp_path)
