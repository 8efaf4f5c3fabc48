"""How the calibration suite's controls are built: recipes, and tensor surgery with healing.

Every model is built deterministically on CPU and cached under a stamp hashing its
settings and parent, so a rerun reuses it and two machines build the same bytes. The
synthetic model builder (:mod:`kaieval.synth`) makes every control a recipe can
express (the parent, independent seeds and tokenizers, the fine-tune, continued
pre-training, the encoder copy); the rest start from a transform of the parent's
tensors -- function-preserving ones are checked on the logits -- and are then trained
(healed, or trained from scratch around frozen copies). torch is imported only here,
and only to build: evaluating a built suite needs none of this module.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.hashing import sha256_file, sha256_json
from kaieval.provenance.calibration_suite import (
    COPY_KINDS,
    DERIVED_KINDS,
    ENCODER_REFERENCE,
    FROZEN_KINDS,
    STAMP,
    SUITE_VERSION,
    SURGERY_KINDS,
    Progress,
    SuiteConfig,
    frozen_blocks,
)


def _recipes(config: SuiteConfig) -> list[Any]:
    """Stand-in recipes for every control a plain recipe can express."""
    from kaieval.synth.recipes import Recipe

    c, s = config, config.seed * 1000
    arch = {"hidden_size": c.hidden_size, "layers": c.layers, "heads": c.heads,
            "intermediate_size": c.intermediate_size}

    def train(steps: int, lr: float, seed: int, corpus_seed: int) -> dict[str, Any]:
        return {"steps": steps, "lr": float(lr), "batch_size": c.batch_size,
                "seq_len": c.seq_len, "seed": seed, "corpus_chars": c.corpus_chars,
                "corpus_seed": corpus_seed}

    def scratch(name: str, tok: dict[str, Any], seed: int) -> Any:
        return Recipe.model_validate({
            "name": name, "role": "calibration: independent control", "tokenizer": tok,
            "architecture": arch, "init": {"mode": "scratch", "seed": seed},
            "train": train(c.parent_steps, c.lr, seed, 1)})

    shared = {"shared": "parent"}
    out = [scratch("parent", {"vocab_size": c.vocab_size, "seed": s + 1,
                              "train_chars": c.tokenizer_chars}, s + 1)]
    out += [scratch(f"seed-{i}", shared, s + 10 + i) for i in range(1, c.independent_seeds + 1)]
    out += [scratch(f"tokenizer-{i}", {"vocab_size": v, "seed": s + 50 + i,
                                       "train_chars": c.tokenizer_chars}, s + 50 + i)
            for i, v in enumerate(c.other_vocab_sizes, start=1)]
    tuned = {"finetune": train(c.finetune_steps, c.lr / 3, s + 2, 2),
             "continued-pretraining": train(c.cpt_steps, c.lr * 2, s + 3, 3)}
    out += [Recipe.model_validate({
        "name": k, "role": f"calibration: {k} of parent", "tokenizer": shared,
        "init": {"mode": "finetune", "source": "parent"}, "train": t})
        for k, t in tuned.items() if k in c.kinds]
    if "encoder-copied" in c.kinds:  # a vision encoder copied into an independent model
        vit = {"hidden_size": 32, "layers": 2, "heads": 2, "intermediate_size": 64}
        out.append(Recipe.model_validate({
            "name": ENCODER_REFERENCE, "role": "calibration: the parent with a vision encoder",
            "tokenizer": shared, "init": {"mode": "finetune", "source": "parent"},
            "train": train(0, c.lr, s + 4, 1),
            "vision_encoder": {"mode": "scratch", "seed": s + 5, "architecture": vit,
                               "steps": 40}}))
        out.append(Recipe.model_validate({
            "name": "encoder-copied", "role": "calibration: vision encoder copied as-is into "
                                              "an independent language model",
            "tokenizer": shared, "architecture": arch,
            "init": {"mode": "scratch", "seed": s + 70},
            "train": train(c.parent_steps, c.lr, s + 70, 1),
            "vision_encoder": {"mode": "copy", "source": ENCODER_REFERENCE,
                               "finetune_steps": 0}}))
    return out


def build_suite(cache_dir: Path, config: SuiteConfig | None = None, *,
                progress: Progress | None = None) -> dict[str, Path]:
    """Build (or reuse from ``cache_dir``) every model of the suite; ``{name: folder}``."""
    from kaieval.synth.build import build_models

    config = config or SuiteConfig()
    say = progress or (lambda _m: None)
    cache_dir = Path(cache_dir)
    models = build_models(cache_dir, _recipes(config), progress=say)
    for junk in cache_dir.glob(".calib-tmp-*"):
        shutil.rmtree(junk, ignore_errors=True)
    for kind in config.kinds:
        if kind in SURGERY_KINDS:
            models[kind] = _build_surgery(kind, models["parent"], cache_dir, config, say)
    return models


def _build_surgery(kind: str, parent: Path, cache_dir: Path, config: SuiteConfig,
                   say: Progress) -> Path:
    """Transform the parent's tensors, then train (heal) the result; cached under a stamp."""
    from kaieval.synth.models import deterministic_torch, train_language_model
    from kaieval.synth.recipes import Recipe

    final = cache_dir / kind
    key = sha256_json({"kind": kind, "config": asdict(config), "version": SUITE_VERSION,
                       "parent": sha256_file(parent / "model.safetensors")})
    try:
        if json.loads((final / STAMP).read_text(encoding="utf-8"))["key"] == key:
            say(f"{kind}: cached")
            return final
    except (OSError, ValueError, KeyError, TypeError):
        pass
    tmp = cache_dir / f".calib-tmp-{kind}-{uuid.uuid4().hex[:8]}"
    (tmp / "model").mkdir(parents=True)
    try:
        start = time.perf_counter()
        seed = config.seed * 1000 + 100 + DERIVED_KINDS.index(kind)
        scratch = kind == "partial-copy" or kind in FROZEN_KINDS
        with deterministic_torch():
            say(f"{kind}: transforming the parent's weights")
            _surgery(kind, parent, tmp / "raw", seed)
            for f in (tmp / "raw").glob("*token*.json"):
                shutil.copyfile(f, tmp / "model" / f.name)
            if kind in COPY_KINDS:  # the transform alone: nothing trained
                for f in (tmp / "raw").iterdir():
                    shutil.copyfile(f, tmp / "model" / f.name)
            else:
                steps = config.parent_steps if scratch else config.heal_steps
                lr = config.lr if scratch else config.lr / 3
                recipe = Recipe.model_validate({
                    "name": kind, "role": "calibration control", "tokenizer": {"shared": "parent"},
                    "init": {"mode": "finetune", "source": "raw"},
                    "train": {"steps": steps, "lr": float(lr), "batch_size": config.batch_size,
                              "seq_len": config.seq_len, "seed": seed,
                              "corpus_chars": config.corpus_chars, "corpus_seed": 2}})
                train_language_model(recipe, tmp / "model", tmp, say,
                                     frozen=_frozen_names(kind))
        stamp = {"key": key, "kind": kind, "config": asdict(config),
                 "build_seconds": round(time.perf_counter() - start, 3)}
        (tmp / "model" / STAMP).write_text(json.dumps(stamp, indent=2), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        (tmp / "model").rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


_LAYER = re.compile(r"^model\.layers\.(\d+)\.")
_ATTN_MLP = re.compile(r"^model\.layers\.(\d+)\.(self_attn|mlp)\.")


def _frozen_names(kind: str) -> Callable[[str], bool] | None:
    """Which parameters a frozen control keeps as copied while the rest trains."""
    if kind == "embeddings-copied":
        return lambda name: name == "model.embed_tokens.weight"
    if kind.startswith("frozen-copy-"):
        n = frozen_blocks(kind)
        return lambda name: bool((m := _ATTN_MLP.match(name)) and int(m.group(1)) < n)
    return None


def _remap_layers(state: dict[str, Any], mapping: Sequence[int]) -> dict[str, Any]:
    """New block j takes old block ``mapping[j]`` (drop, duplicate or reorder blocks)."""
    out = {k: v for k, v in state.items() if not _LAYER.match(k)}
    for new, old in enumerate(mapping):
        prefix = f"model.layers.{old}."
        for k, v in state.items():
            if k.startswith(prefix):
                out[f"model.layers.{new}.{k[len(prefix):]}"] = v.clone()
    return out


def _surgery(kind: str, parent: Path, out: Path, seed: int) -> None:
    """Write the transformed (not yet healed) model and its tokenizer files to ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig.from_pretrained(parent)
    model = LlamaForCausalLM.from_pretrained(parent, dtype=torch.float32, use_safetensors=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    n_layers, inter = cfg.num_hidden_layers, cfg.intermediate_size
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    out.mkdir(parents=True)
    for f in parent.glob("*token*.json"):
        shutil.copyfile(f, out / f.name)
    if kind in ("permuted-finetune", *COPY_KINDS):
        _permute(model, gen)
        model.save_pretrained(out)
        return
    if kind == "residual-permuted":
        _permute_residual(model, gen)
        model.save_pretrained(out)
        return
    if kind == "moe-upcycled":
        _upcycle(model).save_pretrained(out)
        return
    if kind == "vocab-extended":
        model.resize_token_embeddings(_extend_tokenizer(out / "tokenizer.json"))
        model.save_pretrained(out)
        return
    if kind == "pruned-depth":  # drop a middle block
        drop = n_layers // 2
        state = _remap_layers(state, [i for i in range(n_layers) if i != drop])
        cfg.num_hidden_layers = n_layers - 1
    elif kind == "depth-upscaled":  # SOLAR: two copies, overlap trimmed, stacked
        m = n_layers // 4  # 4 -> 6 blocks (0,1,2,1,2,3); 2 -> 4 (0,1,0,1)
        mapping = list(range(n_layers - m)) + list(range(m, n_layers))
        state, cfg.num_hidden_layers = _remap_layers(state, mapping), len(mapping)
    elif kind == "pruned-width":  # keep the 3/4 of MLP units with the largest weight norms
        keep_n = max(8, inter * 3 // 4)
        for i in range(n_layers):
            p = f"model.layers.{i}.mlp."
            score = state[p + "up_proj.weight"].norm(dim=1) * state[p + "down_proj.weight"].norm(
                dim=0)
            keep = torch.sort(torch.topk(score, keep_n).indices).values
            for name in ("gate_proj", "up_proj"):
                state[p + f"{name}.weight"] = state[p + f"{name}.weight"][keep].clone()
            state[p + "down_proj.weight"] = state[p + "down_proj.weight"][:, keep].clone()
        cfg.intermediate_size = keep_n
    elif kind == "partial-copy":  # first blocks from the parent, everything else fresh
        fresh = LlamaForCausalLM(cfg).state_dict()
        copied = max(1, n_layers // 2)  # suite_pairs names these blocks as must-find
        state = {k: (v if (hit := _LAYER.match(k)) and int(hit.group(1)) < copied
                     else fresh[k]) for k, v in state.items()}
    elif kind in FROZEN_KINDS:  # the case: attention + MLP (or embeddings) copied as-is
        fresh = LlamaForCausalLM(cfg).state_dict()
        is_frozen = _frozen_names(kind)
        assert is_frozen is not None
        state = {k: (v if is_frozen(k) else fresh[k]) for k, v in state.items()}
    new = LlamaForCausalLM(cfg)
    new.load_state_dict(state, strict=True)
    new.save_pretrained(out)


def _permute(model: Any, gen: Any) -> None:
    """Shuffle each block's MLP hidden units and attention heads; the function is unchanged."""
    import torch

    cfg = model.config
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    if heads != kv:
        raise KaiError("permuted-finetune needs num_key_value_heads == num_attention_heads")
    hd = cfg.hidden_size // heads
    ids = torch.randint(0, cfg.vocab_size, (2, 24), generator=gen)
    with torch.no_grad():
        before = model(input_ids=ids).logits
        for layer in model.model.layers:
            mlp, att = layer.mlp, layer.self_attn
            p = torch.randperm(mlp.up_proj.weight.shape[0], generator=gen)
            mlp.gate_proj.weight.copy_(mlp.gate_proj.weight[p].clone())
            mlp.up_proj.weight.copy_(mlp.up_proj.weight[p].clone())
            mlp.down_proj.weight.copy_(mlp.down_proj.weight[:, p].clone())
            h = torch.randperm(heads, generator=gen)
            idx = (h[:, None] * hd + torch.arange(hd)).reshape(-1)
            for lin in (att.q_proj, att.k_proj, att.v_proj):
                lin.weight.copy_(lin.weight[idx].clone())
            att.o_proj.weight.copy_(att.o_proj.weight[:, idx].clone())
        diff = float((model(input_ids=ids).logits - before).abs().max())
    if diff > 1e-4:  # the transform must be function-preserving, or the control is wrong
        raise KaiError(f"permuted-finetune: permutation changed the logits by {diff:.2e}")


UPCYCLE_EXPERTS = 4


def _upcycle(model: Any) -> Any:
    """Sparse upcycling (Komatsuzaki et al.): a Mixtral whose experts are all the dense MLP.

    Attention, norms, embeddings and head are copied; every block's MLP becomes
    :data:`UPCYCLE_EXPERTS` identical experts (top-2 routing) behind a fresh router. The
    routing weights of the top two sum to one, so before healing the model computes
    exactly what the dense one did (checked); healing then lets the experts drift apart.
    """
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM

    c = model.config
    moe = MixtralForCausalLM(MixtralConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
        max_position_embeddings=c.max_position_embeddings, rms_norm_eps=c.rms_norm_eps,
        rope_parameters=getattr(c, "rope_parameters", None), sliding_window=None,
        tie_word_embeddings=c.tie_word_embeddings, num_local_experts=UPCYCLE_EXPERTS,
        num_experts_per_tok=2, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
        pad_token_id=getattr(c, "pad_token_id", None)))
    src = model.state_dict()
    state = {k: (src[k].clone() if k in src else v) for k, v in moe.state_dict().items()}
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}.mlp."
        gate_up = torch.cat([src[p + "gate_proj.weight"], src[p + "up_proj.weight"]], 0)
        state[p + "experts.gate_up_proj"] = gate_up.unsqueeze(0).repeat(UPCYCLE_EXPERTS, 1, 1)
        state[p + "experts.down_proj"] = src[p + "down_proj.weight"].unsqueeze(0).repeat(
            UPCYCLE_EXPERTS, 1, 1)
    moe.load_state_dict(state, strict=True)
    ids = torch.randint(0, c.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((moe(input_ids=ids).logits - model(input_ids=ids).logits).abs().max())
    if diff > 1e-4:
        raise KaiError(f"moe-upcycled: upcycling changed the logits by {diff:.2e}")
    return moe


def _permute_residual(model: Any, gen: Any) -> None:
    """Signed permutation of the residual stream; the function is unchanged.

    Why this control: every tensor that reads or writes the residual stream changes
    (embedding and head columns, q/k/v/gate/up columns, o/down rows, norm weights),
    so no same-position comparison sees the parent; only the residual alignment
    through shared-token embeddings can. RMSNorm is equivariant under a permutation
    (its weights permuted with it) and, its input and output flipping together, under
    sign flips: y' = S P y, and a reader W P^T S gives W y again.
    """
    import torch

    dim = model.config.hidden_size
    perm = torch.randperm(dim, generator=gen)
    sign = torch.where(torch.rand(dim, generator=gen) < 0.5, -1.0, 1.0)
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=gen)
    readers = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
    with torch.no_grad():
        before = model(input_ids=ids).logits
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 2)[-2] if name.count(".") >= 1 else name
            if name in ("model.embed_tokens.weight", "lm_head.weight") or leaf in readers:
                param.copy_(param[:, perm] * sign[None, :])
            elif leaf in ("o_proj", "down_proj"):
                param.copy_(param[perm] * sign[:, None])
            elif "norm" in name and tuple(param.shape) == (dim,):
                param.copy_(param[perm])
        diff = float((model(input_ids=ids).logits - before).abs().max())
    if diff > 1e-4:
        raise KaiError(f"residual-permuted: the transform changed the logits by {diff:.2e}")


def _extend_tokenizer(path: Path) -> int:
    """Append frequent corpus words that are not yet tokens (Chinese-LLaMA style); new size."""
    from collections import Counter

    from tokenizers import AddedToken, Tokenizer

    from kaieval.synth.corpus import corpus_text

    tok = Tokenizer.from_file(str(path))
    words = Counter(re.findall(r"[^\W\d_]{2,}", corpus_text("train", 100_000, seed=2)))
    extra = max(8, tok.get_vocab_size() // 8)
    new = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))
           if len(tok.encode(" " + w).ids) > 1][:extra]  # words the BPE still splits
    tok.add_tokens([AddedToken(w, single_word=True, lstrip=True) for w in new])
    if len(new) < extra:
        raise KaiError(f"vocab-extended: only {len(new)} new words found for {extra} tokens")
    tok.save(str(path))
    return int(tok.get_vocab_size())
