"""The YAML loader and the message layer: features real specs use, and limits hostile ones hit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from kaieval.errors import KaiError, KaiErrors
from kaieval.spec import Component, Dossier, Program
from kaieval.spec.load import load_dossier, load_program, validate_paths
from kaieval.spec.messages import describe, model_at, show
from kaieval.spec.program import RubricItem, Stage
from kaieval.spec.yamlload import load_yaml, load_yaml_text, parse_model

GOOD = Path(__file__).resolve().parents[1] / "data" / "good"

PROGRAM = """\
schema: kaieval/program/v1
id: anchors
name: Anchors and merges
axes: [{id: tech, name: Technology}]
stages:
  - id: stage1
    name: One
    date: 2026-01-15
    total: 100
    cut: 1
    composition:
      - &experts
        id: experts
        points: 60
        kind: committee
        rubric: &rubric
          - {id: report, title: Report, max: 10}
      - {id: users, points: 40, kind: users}
  - id: stage2
    name: Two
    date: 2026-07-31
    total: 100
    advance: 1
    composition:
      - <<: *experts
        points: 70
      - {id: users, points: 30, kind: users}
"""


def _program(text: str, tmp_path: Path) -> Program:
    f = tmp_path / "p.yaml"
    f.write_text(text, encoding="utf-8")
    return parse_model(Program, load_yaml(f))


def test_anchors_and_merge_keys_explicit_keys_win(tmp_path: Path) -> None:
    prog = _program(PROGRAM, tmp_path)
    second = prog.stage("stage2").component("experts")
    assert second.points == 70  # the explicit key beats the merged one
    assert second.rubric == prog.stage("stage1").component("experts").rubric


def test_merge_line_numbers_point_at_the_anchor(tmp_path: Path) -> None:
    text = PROGRAM.replace("max: 10}", "max: ten}")
    f = tmp_path / "p.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(KaiErrors) as info:
        parse_model(Program, load_yaml(f))
    lines = {str(e) for e in info.value.errors}
    assert any(":17: stages.0.composition.0.rubric.0.max: expected a number" in x for x in lines)


def test_exponent_floats_are_numbers_but_quoted_ones_are_text(tmp_path: Path) -> None:
    doc = load_yaml_text("a: 4.0e12\nb: 1e9\nc: '1e9'\nd: 1.5\ne: -2E-3\n", tmp_path / "x.yaml")
    assert doc.data == {"a": 4.0e12, "b": 1e9, "c": "1e9", "d": 1.5, "e": -2e-3}


def test_utf8_bom_and_korean_text(tmp_path: Path) -> None:
    f = tmp_path / "bom.yaml"
    f.write_bytes("\ufeffname: 독자 AI 파운데이션 모델\n".encode())
    assert load_yaml(f).data == {"name": "독자 AI 파운데이션 모델"}


def test_numbers_are_strict_and_text_accepts_numbers() -> None:
    with pytest.raises(ValidationError):
        RubricItem.model_validate({"id": "a", "title": "A", "max": True})
    with pytest.raises(ValidationError):
        RubricItem.model_validate({"id": "a", "title": "A", "max": "10"})
    item = RubricItem.model_validate({"id": "a", "title": 2025, "max": 10})
    assert item.title == "2025" and item.max == 10.0


def test_gate_component_union_gives_one_message(tmp_path: Path) -> None:
    text = PROGRAM.replace("    cut: 1\n", "    cut: 1\n    gates: [{id: g, kind: min_points, "
                           "rule: r, component: Experts}]\n", 1)
    f = tmp_path / "p.yaml"
    f.write_text(text, encoding="utf-8")
    _, errs = validate_paths([f])
    assert len(errs) == 1
    assert "stages.0.gates.0.component: 'Experts' is not a valid id" in str(errs[0])


def test_every_pydantic_message_is_rewritten(tmp_path: Path) -> None:
    """A spec with many kinds of mistakes: no pydantic wording reaches the user."""
    text = (PROGRAM.replace("name: One", "name: [One]").replace("date: 2026-01-15", "date: soon")
            .replace("cut: 1", "cut: -1").replace("kind: users}", "kind: votes}", 1)
            .replace("max: 10}", "max: 0}"))
    f = tmp_path / "p.yaml"
    f.write_text(text, encoding="utf-8")
    _, errs = validate_paths([f])
    assert len(errs) == 6  # the bad rubric is anchored and merged into stage2 too: two lines
    assert sum("rubric.0.max: must be at least 0.001, got 0" in str(e) for e in errs) == 2
    for e in errs:
        text_ = str(e)
        assert "Input should" not in text_ and "String should" not in text_
        assert "\n" not in text_


def test_model_at_walks_tuples_dicts_and_optionals() -> None:
    assert model_at(Program, ("stages", 0, "composition", 1, "children", 0)) is Component
    assert model_at(Program, ("stages", 0)) is Stage
    sub = model_at(Dossier, ("submissions", "stage1", "model"))
    assert sub is not None and sub.__name__ == "ModelArtifact"
    assert model_at(Program, ("stages", 0, "nope")) is None


def test_show_keeps_values_on_one_line() -> None:
    assert show("a\nb") == "'a\\nb'"
    assert show("x" * 100).endswith("...'") and len(show("x" * 100)) < 70
    assert show(None) == "nothing (null)" and show(False) == "false"


def test_describe_unknown_error_type_falls_back_to_one_line() -> None:
    err = {"type": "weird", "loc": ("a",), "msg": "two\nlines", "input": 1}
    assert describe(err) == "two lines"  # type: ignore[arg-type]


def test_legitimate_alias_reuse_is_fine(tmp_path: Path) -> None:
    rubric = "".join(f"  - {{id: i{i}, title: T, max: 1}}\n" for i in range(100))
    text = "r: &r\n" + rubric + "".join(f"s{i}: *r\n" for i in range(10))
    doc = load_yaml_text(text, tmp_path / "a.yaml")
    assert len(doc.data) == 11 and doc.data["s9"][99]["id"] == "i99"


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    text = "a0: &a0 [" + ", ".join(["lol"] * 10) + "]\n"
    for i in range(1, 12):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n"
    t0 = time.perf_counter()
    with pytest.raises(KaiError, match="alias bomb"):
        load_yaml_text(text, tmp_path / "lol.yaml")
    assert time.perf_counter() - t0 < 2


def test_fifo_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(KaiError, match="not a regular file"):
        load_yaml(fifo)


def test_symlink_inside_the_folder_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "report.md").write_text("# r\n", encoding="utf-8")
    os.symlink(tmp_path / "docs" / "report.md", tmp_path / "report.md")
    dossier = tmp_path / "d.yaml"
    dossier.write_text("schema: kaieval/dossier/v1\nteam: {id: t, name: T, lead: L}\n"
                       "submissions:\n  stage1: {model: {path: models/m}, "
                       "technical_report: report.md}\n", encoding="utf-8")
    loaded = load_dossier(dossier)
    assert loaded.resolve("report.md") == (tmp_path / "docs" / "report.md").resolve()


def test_dossiers_are_not_cross_checked_against_several_programmes(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text((GOOD / "program.yaml").read_text("utf-8").replace("id: mini-2026",
                                                                       "id: mini-2027"),
                     encoding="utf-8")
    dossier = tmp_path / "teams" / "d.yaml"
    dossier.parent.mkdir()
    dossier.write_text("schema: kaieval/dossier/v1\nteam: {id: t, name: T, lead: L}\n"
                       "submissions:\n  stage9: {approach: x}\n", encoding="utf-8")
    ok, errs = validate_paths([GOOD / "program.yaml", other, dossier])
    assert errs == [] and len(ok) == 3
    ok, errs = validate_paths([GOOD / "program.yaml", dossier])
    assert len(errs) == 1 and "no stage 'stage9'" in str(errs[0])


def test_template_name_and_path_give_the_same_programme() -> None:
    by_name, _ = load_program("k-ai-2025")
    by_path, _ = load_program(GOOD / "program.yaml")
    assert by_name.finalists == 2 and by_path.finalists == 1
    assert by_name.stage("stage1").repechage is not None


SYNTAX_CASES = ["yaml_tab_indent", "yaml_unclosed_bracket", "yaml_unclosed_quote",
                "yaml_bad_indent", "yaml_colon_in_value", "yaml_undefined_alias",
                "yaml_nul_character", "multiple_documents", "python_tag", "alias_cycle"]


@pytest.mark.parametrize("name", SYNTAX_CASES)
def test_pure_python_parser_gives_the_same_lines(name: str, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    """Without libyaml (a pure-Python PyYAML install) the messages keep their lines and words."""
    import yaml

    from kaieval.spec import yamlload

    bad = GOOD.parent / "bad"
    case = yaml.safe_load((bad / "cases.yaml").read_text("utf-8"))[name]
    monkeypatch.setattr(yamlload, "_Loader", yaml.SafeLoader)
    _, errs = validate_paths([bad / case["file"]])
    assert len(errs) == 1
    text = str(errs[0])
    assert text.startswith(f"{bad / case['file']}:{case['line']}: "), text
    assert all(s in text for s in case["says"]), text


def test_an_endpoints_tokenizer_is_checked_like_every_named_file() -> None:
    """``model.tokenizer`` is for an endpoint only, and is one of the dossier's paths."""
    from kaieval.spec.dossier import ModelArtifact

    with pytest.raises(ValidationError, match="'tokenizer' is for an endpoint"):
        ModelArtifact(path="models/x", tokenizer="models/x")
    served = ModelArtifact(endpoint="http://127.0.0.1:8000/v1",  # type: ignore[arg-type]
                           model_name="x", tokenizer="tok/tokenizer.json")
    assert served.tokenizer == "tok/tokenizer.json"
    dossier = Dossier.model_validate({
        "schema": "kaieval/dossier/v1", "team": {"id": "t", "name": "T", "lead": "L"},
        "submissions": {"s1": {"model": served.model_dump(mode="json")}}})
    assert (("submissions", "s1", "model", "tokenizer"), "tok/tokenizer.json") in \
        dossier.local_paths()
