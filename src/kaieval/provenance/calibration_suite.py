"""What the provenance calibration suite is: its controls, pairs and what each must show.

Why a module of its own: the definition of the suite (which derived and independent
controls exist, which pairs are checked, what verdict and kinds of evidence each pair
must get) is read by both the builders (:mod:`kaieval.provenance.calibration_controls`)
and the evaluation (:mod:`kaieval.provenance.calibration`), and changes for different
reasons than either: a new control kind is added here first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kaieval.errors import KaiError

SUITE_VERSION = 2  # bump when a control is built differently: cached models rebuild
STAMP = ".kaieval-calibration.json"
DETECTED = ("derived", "partial")
DERIVED_KINDS = ("finetune", "continued-pretraining", "permuted-finetune", "pruned-depth",
                 "pruned-width", "depth-upscaled", "vocab-extended", "partial-copy",
                 "residual-permuted", "moe-upcycled", "frozen-copy-2", "frozen-copy-4",
                 "embeddings-copied", "encoder-copied", "permuted-copy")
PARTIAL_KINDS = ("partial-copy", "frozen-copy-2", "frozen-copy-4", "embeddings-copied",
                 "encoder-copied")
"""Controls where only a part of the model comes from the parent: expected ``partial``,
naming that part (as copied, or derived by training for ``partial-copy``, whose copied
blocks were trained on with the rest), and nothing else copied or derived by training."""
SURGERY_KINDS = ("permuted-finetune", "pruned-depth", "pruned-width", "depth-upscaled",
                 "vocab-extended", "partial-copy", "residual-permuted", "moe-upcycled",
                 "frozen-copy-2", "frozen-copy-4", "embeddings-copied", "permuted-copy")
"""Controls no recipe can express: built by tensor surgery on the parent, then trained
(except :data:`COPY_KINDS`)."""
COPY_KINDS = ("permuted-copy",)
"""Controls that are the parent under a function-preserving transform, not trained at all:
MLP units and attention heads reordered. Every component must read as copied."""
FROZEN_KINDS = ("frozen-copy-2", "frozen-copy-4", "embeddings-copied")
"""Controls whose copied tensors stay frozen while the rest trains from scratch."""
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
    if kind in COPY_KINDS:
        return Pair(kind, "parent", kind, "derived", ("derived",),
                    (*_blocks(config.layers), "embeddings", "head"), ("copied",))
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
