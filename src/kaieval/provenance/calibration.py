"""Calibration suite for the independence verdict: known-derived and known-independent controls.

Why: a verdict is only as good as its measured error rates. "No evidence of
dependence" means something only at a known detection rate, and "derived" only
at a known false-positive rate. Published models cannot supply controls whose
lineage is certain, so the suite *builds* them, deterministically, on CPU:

* derived controls from one briefly trained ``parent`` (:data:`DERIVED_KINDS`);
* independent controls: other seeds (same architecture and data), other tokenizers.
  Every pair of independent models is a negative.

:func:`check_independence` is a black box run on every (derived, parent) and
(independent, independent) pair. Rates get exact Clopper-Pearson intervals; the
negatives' component p-values are tested against U(0, 1) (spread, not piled at 0).
Models are built by the synthetic model builder (:mod:`kaieval.synth`)
where a recipe can express them, else by the tensor surgery below, and cached
under stamps hashing their settings and parent. torch is imported only to build.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import betaincinv

from kaieval.errors import KaiError
from kaieval.hashing import sha256_file, sha256_json
from kaieval.provenance.evidence_kind import (
    IDENTICAL_EFFECT,
    TRAINED_CONTROLS,
    WHOLE_MODEL_SHARE,
    EffectThresholds,
    decide,
    effect_thresholds,
    is_weight_line,
    lm_strong_share,
)
from kaieval.provenance.safetensors_io import open_model
from kaieval.provenance.tensor_groups import is_norm
from kaieval.provenance.tokenizer_lineage import TOKENIZER_TEST
from kaieval.provenance.verdict import check_independence
from kaieval.records import ComponentEvidence, IndependenceVerdict

SUITE_VERSION = 2  # bump when a control is built differently: cached models rebuild
STAMP = ".kaieval-calibration.json"
DETECTED = ("derived", "partial")
DERIVED_KINDS = ("finetune", "continued-pretraining", "permuted-finetune", "pruned-depth",
                 "pruned-width", "depth-upscaled", "vocab-extended", "partial-copy",
                 "residual-permuted", "moe-upcycled", "frozen-copy-2", "frozen-copy-4",
                 "embeddings-copied", "encoder-copied")
PARTIAL_KINDS = ("partial-copy", "frozen-copy-2", "frozen-copy-4", "embeddings-copied",
                 "encoder-copied")
"""Controls where only a part of the model comes from the parent: expected ``partial``,
naming that part (as copied, or derived by training for ``partial-copy``, whose copied
blocks were trained on with the rest), and nothing else copied or derived by training."""
_SURGERY = ("permuted-finetune", "pruned-depth", "pruned-width", "depth-upscaled",
            "vocab-extended", "partial-copy", "residual-permuted", "moe-upcycled",
            "frozen-copy-2", "frozen-copy-4", "embeddings-copied")
_FROZEN = ("frozen-copy-2", "frozen-copy-4", "embeddings-copied")
ENCODER_REFERENCE = "parent-vision"  # the parent with a vision encoder: encoder-copied's source
STRONG = ("copied", "derived_by_training")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class SuiteConfig:
    """Shapes, budgets and seeds of the suite; the defaults are what docs/provenance.md reports."""

    hidden_size: int = 64
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 192
    vocab_size: int = 1024
    other_vocab_sizes: tuple[int, ...] = (768, 1280)
    parent_steps: int = 200
    finetune_steps: int = 60
    cpt_steps: int = 600
    heal_steps: int = 60
    independent_seeds: int = 5  # same-tokenizer scratch models besides the parent
    batch_size: int = 8
    seq_len: int = 64
    lr: float = 3e-3
    corpus_chars: int = 200_000
    tokenizer_chars: int = 100_000
    kinds: tuple[str, ...] = DERIVED_KINDS
    seed: int = 0

    def __post_init__(self) -> None:
        if unknown := [k for k in self.kinds if k not in DERIVED_KINDS]:
            raise KaiError(f"unknown control kind(s) {unknown}; known: {list(DERIVED_KINDS)}")
        if self.layers < 2 and any(k in self.kinds for k in ("pruned-depth", "partial-copy")):
            raise KaiError("pruned-depth and partial-copy need at least 2 layers")
        for k in self.kinds:
            if k.startswith("frozen-copy-") and frozen_blocks(k) > self.layers:
                raise KaiError(f"{k} copies {frozen_blocks(k)} blocks; the models have "
                               f"{self.layers}")


def frozen_blocks(kind: str) -> int:
    """frozen-copy-N -> N: how many leading blocks the control copies and freezes."""
    return int(kind.rsplit("-", 1)[1])


@dataclass(frozen=True)
class Pair:
    """One check: ``candidate`` tested against ``reference`` with a known truth."""

    candidate: str
    reference: str
    kind: str
    role: str  # "derived" or "independent"
    expected: tuple[str, ...]
    must_name: tuple[str, ...] = ()  # components the verdict must call derived
    must_be: tuple[str, ...] = ()  # the kinds must_name components must have (any of)


@dataclass
class Outcome:
    """What :func:`check_independence` said about one pair."""

    pair: Pair
    verdict: str
    seconds: float
    p_values: dict[str, float | None] = field(default_factory=dict)
    derived_components: list[str] = field(default_factory=list)
    raw_norm_cosine: float | None = None
    summary: str = ""
    kinds: dict[str, str] = field(default_factory=dict)  # component -> kind of evidence
    effects: dict[str, float | None] = field(default_factory=dict)  # component -> effect
    parameters: dict[str, int | None] = field(default_factory=dict)
    lm_strong_share: float | None = None  # compared LM parameters copied / derived
    evidence: tuple[ComponentEvidence, ...] = ()  # the record's lines, kinds set
    thresholds: dict[str, float] = field(default_factory=dict)  # effect thresholds used

    @property
    def detected(self) -> bool:
        return self.verdict in DETECTED

    @property
    def as_expected(self) -> bool:
        """The expected verdict, naming the components known to come from the parent with
        the kind of evidence they should show; for a partial control nothing else is
        copied or derived by training (the rest was trained by the team)."""
        if self.verdict not in self.pair.expected or \
                not set(self.pair.must_name) <= set(self.derived_components):
            return False
        if self.pair.must_be and any(self.kinds.get(c) not in self.pair.must_be
                                     for c in self.pair.must_name):
            return False
        if self.pair.kind in PARTIAL_KINDS:
            return not [c for c, k in self.kinds.items()
                        if k in STRONG and c not in self.pair.must_name
                        and c != "norms"]  # norms hold the copied blocks' norm weights
        return True


# --- statistics -----------------------------------------------------------------------------
def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion k/n."""
    if not (0 <= k <= n) or n == 0 or not 0.0 < level < 1.0:
        raise KaiError(f"clopper_pearson: need 0 <= k <= n, n > 0, 0 < level < 1 "
                       f"(got k={k}, n={n}, level={level})")
    a = 1.0 - level
    lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, a / 2))
    hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - a / 2))
    return lo, hi


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n) if n else (0.0, 1.0)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": [lo, hi]}


