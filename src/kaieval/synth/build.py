"""Build synthetic models from recipes into a cache folder: atomically, once.

A built model is a Hugging Face folder (LlamaForCausalLM, BPE ``tokenizer.json``,
``generation_config.json``) plus optional ``vision_encoder`` (ViT) and
``audio_encoder`` (AST) subfolders. Builds are atomic (temp folder renamed into
place: an interrupted build never looks cached) and cached by a stamp hashing
the recipe, the builder version and the hashes of its sources (a changed base
rebuilds its dependants).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from kaieval.errors import KaiError
from kaieval.hashing import sha256_file
from kaieval.synth.models import build_component, deterministic_torch, train_language_model
from kaieval.synth.recipes import (
    BUILDER_VERSION,
    COMPONENTS,
    Recipe,
    build_order,
    check_recipes,
    recipe_hashes,
)
from kaieval.synth.tokenizers import build_tokenizer

STAMP = ".kaieval-build.json"
Progress = Callable[[str], None]


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


def build_models(cache_dir: Path, recipes: Sequence[Recipe], *,
                 names: Sequence[str] | None = None,
                 progress: Progress | None = None) -> dict[str, Path]:
    """Ensure the models (``names``, default all, and what they depend on) are built.

    Returns ``{name: folder}`` under ``cache_dir`` for every model ensured,
    dependencies included. Unchanged recipes cost only a stamp read; changed ones
    are rebuilt with their dependants.
    """
    recipes = list(recipes)
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
        with deterministic_torch():
            build_tokenizer(r, tmp, cache_dir, say)
            train_language_model(r, tmp, cache_dir, say)
            for slot in COMPONENTS:
                if (comp := r.component(slot)) is not None:
                    build_component(r.name, slot, comp, tmp / slot, cache_dir, say)
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
