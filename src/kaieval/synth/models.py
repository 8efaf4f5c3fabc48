"""Synthetic models: a small LlamaForCausalLM (and ViT / AST encoders) built from a recipe.

Builds are deterministic: seeded, deterministic kernels and a fixed thread count,
so the same recipe gives the same bytes. torch and transformers are imported
only inside the functions that build.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.quiet import quiet_transformers
from kaieval.synth.corpus import train_text
from kaieval.synth.recipes import (
    CopyComponent,
    EncoderArchitecture,
    Recipe,
    ScratchComponent,
    ScratchInit,
)
from kaieval.synth.tokenizers import SPECIALS

Progress = Callable[[str], None]
BUILD_THREADS = 1  # fixed for identical bytes; 2 threads thrash on a busy 2-core box (13x)


@contextlib.contextmanager
def deterministic_torch() -> Iterator[None]:
    """Seeded, deterministic kernels, fixed threads: the same recipe gives the same bytes.

    transformers' progress bars and logs are off meanwhile (:func:`quiet_transformers`).
    """
    import torch

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(BUILD_THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        with quiet_transformers():
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def train_language_model(r: Recipe, out: Path, cache_dir: Path, say: Progress, *,
                         frozen: Callable[[str], bool] | None = None) -> None:
    """Initialise (scratch, or the ``cache_dir/<source>`` model) and train ``r``'s language
    model on the train corpus; save it to ``out``, where its tokenizer already is.

    ``frozen(name)`` true keeps that parameter as it was initialised (no gradient, so
    neither AdamW nor its weight decay touches it): the provenance calibration's
    copied-and-frozen controls, whose copies must stay byte-identical."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    bos, eos, pad = (tok.token_to_id(s) for s in SPECIALS)
    if isinstance(r.init, ScratchInit):
        a = r.architecture
        assert a is not None  # check_recipes guarantees it
        config = LlamaConfig(
            vocab_size=tok.get_vocab_size(), hidden_size=a.hidden_size,
            num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.heads,
            intermediate_size=a.intermediate_size, bos_token_id=bos, eos_token_id=eos,
            max_position_embeddings=a.max_position_embeddings, pad_token_id=pad,
            tie_word_embeddings=False)
        torch.manual_seed(r.init.seed)
        model: Any = LlamaForCausalLM(config)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            cache_dir / r.init.source, use_safetensors=True, trust_remote_code=False,
            dtype=torch.float32)
    if frozen is not None:
        for name, param in model.named_parameters():
            if frozen(name):
                param.requires_grad_(False)
    t = r.train
    text = train_text(t.corpus_chars, t.corpus_seed)
    paragraphs = [p + "\n\n" for p in text.split("\n\n")]  # encode_batch runs in parallel
    data = torch.tensor([i for enc in tok.encode_batch(paragraphs) for i in enc.ids])
    if len(data) <= t.seq_len + 1:
        raise KaiError(f"stand-in '{r.name}': corpus_chars too small for seq_len {t.seq_len}")
    gen = torch.Generator().manual_seed(t.seed)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=t.lr,
                            weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _lr_factor(i, t.steps))
    model.train()
    every = max(1, t.steps // 4)
    for step in range(t.steps):
        starts = torch.randint(0, len(data) - t.seq_len - 1, (t.batch_size,), generator=gen)
        batch = torch.stack([data[s:s + t.seq_len + 1] for s in starts.tolist()])
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % every == 0 or step + 1 == t.steps:
            say(f"{r.name}: language model step {step + 1}/{t.steps}, loss {loss.item():.3f}")
    model.eval()
    model.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    model.save_pretrained(out)


def _lr_factor(step: int, steps: int) -> float:
    """Linear warmup over 10 % of the steps, then cosine decay to 10 % of the peak."""
    warm = max(1, steps // 10)
    if step < warm:
        return (step + 1) / warm
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, steps - warm))))


def _encoder(slot: str, arch: EncoderArchitecture) -> Any:
    """A small ViT (vision) or AST (audio spectrogram) encoder, freshly initialised."""
    from transformers import ASTConfig, ASTModel, ViTConfig, ViTModel

    shape: dict[str, Any] = dict(
        hidden_size=arch.hidden_size, num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads, intermediate_size=arch.intermediate_size)
    if slot == "vision_encoder":
        return ViTModel(ViTConfig(image_size=32, patch_size=8, num_channels=3, **shape))
    return ASTModel(ASTConfig(num_mel_bins=32, max_length=64, patch_size=8, frequency_stride=8,
                              time_stride=8, **shape))


def build_component(name: str, slot: str, comp: ScratchComponent | CopyComponent, out: Path,
               cache_dir: Path, say: Progress) -> None:
    """Build one encoder component (``slot``) into ``out``: from scratch, or copied from
    ``cache_dir/<source>/<slot>`` and optionally fine-tuned."""
    import torch

    if isinstance(comp, CopyComponent):
        source, steps = cache_dir / comp.source / slot, comp.finetune_steps
        say(f"{name}: {slot} copied from {comp.source}, fine-tuned {steps} steps")
        if steps == 0:  # byte-for-byte reuse
            shutil.copytree(source, out)
            return
        from transformers import AutoModel
        model = AutoModel.from_pretrained(source, use_safetensors=True, trust_remote_code=False,
                                          dtype=torch.float32)
    else:
        say(f"{name}: {slot} from scratch, {comp.steps} steps")
        torch.manual_seed(comp.seed)
        model, steps = _encoder(slot, comp.architecture), comp.steps
    _train_encoder(model, slot, steps, comp.lr, comp.seed)
    model.save_pretrained(out)


def _train_encoder(model: Any, slot: str, steps: int, lr: float, seed: int) -> None:
    """Synthetic objective: predict a fixed random projection of random inputs.

    The encoders exist so that provenance tests have real weights to compare; all
    they need is weights that move under training the way real ones do.
    """
    import torch

    torch.manual_seed(seed)
    cfg = model.config
    shape: tuple[int, ...] = ((3, 32, 32) if slot == "vision_encoder"
                              else (cfg.max_length, cfg.num_mel_bins))
    key = "pixel_values" if slot == "vision_encoder" else "input_values"
    proj = torch.randn(math.prod(shape), 16) / math.sqrt(math.prod(shape))
    head = torch.nn.Linear(cfg.hidden_size, 16)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=lr)
    model.train()
    for _ in range(steps):
        x = torch.randn(8, *shape)
        pooled = model(**{key: x}).last_hidden_state.mean(dim=1)
        loss = torch.nn.functional.mse_loss(head(pooled), x.flatten(1) @ proj)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
