"""Tokenizer lineage on real tokenizers trained here (byte-level BPE and SentencePiece):
copies, extensions and truncated-then-extended vocabularies are found; a tokenizer trained
independently on the same kind of text is not; bad files are one-line errors; the bundled
null is what its recorded recipe rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaieval.errors import KaiError
from kaieval.provenance.tokenizer_lineage import (
    BASELINE_FILE,
    BASELINE_RECIPE,
    STATISTICS,
    build_baseline,
    compare_tokenizers,
    lineage_evidence,
    load_baseline,
    read_tokenizer,
    train_bpe,
)
from kaieval.synth.corpus import corpus_text


@pytest.fixture(scope="module")
def toks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("toks")
    ref = train_bpe(corpus_text("train", 80000, seed=1), 1000, root / "ref.json")
    other = train_bpe(corpus_text("train", 80000, seed=2), 1000, root / "independent.json")
    data = json.loads(ref.read_text(encoding="utf-8"))
    # extended: the reference plus added (non-special) tokens at new ids
    ext = json.loads(json.dumps(data))
    next_id = 1 + max(ext["model"]["vocab"].values())
    ext["added_tokens"] = list(ext["added_tokens"]) + [
        {"id": next_id + i, "content": w, "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": False}
        for i, w in enumerate(["파운데이션모델", "소버린", "kaieval", "토크나이저확장"])]
    (root / "extended").mkdir()
    (root / "extended" / "tokenizer.json").write_text(json.dumps(ext), encoding="utf-8")
    # truncated then re-extended: last 60 merges dropped, 40 foreign tokens appended
    cut = json.loads(json.dumps(data))
    dropped = {a + b for a, b in (m if isinstance(m, list) else m.split(" ", 1)
                                  for m in cut["model"]["merges"][-60:])}
    cut["model"]["merges"] = cut["model"]["merges"][:-60]
    vocab = {t: i for t, i in cut["model"]["vocab"].items() if t not in dropped}
    foreign = json.loads(other.read_text(encoding="utf-8"))["model"]["vocab"]
    new = [t for t in sorted(foreign, key=foreign.__getitem__) if t not in vocab][-40:]
    start = 1 + max(vocab.values())
    vocab.update({t: start + i for i, t in enumerate(new)})
    cut["model"]["vocab"] = vocab
    (root / "modified.json").write_text(json.dumps(cut), encoding="utf-8")
    return {"ref": ref, "independent": other, "extended": root / "extended",
            "modified": root / "modified.json", "root": root}


def test_copy_is_identical(toks: dict[str, Path]) -> None:
    res = compare_tokenizers(toks["ref"], toks["ref"])
    assert res.verdict == "identical" and res.reference_contained
    assert res.jaccard.value == res.identical_ids.value == res.order_prefix.value == 1.0
    assert res.p_value == res.identical_ids.p_value <= 0.01
    record = json.loads(json.dumps(res.to_dict()))
    assert record["verdict"] == "identical" and len(record["tests"]) == len(STATISTICS)
    assert record["candidate"]["sha256"] == record["reference"]["sha256"]


def test_added_tokens_are_extended(toks: dict[str, Path]) -> None:
    res = compare_tokenizers(toks["extended"], toks["ref"])
    assert res.verdict == "extended", res.reason
    assert "adds 4" in res.reason


def test_modified_vocabulary_beats_the_null(toks: dict[str, Path]) -> None:
    res = compare_tokenizers(toks["modified"], toks["ref"])
    assert not res.reference_contained
    assert res.verdict == "derived, reordered", res.reason
    for t in res.tests[1:]:  # jaccard is context only
        assert t.p_value <= 0.01 and t.value > t.null_max, t
    assert res.order_rank_correlation > 0.99


def test_independent_tokenizer_is_not_flagged(toks: dict[str, Path]) -> None:
    res = compare_tokenizers(toks["independent"], toks["ref"])
    assert res.verdict == "independent", res.reason
    assert res.identical_ids.p_value > 0.01 and res.order_prefix.p_value > 0.01
    assert res.jaccard.value > 0.5  # same language: large overlap, which is why ids/order matter
    line = lineage_evidence(res, "ref")
    assert line.verdict == "no_evidence" and line.component == "tokenizer"
    assert line.p_value == res.p_value == min(t.p_value for t in res.tests[1:])
    derived = lineage_evidence(compare_tokenizers(toks["modified"], toks["ref"]), "ref")
    assert derived.verdict == "derived" and "derived, reordered" in derived.detail


def test_sentencepiece_model(toks: dict[str, Path]) -> None:
    spm = pytest.importorskip("sentencepiece")
    root = toks["root"]
    text = root / "corpus.txt"
    text.write_text(corpus_text("train", 60000, seed=3), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(root / "sp"),
                                   vocab_size=600, model_type="bpe", character_coverage=1.0,
                                   minloglevel=2)
    facts = read_tokenizer(root / "sp.model")
    assert facts.format == "SentencePiece" and facts.kind == "bpe" and len(facts.order) > 100
    assert compare_tokenizers(root / "sp.model", root / "sp.model").verdict == "identical"
    cross = compare_tokenizers(root / "sp.model", toks["ref"])
    assert cross.verdict in ("independent", "inconclusive")
    assert cross.shared_tokens > 100  # byte-level strings were decoded back to Korean text
    assert cross.identical_ids.p_value > 0.01


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A reference BPE and its relatives, written the way real families are."""
    import tokfiles as tf

    root = tmp_path_factory.mktemp("family")
    text = tf.korean(90000, 21)
    ref = tf.train_bpe(text, 1000, root / "ref.json")
    return {
        "ref": ref,
        "extended": tf.train_bpe(text, 1400, root / "extended.json"),  # same run, more merges
        "shifted": tf.write_shifted(ref, root / "shifted.json", controls=7),
        "permuted": tf.write_permuted(ref, root / "permuted.json", seed=5),
        "pruned": tf.write_pruned(ref, root / "pruned.json", drop=150),
        "independent": tf.train_bpe(tf.korean(90000, 22), 1000, root / "independent.json"),
        "folder": tf.write_bpe_folder(ref, root / "folder"),
        "tiktoken": tf.write_tiktoken(ref, root / "ref.tiktoken"),
    }


