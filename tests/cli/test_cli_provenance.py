"""`kai provenance` as a user runs it, on real tiny Llama checkpoints built here.

Models (transformers ``LlamaForCausalLM``, hidden 32, 2 layers, saved as safetensors):
``parent`` (seed 0), ``finetune`` (parent + small Gaussian noise on every weight, so it
is derived but not byte-identical) and ``independent`` (seed 1, same architecture).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kaieval.cli import app
from kaieval.records import IndependenceVerdict

runner = CliRunner()
NOISE = 0.002  # init std is 0.02: a "fine-tune" that moved every weight by ~10 %


def _save_llama(seed: int, out: Path, *, noise_seed: int | None = None) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=32, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(100 + seed)
        for name, p in model.named_parameters():
            if "norm" in name:  # trained-looking norms: not all exactly 1.0
                p.copy_(1.0 + 0.05 * torch.randn(p.shape, generator=gen))
        if noise_seed is not None:
            gen = torch.Generator().manual_seed(noise_seed)
            for p in model.parameters():
                p.add_(NOISE * torch.randn(p.shape, generator=gen))
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prov_cli")
    return {
        "parent": _save_llama(0, root / "parent"),
        "finetune": _save_llama(0, root / "finetune", noise_seed=7),
        "independent": _save_llama(1, root / "independent"),
    }


def _errors(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


def test_help_lists_check_and_fingerprint() -> None:
    res = runner.invoke(app, ["provenance", "--help"])
    assert res.exit_code == 0, res.output
    assert "check" in res.output and "fingerprint" in res.output
    assert "CANDIDATE --ref REF" in res.output


def test_options_before_the_candidate_still_reach_the_check(tmp_path: Path) -> None:
    """The default-command group: a leading option is not taken for a sub-command name."""
    res = runner.invoke(app, ["provenance", "--alpha", "0.05", str(tmp_path / "nope"),
                              "--ref", str(tmp_path)])
    assert res.exit_code == 2
    errs = _errors(res.output)
    assert len(errs) == 1 and "no such model" in errs[0], res.output


def test_derived_candidate_table_and_json(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "verdict.json"
    res = runner.invoke(app, ["provenance", str(models["finetune"]), "--ref",
                              str(models["parent"]), "--json", str(out), "--seed", "11",
                              "--stage", "stage1", "--team", "teamx"],
                        env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    for header in ("component", "reference", "test", "effect", "p-value", "evidence",
                   "coverage"):
        assert header in res.output
    assert "Verdict: derived" in res.output
    # the plain sentence comes first, before the table
    assert res.output.index("Compared ") < res.output.index("Independence evidence")
    assert "derived by training" in res.output
    assert "Holm" in res.output and "alpha = 0.01" in res.output
    assert "against the listed references only (parent)" in res.output
    v = IndependenceVerdict.model_validate_json(out.read_text())
    assert v.verdict == "derived"
    assert (v.stage_id, v.team_id, v.references) == ("stage1", "teamx", ("parent",))
    assert v.settings["permutation_seed"] == 11
    blocks = [e for e in v.evidence if e.component.startswith("block.")]
    assert blocks and all(e.verdict == "derived" for e in blocks)
    assert all(e.p_value is not None and e.p_value < 0.01 for e in blocks)
    # every evidence row is printed, with its component name
    assert all(e.component in res.output for e in v.evidence)
    if any(e.p_value == 0.0 for e in v.evidence):  # underflow: shown from the engine's log10 p
        assert re.search(r"1e-\d{3,}", res.output), res.output


def test_independent_candidate_is_no_evidence(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "verdict.json"
    res = runner.invoke(app, ["provenance", "check", str(models["independent"]), "--ref",
                              str(models["parent"]), "--json", str(out)])
    assert res.exit_code == 0, res.output  # a verdict is a measurement, not a failure
    assert "Verdict: no_evidence" in res.output
    v = IndependenceVerdict.model_validate_json(out.read_text())
    assert v.verdict == "no_evidence"
    assert v.team_id == "independent"
    assert not any(e.verdict == "derived" for e in v.evidence if e.component != "tokenizer")
    # the shared tokenizer is reported beside the weights, with its lineage verdict
    tok = next(e for e in v.evidence if e.component == "tokenizer")  # these folders have none
    assert (tok.lineage, tok.verdict, tok.p_value) == ("not measured", "inconclusive", None)


def test_tokenizer_line_beside_the_weights(models: dict[str, Path], tmp_path: Path) -> None:
    """Independent weights shipping the parent's tokenizer with 3 control tokens in front,
    as vocab.json + merges.txt: the tokenizer line says so (the code of kai
    tokenizer-lineage); the weight verdict stays no_evidence."""
    import shutil

    import tokfiles as tf

    ref_json = tf.train_bpe(tf.korean(40000, 1), 600, tmp_path / "ref.json")
    shifted = tf.write_shifted(ref_json, tmp_path / "shifted.json", 3)
    for name, tok in (("parent", ref_json), ("independent", shifted)):
        shutil.copytree(models[name], tmp_path / name)
        tf.write_bpe_folder(tok, tmp_path / name)
    out = tmp_path / "v.json"
    res = runner.invoke(app, ["provenance", str(tmp_path / "independent"), "--ref",
                              str(tmp_path / "parent"), "--json", str(out)])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "Verdict: no_evidence" in flat and "do not enter the verdict above" in flat
    assert "Holm-corrected across the 7 tested" in flat  # the weight lines only
    v = IndependenceVerdict.model_validate_json(out.read_text())
    tok = next(e for e in v.evidence if e.component == "tokenizer")
    assert (tok.lineage, tok.verdict) == ("extended, shifted", "derived")
    assert tok.p_value is not None and tok.p_value < 0.01


def test_two_references_and_same_seed_reproduces(models: dict[str, Path],
                                                 tmp_path: Path) -> None:
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    for out in outs:
        res = runner.invoke(app, ["provenance", str(models["finetune"]), "--ref",
                                  str(models["independent"]), "--ref", str(models["parent"]),
                                  "--json", str(out), "--details"],
                             env={"COLUMNS": "160"})  # wide enough that no cell wraps
        assert res.exit_code == 0, res.output
    a, b = (IndependenceVerdict.model_validate_json(p.read_text()) for p in outs)
    assert a.verdict == "derived" and a.references == ("independent", "parent")
    assert "vs parent:" in res.output  # --details prints the engine's evidence lines
    assert a.content_hash() == b.content_hash()
    # both references appear in the table's reference column
    rows = [ln for ln in res.output.splitlines() if "block.0.mlp" in ln and "│" in ln]
    assert any("parent" in r for r in rows) and any("independent" in r for r in rows)


def test_table_comes_from_evidence_fields(models: dict[str, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The command prints the record's fields; the prose ``detail`` is shown only on request."""
    import kaieval.provenance
    from kaieval.records import ComponentEvidence

    misleading = "vs elsewhere: 99 tensor(s) byte-identical; Fisher chi2=1.0 df=2 log10 p=-5.0"
    ev = ComponentEvidence(component="block.0.mlp", verdict="derived",
                           test="exact_reuse+correlation", statistic=1.0, p_value=0.0,
                           log10_p=-812.4, detail=misleading, reference="other",
                           tensors_copied=3, tensors_correlated=2, fisher_chi2=55.55,
                           fisher_df=4, fisher_log10_p=-812.4)
    verdict = IndependenceVerdict(stage_id="s1", team_id="t", source="measured",
                                  verdict="derived", references=("parent", "other"),
                                  alpha=0.01, evidence=(ev,), summary="summary")
    monkeypatch.setattr(kaieval.provenance, "check_independence", lambda *a, **k: verdict)
    for details in (False, True):
        res = runner.invoke(app, ["provenance", str(models["finetune"]), "--ref",
                                  str(models["parent"]), *(["--details"] * details)],
                            env={"COLUMNS": "160"})
        assert res.exit_code == 0, res.output
        row = next(ln for ln in res.output.splitlines() if "block.0.mlp" in ln and "│" in ln)
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells == ["block.0.mlp", "other", "exact_reuse + correlation", "+1.000",
                         "1e-812", "derived", "compared"]
        assert ("vs elsewhere" in res.output) is details


