"""``kai provenance``'s tokenizer line: the same verdict, evidence and p-value as ``kai
tokenizer-lineage`` on the model folders' tokenizers, in any format the loader reads;
"not measured" where a side has none; the weight verdict untouched by it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import tokfiles as tf
from kaieval.provenance import check_independence
from kaieval.provenance.tokenizer_lineage import compare_tokenizers, lineage_evidence
from kaieval.records import ComponentEvidence, IndependenceVerdict, record_from_json

NAMES = [f"model.layers.{b}.{p}.weight" for b in range(2)
         for p in ("self_attn.q_proj", "self_attn.v_proj", "mlp.up_proj", "mlp.down_proj")]


def _weights(folder: Path, seed: int, base: dict[str, np.ndarray] | None = None,
             ) -> dict[str, np.ndarray]:
    """Small float tensors: fresh from ``seed``, or ``base`` plus 5 % noise (a fine-tune)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in NAMES:
        shape = (64, 32) if "up_proj" in name else (32, 64) if "down_proj" in name else (32, 32)
        x = rng.standard_normal(shape).astype(np.float32)
        out[name] = x if base is None else base[name] + 0.05 * x
    folder.mkdir(parents=True, exist_ok=True)
    save_file(out, str(folder / "model.safetensors"))
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokrow")
    toks = root / "toks"
    toks.mkdir()
    ref_json = tf.train_bpe(tf.korean(60000, 1), 900, toks / "ref.json")
    other_json = tf.train_bpe(tf.korean(60000, 2), 900, toks / "other.json")
    out = {k: root / k for k in ("parent", "finetune", "shifted", "bpe_folder", "independent",
                                 "no_tokenizer", "broken")}
    base = _weights(out["parent"], 0)
    shutil.copy(ref_json, out["parent"] / "tokenizer.json")
    for k in ("finetune", "shifted", "bpe_folder", "no_tokenizer", "broken"):
        _weights(out[k], 1, base)
    shutil.copy(ref_json, out["finetune"] / "tokenizer.json")
    tf.write_shifted(ref_json, out["shifted"] / "tokenizer.json", 3)
    tf.write_bpe_folder(ref_json, out["bpe_folder"])  # vocab.json + merges.txt, no .json
    # a broken tokenizer.json stops the whole check (the embedding rows are aligned by
    # it); any other unreadable tokenizer only leaves the tokenizer line unmeasured
    (out["broken"] / "tokenizer.model").write_bytes(b"\x0a\x05not a model")
    _weights(out["independent"], 2)
    shutil.copy(other_json, out["independent"] / "tokenizer.json")
    return out


def _check(folders: dict[str, Path], cand: str) -> IndependenceVerdict:
    return check_independence(folders[cand], [folders["parent"]], stage_id="s", team_id=cand,
                              permutations=99)


def _line(v: IndependenceVerdict) -> ComponentEvidence:
    lines = [e for e in v.evidence if e.component == "tokenizer"]
    assert len(lines) == 1 and lines[0].reference == "parent"
    return lines[0]


@pytest.mark.parametrize(("cand", "lineage", "word"), [
    ("finetune", "identical", "derived"),
    ("shifted", "extended, shifted", "derived"),
    ("bpe_folder", "identical", "derived"),  # the same BPE as vocab.json + merges.txt
    ("independent", "independent", "no_evidence"),
])
def test_tokenizer_line_is_kai_tokenizer_lineage(folders: dict[str, Path], cand: str,
                                                 lineage: str, word: str) -> None:
    v = _check(folders, cand)
    line = _line(v)
    same = lineage_evidence(compare_tokenizers(folders[cand], folders["parent"]), "parent")
    assert line == same
    assert (line.lineage, line.verdict, line.test) == (lineage, word, "tokenizer_lineage")
    assert line.p_value is not None and line.p_value <= (1.0 if word == "no_evidence" else 0.01)
    assert v.settings["tokenizer_lineage"]["in_verdict"] is False
    assert record_from_json(v.model_dump(mode="json")) == v


def test_weight_verdict_ignores_the_tokenizer(folders: dict[str, Path]) -> None:
    """A fine-tune is derived whatever its tokenizer; an identical tokenizer on independent
    weights is still no evidence of weight reuse."""
    assert _check(folders, "shifted").verdict == "derived"
    assert _check(folders, "no_tokenizer").verdict == "derived"
    ind = check_independence(folders["independent"], [folders["parent"]], stage_id="s",
                             team_id="t", permutations=99)
    assert ind.verdict == "no_evidence"
    assert "tokenizer" not in ind.summary


@pytest.mark.parametrize(("cand", "why"), [
    ("no_tokenizer", "candidate: .*no tokenizer in the folder"),
    ("broken", "candidate: .*tokenizer.model: .*tried"),
])
def test_missing_or_unreadable_tokenizer_is_not_measured(folders: dict[str, Path], cand: str,
                                                         why: str) -> None:
    v = _check(folders, cand)
    line = _line(v)
    assert (line.lineage, line.verdict, line.p_value) == ("not measured", "inconclusive", None)
    assert line.detail.startswith("tokenizer not measured: ")
    assert re.search(why, line.detail), line.detail


def test_tokenizer_files_are_hashed_into_the_record(folders: dict[str, Path]) -> None:
    v = _check(folders, "bpe_folder")
    assert {"candidate/vocab.json", "candidate/merges.txt"} <= set(v.input_hashes)
    assert "reference/parent/tokenizer.json" in v.input_hashes
