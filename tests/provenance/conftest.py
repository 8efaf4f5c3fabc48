"""Real tiny models for the provenance tests, built once per session with torch + transformers.

Every case is a genuine ``LlamaForCausalLM`` saved with ``save_pretrained``:

* ``parent``       seed 0, bf16, "trained" norms (1 + noise), tokenizer A, a ``vision_encoder/``;
* ``finetune``     parent after a few real Adam steps on random tokens (fp32);
* ``independent``  seed 1, same architecture, its own norms (raw cosine with parent's > 0.95);
* ``naver``        seed 2 language model with the parent's ``vision_encoder/`` copied in;
* ``vocab_derived`` parent re-indexed to tokenizer B (some tokens shared, others new) + noise;
* ``vocab_independent`` seed 3 language model with tokenizer B.

and, in ``variants`` (built from ``parent``): a unit-permuted then fine-tuned copy, a
residual-permuted copy, a pruned (blocks 0 and 3), a depth-up-scaled (0,1,2,1,2,3), a
shrunk-intermediate (96 of 128 units) copy, a Mixtral-layout MoE upcycled from the
parent's MLPs, and an MoE whose experts are freshly initialised.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

HERE = Path(__file__).resolve().parent
GENERATOR = HERE.parent / "data" / "bad_checkpoints" / "make_bad_checkpoints.py"
VOCAB_A = 300
SHARED = 180  # tokens of A that B also has
VOCAB_B = 320


def tokens_a() -> list[str]:
    return ["<unk>"] + [f"\u0120tok{i}" for i in range(1, VOCAB_A)]


def tokens_b() -> list[str]:
    """Tokenizer B: SentencePiece-style markers, a shuffled subset of A plus new tokens."""
    rng = np.random.default_rng(7)
    shared = [f"\u2581tok{i}" for i in rng.choice(np.arange(1, VOCAB_A), SHARED, replace=False)]
    new = [f"\u2581new{j}" for j in range(VOCAB_B - 1 - SHARED)]
    body = shared + new
    order = rng.permutation(len(body))
    return ["<unk>"] + [body[i] for i in order]


def save_tokenizer(tokens: list[str], folder: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    Tokenizer(WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>")).save(
        str(folder / "tokenizer.json"))


def _config(vocab: int) -> LlamaConfig:
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                       num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=64, tie_word_embeddings=False)


def _llama(seed: int, vocab: int = VOCAB_A) -> LlamaForCausalLM:
    """A freshly initialised model whose norm weights look trained (1 + 0.05·noise)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(_config(vocab))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.05 * torch.randn_like(p))
    return model


