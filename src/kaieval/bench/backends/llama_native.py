"""kaieval's own forward pass for plain Llama checkpoints, in plain torch.

Why it exists: in a ``kai eval`` process on a small model, transformers' Llama costs
~2 s before the first forward pass -- importing its modelling stack pulls in
``torch._dynamo``, ``torch.distributed.tensor``, ``scipy.optimize`` and a scan of its
1,100+ model folders, and building the model compiles its weight-conversion rules --
against ~1 s of scoring (docs/performance.md, issue 14). The Llama forward itself is
a few dozen lines. So for a checkpoint that is exactly ``LlamaForCausalLM`` with
features this module reproduces (SiLU MLP, RMSNorm, grouped-query attention, optional
biases, tied or separate output embeddings, and the static RoPE variants), the HF
backend loads the safetensors itself and runs this forward; anything else (other
architectures, remote code, quantisation, sliding windows, dynamic RoPE, unexpected
tensors) goes to transformers, and ``kai eval --forward transformers`` forces it.

What keeps it honest: every operation follows transformers' Llama with SDPA attention
in the same order and dtype (RMSNorm in float32, RoPE from transformers' own
``ROPE_INIT_FUNCTIONS``, the same choice between SDPA's ``is_causal``, ``enable_gqa``,
a packed single query or repeated keys), and the KV cache is transformers'
``DynamicCache``, so the tree scorer and the decoder run unchanged. The tests compare
logits, caches and whole runs against transformers on every supported variant
(tests/bench/test_bench_llama_native.py); the path taken is recorded in the run's
backend description and in its request-cache identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch.nn import functional as F
from transformers import DynamicCache
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, RotaryEmbeddingConfigMixin

from kaieval.errors import KaiError
from kaieval.io import CONFIG_MAX_BYTES, INDEX_MAX_BYTES, load_json_file

ARCHITECTURE = "LlamaForCausalLM"
STATIC_ROPE = ("default", "linear", "llama3", "yarn")  # inv_freq fixed at load time
FORWARDS = ("auto", "kaieval", "transformers")
IGNORED_SUFFIX = ".rotary_emb.inv_freq"  # old checkpoints saved it; it is recomputed
LAYER_TENSORS = ("input_layernorm.weight", "post_attention_layernorm.weight",
                 "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                 "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                 "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")


def read_config(folder: Path) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict (kaieval's bounded JSON read: a FIFO, an
    oversized or over-nested file is a one-line error)."""
    path = folder / "config.json"
    raw = load_json_file(path, max_bytes=CONFIG_MAX_BYTES, what="config files")
    if not isinstance(raw, dict):
        raise KaiError("the model config is not a JSON object", where=str(path))
    return raw


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = load_json_file(index, max_bytes=INDEX_MAX_BYTES, what="safetensors index files")
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict):
            raise KaiError("the safetensors index has no weight_map object", where=str(index))
        if not all(isinstance(n, str) for n in weight_map.values()):
            raise KaiError("the safetensors index maps a tensor to something other than a "
                           "file name", where=str(index))
        names = sorted(set(weight_map.values()))
        outside = [n for n in names if Path(n).name != n or n in ("", ".", "..")]
        if outside:
            raise KaiError(f"the safetensors index names a file outside the model folder: "
                           f"{outside[0]!r}", where=str(index))
        return [folder / n for n in names]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def _expected(config: NativeConfig) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a ``LlamaForCausalLM`` with this config."""
    h, hd, inter = config.hidden_size, config.head_dim, config.intermediate_size
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (config.vocab_size, h),
                                          "model.norm.weight": (h,)}
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, h)
    per = {"input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,),
           "self_attn.q_proj.weight": (q, h), "self_attn.k_proj.weight": (kv, h),
           "self_attn.v_proj.weight": (kv, h), "self_attn.o_proj.weight": (h, q),
           "mlp.gate_proj.weight": (inter, h), "mlp.up_proj.weight": (inter, h),
           "mlp.down_proj.weight": (h, inter)}
    if config.attention_bias:
        per.update({"self_attn.q_proj.bias": (q,), "self_attn.k_proj.bias": (kv,),
                    "self_attn.v_proj.bias": (kv,), "self_attn.o_proj.bias": (h,)})
    if config.mlp_bias:
        per.update({"mlp.gate_proj.bias": (inter,), "mlp.up_proj.bias": (inter,),
                    "mlp.down_proj.bias": (h,)})
    for i in range(config.num_hidden_layers):
        shapes.update({f"model.layers.{i}.{name}": shape for name, shape in per.items()})
    return shapes


def unsupported(folder: Path, *, trust_remote_code: bool = False) -> str | None:
    """Why this checkpoint needs transformers' own model (``None``: this forward runs it).

    Reads only ``config.json`` and the safetensors headers (checked whole by the
    provenance reader's :func:`~kaieval.safetensors_header.read_header`: a
    broken file is refused here, in one line), so the answer costs milliseconds."""
    raw = read_config(folder)
    if raw.get("model_type") != "llama" or raw.get("architectures") != [ARCHITECTURE]:
        return f"not a plain {ARCHITECTURE}"
    if raw.get("auto_map") and trust_remote_code:
        return "the repository's own code was allowed to run"
    for key, why in (("quantization_config", "quantised weights"),
                     ("sliding_window", "sliding-window attention"),
                     ("attention_chunk_size", "chunked attention")):
        if raw.get(key) is not None:
            return why
    if raw.get("hidden_act", "silu") != "silu":
        return f"activation {raw.get('hidden_act')!r}"
    if raw.get("layer_types") and any(t != "full_attention" for t in raw["layer_types"]):
        return "layers other than full attention"
    try:
        config = NativeConfig(raw)
    except (TypeError, ValueError, KeyError, ZeroDivisionError) as exc:
        return f"config not understood ({exc})"
    rope = config.rope_parameters.get("rope_type", "default")
    if rope not in STATIC_ROPE:
        return f"RoPE type {rope!r}"
    files = _weight_files(folder)
    if not files:
        return "no safetensors weights"
    from kaieval.safetensors_header import read_header

    found: dict[str, tuple[int, ...]] = {}
    for file in files:  # a truncated, forged or FIFO file: its one-line KaiError
        found.update({name: info.shape for name, info in read_header(file).items()})
    found = {n: s for n, s in found.items() if not n.endswith(IGNORED_SUFFIX)}
    if config.tie_word_embeddings:
        found.pop("lm_head.weight", None)  # tied: transformers ignores a saved copy too
    if config.num_hidden_layers > len(found):  # a forged count: never build that table
        return f"tensors differ from a {ARCHITECTURE}'s (config has more layers than tensors)"
    expected = _expected(config)
    if found != expected:
        extra = sorted(set(found) - set(expected))
        missing = sorted(set(expected) - set(found))
        wrong = sorted(n for n in set(found) & set(expected) if found[n] != expected[n])
        first = (extra or missing or wrong)[0]
        return f"tensors differ from a {ARCHITECTURE}'s (e.g. {first})"
    return None


class NativeConfig(RotaryEmbeddingConfigMixin):
    """``config.json`` read the way ``LlamaConfig`` reads it, for this module and for
    transformers' ``DynamicCache`` and RoPE functions (which take any object with these
    attributes). RoPE keys are standardised by transformers' own mixin, so legacy
    ``rope_theta``/``rope_scaling`` configs give the same parameters as ``LlamaConfig``."""

    _attn_implementation = "sdpa"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    attention_bias: bool
    mlp_bias: bool
    tie_word_embeddings: bool
    rope_parameters: dict[str, Any]

    def __init__(self, raw: dict[str, Any]) -> None:
        values = dict(raw)
        rope_kwargs = {k: values.pop(k) for k in ("rope_scaling", "rope_theta",
                                                  "partial_rotary_factor") if k in values}
        defaults: dict[str, Any] = {"rms_norm_eps": 1e-6, "attention_bias": False,
                                    "mlp_bias": False, "tie_word_embeddings": False,
                                    "max_position_embeddings": 2048, "sliding_window": None,
                                    "layer_types": None, "num_key_value_heads": None,
                                    "head_dim": None}
        self.__dict__.update({**defaults, **values})
        rope = values.get("rope_parameters")
        self.rope_parameters = dict(rope) if isinstance(rope, dict) else {}
        if isinstance(rope_kwargs.get("rope_scaling"), dict):
            rope_kwargs["rope_scaling"] = dict(rope_kwargs["rope_scaling"])
        for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads"):
            if not isinstance(getattr(self, key, None), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} missing or not a positive integer")
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        for key in ("head_dim", "num_key_value_heads"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} not a positive integer")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("attention heads not a multiple of key/value heads")
        # the mixin's methods are typed for PreTrainedConfig; they read only attributes
        RotaryEmbeddingConfigMixin.convert_rope_params_to_dict(cast(Any, self), **rope_kwargs)

    @property
    def per_layer_config(self) -> list[NativeConfig]:
        return [self] * self.num_hidden_layers

    def get_text_config(self, decoder: bool = False) -> NativeConfig:
        return self


@dataclass
class Output:
    """What the callers read from a forward pass (transformers' names)."""

    logits: Any
    cache: Any

    @property
    def past_key_values(self) -> Any:
        return self.cache


def _rotate_half(x: Any) -> Any:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class NativeLlama:
    """A ``LlamaForCausalLM`` forward over plain tensors (see the module docstring)."""

    def __init__(self, config: NativeConfig, weights: dict[str, Any], dtype: Any) -> None:
        self.config, self.dtype = config, dtype
        self.w = weights
        if config.tie_word_embeddings:
            self.w["lm_head.weight"] = self.w["model.embed_tokens.weight"]
        self.n_rep = config.num_attention_heads // config.num_key_value_heads
        self.scaling = config.head_dim ** -0.5
        rope_type = config.rope_parameters["rope_type"]
        if rope_type == "default":
            base = config.rope_parameters["rope_theta"]
            dim = config.head_dim
            inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
            self.attention_scaling = 1.0
        else:
            inv_freq, self.attention_scaling = ROPE_INIT_FUNCTIONS[rope_type](config, None)
        self.inv_freq = inv_freq

    @property
    def device(self) -> Any:
        return self.w["model.embed_tokens.weight"].device

    def to(self, device: Any) -> NativeLlama:
        self.w = {k: v.to(device) for k, v in self.w.items()}
        return self

    def eval(self) -> NativeLlama:
        return self

    def __call__(self, **kwargs: Any) -> Output:
        return self.forward(**kwargs)

    # ------------------------------------------------------------------ forward

    def forward(self, input_ids: Any, attention_mask: Any = None, position_ids: Any = None,
                cache: Any = None, use_cache: bool = False,
                logits_to_keep: Any = 0) -> Output:
        with torch.no_grad():
            w = self.w
            hidden = F.embedding(input_ids, w["model.embed_tokens.weight"])
            if use_cache and cache is None:
                cache = DynamicCache(config=cast(Any, self.config))
            past = cache.get_seq_length() if cache is not None else 0
            if position_ids is None:
                position_ids = (torch.arange(hidden.shape[1], device=hidden.device)
                                + past).unsqueeze(0)
            mask = self._mask(attention_mask, hidden, past)
            cos, sin = self._rope(hidden, position_ids)
            for i in range(self.config.num_hidden_layers):
                hidden = self._layer(i, hidden, mask, cos, sin, cache)
            hidden = self._norm(hidden, w["model.norm.weight"])
            if isinstance(logits_to_keep, int):
                kept = hidden[:, -logits_to_keep:] if logits_to_keep else hidden
            else:
                kept = hidden[:, logits_to_keep]
            logits = F.linear(kept, w["lm_head.weight"])
        return Output(logits=logits, cache=cache)

    def _mask(self, mask: Any, hidden: Any, past: int) -> Any:
        """The 4-D bool mask transformers' ``create_causal_mask`` gives SDPA (``None``
        where it lets SDPA's ``is_causal`` do the work)."""
        if mask is not None and mask.ndim == 4:
            return mask
        q, kv = hidden.shape[1], past + hidden.shape[1]
        padding = None if mask is None else mask[:, -kv:].bool()
        if (q == 1 or kv == q) and (padding is None or bool(padding.all())):
            return None
        rows = torch.arange(q, device=hidden.device)[:, None] + past
        causal = torch.arange(kv, device=hidden.device)[None, :] <= rows
        full = causal[None, None].expand(hidden.shape[0], 1, q, kv)
        return full if padding is None else full & padding[:, None, None, :]

    def _rope(self, hidden: Any, position_ids: Any) -> tuple[Any, Any]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=hidden.device,
                                                                    dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling
        return cos.to(dtype=hidden.dtype)[:, None], sin.to(dtype=hidden.dtype)[:, None]

    def _norm(self, hidden: Any, weight: Any) -> Any:
        dtype = hidden.dtype
        hidden = hidden.to(torch.float32)
        variance = hidden.pow(2).mean(-1, keepdim=True)
        hidden = hidden * torch.rsqrt(variance + self.config.rms_norm_eps)
        return weight * hidden.to(dtype)

    def _linear(self, x: Any, name: str) -> Any:
        return F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))

    def _layer(self, i: int, hidden: Any, mask: Any, cos: Any, sin: Any, cache: Any) -> Any:
        p = f"model.layers.{i}."
        residual = hidden
        x = self._norm(hidden, self.w[p + "input_layernorm.weight"])
        shape = (*x.shape[:-1], -1, self.config.head_dim)
        q = self._linear(x, p + "self_attn.q_proj").view(shape).transpose(1, 2)
        k = self._linear(x, p + "self_attn.k_proj").view(shape).transpose(1, 2)
        v = self._linear(x, p + "self_attn.v_proj").view(shape).transpose(1, 2)
        q = (q * cos) + (_rotate_half(q) * sin)
        k = (k * cos) + (_rotate_half(k) * sin)
        if cache is not None:
            k, v = cache.update(k, v, i)
        attn = self._attention(q, k, v, mask)
        attn = attn.reshape(*x.shape[:-1], -1).contiguous()
        hidden = residual + self._linear(attn, p + "self_attn.o_proj")
        residual = hidden
        x = self._norm(hidden, self.w[p + "post_attention_layernorm.weight"])
        up = F.silu(self._linear(x, p + "mlp.gate_proj")) * self._linear(x, p + "mlp.up_proj")
        return residual + self._linear(up, p + "mlp.down_proj")

    def _attention(self, q: Any, k: Any, v: Any, mask: Any) -> Any:
        """transformers' ``sdpa_attention_forward`` on CPU/CUDA, step for step."""
        q_len, extra = q.shape[2], {}
        if self.n_rep > 1:
            if mask is None and k.shape[-1] == v.shape[-1] <= 256:
                extra["enable_gqa"] = True
            elif q_len == 1:
                b, heads, _one, dim = q.shape
                q = q.reshape(b, heads // self.n_rep, self.n_rep, dim)
                if mask is not None and mask.shape[1] != 1:
                    mask = mask.reshape(mask.shape[0], heads // self.n_rep, self.n_rep, -1)
            else:
                k, v = self._repeat(k), self._repeat(v)
        # ``_mask`` leaves the mask out only where queries and keys coincide
        is_causal = q_len > 1 and mask is None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0,
                                             scale=self.scaling, is_causal=is_causal, **extra)
        out = out.reshape(out.shape[0], -1, q_len, v.shape[-1])
        return out.transpose(1, 2).contiguous()

    def _repeat(self, x: Any) -> Any:
        b, heads, n, dim = x.shape
        return x[:, :, None].expand(b, heads, self.n_rep, n, dim).reshape(
            b, heads * self.n_rep, n, dim)


def load(folder: Path, dtype: Any, device: str) -> NativeLlama:
    """The checkpoint as a :class:`NativeLlama` (call :func:`unsupported` first)."""
    from safetensors.torch import load_file

    config = NativeConfig(read_config(folder))
    weights: dict[str, Any] = {}
    for file in _weight_files(folder):
        # straight onto the device, one shard at a time: host memory holds one shard
        for name, tensor in load_file(str(file), device=device).items():
            tied_copy = config.tie_word_embeddings and name == "lm_head.weight"
            if not name.endswith(IGNORED_SUFFIX) and not tied_copy:
                weights[name] = tensor.to(dtype)
    return NativeLlama(config, weights, dtype).to(device)
