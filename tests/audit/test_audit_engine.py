"""``audit_dossier`` and ``kai audit`` end to end on real dossier folders."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kaieval.audit.engine import audit_dossier, load_verdict, pick_stage
from kaieval.audit.measures import MEASURES
from kaieval.cli import app
from kaieval.errors import KaiError
from kaieval.records import IndependenceVerdict, load_records_jsonl
from kaieval.spec.load import load_dossier, load_program
from kaieval.spec.program import Source

DossierWriter = Callable[..., Path]
runner = CliRunner()


def test_full_audit_scores_template_items(write_team: DossierWriter, tokenizer_dir: Path) -> None:
    prog, _ = load_program("k-ai-2025")
    rep = audit_dossier(load_dossier(write_team(), check_files=False), prog,
                        reference_tokenizer=tokenizer_dir)
    assert rep.stage_id == "selection"  # the only (and latest) stage submitted to
    assert {f.measure for f in rep.figures} == set(MEASURES)
    assert rep.flags == ()
    items = {(i.component_id, i.item_id): i for i in rep.items}
    assert len(items) == 10 and rep.not_scored == ()
    assert items[("sel_sovereign_audit", "domestic_compute")].points == pytest.approx(3.0)
    assert items[("sel_sovereign_audit", "compute_control")].points == pytest.approx(2.4)
    assert items[("sel_sovereign_audit", "domestic_serving")].source is Source.MEASURED
    assert items[("sel_ecosystem_audit", "open_releases")].points == pytest.approx(2.0)
    cpt = rep.figure("tokenizer.chars_per_token")
    assert cpt is not None and isinstance(cpt.value, float) and cpt.value > 0.3
    assert "round-trip 100.0%" in cpt.detail
    ratio = rep.figure("tokenizer.efficiency_vs_reference")
    assert ratio is not None and isinstance(ratio.value, float)
    assert 0 < ratio.value < 1  # 300-token vocabulary against a 400-token reference


def test_same_tokenizer_as_reference_is_ratio_one(write_team: DossierWriter) -> None:
    prog, _ = load_program("k-ai-2025")
    path = write_team()
    rep = audit_dossier(load_dossier(path, check_files=False), prog,
                        reference_tokenizer=path.parent / "model")
    fig = rep.figure("tokenizer.efficiency_vs_reference")
    assert fig is not None and fig.value == pytest.approx(1.0)


def test_malformed_tokenizer_is_a_flag_not_a_crash(write_team: DossierWriter) -> None:
    path = write_team(tokenizer=False)
    (path.parent / "model" / "tokenizer.json").write_text("{not json", "utf-8")
    prog, _ = load_program("k-ai-2025")
    rep = audit_dossier(load_dossier(path, check_files=False), prog)
    assert any(f.kind == "malformed" for f in rep.flags)
    fig = rep.figure("tokenizer.chars_per_token")
    assert fig is not None and fig.value is None


def test_missing_files_flagged_and_unmeasured_items_absent(write_team: DossierWriter) -> None:
    def edit(d: dict[str, Any]) -> None:
        sub = d["submissions"]["selection"]
        sub["technical_report"] = "reports/none.md"
        sub["compute"] = {}

    prog, _ = load_program("k-ai-2025")
    rep = audit_dossier(load_dossier(write_team(edit, licences={}), check_files=False), prog)
    missing = [f.message for f in rep.flags if f.kind == "missing_file"]
    assert any("reports/none.md" in m for m in missing)
    assert any("rel/weights" in m for m in missing)
    skipped = {s.item_id for s in rep.not_scored}
    assert skipped == {"domestic_compute", "compute_control"}
    assert not any(i.item_id in skipped for i in rep.items)


def test_pick_stage_errors(write_team: DossierWriter) -> None:
    prog, _ = load_program("k-ai-2025")
    ld = load_dossier(write_team(), check_files=False)
    with pytest.raises(KaiError, match="no stage 'nope'"):
        pick_stage(ld, prog, "nope")
    with pytest.raises(KaiError, match="no submission for stage 'stage1'"):
        pick_stage(ld, prog, "stage1")


def _verdict_file(tmp_path: Path, verdict: str) -> Path:
    v = IndependenceVerdict(stage_id="selection", team_id="alpha", source=Source.MEASURED,
                            verdict=verdict, references=("base",), alpha=0.01)  # type: ignore[arg-type]
    p = tmp_path / "verdict.json"
    p.write_text(v.model_dump_json(), "utf-8")
    return p


def test_cli_audit_writes_json_and_records(write_team: DossierWriter, tmp_path: Path) -> None:
    path = write_team()
    out, recs = tmp_path / "a.json", tmp_path / "a.jsonl"
    r = runner.invoke(app, ["audit", str(path), "--json", str(out), "--records", str(recs),
                            "--verdict", str(_verdict_file(tmp_path, "partial"))])
    assert r.exit_code == 0, r.output
    assert "Audit rubric points" in r.output and "contradiction" in r.output
    data = json.loads(out.read_text("utf-8"))
    assert data["format"] == "kaieval/audit/v1" and data["team_id"] == "alpha"
    indep = next(f for f in data["figures"] if f["measure"] == "sovereignty.independent")
    assert indep["value"] is False
    assert len(load_records_jsonl(recs)) == len(data["items"]) == 10


def test_cli_audit_writes_mot_record(write_team: DossierWriter, tmp_path: Path) -> None:
    from kaieval.audit.mot import mot_to_releases, read_mot

    mot = tmp_path / "team.mot.yml"
    r = runner.invoke(app, ["audit", str(write_team()), "--mot", str(mot)])
    assert r.exit_code == 0, r.output
    record = read_mot(mot)
    names = {c.name for c in mot_to_releases(record)}
    assert "Model parameters (Final)" in names  # the dossier's released weights


def test_cli_strict_exits_1_on_flags(write_team: DossierWriter, tmp_path: Path) -> None:
    path = write_team(licences={"rel/weights": "no licence we know\n"})
    r = runner.invoke(app, ["audit", str(path), "--strict"])
    assert r.exit_code == 1
    assert "licence_unknown" in r.output


@pytest.mark.parametrize("args", [["--stage", "nope"], ["--program", "nowhere.yaml"],
                                  ["--verdict", "missing.json"],
                                  ["--reference-tokenizer", "no-such-tokenizer"]])
def test_cli_bad_input_one_line_exit_2(write_team: DossierWriter, args: list[str]) -> None:
    r = runner.invoke(app, ["audit", str(write_team()), *args])
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1


def test_cli_malformed_dossier_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("schema: kaieval/dossier/v1\nteam: [\n", "utf-8")
    r = runner.invoke(app, ["audit", str(p)])
    assert r.exit_code == 2
    assert "bad.yaml:" in r.stderr


def test_load_verdict_rejects_other_records(tmp_path: Path) -> None:
    p = tmp_path / "v.json"
    p.write_text('{"kind": "measurement", "stage_id": "s", "team_id": "t", '
                 '"source": "measured", "name": "x", "value": 1.0}', "utf-8")
    with pytest.raises(KaiError, match="no independence verdict"):
        load_verdict(p)


def test_demo_dossiers_audit_cleanly(tmp_path: Path) -> None:
    """The bundled demo dossiers and LICENSE files: every selection item scored, licences
    identified as declared, and the audit ranks KT's plan lowest of the non-gated teams."""
    import numpy as np
    from safetensors.numpy import save_file

    from kaieval.demo.run import lay_out_scenario

    prog, _ = load_program("k-ai-2025")
    totals: dict[str, float] = {}
    flags: dict[str, set[str]] = {}
    for path in lay_out_scenario(tmp_path):
        ld = load_dossier(path, check_files=False)
        for sub in ld.dossier.submissions.values():
            if sub.model is not None and sub.model.path is not None:
                (tmp_path / sub.model.path).mkdir(parents=True, exist_ok=True)
                save_file({"w": np.zeros(2, dtype=np.float32)},
                          str(tmp_path / sub.model.path / "model.safetensors"))
        if "selection" not in ld.dossier.submissions:
            continue
        rep = audit_dossier(ld, prog, "selection")
        assert rep.not_scored == (), (ld.dossier.team.id, rep.not_scored)
        assert len(rep.items) == 10
        kinds = {f.kind for f in rep.flags}
        assert not kinds & {"licence_mismatch", "licence_unknown", "malformed"}, rep.flags
        flags[ld.dossier.team.id] = kinds
        totals[ld.dossier.team.id] = sum(i.points for i in rep.items)
    assert set(totals) == {"lg", "naver", "upstage", "skt", "nc", "kt", "kakao"}
    assert "not_open" in flags["kakao"] and "not_open" not in flags["skt"]
    assert min(totals, key=lambda t: totals[t]) == "kakao"
    assert min((t for t in totals if t != "kakao"), key=lambda t: totals[t]) == "kt"