def _bad(tmp_path: Path, models: dict[str, Path]) -> dict[str, list[str]]:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    src = (models["parent"] / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(src[:4096])  # truncated: offsets out of range
    code = tmp_path / "code"
    code.mkdir()
    (code / "model.safetensors").write_bytes(src)
    (code / "modeling_evil.py").write_text("raise SystemExit('executed!')\n")
    ref = str(models["parent"])
    return {
        "missing": [str(tmp_path / "nope"), "--ref", ref],
        "missing_ref": [ref, "--ref", str(tmp_path / "nope")],
        "pickle": [str(pickled), "--ref", ref],
        "corrupt": [str(corrupt), "--ref", ref],
        "remote_code": [str(code), "--ref", ref],
        "alpha": [ref, "--ref", ref, "--alpha", "1.5"],
        "json_dir": [ref, "--ref", ref, "--json", str(tmp_path / "no" / "v.json")],
    }


def test_bad_input_is_one_line_exit_2(models: dict[str, Path], tmp_path: Path) -> None:
    for case, args in _bad(tmp_path, models).items():
        res = runner.invoke(app, ["provenance", *args])
        assert res.exit_code == 2, (case, res.output)
        assert "Traceback" not in res.output, case
        assert len(_errors(res.output)) == 1, (case, res.output)
        assert "executed!" not in res.output
        words = {"pickle": "pickle", "remote_code": "repository code", "alpha": "--alpha",
                 "missing": "no such", "json_dir": "--json"}
        if case in words:
            assert words[case] in _errors(res.output)[0], res.output


def test_bad_input_through_the_real_process(models: dict[str, Path], tmp_path: Path) -> None:
    """The installed entry point: stderr is exactly one line, stdout empty, exit 2."""
    args = _bad(tmp_path, models)["corrupt"]
    kai = Path(sys.executable).parent / "kai"  # the console script pip installed
    proc = subprocess.run([str(kai), "provenance", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "corrupt" in lines[0]


def test_url_candidate_without_blackbox_or_controls_is_a_clear_error(
        models: dict[str, Path]) -> None:
    res = runner.invoke(app, ["provenance", "http://127.0.0.1:9/v1", "--ref",
                              str(models["parent"])])
    assert res.exit_code == 2
    errs = _errors(res.output)
    assert len(errs) == 1
    assert "not available" in errs[0] or "--control" in errs[0]


@pytest.mark.skipif(importlib.util.find_spec("kaieval.provenance.fingerprint") is None,
                    reason="kaieval.provenance.fingerprint (helper B) is not in this checkout")
def test_fingerprint_writes_a_file_usable_as_reference(models: dict[str, Path],
                                                       tmp_path: Path) -> None:
    fp = tmp_path / "parent.fp.safetensors"
    res = runner.invoke(app, ["provenance", "fingerprint", str(models["parent"]), "-o",
                              str(fp)])
    assert res.exit_code == 0, res.output
    assert fp.is_file() and fp.stat().st_size > 0
    weights = (models["parent"] / "model.safetensors").stat().st_size
    assert fp.stat().st_size < weights  # a fingerprint, not a copy of the weights
    out = tmp_path / "v.json"
    res = runner.invoke(app, ["provenance", str(models["finetune"]), "--ref", str(fp),
                              "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["verdict"] == "derived"


def test_fingerprint_bad_input_is_one_line(models: dict[str, Path], tmp_path: Path) -> None:
    for args, word in (([str(tmp_path / "nope"), "-o", str(tmp_path / "x.safetensors")],
                        "no such"),
                       ([str(models["parent"]), "-o", str(tmp_path / "x.fp")], ".safetensors")):
        res = runner.invoke(app, ["provenance", "fingerprint", *args])
        assert res.exit_code == 2, res.output
        errs = _errors(res.output)
        assert len(errs) == 1 and word in errs[0], res.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_endpoint_candidate_runs_the_black_box_test(tmp_path: Path) -> None:
    """A real endpoint on 127.0.0.1 serving a copy of the reference, four unrelated
    controls."""
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from openai_server import LocalOpenAIServer, build_tiny_model

    ref = build_tiny_model(tmp_path / "reference", seed=10)
    served = tmp_path / "served"
    shutil.copytree(ref, served)
    controls = [build_tiny_model(tmp_path / f"control{k}", seed=10 + k) for k in (1, 2, 3, 4)]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "lang": "ko", "prompt": p}) + "\n"
                               for i, p in enumerate(["대한민국의 수도는", "오늘 날씨가",
                                                      "인공지능 모델을", "서울에서 부산까지",
                                                      "한국어 문장을", "가장 중요한 것은",
                                                      "학생들은 학교에서", "경제 성장률이"])),
                       encoding="utf-8")
    out = tmp_path / "bb.json"
    server = LocalOpenAIServer(served, name="cand")
    try:
        res = runner.invoke(app, ["provenance", f"{server.base_url}#cand", "--ref", str(ref),
                                  "--control", str(controls[0]), "--control", str(controls[1]),
                                  "--control", str(controls[2]), "--control", str(controls[3]),
                                  "--prompts", str(prompts), "--json", str(out), "--seed", "3"],
                            env={"COLUMNS": "160"})
    finally:
        server.close()
    assert res.exit_code == 0, res.output
    assert "Black-box evidence" in res.output and "Holm" in res.output
    assert "behavioural evidence of dependence on reference" in res.output
    data = json.loads(out.read_text())
    assert data["significant"] == ["reference"] and data["seed"] == 3
    (r,) = data["references"]
    assert data["mode"] == "logprobs" and data["top_k"] == 20 and r["p_holm"] <= 0.01
    by = {s["statistic"]: s for s in r["statistics"]}
    assert by["top1"]["mean_reference"] == 1.0  # the endpoint serves the reference's weights
    assert by["top1"]["effect"] > 0.3 and len(by["top1"]["per_prompt_reference"]) == 8
