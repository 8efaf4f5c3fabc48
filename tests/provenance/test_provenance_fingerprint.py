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
from kaieval.provenance.safetensors_io import read_header


@pytest.fixture(scope="module")
def fingerprint(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fingerprint(models["parent"], tmp_path_factory.mktemp("fp") / "parent.kfp"
                             ".safetensors")


def test_fingerprint_holds_what_tests_need_not_the_weights(models: dict[str, Path],
                                                           fingerprint: Path) -> None:
    assert is_fingerprint(fingerprint) and not is_fingerprint(models["parent"])
    names = set(read_header(fingerprint))
    weights = open_model(models["parent"])
    assert not any("q_proj" in n or n.endswith("up_proj.weight") for n in names)
    assert {n for n in weights.names() if "norm" in n and "/" not in n} <= names
    assert "kaifp.model.layers.3.mlp.gate" in names and "kaifp.coords" in names
    ref = load_reference(fingerprint)
    assert ref.fingerprint and len(ref.sites) == 4 and ref.vocab is not None
    assert ref.hashes() == load_reference(models["parent"]).hashes()  # exact reuse still works
    with fingerprint.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    assert meta["format"] == FORMAT and meta["version"] == "1"
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
