"""Build the demo's synthetic stand-in models from recipes, locally, and cache them.

The demo must *measure* its outcomes, never have them written in: each applicant
team gets a tiny model built the way its approach was publicly described (from
scratch, fine-tuned from a shared foreign base, or with an encoder copied from
it), and the engines measure those real weights. Recipes are data
(``data/standins.yaml``): change one and the measured figures change with it.

A stand-in is a Hugging Face folder (LlamaForCausalLM, BPE ``tokenizer.json``,
``generation_config.json``) plus optional ``vision_encoder`` (ViT) and
``audio_encoder`` (AST) subfolders. Builds are deterministic (same recipe, same
bytes), atomic (temp folder renamed into place: an interrupted build never looks
cached) and cached by a stamp hashing the recipe, the builder version and the
hashes of its sources (a changed base rebuilds its dependants). torch and
transformers are imported only when something must actually be built.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kaieval.demo.corpus import CORPUS_VERSION, corpus_text
from kaieval.errors import KaiError
from kaieval.hashing import sha256_file, sha256_json
from kaieval.spec.yamlload import LoadedYaml, load_yaml, parse_model

BUILDER_VERSION = 1
STAMP = ".kaieval-build.json"
RECIPES_PATH = Path(__file__).parent / "data" / "standins.yaml"
COMPONENTS = ("vision_encoder", "audio_encoder")
SPECIALS = ("<s>", "</s>", "<pad>")
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
Progress = Callable[[str], None]
BUILD_THREADS = 1  # fixed for identical bytes; 2 threads thrash on a busy 2-core box (13x)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TokenizerRecipe(_Strict):
    """Either a byte-level BPE trained on the train corpus, or ``shared: <stand-in>``."""

    vocab_size: int | None = Field(default=None, ge=300, le=32000)
    seed: int | None = None
    train_chars: int = Field(default=200_000, ge=10_000)
    shared: Name | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> TokenizerRecipe:
        if self.shared is not None and (self.vocab_size is not None or self.seed is not None):
            raise ValueError("give either 'shared' or 'vocab_size' + 'seed', not both")
        if self.shared is None and (self.vocab_size is None or self.seed is None):
            raise ValueError("an own tokenizer needs 'vocab_size' and 'seed'")
        return self


class EncoderArchitecture(_Strict):
    """Shape of a transformer encoder (ViT / AST component)."""

    hidden_size: int = Field(ge=16, le=1024)
    layers: int = Field(ge=1, le=12)
    heads: int = Field(ge=1, le=32)
    intermediate_size: int = Field(ge=16, le=4096)

    @model_validator(mode="after")
    def _heads_divide(self) -> EncoderArchitecture:
        if self.hidden_size % self.heads or (self.hidden_size // self.heads) % 2:
            raise ValueError("hidden_size / heads must be a whole, even head size")
        return self


class Architecture(EncoderArchitecture):
    """Shape of a LlamaForCausalLM (the vocabulary size comes from the tokenizer)."""

    max_position_embeddings: int = Field(default=512, ge=64, le=8192)


class ScratchInit(_Strict):
    mode: Literal["scratch"]
    seed: int


class FinetuneInit(_Strict):
    mode: Literal["finetune"]
    source: Name  # inherits the source's architecture and must share its tokenizer


class Training(_Strict):
    """Next-token training on the generated train corpus (AdamW, warmup + cosine)."""

    steps: int = Field(ge=0, le=100_000)
    lr: float = Field(gt=0, le=1.0)
    batch_size: int = Field(ge=1, le=512)
    seq_len: int = Field(ge=8, le=2048)
    seed: int = 0
    corpus_chars: int = Field(default=300_000, ge=10_000)
    corpus_seed: int = 0


class ScratchComponent(_Strict):
    mode: Literal["scratch"]
    seed: int
    architecture: EncoderArchitecture
    steps: int = Field(ge=0, le=10_000)
    lr: float = Field(default=1e-3, gt=0, le=1.0)


class CopyComponent(_Strict):
    """Copied from another stand-in's component; ``finetune_steps: 0`` = used as-is."""

    mode: Literal["copy"]
    source: Name
    finetune_steps: int = Field(ge=0, le=10_000)
    lr: float = Field(default=1e-4, gt=0, le=1.0)
    seed: int = 0


Init = Annotated[ScratchInit | FinetuneInit, Field(discriminator="mode")]
Component = Annotated[ScratchComponent | CopyComponent, Field(discriminator="mode")]


class Recipe(_Strict):
    """How one stand-in is built; ``role`` says which public fact it mirrors."""

    name: Name
    role: str = Field(min_length=1)
    tokenizer: TokenizerRecipe
    architecture: Architecture | None = None
    init: Init
    train: Training
    vision_encoder: Component | None = None
    audio_encoder: Component | None = None

    def component(self, slot: str) -> ScratchComponent | CopyComponent | None:
        return self.vision_encoder if slot == "vision_encoder" else self.audio_encoder

    def dependencies(self) -> list[str]:
        """Stand-ins whose built files this one reads (tokenizer, weights, components)."""
        comps = [self.component(slot) for slot in COMPONENTS]
        deps = [self.tokenizer.shared, _init_source(self),
                *(c.source for c in comps if isinstance(c, CopyComponent))]
        return list(dict.fromkeys(d for d in deps if d is not None))


