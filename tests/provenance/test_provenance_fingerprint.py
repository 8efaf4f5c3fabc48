"""Reference fingerprints (fingerprint.py): same verdicts as the model folder, hostile files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from kaieval.errors import KaiError
from kaieval.provenance import check_independence, open_model
from kaieval.provenance.fingerprint import (
    FORMAT,
    is_fingerprint,
    load_reference,
    write_fingerprint,
)
from kaieval.safetensors_header import read_header


@pytest.fixture(scope="module")
def fingerprint(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fingerprint(models["parent"], tmp_path_factory.mktemp("fp") / "parent.kfp"
                             ".safetensors")


def test_fingerprint_holds_what_tests_need_not_the_weights(models: dict[str, Path],
                                                           fingerprint: Path) -> None:
    assert is_fingerprint(fingerprint) and not is_fingerprint(models["parent"])
    names = set(read_header(fingerprint))
    weights = open_model(models["parent"])
    # no weight matrix under its own name: attention as seeded sub-matrices, MLPs as sketches
    assert not any(n.startswith("model.") and ("q_proj" in n or "up_proj" in n) for n in names)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert {f"kaifp.sub.{q}", f"kaifp.rows.{q}", f"kaifp.cols.{q}"} <= names
    assert {n for n in weights.names() if "norm" in n and "/" not in n} <= names
    assert "kaifp.model.layers.3.mlp.gate" in names and "kaifp.coords" in names
    ref = load_reference(fingerprint)
    assert ref.fingerprint and len(ref.sites) == 4 and ref.vocab is not None
    assert ref.hashes() == load_reference(models["parent"]).hashes()  # exact reuse still works
    with fingerprint.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    assert meta["format"] == FORMAT and meta["version"] == "2"
    # the MLP sketch is 256 coordinates at most: at real widths it is ~1/8 of the MLP bytes
    assert ref.weights.tensors["kaifp.model.layers.0.mlp.up"].shape == (128, 64)


@pytest.mark.parametrize("cand", ["finetune", "independent", "naver", "vocab_derived"])
def test_same_verdict_as_the_model_folder(models: dict[str, Path], fingerprint: Path,
                                          cand: str) -> None:
    by_dir = check_independence(models[cand], [models["parent"]], stage_id="s", team_id=cand)
    by_fp = check_independence(models[cand], [fingerprint], stage_id="s", team_id=cand)
    assert by_fp.verdict == by_dir.verdict
    assert by_fp.references == ("parent.kfp",)
    if cand == "independent":
        assert all(e.verdict in ("no_evidence", "inconclusive") for e in by_fp.evidence)


def test_shape_changes_survive_the_fingerprint(models: dict[str, Path],
                                               variants: dict[str, Path],
                                               fingerprint: Path) -> None:
    for cand in ("permuted_finetune", "pruned"):
        v = check_independence(variants[cand], [fingerprint], stage_id="s", team_id=cand)
        assert v.verdict == "derived"
    assert v.block_map == ("parent.kfp: cand block 0 <- ref block 0",
                           "parent.kfp: cand block 1 <- ref block 3")


def _rewrite(src: Path, out: Path, *, meta: dict[str, str] | None = None,
             drop: str | None = None) -> Path:
    tensors = load_file(str(src))
    with src.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        old = json.loads(f.read(n))["__metadata__"]
    if drop:
        del tensors[drop]
    save_file(tensors, str(out), metadata={**old, **(meta or {})})
    return out


@pytest.mark.parametrize(("change", "message"), [
    ({"meta": {"version": "99"}}, "format version '99' is not supported"),
    ({"meta": {"hashes": "{not json"}}, "field 'hashes' missing or not JSON"),
    ({"meta": {"vocab": "[1, 2]"}}, "field 'vocab' must map tokens"),
    ({"meta": {"sites": '[{"prefix": 3}]'}}, "sites[0] is malformed"),
    ({"drop": "kaifp.model.layers.1.mlp.down"}, "sketch for model.layers.1.mlp.down missing"),
    ({"drop": "kaifp.coords"}, "no valid kaifp.coords"),
    ({"meta": {"subs": '{"x": 3}'}}, "subs entry 'x' is malformed"),
    ({"drop": "kaifp.rows.model.layers.0.self_attn.q_proj.weight"},
     "index 'kaifp.rows.model.layers.0.self_attn.q_proj.weight' missing or malformed"),
    ({"drop": "kaifp.sub.model.layers.1.self_attn.o_proj.weight"},
     "sub-matrix for 'model.layers.1.self_attn.o_proj.weight' missing or mis-shaped"),
])
def test_corrupt_fingerprint_is_one_line(fingerprint: Path, tmp_path: Path,
                                         models: dict[str, Path], change: dict[str, object],
                                         message: str) -> None:
    bad = _rewrite(fingerprint, tmp_path / "bad.safetensors", **change)  # type: ignore[arg-type]
    with pytest.raises(KaiError) as err:
        check_independence(models["finetune"], [bad], stage_id="s", team_id="t")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(bad) in str(err.value)


def test_truncated_fingerprint_is_one_line(fingerprint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(fingerprint.read_bytes()[:-100])
    assert not is_fingerprint(bad)
    with pytest.raises(KaiError, match="truncated") as err:
        load_reference(bad)
    assert "\n" not in str(err.value)


def test_coordinates_out_of_range_are_refused(fingerprint: Path, tmp_path: Path) -> None:
    tensors = load_file(str(fingerprint))
    tensors["kaifp.coords"] = np.full_like(tensors["kaifp.coords"], 10_000)
    with fingerprint.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    save_file(tensors, str(tmp_path / "c.safetensors"), metadata=meta)
    with pytest.raises(KaiError, match="coordinates do not fit"):
        load_reference(tmp_path / "c.safetensors")


def test_attention_is_compared_against_the_fingerprint(models: dict[str, Path],
                                                      fingerprint: Path) -> None:
    """Version 2 keeps a seeded sub-matrix of every attention matrix: same evidence kind."""
    fine = check_independence(models["finetune"], [fingerprint], stage_id="s", team_id="t")
    att = {e.component: e for e in fine.evidence if e.component.endswith(".attention")}
    assert att and all(e.verdict == "derived" and "correlation" in e.test.split("+")
                       for e in att.values())
    other = check_independence(models["independent"], [fingerprint], stage_id="s", team_id="t")
    att = {e.component: e for e in other.evidence if e.component.endswith(".attention")}
    assert att and all(e.verdict == "no_evidence" for e in att.values())


def test_large_matrices_keep_a_bounded_seeded_sub_matrix(tmp_path: Path) -> None:
    from kaieval.provenance.fingerprint import SUB_ROWS, SUB_UNITS

    rng = np.random.default_rng(4)
    q = "model.layers.0.self_attn.q_proj.weight"
    base = rng.standard_normal((700, 600)).astype(np.float32)
    for name, w in (("ref", base), ("fine", base + 0.5 * rng.standard_normal(base.shape)),
                    ("other", rng.standard_normal(base.shape))):
        (tmp_path / name).mkdir()
        save_file({q: w.astype(np.float32), "model.norm.weight": np.ones(600, np.float32)},
                  str(tmp_path / name / "model.safetensors"))
    fp = write_fingerprint(tmp_path / "ref", tmp_path / "ref.kfp.safetensors")
    ref = load_reference(fp)
    assert ref.subs is not None and ref.subs[q].plan.cut
    assert ref.weights.tensors[f"kaifp.sub.{q}"].shape == (SUB_ROWS, SUB_UNITS)
    fine = check_independence(tmp_path / "fine", [fp], stage_id="s", team_id="t")
    ev = next(e for e in fine.evidence if e.component == "block.0.attention")
    assert ev.verdict == "derived" and f"{SUB_ROWS}-row x {SUB_UNITS}-unit" in ev.detail
    folder = check_independence(tmp_path / "fine", [tmp_path / "ref"], stage_id="s",
                                team_id="t")
    assert folder.verdict == fine.verdict
    other = check_independence(tmp_path / "other", [fp], stage_id="s", team_id="t")
    assert next(e for e in other.evidence
                if e.component == "block.0.attention").verdict == "no_evidence"


def test_version_1_fingerprints_are_still_read(fingerprint: Path, tmp_path: Path,
                                               models: dict[str, Path]) -> None:
    """A v1 file (no sub-matrices) loads; attention is then not compared, as before."""
    tensors = {k: v for k, v in load_file(str(fingerprint)).items()
               if not k.startswith(("kaifp.sub.", "kaifp.rows.", "kaifp.cols."))}
    with fingerprint.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    del meta["subs"]
    old = tmp_path / "v1.safetensors"
    save_file(tensors, str(old), metadata={**meta, "version": "1"})
    assert load_reference(old).subs is None
    v = check_independence(models["finetune"], [old], stage_id="s", team_id="t")
    assert v.verdict == "derived"
    assert all(e.verdict == "inconclusive" for e in v.evidence
               if e.component.endswith(".attention"))