@pytest.mark.parametrize("name, verdict", [
    ("ref", "identical"), ("folder", "identical"), ("tiktoken", "identical"),
    ("extended", "extended"), ("shifted", "extended, shifted"),
    ("permuted", "derived, reordered"), ("pruned", "derived, reordered"),
    ("independent", "independent"),
])
def test_family_verdicts(family: dict[str, Path], name: str, verdict: str) -> None:
    res = compare_tokenizers(family[name], family["ref"])
    assert res.verdict == verdict, (res.reason, [(t.name, t.value, t.p_value)
                                                 for t in res.tests])
    if verdict == "independent":
        assert res.p_value > 0.01
        assert res.test("order_kept").p_value > 0.01
    else:
        assert res.p_value <= 0.01  # every lineage verdict beats the independent null
    if verdict == "extended, shifted":
        assert res.id_offset == 7 and res.test("id_offset_share").value == 1.0
        assert "+7" in res.reason and "special tokens differ: 7" in res.reason
    if name == "permuted":
        assert res.test("order_kept").value == 1.0 and res.order_rank_correlation == 1.0
        assert res.identical_ids.value < 0.05  # the ids say nothing: the order does
    if name == "pruned":
        assert res.test("order_kept").value == 1.0 and res.shared_of_reference > 0.8


def test_reverse_of_pruned_is_extended(family: dict[str, Path]) -> None:
    assert compare_tokenizers(family["ref"], family["pruned"]).verdict == "extended"


def test_cli_lineage_several_refs_and_json(family: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kaieval.cli import app

    out = tmp_path / "lineage.json"
    res = CliRunner().invoke(app, ["tokenizer-lineage", str(family["shifted"]), "--ref",
                                   str(family["ref"]), "--ref", str(family["independent"]),
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "EXTENDED, SHIFTED" in res.output and "INDEPENDENT" in res.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["format"] == "kaieval/tokenizer-lineage/v1"
    assert [c["verdict"] for c in data["comparisons"]] == ["extended, shifted", "independent"]
    assert data["comparisons"][0]["candidate"]["special"] == 10


@pytest.mark.parametrize("content, match", [
    (b"{not json", "not valid JSON"),
    (b'{"version": "1.0"}', "no 'model' object"),
    (b'{"model": {"type": "BPE", "vocab": {"a": 0, "a": 1}, "merges": []}}', "duplicate token"),
    (b'{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}', "'b', which is not"),
    (b'{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}}', r"merges\[0\]"),
    (b'{"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}}', "not an integer id"),
])
def test_malformed_tokenizer_json(tmp_path: Path, content: bytes, match: str) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_bytes(content)
    with pytest.raises(KaiError, match=match) as err:
        read_tokenizer(tmp_path)
    assert "\n" not in str(err.value) and str(err.value).startswith(str(bad))


def test_not_a_sentencepiece_model(tmp_path: Path) -> None:
    pytest.importorskip("sentencepiece")
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"\x00\x01 this is not a protobuf \xff")
    with pytest.raises(KaiError, match=r"tried .*SentencePiece") as err:
        compare_tokenizers(bad, bad)
    assert "\n" not in str(err.value)


def test_missing_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(KaiError, match=r"no tokenizer in the folder"):
        read_tokenizer(tmp_path)


def test_bundled_baseline_rebuilds_from_its_recipe(tmp_path: Path) -> None:
    """Rebuild the first four tokenizers of the recipe; their six pairs must equal the
    bundled values at the same (i, j) positions of the 30-tokenizer list."""
    from importlib import resources

    bundled = load_baseline()
    meta = json.loads(resources.files("kaieval.provenance").joinpath(
        "data", BASELINE_FILE).read_text(encoding="utf-8"))
    assert meta["recipe"] == BASELINE_RECIPE
    n = BASELINE_RECIPE["n_tokenizers"]
    assert all(len(bundled[k]) == n * (n - 1) // 2 for k in STATISTICS)
    small = build_baseline(tmp_path, **{**BASELINE_RECIPE, "n_tokenizers": 4})
    pos = 0
    index = {}
    for i in range(n):
        for j in range(i + 1, n):
            index[(i, j)] = pos
            pos += 1
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    for k in STATISTICS:
        assert small[k] == [bundled[k][index[p]] for p in pairs]
