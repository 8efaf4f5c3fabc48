"""Block search (layers.py): pruning, depth up-scaling, shrunk width, MoE upcycling."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kaieval.provenance import check_independence
from kaieval.provenance.layers import search_sites
from kaieval.provenance.matching import MlpSite, UnitSketch
from kaieval.records import IndependenceVerdict


def _check(path: Path, models: dict[str, Path]) -> IndependenceVerdict:
    return check_independence(path, [models["parent"]], stage_id="s", team_id="t")


def test_pruned_blocks_map_to_their_source(models: dict[str, Path],
                                           variants: dict[str, Path]) -> None:
    v = _check(variants["pruned"], models)
    assert v.verdict == "derived"
    assert v.block_map == ("parent: cand block 0 <- ref block 0",
                           "parent: cand block 1 <- ref block 3")
    att = next(e for e in v.evidence if e.component == "block.1.attention")
    assert att.verdict == "derived" and "compared with reference block 3" in att.detail
    mlp = next(e for e in v.evidence if e.component == "block.1.mlp")
    assert "cand block 1 <- ref block 3" in mlp.detail and "best of same position" in mlp.detail


def test_depth_upscaled_duplicates_are_found(models: dict[str, Path],
                                             variants: dict[str, Path]) -> None:
    v = _check(variants["upscaled"], models)
    assert v.verdict == "derived"
    want = [0, 1, 2, 1, 2, 3]
    assert v.block_map == tuple(f"parent: cand block {i} <- ref block {j}"
                                for i, j in enumerate(want))
    lm = [e for e in v.evidence if e.component.startswith("block.")]
    assert len(lm) == 12 and all(e.verdict == "derived" for e in lm)


def test_shrunk_intermediate_still_matches(models: dict[str, Path],
                                           variants: dict[str, Path]) -> None:
    v = _check(variants["shrunk"], models)
    assert v.verdict == "derived"
    mlp = next(e for e in v.evidence if e.component == "block.2.mlp")
    assert mlp.test == "hidden_unit_matching" and mlp.verdict == "derived"
    assert "96 units" in mlp.detail and "shapes [96, 64] vs [128, 64]" in mlp.detail
    assert mlp.statistic is not None and mlp.statistic > 0.95


def test_moe_upcycled_from_dense_is_detected(models: dict[str, Path],
                                             variants: dict[str, Path]) -> None:
    v = _check(variants["moe_upcycled"], models)
    assert v.verdict == "derived"
    assert "parent: cand block 2 expert 3 <- ref block 2" in v.block_map
    mlp = next(e for e in v.evidence if e.component == "block.2.mlp")
    assert mlp.verdict == "derived" and "4 experts/MLPs Fisher-combined" in mlp.detail
    assert "experts share initialisation with each other" in mlp.detail


def test_independent_moe_is_not_derived(models: dict[str, Path],
                                        variants: dict[str, Path]) -> None:
    v = _check(variants["moe_independent"], models)
    assert v.verdict == "no_evidence" and v.block_map == ()
    mlp = next(e for e in v.evidence if e.component == "block.0.mlp")
    assert mlp.p_value is not None and mlp.p_value > 0.01
    assert "experts share initialisation" not in mlp.detail


def _unit(block: int, parts: dict[str, np.ndarray]) -> UnitSketch:
    normed = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in parts.items()}
    n = next(iter(parts.values())).shape[0]
    return UnitSketch(f"block {block}", block, None, np.arange(n), n, normed)


def test_search_pays_for_picking_the_best() -> None:
    """A moved block is found by the search, whose p-value carries the Bonferroni factor."""
    rng = np.random.default_rng(0)
    refs = [{p: rng.standard_normal((64, 32)) for p in ("gate", "up", "down")}
            for _ in range(3)]
    cand = [_unit(0, {p: v + 0.3 * rng.standard_normal(v.shape) for p, v in refs[2].items()})]
    sites = [MlpSite(f"l.{b}.", b, None, {}, 64, 32) for b in range(3)]
    found = search_sites(cand, sites, lambda s: _unit(s.block, refs[s.block]), alpha=0.01)
    (f,) = found
    assert f.ref_site is not None and f.ref_site.block == 2 and f.route == "diagonal+search"
    assert f.result is not None
    assert f.log_p == min(0.0, f.result.log_p + math.log(3) + math.log(2))
    assert "best of same position and a search over 3" in f.text()
