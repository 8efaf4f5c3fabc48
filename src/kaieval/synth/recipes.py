"""Recipes for synthetic models: what to build, validated, ordered and hashed.

A recipe says how one small model is built: its tokenizer (a byte-level BPE
trained on the generated corpus, or another model's, shared), its Llama shape,
its initialisation (from scratch, or fine-tuned from another model), its
training, and optional ViT / AST encoder components (from scratch or copied).
Recipes are data: the demo keeps its stand-ins' recipes in a YAML file, the
provenance calibration writes its controls' recipes in code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kaieval.errors import KaiError
from kaieval.hashing import sha256_json
from kaieval.spec.yamlload import LoadedYaml, load_yaml, parse_model
from kaieval.synth.corpus import CORPUS_VERSION

BUILDER_VERSION = 2  # bump on any change that alters built files (2: chat template)
COMPONENTS = ("vision_encoder", "audio_encoder")
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]


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
def load_recipes(path: Path) -> list[Recipe]:
    """Read and validate a recipe file (``standins: [recipe, ...]``)."""
    doc = load_yaml(path)
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