class RecipeFile(_Strict):
    standins: list[Recipe] = Field(min_length=1)


# --- loading and validation ---------------------------------------------------------------
def load_recipes(path: Path | None = None) -> list[Recipe]:
    """Read and validate a recipe file (default: the bundled ``data/standins.yaml``)."""
    doc = load_yaml(path or RECIPES_PATH)
    recipes = parse_model(RecipeFile, doc).standins
    check_recipes(recipes, doc)
    return recipes


def check_recipes(recipes: Sequence[Recipe], doc: LoadedYaml | None = None) -> None:
    """Cross-recipe rules pydantic cannot see: names, references, shapes, cycles."""
    def where(i: int, *loc: str) -> str | None:
        return doc.where(("standins", i, *loc)) if doc else None

    by_name: dict[str, Recipe] = {}
    for i, r in enumerate(recipes):
        if r.name in by_name:
            raise KaiError(f"standins.{i}.name: duplicate stand-in '{r.name}'", where=where(i))
        by_name[r.name] = r
        for dep in r.dependencies():
            if dep not in {x.name for x in recipes}:
                raise KaiError(f"standins.{i}: '{r.name}' refers to unknown stand-in '{dep}'",
                               where=where(i))
    build_order(recipes)  # refuses cycles before the chains below are followed
    for i, r in enumerate(recipes):
        if isinstance(r.init, FinetuneInit):
            src = by_name[r.init.source]
            tok_owner = [_root(x, by_name, lambda y: y.tokenizer.shared) for x in (r, src)]
            if tok_owner[0] is not tok_owner[1]:
                raise KaiError(f"standins.{i}.tokenizer: a fine-tune must share the tokenizer "
                               f"of '{src.name}'", where=where(i, "tokenizer"))
            if r.architecture not in (None, _root(src, by_name, _init_source).architecture):
                raise KaiError(f"standins.{i}.architecture: differs from '{src.name}' it is "
                               "fine-tuned from (omit it to inherit)", where=where(i, "init"))
        elif r.architecture is None:
            raise KaiError(f"standins.{i}.architecture: required for a scratch model",
                           where=where(i))
        for slot in COMPONENTS:
            comp = r.component(slot)
            if isinstance(comp, CopyComponent) and by_name[comp.source].component(slot) is None:
                raise KaiError(f"standins.{i}.{slot}: '{comp.source}' has no {slot} to copy",
                               where=where(i, slot))


def _root(r: Recipe, by_name: dict[str, Recipe], step: Callable[[Recipe], str | None]) -> Recipe:
    """Follow ``step`` (shared tokenizer, fine-tune source) to the stand-in that owns it."""
    while (nxt := step(r)) is not None:  # terminates: build_order has refused cycles
        r = by_name[nxt]
    return r


def _init_source(r: Recipe) -> str | None:
    return r.init.source if isinstance(r.init, FinetuneInit) else None


def build_order(recipes: Sequence[Recipe], roots: Sequence[str] | None = None) -> list[Recipe]:
    """``roots`` (default: all) and their sources, each source before what reuses it."""
    by_name = {r.name: r for r in recipes}
    order: list[Recipe] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(r: Recipe, path: tuple[str, ...]) -> None:
        if state.get(r.name) == 1:
            raise KaiError(f"stand-in recipes form a cycle: {' -> '.join((*path, r.name))}")
        if state.get(r.name) == 2:
            return
        state[r.name] = 1
        for dep in r.dependencies():
            visit(by_name[dep], (*path, r.name))
        state[r.name] = 2
        order.append(r)

    for name in roots if roots is not None else by_name:
        visit(by_name[name], ())
    return order


def recipe_hashes(recipes: Sequence[Recipe]) -> dict[str, str]:
    """Build hash: the recipe (less its prose ``role``), the builder, the sources' hashes."""
    hashes: dict[str, str] = {}
    for r in build_order(recipes):
        hashes[r.name] = sha256_json({
            "recipe": r.model_dump(mode="json", exclude={"role"}), "builder": BUILDER_VERSION,
            "corpus": CORPUS_VERSION, "deps": {d: hashes[d] for d in r.dependencies()}})
    return hashes