def null_p_spread(p_values: Sequence[float]) -> dict[str, Any]:
    """Deciles and a KS test against U(0, 1): independent pairs' p-values should spread out."""
    ps = np.asarray([p for p in p_values if p is not None], dtype=float)
    if ps.size == 0:
        return {"n": 0}
    from scipy import stats  # here, not at the top: a verdict quoting the rates needs no KS

    ks = stats.kstest(ps, "uniform")
    counts, _ = np.histogram(ps, bins=10, range=(0.0, 1.0))
    return {"n": int(ps.size), "ks_statistic": float(ks.statistic), "ks_p": float(ks.pvalue),
            "decile_counts": [int(c) for c in counts], "min": float(ps.min()),
            "median": float(np.median(ps)), "below_0.01": int((ps < 0.01).sum()),
            "below_0.05": int((ps < 0.05).sum())}


# --- the suite's models ---------------------------------------------------------------------
def independent_names(config: SuiteConfig) -> list[str]:
    """The pool of mutually independent models; the parent is one of them."""
    return (["parent"] + [f"seed-{i}" for i in range(1, config.independent_seeds + 1)]
            + [f"tokenizer-{i}" for i in range(1, len(config.other_vocab_sizes) + 1)])


def _blocks(n: int) -> tuple[str, ...]:
    return tuple(f"block.{i}.{part}" for i in range(n) for part in ("attention", "mlp"))