def test_paths_leaving_the_folder_are_not_read(write_team: DossierWriter, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.safetensors").write_bytes(b"x")
    (outside / "LICENSE").write_text("SPDX-License-Identifier: MIT\n", "utf-8")

    def edit(d: dict[str, Any]) -> None:
        sub = d["submissions"]["selection"]
        sub["model"] = {"path": "../outside"}
        sub["releases"][0]["artifact"] = "../outside"

    prog, _ = load_program("k-ai-2025")
    rep = audit_dossier(load_dossier(write_team(edit), check_files=False), prog)
    serving = rep.figure("sovereignty.servable_without_foreign_api")
    assert serving is not None and serving.value is None
    assert "leaves the dossier's folder" in serving.detail
    assert sum(f.kind == "missing_file" and "outside" in f.message for f in rep.flags) == 2
    assert not any(i.item_id == "open_releases" and i.points > 0 for i in rep.items)


def test_fake_sentencepiece_model_is_a_flag(write_team: DossierWriter) -> None:
    path = write_team(tokenizer=False)
    (path.parent / "model" / "tokenizer.model").write_bytes(b"this is not a sentencepiece model")
    prog, _ = load_program("k-ai-2025")
    rep = audit_dossier(load_dossier(path, check_files=False), prog)
    assert [f.kind for f in rep.flags] == ["malformed"]
    assert "tokenizer" in rep.flags[0].message
