"""End to end on real tiny Llama models: derived, no_evidence, partial, vocabularies, records."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from scipy import stats

from kaieval.errors import KaiError
from kaieval.provenance import check_independence, exact_reuse, open_model, read_vocab
from kaieval.provenance.tensor_groups import is_language_model, is_norm
from kaieval.provenance.weight_tests import compare_tensor
from kaieval.records import ComponentEvidence, IndependenceVerdict, record_from_json


def _check(models: dict[str, Path], cand: str, *refs: str) -> IndependenceVerdict:
    return check_independence(models[cand], [models[r] for r in refs or ("parent",)],
                              stage_id="stage1", team_id=cand)


def _split(v: IndependenceVerdict) -> tuple[list[ComponentEvidence], list[ComponentEvidence]]:
    """Weight lines, and the tokenizer lines (one per reference) that sit beside them."""
    return ([e for e in v.evidence if e.component != "tokenizer"],
            [e for e in v.evidence if e.component == "tokenizer"])


def _by_component(v: IndependenceVerdict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in v.evidence:
        out.setdefault(e.component, []).append(e.verdict)
    return out


def test_finetune_is_derived(models: dict[str, Path]) -> None:
    v = _check(models, "finetune")
    assert v.verdict == "derived"
    assert v.source == "measured" and v.references == ("parent",) and v.alpha == 0.01
    lm = [e for e in v.evidence if is_language_model(e.component)]
    assert len(lm) == 10 and all(e.verdict == "derived" for e in lm)
    assert all(e.statistic is not None and e.statistic > 0.9 for e in lm)
    assert "parent" in v.summary and v.summary.count(".") >= 1
    assert "log10 p=" in lm[0].detail and "vs parent" in lm[0].detail
    assert "unit_clt" in lm[0].detail
    assert {"candidate/model.safetensors", "candidate/tokenizer.json",
            "reference/parent/model.safetensors",
            "reference/parent/vision_encoder/model.safetensors"} <= set(v.input_hashes)
    assert v.settings["alpha"] == 0.01 and v.settings["permutation_seed"] == 20250804
    assert "embedding_shared_vocab" in v.settings["tests"]


def test_independent_same_architecture_is_no_evidence(models: dict[str, Path]) -> None:
    v = _check(models, "independent")
    assert v.verdict == "no_evidence"
    weights, (tok,) = _split(v)
    assert all(e.verdict == "no_evidence" for e in weights)
    # the same tokenizer A on independent weights: derived tokenizer, not weight reuse
    assert (tok.lineage, tok.verdict) == ("identical", "derived")
    assert "does not prove" in v.summary
    norms = next(e for e in v.evidence if e.component == "norms")
    m = re.search(r"raw cosine (\d\.\d+)-(\d\.\d+)", norms.detail)
    assert m and float(m.group(1)) > 0.95  # looks alike, raw...
    assert norms.p_value is not None and norms.p_value > 0.01  # ...but is not evidence
    assert "norm weights start at 1.0" in norms.detail


def test_null_p_values_are_not_piled_near_zero(models: dict[str, Path]) -> None:
    """Every same-name tensor of three independent pairs: p-values look uniform."""
    ps: list[float] = []
    for a, b in itertools.combinations(["parent", "independent", "naver"], 2):
        wa, wb = open_model(models[a]), open_model(models[b])
        for name in wa.names():
            if name in wb.tensors and "/" not in name:
                res = compare_tensor(wa, wb, name, rng=np.random.default_rng(len(ps)),
                                     norm=is_norm(name))
                assert res is not None
                ps.append(res.p_value)
    assert len(ps) == 3 * 39
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert np.mean(np.array(ps) < 0.01) < 0.05
    assert min(ps) > 0.01 / len(ps) / 10


def test_copied_vision_encoder_is_partial(models: dict[str, Path]) -> None:
    v = _check(models, "naver")
    assert v.verdict == "partial"
    assert "vision_encoder" in v.summary and "parent" in v.summary
    comps = _by_component(v)
    assert comps["vision_encoder"] == ["derived"]
    assert all(comps[c] == ["no_evidence"] for c in comps if is_language_model(c))
    ve = next(e for e in v.evidence if e.component == "vision_encoder")
    assert ve.test.startswith("exact_reuse") and "byte-identical" in ve.detail
    assert "vision_encoder/blocks.0.attn.qkv.weight" in ve.detail


def test_evidence_carries_its_figures_as_fields(models: dict[str, Path]) -> None:
    """Reference, copies, tensor counts and Fisher's test are fields: nobody parses detail."""
    v = _check(models, "naver")
    ve = next(e for e in v.evidence if e.component == "vision_encoder")
    assert ve.reference == "parent" and ve.detail.startswith("vs parent:")
    assert ve.tensors_copied is not None and ve.tensors_copied > 0
    assert f"{ve.tensors_copied} tensor(s) byte-identical" in ve.detail
    v = _check(models, "finetune")
    fished = [e for e in v.evidence if e.fisher_chi2 is not None]
    assert fished
    for e in fished:
        assert e.reference == "parent" and e.tensors_copied == 0
        assert e.tensors_correlated and e.fisher_df == 2 * e.tensors_correlated
        assert e.fisher_log10_p is not None and e.fisher_log10_p < 0
        assert f"{e.tensors_correlated} tensor(s), centred r mean" in e.detail
        assert f"Fisher chi2={e.fisher_chi2:.1f} df={e.fisher_df}" in e.detail
        if not e.sites_matched:  # the component's p is Fisher's alone
            assert e.log10_p == pytest.approx(e.fisher_log10_p)
    assert any(e.sites_matched for e in v.evidence if e.component.endswith(".mlp"))
    assert all(e.tensors_skipped is not None for e in _split(v)[0])