def _derived_pair(kind: str, config: SuiteConfig) -> Pair:
    """A derived control against its source, with what the verdict must say about it."""
    if kind == "partial-copy":
        return Pair(kind, "parent", kind, "derived", ("partial",),
                    _blocks(max(1, config.layers // 2)), STRONG)
    if kind.startswith("frozen-copy-"):
        return Pair(kind, "parent", kind, "derived", ("partial",),
                    _blocks(frozen_blocks(kind)), ("copied",))
    if kind == "embeddings-copied":
        return Pair(kind, "parent", kind, "derived", ("partial",), ("embeddings",), ("copied",))
    if kind == "encoder-copied":
        return Pair(kind, ENCODER_REFERENCE, kind, "derived", ("partial",),
                    ("vision_encoder",), ("copied",))
    return Pair(kind, "parent", kind, "derived", ("derived",))


def suite_pairs(config: SuiteConfig) -> list[Pair]:
    """Every derived control against the parent, every independent pair all-vs-all."""
    pairs = [_derived_pair(k, config) for k in config.kinds]
    pool = independent_names(config)
    for i, ref in enumerate(pool):
        for cand in pool[i + 1:]:
            kind = ("other-tokenizer" if "tokenizer-" in cand + ref else "same-tokenizer-seed")
            pairs.append(Pair(cand, ref, kind, "independent", ("no_evidence",)))
    return pairs


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
        if kind in _SURGERY:
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
        scratch = kind == "partial-copy" or kind in _FROZEN
        with deterministic_torch():
            say(f"{kind}: transforming the parent's weights")
            _surgery(kind, parent, tmp / "raw", seed)
            for f in (tmp / "raw").glob("*token*.json"):
                shutil.copyfile(f, tmp / "model" / f.name)
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
    if kind == "permuted-finetune":
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
    elif kind in _FROZEN:  # the case: attention + MLP (or embeddings) copied as-is
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


# --- running the checks ---------------------------------------------------------------------
def raw_norm_cosine(candidate: Path, reference: Path) -> float | None:
    """Raw cosine of all same-name norm weights concatenated: the misleading number."""
    a, b = open_model(candidate), open_model(reference)
    names = [n for n in a.names() if is_norm(n) and n in b.tensors
             and a.tensors[n].shape == b.tensors[n].shape]
    if not names:
        return None
    x = np.concatenate([a.load(n).ravel() for n in names]).astype(np.float64)
    y = np.concatenate([b.load(n).ravel() for n in names]).astype(np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def evaluate(pairs: Sequence[Pair], models: dict[str, Path], *, alpha: float = 0.01,
             progress: Progress | None = None,
             thresholds: EffectThresholds | None = None) -> list[Outcome]:
    """Run :func:`check_independence` on each pair (one reference each), then decide.

    The checks run with no effect-size thresholds; the thresholds are then measured on
    the trained controls' outcomes (:func:`measure_thresholds`, unless ``thresholds`` is
    given) and every verdict is decided again from its evidence with them -- the same
    :func:`~kaieval.provenance.evidence_kind.decide` that ``check_independence`` calls.
    """
    raw: list[tuple[Pair, IndependenceVerdict, float]] = []
    for i, pair in enumerate(pairs, start=1):
        start = time.perf_counter()
        v = check_independence(models[pair.candidate], [models[pair.reference]], alpha=alpha,
                               stage_id="calibration", team_id=pair.candidate,
                               effect_thresholds=EffectThresholds())
        raw.append((pair, v, round(time.perf_counter() - start, 3)))
        if progress is not None:
            progress(f"[{i}/{len(pairs)}] {pair.candidate} vs {pair.reference}: checked")
    if thresholds is None:
        thresholds = measure_thresholds([(p, v) for p, v, _ in raw])
    out: list[Outcome] = []
    for pair, v, seconds in raw:
        d = decide(v.evidence, v.references, alpha=alpha, thresholds=thresholds)
        weights = [e for e in d.evidence if e.test != TOKENIZER_TEST]  # not weight tests
        out.append(Outcome(
            pair, d.verdict, seconds, {e.component: e.p_value for e in weights},
            [e.component for e in weights if e.verdict == "derived"],
            raw_norm_cosine(models[pair.candidate], models[pair.reference]), d.sentence,
            {e.component: e.kind or "" for e in weights},
            {e.component: e.effect_size for e in weights},
            {e.component: e.parameters for e in weights},
            lm_strong_share(d.evidence, pair.reference), d.evidence, dict(thresholds.by_type)))
        if progress is not None:
            progress(f"{pair.candidate} vs {pair.reference}: {d.verdict}")
    return out


def measure_thresholds(checked: Sequence[tuple[Pair, IndependenceVerdict]],
                       ) -> EffectThresholds:
    """Per component type, the smallest effect of a Holm-significant, not copied component
    of the fine-tune and continued-pretraining controls: the low end of the range that
    training a foreign model produces. Empty when neither control was run."""
    lines = {pair.kind: [e for e in v.evidence if is_weight_line(e)]
             for pair, v in checked if pair.kind in TRAINED_CONTROLS}
    by_type = effect_thresholds(lines)
    return EffectThresholds(by_type, f"calibration suite ({', '.join(sorted(lines))})"
                            if by_type else "not calibrated")


def code_fingerprint() -> str:
    """SHA-256 over the provenance package's sources: which engine code was calibrated."""
    here = Path(__file__).parent
    return sha256_json({p.name: sha256_file(p) for p in sorted(here.glob("*.py"))})


def _type(component: str) -> str:
    """block.3.mlp -> mlp: p-values pooled by the kind of test that produced them."""
    return component.rsplit(".", 1)[-1] if component.startswith("block.") else component


def summarise(outcomes: Sequence[Outcome], *, alpha: float, config: SuiteConfig,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rates with exact intervals, per-pair outcomes and the null p-value spread, as JSON data."""
    pos = [o for o in outcomes if o.pair.role == "derived"]
    neg = [o for o in outcomes if o.pair.role == "independent"]
    null_ps = [p for o in neg for p in o.p_values.values() if p is not None]
    pair_ps = [min(1.0, len(ps) * min(ps)) for o in neg
               if (ps := [p for p in o.p_values.values() if p is not None])]
    high = [o for o in neg if o.raw_norm_cosine is not None and o.raw_norm_cosine > 0.95]
    trained = [e for o in pos if o.pair.kind in TRAINED_CONTROLS
               for c, e in o.effects.items() if e is not None and o.kinds.get(c) in STRONG]
    whole = [o.lm_strong_share for o in pos if o.verdict == "derived"
             and o.lm_strong_share is not None]
    part = [o.lm_strong_share for o in pos if o.verdict == "partial"
            and o.lm_strong_share is not None]
    thresholds = {
        "by_type": outcomes[0].thresholds if outcomes else {},
        "controls": [k for k in TRAINED_CONTROLS if any(o.pair.kind == k for o in pos)],
        "code_sha256": code_fingerprint(),
        "identical_effect": IDENTICAL_EFFECT,
        "max_trained": max(trained, default=None),
        "whole_model_share": WHOLE_MODEL_SHARE,
        "min_share_of_derived": min(whole, default=None),
        "max_share_of_partial": max(part, default=None)}
    return {
        "suite_version": SUITE_VERSION, "alpha": alpha, "config": asdict(config),
        "code_sha256": code_fingerprint(), **(extra or {}),
        "true_positive": _rate(sum(o.detected for o in pos), len(pos)),
        "derived_as_expected": _rate(sum(o.as_expected for o in pos), len(pos)),
        "false_positive": _rate(sum(o.detected for o in neg), len(neg)),
        "effect_thresholds": thresholds,
        "partial_controls": {
            "detected": _rate(sum(o.detected for o in pos if o.pair.kind in PARTIAL_KINDS),
                              sum(o.pair.kind in PARTIAL_KINDS for o in pos)),
            "as_expected": _rate(sum(o.as_expected for o in pos
                                     if o.pair.kind in PARTIAL_KINDS),
                                 sum(o.pair.kind in PARTIAL_KINDS for o in pos))},
        "null_component_p": null_p_spread(null_ps),
        "null_pair_bonferroni_p": null_p_spread(pair_ps),
        "null_component_p_by_type": {t: null_p_spread([
            p for o in neg for c, p in o.p_values.items() if p is not None and _type(c) == t])
            for t in sorted({_type(c) for o in neg for c in o.p_values})},
        "high_norm_cosine": {"pairs": len(high), "detected": sum(o.detected for o in high),
                             "min_raw_cosine": min((o.raw_norm_cosine or 1.0 for o in high),
                                                   default=None)},
        "pairs": [{**asdict(o.pair), "verdict": o.verdict, "detected": o.detected,
                   "as_expected": o.as_expected, "seconds": o.seconds,
                   "derived_components": o.derived_components, "p_values": o.p_values,
                   "raw_norm_cosine": o.raw_norm_cosine, "summary": o.summary,
                   "kinds": o.kinds, "effects": o.effects, "parameters": o.parameters,
                   "lm_strong_share": o.lm_strong_share}
                  for o in outcomes],
    }


def run_suite(cache_dir: Path, config: SuiteConfig | None = None, *, alpha: float = 0.01,
              progress: Progress | None = None) -> dict[str, Any]:
    """Build the controls, check every pair, and return the summary (see :func:`summarise`)."""
    config = config or SuiteConfig()
    t = [time.perf_counter()]
    models = build_suite(cache_dir, config, progress=progress)
    t.append(time.perf_counter())
    outcomes = evaluate(suite_pairs(config), models, alpha=alpha, progress=progress)
    t.append(time.perf_counter())
    return summarise(outcomes, alpha=alpha, config=config, extra={
        "build_seconds": round(t[1] - t[0], 1), "check_seconds": round(t[2] - t[1], 1)})


@dataclass(frozen=True)
class MeasuredRates:
    """The suite's measured rates, for a verdict to quote its detection power."""

    alpha: float
    detected: int
    derived_pairs: int
    tpr_ci95: tuple[float, float]
    false_positives: int
    independent_pairs: int
    fpr_ci95: tuple[float, float]
    code_sha256: str

    def sentence(self) -> str:
        return (f"calibration suite at alpha {self.alpha:g}: detected {self.detected}/"
                f"{self.derived_pairs} derived controls (95 % CI {self.tpr_ci95[0]:.2f}-"
                f"{self.tpr_ci95[1]:.2f}); {self.false_positives}/{self.independent_pairs} "
                f"independent pairs called derived or partial (95 % CI "
                f"{self.fpr_ci95[0]:.2f}-{self.fpr_ci95[1]:.2f})")


def measured_rates(summary_json: Path) -> MeasuredRates:
    """Read the rates back from a summary written by ``benchmarks/provenance_calibration.py``."""
    where = str(summary_json)
    try:
        data = json.loads(Path(summary_json).read_text(encoding="utf-8"))
        tp, fp = data["true_positive"], data["false_positive"]
        return MeasuredRates(
            float(data["alpha"]), int(tp["k"]), int(tp["n"]),
            (float(tp["ci95"][0]), float(tp["ci95"][1])), int(fp["k"]), int(fp["n"]),
            (float(fp["ci95"][0]), float(fp["ci95"][1])), str(data["code_sha256"]))
    except OSError as err:
        raise KaiError(f"cannot read calibration summary: {err.strerror}", where=where) from None
    except (ValueError, KeyError, TypeError) as err:
        raise KaiError(f"not a calibration summary ({type(err).__name__}: {err})",
                       where=where) from None
