"""kaieval's own Llama forward against transformers' Llama: the same bits, or transformers.

Each variant is a real ``LlamaForCausalLM`` built by transformers with random weights
and saved as safetensors; the native forward must give bit-identical logits and caches
on every call shape the HF backend makes (plain, right-padded, cached continuation,
one-token decode, the tree scorer's 4-D masks with a cached past, kept positions).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest
from kaieval.bench.backends import llama_native
from kaieval.bench.backends.hf import HFBackend
from kaieval.errors import KaiError

torch = pytest.importorskip("torch")

VARIANTS: dict[str, dict[str, Any]] = {
    "mha": {},
    "gqa-tied-biases-head-dim": {"num_key_value_heads": 2, "tie_word_embeddings": True,
                                 "attention_bias": True, "mlp_bias": True, "head_dim": 24},
    "mqa-llama3": {"num_key_value_heads": 1, "max_position_embeddings": 4096,
                   "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
                                       "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 512}},
    "linear": {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0,
                                   "factor": 2.0}},
    "yarn": {"num_key_value_heads": 2,
             "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                 "original_max_position_embeddings": 256}},
}


def _build(out: Path, **overrides: Any) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    cfg = {"vocab_size": 97, "hidden_size": 64, "intermediate_size": 96,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
           "max_position_embeddings": 512, **overrides}
    model = LlamaForCausalLM(LlamaConfig(**cfg)).eval()
    with torch.no_grad():  # weights far from init, so every term matters
        for p in model.parameters():
            p.normal_(0, 0.2)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    folder = _build(tmp_path_factory.mktemp(request.param), **VARIANTS[request.param])
    assert llama_native.unsupported(folder) is None
    ours = llama_native.load(folder, torch.float32, "cpu")
    theirs = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    return ours, theirs


def _cache_kw(model: Any, cache: Any) -> dict[str, Any]:
    """transformers >= 5.20 calls it ``cache``, earlier 5.x ``past_key_values``."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache}


def _cache_of(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _same(a: Any, b: Any) -> None:
    assert a.shape == b.shape
    assert torch.equal(a, b), f"max |diff| {(a - b).abs().max().item()}"


def test_logits_and_caches_are_bit_identical(pair: tuple[Any, Any]) -> None:
    from transformers import DynamicCache

    ours, theirs = pair
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 97, (3, 30), generator=g)
    with torch.no_grad():
        _same(ours(input_ids=ids).logits, theirs(input_ids=ids).logits)
        mask = torch.ones(3, 30, dtype=torch.long)
        mask[1, 21:] = 0  # right padding, as the reference scorer pads
        _same(ours(input_ids=ids, attention_mask=mask).logits,
              theirs(input_ids=ids, attention_mask=mask).logits)
        a = ours(input_ids=ids[:, :18], use_cache=True)
        b = theirs(input_ids=ids[:, :18], use_cache=True)
        cache_a, cache_b = _cache_of(a), _cache_of(b)
        for la, lb in zip(cache_a.layers, cache_b.layers, strict=True):
            _same(la.keys, lb.keys)
            _same(la.values, lb.values)
        pos = torch.arange(18, 30)[None].expand(3, -1)
        keep = torch.tensor([0, 5, 11])
        _same(ours(input_ids=ids[:, 18:], position_ids=pos, use_cache=True, logits_to_keep=keep,
                   **_cache_kw(ours, cache_a)).logits,
              theirs(input_ids=ids[:, 18:], position_ids=pos, use_cache=True,
                     logits_to_keep=keep, **_cache_kw(theirs, cache_b)).logits)
        # one-token decode over the cache (the packed grouped-query path)
        step = ids[:, :1]
        _same(ours(input_ids=step, use_cache=True, logits_to_keep=1,
                   **_cache_kw(ours, cache_a)).logits,
              theirs(input_ids=step, use_cache=True, logits_to_keep=1,
                     **_cache_kw(theirs, cache_b)).logits)
        # the tree scorer's shape: a shared past, then a 4-D bool mask of its own
        past = ours(input_ids=ids[:1, :8], use_cache=True).cache
        kv = [(layer.keys.expand(2, -1, -1, -1), layer.values.expand(2, -1, -1, -1))
              for layer in past.layers]
        visible = torch.ones((2, 6, 14), dtype=torch.bool)
        visible[:, :, 8:] = torch.ones((6, 6), dtype=torch.bool).tril_()
        visible[1, 4:, 10:12] = False  # a branch that does not see its sibling
        tree = {"input_ids": ids[:2, 8:14], "attention_mask": visible[:, None],
                "position_ids": torch.arange(8, 14)[None].expand(2, -1), "use_cache": True}
        _same(ours(**tree, **_cache_kw(ours, DynamicCache(ddp_cache_data=kv,
                                                           config=ours.config))).logits,
              theirs(**tree, **_cache_kw(theirs, DynamicCache(ddp_cache_data=kv,
                                                               config=theirs.config))).logits)