def test_evidence_stored_before_the_fields_still_loads() -> None:
    from kaieval.records import ComponentEvidence

    old = ComponentEvidence.model_validate({"component": "embeddings", "verdict": "derived",
                                            "test": "correlation", "p_value": 0.0,
                                            "detail": "vs parent: ..."})
    assert old.tensors_copied is None and old.fisher_chi2 is None and old.reference is None


def test_different_vocabulary_compares_shared_tokens(models: dict[str, Path]) -> None:
    cand_vocab = read_vocab(models["vocab_derived"] / "tokenizer.json")
    ref_vocab = read_vocab(models["parent"] / "tokenizer.json")
    shared = len(cand_vocab.keys() & ref_vocab.keys())
    assert shared == 181  # 180 "▁tok" = "Ġtok" after normalisation, plus <unk>
    fraction = f"{shared / len(cand_vocab):.0%} of the candidate's vocabulary shared"
    derived = _check(models, "vocab_derived")
    assert derived.verdict == "derived"
    for comp in ("embeddings", "head"):
        e = next(e for e in derived.evidence if e.component == comp)
        assert e.test == "embedding_shared_vocab" and e.verdict == "derived"
        assert fraction in e.detail and f"{shared * 64} elements" in e.detail
    indep = _check(models, "vocab_independent")
    assert indep.verdict == "no_evidence"
    emb = next(e for e in indep.evidence if e.component == "embeddings")
    assert emb.test == "embedding_shared_vocab" and fraction in emb.detail


def test_holm_across_references_names_the_source(models: dict[str, Path]) -> None:
    seen: list[tuple[int, int, str]] = []
    v = check_independence(models["finetune"], [models["independent"], models["parent"]],
                           stage_id="stage1", team_id="finetune",
                           progress=lambda d, t, label: seen.append((d, t, label)))
    # counted up in order; the norms come first, the longest single test (compare.schedule)
    assert [d for d, _, _ in seen] == list(range(1, 23)) and {t for _, t, _ in seen} == {22}
    assert seen[0][2] == "norms vs independent" and seen[11][2] == "norms vs parent"
    assert len({label for _, _, label in seen}) == 22  # every component, each reference
    assert v.verdict == "derived" and v.references == ("independent", "parent")
    assert "from parent" in v.summary
    weights, toks = _split(v)
    for e in weights:
        assert e.verdict == ("derived" if "vs parent" in e.detail else "no_evidence")
    # one tokenizer line per reference; all three share tokenizer A
    assert [(e.reference, e.lineage) for e in toks] == [("independent", "identical"),
                                                         ("parent", "identical")]