def _vision_encoder(folder: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(11)
    folder.mkdir()
    save_file({
        "patch_embed.proj.weight": (0.02 * rng.standard_normal((32, 48))).astype(np.float32),
        "blocks.0.attn.qkv.weight": (0.02 * rng.standard_normal((96, 32))).astype(np.float32),
        "blocks.0.mlp.fc1.weight": (0.02 * rng.standard_normal((64, 32))).astype(np.float32),
        "blocks.0.norm1.weight": (1 + 0.05 * rng.standard_normal(32)).astype(np.float32),
    }, str(folder / "model.safetensors"))


def _finetune(parent: Path, out: Path) -> None:
    """A few real training steps (Adam, next-token loss on random sequences)."""
    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(parent, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(5)
    model.train()
    for _ in range(5):
        ids = torch.randint(0, VOCAB_A, (4, 16), generator=gen)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(out)


def _reindexed(parent_dir: Path, out: Path) -> None:
    """Parent's weights carried onto tokenizer B: shared tokens keep their rows, + noise."""
    import torch
    from transformers import LlamaForCausalLM

    src = LlamaForCausalLM.from_pretrained(parent_dir, dtype=torch.float32).state_dict()
    a = {t.replace("\u0120", " "): i for i, t in enumerate(tokens_a())}
    b = [t.replace("\u2581", " ") for t in tokens_b()]
    dst = _llama(4, VOCAB_B)
    gen = torch.Generator().manual_seed(6)
    state = dst.state_dict()
    for name, tensor in src.items():
        noisy = tensor + 0.004 * torch.randn(tensor.shape, generator=gen)
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            for j, tok in enumerate(b):
                if tok in a:
                    state[name][j] = noisy[a[tok]]
        else:
            state[name] = noisy
    dst.load_state_dict(state)
    dst.save_pretrained(out)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """All model cases, built once (a few seconds on 2 cores)."""
    root = tmp_path_factory.mktemp("models")
    out = {k: root / k for k in ("parent", "finetune", "independent", "naver",
                                 "vocab_derived", "vocab_independent")}
    _llama(0).bfloat16().save_pretrained(out["parent"])
    save_tokenizer(tokens_a(), out["parent"])
    _vision_encoder(out["parent"] / "vision_encoder")
    _finetune(out["parent"], out["finetune"])
    save_tokenizer(tokens_a(), out["finetune"])
    _llama(1).save_pretrained(out["independent"])
    save_tokenizer(tokens_a(), out["independent"])
    _llama(2).save_pretrained(out["naver"])
    save_tokenizer(tokens_a(), out["naver"])
    shutil.copytree(out["parent"] / "vision_encoder", out["naver"] / "vision_encoder")
    _reindexed(out["parent"], out["vocab_derived"])
    save_tokenizer(tokens_b(), out["vocab_derived"])
    _llama(3, VOCAB_B).save_pretrained(out["vocab_independent"])
    save_tokenizer(tokens_b(), out["vocab_independent"])
    return out


@pytest.fixture(scope="session")
def bad_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generator script, run as a user would run it, into a temporary directory."""
    out = tmp_path_factory.mktemp("bad")
    proc = subprocess.run([sys.executable, str(GENERATOR), str(out)], capture_output=True,
                          text=True, check=True, timeout=60)
    return {k: Path(v) for k, v in (ln.split("\t") for ln in proc.stdout.splitlines())}


# --- shape-changing derivations (hidden-unit matching, block search, MoE, fingerprints) ---

def _state(parent: Path) -> dict[str, torch.Tensor]:
    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(parent, dtype=torch.float32)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _noisy(state: dict[str, torch.Tensor], seed: int, scale: float = 0.004,
           ) -> dict[str, torch.Tensor]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=gen) for k, v in state.items()}


def _save_llama(state: dict[str, torch.Tensor], out: Path, **changes: int) -> None:
    """Load ``state`` into a real LlamaForCausalLM of the changed shape and save it."""
    from transformers import LlamaForCausalLM

    cfg = _config(VOCAB_A)
    for k, v in changes.items():
        setattr(cfg, k, v)
    model = LlamaForCausalLM(cfg)
    model.load_state_dict(state)
    model.save_pretrained(out)
    save_tokenizer(tokens_a(), out)


def _layers(state: dict[str, torch.Tensor], order: list[int]) -> dict[str, torch.Tensor]:
    """Keep/duplicate transformer blocks: new block i is old block order[i]."""
    out = {k: v for k, v in state.items() if ".layers." not in k}
    for new, old in enumerate(order):
        tag = f"model.layers.{old}."
        out.update({f"model.layers.{new}." + k[len(tag):]: v.clone()
                    for k, v in state.items() if k.startswith(tag)})
    return out


def _permute_units(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Function-preserving permutation of every MLP's hidden units."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    for i in range(4):
        p = f"model.layers.{i}.mlp."
        perm = torch.randperm(out[p + "up_proj.weight"].shape[0], generator=gen)
        out[p + "gate_proj.weight"] = out[p + "gate_proj.weight"][perm]
        out[p + "up_proj.weight"] = out[p + "up_proj.weight"][perm]
        out[p + "down_proj.weight"] = out[p + "down_proj.weight"][:, perm]
    return out


def _permute_residual(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Function-preserving permutation of the residual stream (RMSNorm is equivariant)."""
    import torch

    perm = torch.randperm(64, generator=torch.Generator().manual_seed(seed))
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k in ("model.embed_tokens.weight", "lm_head.weight") or k.endswith(
                ("q_proj.weight", "k_proj.weight", "v_proj.weight", "gate_proj.weight",
                 "up_proj.weight")):
            out[k] = v[:, perm]
        elif k.endswith(("o_proj.weight", "down_proj.weight", "layernorm.weight")) \
                or k == "model.norm.weight":
            out[k] = v[perm]
        else:
            out[k] = v
    return out


def _finetune_state(state: dict[str, torch.Tensor], out: Path) -> None:
    """Save ``state`` as a model, then fine-tune it in place with a few Adam steps."""
    _save_llama(state, out)
    tmp = out.with_name(out.name + "_ft")
    _finetune(out, tmp)
    shutil.rmtree(out)
    tmp.rename(out)
    save_tokenizer(tokens_a(), out)


def _moe(state: dict[str, torch.Tensor], out: Path, seed: int, *, upcycle: bool) -> None:
    """A Mixtral-layout MoE (hub tensor names): 4 experts per block, from the dense MLP
    plus per-expert noise (upcycled) or freshly initialised (independent)."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if ".mlp." not in k:
            tensors[k] = v.contiguous()
    for i in range(4):
        p = f"model.layers.{i}.mlp."
        tensors[f"model.layers.{i}.block_sparse_moe.gate.weight"] = \
            0.02 * torch.randn(4, 64, generator=gen)
        for e in range(4):
            q = f"model.layers.{i}.block_sparse_moe.experts.{e}."
            for part, src in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
                base = state[p + src + ".weight"]
                noise = torch.randn(base.shape, generator=gen)
                tensors[q + part + ".weight"] = (base + 0.006 * noise) if upcycle \
                    else 0.02 * noise
    out.mkdir()
    save_file(tensors, str(out / "model.safetensors"))
    save_tokenizer(tokens_a(), out)


@pytest.fixture(scope="session")
def variants(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
             ) -> dict[str, Path]:
    """Derived models that change order or shape, and MoE controls (a few seconds)."""
    root = tmp_path_factory.mktemp("variants")
    parent = _state(models["parent"])
    other = _state(models["independent"])
    out = {k: root / k for k in ("permuted_finetune", "residual_permuted", "pruned", "upscaled",
                                 "shrunk", "moe_upcycled", "moe_independent")}
    _finetune_state(_permute_units(parent, 21), out["permuted_finetune"])
    _save_llama(_noisy(_permute_residual(parent, 22), 23), out["residual_permuted"])
    _save_llama(_noisy(_layers(parent, [0, 3]), 24), out["pruned"], num_hidden_layers=2)
    _save_llama(_noisy(_layers(parent, [0, 1, 2, 1, 2, 3]), 25), out["upscaled"],
                num_hidden_layers=6)
    keep = np.sort(np.random.default_rng(26).choice(128, 96, replace=False))
    shrunk = dict(parent)
    for i in range(4):
        p = f"model.layers.{i}.mlp."
        shrunk[p + "gate_proj.weight"] = parent[p + "gate_proj.weight"][keep]
        shrunk[p + "up_proj.weight"] = parent[p + "up_proj.weight"][keep]
        shrunk[p + "down_proj.weight"] = parent[p + "down_proj.weight"][:, keep]
    _save_llama(_noisy(shrunk, 27), out["shrunk"], intermediate_size=96)
    _moe(_noisy(parent, 28), out["moe_upcycled"], 29, upcycle=True)
    _moe(other, out["moe_independent"], 30, upcycle=False)
    return out


def permute_heads(state: dict[str, torch.Tensor], seed: int, *, heads: int, kv_heads: int,
                  head_dim: int) -> dict[str, torch.Tensor]:
    """Reorder each block's key/value groups and the query heads within each group: the
    function is unchanged (grouped attention keeps each query head with its group)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    group = heads // kv_heads
    blocks = sorted({int(k.split(".")[2]) for k in state if k.startswith("model.layers.")})
    for b in blocks:
        kv = torch.randperm(kv_heads, generator=gen)
        within = [torch.randperm(group, generator=gen) for _ in range(kv_heads)]
        _reorder_heads(out, state, f"model.layers.{b}.self_attn.", kv, within, head_dim)
    return out


def _reorder_heads(out: dict[str, torch.Tensor], src: dict[str, torch.Tensor], prefix: str,
                   kv: torch.Tensor, within: list[torch.Tensor], head_dim: int) -> None:
    """``src``'s attention at ``prefix`` into ``out`` with its key/value groups in order
    ``kv`` and the query heads of group g in order ``within[g]``."""
    import torch

    group = len(within[0])
    q = torch.cat([kv[g] * group + within[g] for g in range(len(kv))])
    q_rows = (q[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)
    kv_rows = (kv[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)
    out[prefix + "q_proj.weight"] = src[prefix + "q_proj.weight"][q_rows].clone()
    out[prefix + "k_proj.weight"] = src[prefix + "k_proj.weight"][kv_rows].clone()
    out[prefix + "v_proj.weight"] = src[prefix + "v_proj.weight"][kv_rows].clone()
    out[prefix + "o_proj.weight"] = src[prefix + "o_proj.weight"][:, q_rows].clone()


@pytest.fixture(scope="session")
def head_variants(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
                  ) -> dict[str, Path]:
    """The parent with its attention heads reordered, alone and with its MLP units too; both
    checked to give the parent's logits (a function-preserving copy)."""
    import torch
    from transformers import LlamaForCausalLM

    root = tmp_path_factory.mktemp("heads")
    parent = _state(models["parent"])
    cfg = _config(VOCAB_A)
    shape = {"heads": cfg.num_attention_heads, "kv_heads": cfg.num_key_value_heads,
             "head_dim": cfg.hidden_size // cfg.num_attention_heads}
    out = {"heads_permuted": root / "heads_permuted", "both_permuted": root / "both_permuted",
           "attention_only": root / "attention_only"}
    _save_llama(permute_heads(parent, 41, **shape), out["heads_permuted"])
    _save_llama(permute_heads(_permute_units(parent, 42), 43, **shape), out["both_permuted"])
    # block 1's attention alone, every key/value group and query head moved, in another model
    alone = _state(models["independent"])
    _reorder_heads(alone, parent, "model.layers.1.self_attn.", torch.tensor([1, 0]),
                   [torch.tensor([1, 0])] * shape["kv_heads"], shape["head_dim"])
    _save_llama(alone, out["attention_only"])
    ids = torch.arange(12)[None, :] % VOCAB_A
    with torch.no_grad():
        want = LlamaForCausalLM.from_pretrained(models["parent"], dtype=torch.float32)(ids).logits
        for key in ("heads_permuted", "both_permuted"):
            got = LlamaForCausalLM.from_pretrained(out[key], dtype=torch.float32)(ids).logits
            assert float((got - want).abs().max()) < 1e-4, key
    return out