# --- cache --------------------------------------------------------------------------------
def _is_cached(model_dir: Path, want: str) -> bool:
    """Stamp says ``want`` and every recorded file is still there with its size."""
    try:
        stamp = json.loads((model_dir / STAMP).read_text(encoding="utf-8"))
        return bool(stamp["recipe_hash"] == want and all(
            (model_dir / rel).stat().st_size == meta["size"]
            for rel, meta in stamp["files"].items()))
    except (OSError, ValueError, KeyError, TypeError):
        return False


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """One builder per cache folder at a time; leftovers of killed builds are swept."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".kaieval-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for junk in [*cache_dir.glob(".tmp-*"), *cache_dir.glob(".old-*")]:
            shutil.rmtree(junk, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_standins(cache_dir: Path, *, names: Sequence[str] | None = None,
                   progress: Progress | None = None,
                   recipes: Sequence[Recipe] | None = None) -> dict[str, Path]:
    """Ensure the stand-ins (``names`` and what they depend on) are built under ``cache_dir``.

    Returns ``{name: folder}`` for every stand-in ensured, dependencies included.
    Unchanged recipes cost only a stamp read; changed ones are rebuilt with their
    dependants. ``recipes`` overrides the bundled recipe file (tests use tiny ones).
    """
    recipes = list(recipes) if recipes is not None else load_recipes()
    check_recipes(recipes)
    known = [r.name for r in recipes]
    wanted = list(names) if names is not None else known
    if unknown := [n for n in wanted if n not in known]:
        raise KaiError(f"unknown stand-in(s): {', '.join(unknown)}; known: {', '.join(known)}")
    hashes, say, cache_dir = recipe_hashes(recipes), progress or (lambda _m: None), Path(cache_dir)
    order = build_order(recipes, wanted)
    out = {r.name: cache_dir / r.name for r in order}
    if all(_is_cached(out[r.name], hashes[r.name]) for r in order):
        return out
    with _locked(cache_dir):
        for r in order:
            if _is_cached(out[r.name], hashes[r.name]):
                say(f"{r.name}: cached")
            else:
                _build_atomically(r, out[r.name], hashes[r.name], cache_dir, say)
    return out


def _build_atomically(r: Recipe, final: Path, recipe_hash: str, cache_dir: Path,
                      say: Progress) -> None:
    tmp = cache_dir / f".tmp-{r.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        start = time.perf_counter()
        with _deterministic_torch():
            _tokenizer(r, tmp, cache_dir, say)
            _language_model(r, tmp, cache_dir, say)
            for slot in COMPONENTS:
                if (comp := r.component(slot)) is not None:
                    _component(r.name, slot, comp, tmp / slot, cache_dir, say)
        files = {str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        stamp = {"name": r.name, "recipe_hash": recipe_hash, "builder_version": BUILDER_VERSION,
                 "recipe": r.model_dump(mode="json"), "files": files,
                 "build_seconds": round(time.perf_counter() - start, 3)}
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2, sort_keys=True), encoding="utf-8")
        old = cache_dir / f".old-{r.name}-{uuid.uuid4().hex[:8]}"
        if final.exists():
            final.rename(old)  # swept by the next build if we die right here
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --- building (torch, tokenizers and transformers are imported only here) ------------------
@contextlib.contextmanager
def _deterministic_torch() -> Iterator[None]:
    """Seeded, deterministic kernels, fixed threads: the same recipe gives the same bytes."""
    import torch
    from transformers.utils import logging as hf_logging

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    bars = hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(BUILD_THREADS)
    torch.use_deterministic_algorithms(True)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
        if bars:
            hf_logging.enable_progress_bar()


@functools.lru_cache(maxsize=4)
def _train_text(n_chars: int, seed: int) -> str:
    return corpus_text("train", n_chars, seed=seed)


def _tokenizer(r: Recipe, out: Path, cache_dir: Path, say: Progress) -> None:
    """Byte-level BPE (no unknown tokens, so any text can be scored) or a copied one."""
    if r.tokenizer.shared is not None:
        for f in (cache_dir / r.tokenizer.shared).glob("*token*.json"):
            shutil.copyfile(f, out / f.name)
        return
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    say(f"{r.name}: tokenizer (BPE, {r.tokenizer.vocab_size} tokens)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=r.tokenizer.vocab_size or 0, special_tokens=list(SPECIALS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = _train_text(r.tokenizer.train_chars, r.tokenizer.seed or 0)
    tok.train_from_iterator(text.split("\n"), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIALS[0],
                                   eos_token=SPECIALS[1], pad_token=SPECIALS[2])
    fast.save_pretrained(out)


def _language_model(r: Recipe, out: Path, cache_dir: Path, say: Progress) -> None:
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
    t = r.train
    text = _train_text(t.corpus_chars, t.corpus_seed)
    paragraphs = [p + "\n\n" for p in text.split("\n\n")]  # encode_batch runs in parallel
    data = torch.tensor([i for enc in tok.encode_batch(paragraphs) for i in enc.ids])
    if len(data) <= t.seq_len + 1:
        raise KaiError(f"stand-in '{r.name}': corpus_chars too small for seq_len {t.seq_len}")
    gen = torch.Generator().manual_seed(t.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=0.01)
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


def _component(name: str, slot: str, comp: ScratchComponent | CopyComponent, out: Path,
               cache_dir: Path, say: Progress) -> None:
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