def test_nothing_comparable_is_inconclusive(tmp_path: Path, models: dict[str, Path]) -> None:
    rng = np.random.default_rng(0)
    save_file({"encoder.foo.weight": rng.standard_normal((16, 16)).astype(np.float32)},
              str(tmp_path / "model.safetensors"))
    v = check_independence(tmp_path, [models["parent"]], stage_id="s", team_id="t")
    assert v.verdict == "inconclusive"
    assert [e.verdict for e in v.evidence] == ["inconclusive", "inconclusive"]
    assert "absent" in v.evidence[0].detail
    assert v.evidence[1].lineage == "not measured"  # no tokenizer beside these weights


def test_record_is_deterministic_and_round_trips(models: dict[str, Path]) -> None:
    a, b = _check(models, "independent"), _check(models, "independent")
    assert a.content_hash() == b.content_hash()
    assert record_from_json(a.model_dump(mode="json")) == a
    assert a.natural_key() == "verdict/stage1/independent"


def test_bad_arguments_are_kai_errors(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(KaiError, match="no reference models"):
        check_independence(models["finetune"], [], stage_id="s", team_id="t")
    with pytest.raises(KaiError, match="alpha"):
        check_independence(models["finetune"], [models["parent"]], alpha=1.5, stage_id="s",
                           team_id="t")
    with pytest.raises(KaiError, match="no such model"):
        check_independence(tmp_path / "nope", [models["parent"]], stage_id="s", team_id="t")


def test_different_vocab_without_tokenizers_is_not_guessed(tmp_path: Path) -> None:
    """Rows are never paired by id when vocabularies differ and no tokenizer says how."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((300, 32)).astype(np.float32)
    for name, rows in (("ref", emb), ("cand", emb[:250])):
        (tmp_path / name).mkdir()
        save_file({"model.embed_tokens.weight": rows}, str(tmp_path / name / "model.safetensors"))
    v = check_independence(tmp_path / "cand", [tmp_path / "ref"], stage_id="s", team_id="t")
    assert v.verdict == "inconclusive"
    assert "no readable tokenizer pair (any format) to align rows" in v.evidence[0].detail


def test_no_evidence_quotes_detection_power_and_records_matching(
        models: dict[str, Path]) -> None:
    v = check_independence(models["independent"], [models["parent"]], stage_id="s",
                           team_id="t", detection_power="9 of 9 derived controls detected")
    assert v.verdict == "no_evidence"
    assert "Detection power: 9 of 9 derived controls detected." in v.summary
    m = v.settings["matching"]
    assert m["unit_cap"] == 256 and m["sketch_dim"] == 256 and m["seed"] == 20250804
    assert "identity" in m["residual_maps"]["parent"]
    mlp = next(e for e in v.evidence if e.component == "block.0.mlp")
    assert mlp.reference == "parent" and mlp.log10_p is not None
    assert "hidden_unit_matching" in mlp.test and "identity-order rho" in mlp.detail
    assert record_from_json(v.model_dump(mode="json")) == v
    old = v.model_dump(mode="json")  # records written before these fields still load
    old.pop("block_map")
    for e in old["evidence"]:
        e.pop("reference")
        e.pop("log10_p")
    assert record_from_json(old).verdict == "no_evidence"


def test_quick_hashes_prefilter_exact_reuse(models: dict[str, Path]) -> None:
    """Only tensors whose quick hashes collide are fully hashed; copies are still found."""
    from kaieval.provenance.weight_tests import collisions, hash_index, quick_index

    naver, parent = open_model(models["naver"]), open_model(models["parent"])
    want, ref_want = collisions(quick_index(naver), quick_index(parent))
    assert want and all(n.startswith("vision_encoder/") or "norm" in n for n in want)
    full = exact_reuse(hash_index(naver), hash_index(parent))
    quick = exact_reuse(hash_index(naver, want), hash_index(parent, ref_want))
    assert quick == full and len(full) == 3
    fine = open_model(models["finetune"])
    assert collisions(quick_index(fine), quick_index(parent))[0] == []


def test_checks_run_with_one_blas_thread() -> None:
    """The products are small; a second BLAS thread only spins against the hashing thread."""
    from threadpoolctl import threadpool_info

    from kaieval.provenance.verdict import _one_blas_thread

    @_one_blas_thread
    def inside(k: int) -> tuple[int, list[int]]:
        return k, [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    k, threads = inside(3)
    assert k == 3 and threads and set(threads) == {1}
