"""The demo's synthetic stand-in models: which exist, and their recipes.

The demo must *measure* its outcomes, never have them written in: each applicant
team gets a tiny model built the way its approach was publicly described (from
scratch, fine-tuned from a shared foreign base, or with an encoder copied from
it), and the engines measure those real weights. Recipes are data
(``data/standins.yaml``): change one and the measured figures change with it.
Building is :mod:`kaieval.synth` (deterministic, atomic, cached).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from kaieval.synth.build import build_models
from kaieval.synth.recipes import Recipe, load_recipes

RECIPES_PATH = Path(__file__).parent / "data" / "standins.yaml"


def demo_recipes() -> list[Recipe]:
    """The bundled stand-in recipes (``data/standins.yaml``), validated."""
    return load_recipes(RECIPES_PATH)


def build_standins(cache_dir: Path, *, names: Sequence[str] | None = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Ensure the demo's stand-ins (``names``, default all, and their sources) are built."""
    return build_models(cache_dir, demo_recipes(), names=names, progress=progress)