@pytest.mark.parametrize(("legacy", "rope_type"), [
    ({"rope_theta": 500000.0, "rope_scaling": {
        "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}}, "llama3"),
    ({"rope_theta": 10000.0, "rope_scaling": {"type": "linear", "factor": 2.0}}, "linear"),
    ({"rope_theta": 1000000.0}, "default"),
    ({}, "default"),
])
def test_legacy_rope_keys_read_as_llama_config_reads_them(legacy: dict[str, Any],
                                                          rope_type: str) -> None:
    """Public checkpoints saved by transformers 4 carry ``rope_theta``/``rope_scaling``."""
    from transformers import LlamaConfig

    raw = {"model_type": "llama", "vocab_size": 97, "hidden_size": 64, "intermediate_size": 96,
           "num_hidden_layers": 2, "num_attention_heads": 4,
           "max_position_embeddings": 131072, **legacy}
    ours = llama_native.NativeConfig(json.loads(json.dumps(raw))).rope_parameters
    assert ours == LlamaConfig(**json.loads(json.dumps(raw))).rope_parameters
    assert ours["rope_type"] == rope_type


def test_legacy_config_file_runs_bit_identically(tmp_path: Path) -> None:
    """A llama3-scaled checkpoint whose config.json is in the transformers-4 layout."""
    from transformers import AutoModelForCausalLM

    folder = _build(tmp_path / "m", **VARIANTS["mqa-llama3"])
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    rope = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = rope
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    ours = llama_native.load(folder, torch.float32, "cpu")
    theirs = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    ids = torch.arange(0, 97).remainder(97)[None, :90]
    with torch.no_grad():
        _same(ours(input_ids=ids).logits, theirs(input_ids=ids).logits)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("plain"))


def _edit_config(src: Path, dst: Path, **changes: Any) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text(encoding="utf-8"))
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return dst


@pytest.mark.parametrize(("changes", "why"), [
    ({"model_type": "mistral", "architectures": ["MistralForCausalLM"]}, "not a plain"),
    ({"quantization_config": {"quant_method": "bitsandbytes"}}, "quantised"),
    ({"sliding_window": 4096}, "sliding-window"),
    ({"hidden_act": "gelu"}, "activation 'gelu'"),
    ({"rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}},
     "RoPE type 'dynamic'"),
    ({"num_attention_heads": 0}, "config not understood"),
])
def test_what_it_leaves_to_transformers(plain: Path, tmp_path: Path, changes: dict[str, Any],
                                        why: str) -> None:
    folder = _edit_config(plain, tmp_path / "m", **changes)
    reason = llama_native.unsupported(folder)
    assert reason is not None and why in reason


def test_unexpected_or_missing_tensors_leave_it_to_transformers(plain: Path,
                                                                tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = _edit_config(plain, tmp_path / "extra")
    weights = load_file(str(folder / "model.safetensors"))
    save_file({**weights, "vision_tower.proj.weight": torch.zeros(2, 2)},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    assert "vision_tower.proj.weight" in str(llama_native.unsupported(folder))
    weights.pop("model.layers.1.mlp.up_proj.weight")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    assert "model.layers.1.mlp.up_proj.weight" in str(llama_native.unsupported(folder))
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(KaiError, match=r"model\.safetensors: .*not valid JSON"):
        llama_native.unsupported(folder)


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in with its tokenizer (a plain Llama, as the demo's are)."""
    from kaieval.demo.standins import build_standins

    return build_standins(tmp_path_factory.mktemp("standins"), names=["nc"])["nc"]


def test_backend_records_the_forward_and_both_give_the_same_answers(standin: Path) -> None:
    plain = standin
    reqs = [LoglikelihoodRequest("가나다라 " * (3 + i), " 마바" * (1 + i % 3)) for i in range(6)]
    gens = [GenerationRequest("가나다 " * (2 + i), max_tokens=6) for i in range(3)]
    ours = HFBackend(plain)
    theirs = HFBackend(plain, forward="transformers")
    assert (ours.describe()["forward"], theirs.describe()["forward"]) == ("kaieval",
                                                                          "transformers")
    assert ours.fingerprint() != theirs.fingerprint()  # cached answers are never mixed
    assert ours.loglikelihood(reqs) == theirs.loglikelihood(reqs)
    assert ours.generate(gens) == theirs.generate(gens)
    assert HFBackend(plain, forward="kaieval").describe()["forward"] == "kaieval"


def test_forward_refusals_are_one_line(standin: Path, tmp_path: Path) -> None:
    plain = standin
    with pytest.raises(KaiError, match="forward 'fast' unknown") as err:
        HFBackend(plain, forward="fast")
    assert err.value.where == "--forward"
    mistral = _edit_config(plain, tmp_path / "m", model_type="mistral",
                           architectures=["MistralForCausalLM"])
    with pytest.raises(KaiError, match="--forward kaieval runs only a plain") as err:
        HFBackend(mistral, forward="kaieval")
    assert "\n" not in str(err.value)


def test_an_index_naming_files_outside_the_folder_is_refused(plain: Path, tmp_path: Path) -> None:
    folder = _edit_config(plain, tmp_path / "m")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.norm.weight": "../elsewhere.safetensors"}}), encoding="utf-8")
    with pytest.raises(KaiError, match="outside the model folder") as err:
        llama_native.unsupported(folder)
    assert "\n" not in str(err.value)


def test_sharded_checkpoint_loads_every_shard(plain: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(plain), dtype=torch.float32)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    folder = tmp_path / "sharded"
    assert len(list(folder.glob("*.safetensors"))) > 2
    assert llama_native.unsupported(folder) is None
    ours = llama_native.load(folder, torch.float32, "cpu")
    ids = torch.arange(20)[None]
    with torch.no_grad():
        _same(ours(input_ids=ids).logits, model(input_ids=ids).logits)


@pytest.mark.parametrize("forward", ["auto", "transformers"])
def test_a_truncated_weight_file_is_one_line_on_either_forward(standin: Path, tmp_path: Path,
                                                               forward: str) -> None:
    folder = _edit_config(standin, tmp_path / "m")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(KaiError, match=r"model\.safetensors: file truncated") as err:
        HFBackend(folder, forward=forward)
    assert "\n" not in str(err.value) and "model.safetensors" in str(err.value)


def test_hostile_configs_and_indexes_are_refused_or_left_to_transformers(
        plain: Path, tmp_path: Path) -> None:
    """A forged layer count never builds its table of expected tensors; broken JSON,
    a FIFO and a malformed index are one-line refusals."""
    import os

    forged = _edit_config(plain, tmp_path / "forged", num_hidden_layers=10**12)
    assert "more layers than tensors" in str(llama_native.unsupported(forged))
    bad = _edit_config(plain, tmp_path / "bad")
    (bad / "config.json").write_text("[" * 200 + "]" * 200, encoding="utf-8")
    with pytest.raises(KaiError, match="nested deeper"):
        llama_native.unsupported(bad)
    fifo = _edit_config(plain, tmp_path / "fifo")
    (fifo / "config.json").unlink()
    os.mkfifo(fifo / "config.json")
    with pytest.raises(KaiError, match="FIFO"):
        llama_native.unsupported(fifo)
    index = _edit_config(plain, tmp_path / "index")
    (index / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.norm.weight": ["model.safetensors"]}}), encoding="utf-8")
    with pytest.raises(KaiError, match="something other than a file name"):
        llama_native.unsupported(index)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_is_bit_identical_too(tmp_path: Path, dtype: str) -> None:
    """``--dtype bfloat16``/``float16``: RMSNorm's float32 detour and the casts in the
    same places as transformers'."""
    from transformers import AutoModelForCausalLM

    folder = _build(tmp_path / "m", **VARIANTS["gqa-tied-biases-head-dim"])
    dt = getattr(torch, dtype)
    ours = llama_native.load(folder, dt, "cpu")
    theirs = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dt).eval()
    ids = torch.randint(0, 97, (2, 25), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 25, dtype=torch.long)
    mask[1, 20:] = 0
    with torch.no_grad():
        _same(ours(input_ids=ids, attention_mask=mask).logits,
              theirs(input_ids=ids, attention_mask=mask).logits)
        a, b = ours(input_ids=ids[:, :10], use_cache=True), theirs(input_ids=ids[:, :10],
                                                                   use_cache=True)
        _same(ours(input_ids=ids[:, 10:11], use_cache=True,
                   **_cache_kw(ours, _cache_of(a))).logits,
              theirs(input_ids=ids[:, 10:11], use_cache=True,
                     **_cache_kw(theirs, _cache_of(b))).logits)
