"""MOF class / completeness and the open-release share, checked against files on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kaieval.audit.openness import (
    CLASS_REQUIRED,
    MOF_COMPONENTS,
    ReleasedComponent,
    assess_openness,
    assess_submission,
    mof_component,
)
from kaieval.spec.dossier import Release, Submission

LIC = Path(__file__).resolve().parents[1] / "data" / "audit" / "licences"


def R(name: str, licence: str, location: str = "", open_: bool = True) -> ReleasedComponent:
    return ReleasedComponent(name=name, licence=licence, location=location, open=open_)


CLASS_III = [
    R("Model architecture", "Apache-2.0", "github.com/team/model"),
    R("model weights", "Apache-2.0", "huggingface.co/team/model"),
    R("technical report", "CC-BY-4.0", "arxiv.org/abs/2601.00001"),
    R("evaluation results", "CC-BY-4.0", "huggingface.co/team/model"),
    R("model card", "CC-BY-4.0", "huggingface.co/team/model"),
]
CLASS_II_EXTRA = [
    R("training code", "Apache-2.0", "github.com/team/train"),
    R("inference code", "MIT", "github.com/team/serve"),
    R("evaluation code", "Apache-2.0", "github.com/team/eval"),
    R("Korean evaluation data", "CC-BY-4.0", "huggingface.co/datasets/team/eval"),
]


def test_seventeen_components_and_nested_classes() -> None:
    assert len(MOF_COMPONENTS) == 17
    assert len({c.name for c in MOF_COMPONENTS}) == 17
    iii, ii, i = (set(CLASS_REQUIRED[c]) for c in ("Class III", "Class II", "Class I"))
    assert iii < ii < i and (len(iii), len(ii), len(i)) == (6, 10, 14)


@pytest.mark.parametrize(("text", "expected"), [
    ("Kanana nano weights", "Model parameters (Final)"),
    ("intermediate checkpoints", "Model parameters (Intermediate)"),
    ("inference code", "Inference code"),
    ("serving toolkit", "Inference code"),
    ("Korean evaluation data", "Evaluation data"),
    ("public datasets", "Datasets"),
    ("Model card", "Model card"),
    ("research paper", "Research paper"),
    ("enterprise agent platform", None),
])
def test_mof_component_mapping(text: str, expected: str | None) -> None:
    assert mof_component(text) == expected


def test_class_iii_with_model_card_standing_in_for_data_card() -> None:
    r = assess_openness(CLASS_III)
    assert r.mof_class == "Class III"
    iii = r.progress("Class III")
    assert iii.achieved and iii.progress == 1.0 and iii.missing == ()
    assert any(f.kind == "substitution" and "Model card" in f.message for f in r.flags)
    # Apache for weights is open but not type-appropriate: accepted with a warning
    assert any(f.kind == "licence-type-unsuited" and "weights" in f.message for f in r.flags)
    ii = r.progress("Class II")
    assert not ii.achieved and ii.progress == 0.6
    assert set(ii.missing) == {"Training code", "Inference code", "Evaluation code",
                               "Evaluation data"}


def test_class_ii_and_what_class_i_still_misses() -> None:
    r = assess_openness(CLASS_III + CLASS_II_EXTRA)
    assert r.mof_class == "Class II"
    i = r.progress("Class I")
    assert i.progress == round(10 / 14, 4)
    assert set(i.missing) == {"Datasets", "Data preprocessing code",
                              "Model parameters (Intermediate)", "Research paper"}


def test_class_i_datasets_count_under_any_licence() -> None:
    extra = [R("training corpus (dataset)", "proprietary", "huggingface.co/datasets/team/c"),
             R("data preprocessing code", "Apache-2.0", "github.com/team/prep"),
             R("intermediate checkpoints", "Apache-2.0", "huggingface.co/team/ckpt"),
             R("research paper", "CC-BY-4.0", "arxiv.org/abs/2601.00002")]
    r = assess_openness(CLASS_III + CLASS_II_EXTRA + extra)
    assert r.mof_class == "Class I"
    assert any(f.kind == "any-licence-dataset" for f in r.flags)


def test_non_open_licence_does_not_count_for_mof() -> None:
    r = assess_openness([R("EXAONE weights", "EXAONE-NC", "huggingface.co/LGAI-EXAONE")])
    weights = next(c for c in r.components if c.name == "Model parameters (Final)")
    assert not weights.included and "not an open licence" in weights.reason
    assert r.mof_class == "none"
    assert r.open_share.share == 1.0 and r.open_share.open_licence_share == 0.0


def _team_folder(tmp: Path) -> Path:
    team = tmp / "team"
    (team / "weights").mkdir(parents=True)
    shutil.copy(LIC / "apache-2.0.md", team / "weights" / "LICENSE")
    (team / "weights" / "model.safetensors").write_bytes(b"\0" * 16)
    (team / "code").mkdir()
    shutil.copy(LIC / "mit.txt", team / "code" / "LICENSE")
    (team / "data").mkdir()
    shutil.copy(LIC / "cc-by-nc-4.0.md", team / "data" / "LICENSE")
    (team / "card").mkdir()
    shutil.copy(LIC / "unrelated.txt", team / "card" / "LICENSE")
    (team / "nolicence").mkdir()
    (tmp / "outside").mkdir()
    return team


def test_open_share_checked_against_the_files(tmp_path: Path) -> None:
    team = _team_folder(tmp_path)
    releases = [
        R("model weights", "Apache-2.0", "weights/model.safetensors"),  # verified via sibling
        R("inference code", "MIT", "code"),                             # verified
        R("public datasets", "CC-BY-4.0", "data"),      # LICENSE says CC-BY-NC: not counted
        R("model card", "CC-BY-4.0", "card"),           # LICENSE matches nothing: flagged
        R("training code", "Apache-2.0", "train"),      # missing: not counted
        R("evaluation code", "MIT", "../outside"),      # outside the dossier folder
        R("evaluation results", "CC-BY-4.0", "nolicence"),  # no LICENSE: counted, warned
        R("serving platform", "proprietary", "", open_=False),
    ]
    r = assess_openness(releases, base=team, pledge=0.5, source="team.yaml:releases")
    by = {c.index: c for c in r.releases}
    assert by[0].verified and by[0].licence_found == "Apache-2.0" and by[0].counted_open
    assert by[1].verified and by[1].counted_open
    assert not by[2].counted_open and by[2].licence_found == "CC-BY-NC-4.0"
    assert by[2].licence_used == "CC-BY-NC-4.0"
    assert by[3].counted_open and not by[3].verified and by[3].licence_found == "unknown"
    assert not by[4].counted_open and by[4].exists is False
    assert not by[5].counted_open
    assert by[6].counted_open and not by[6].verified
    assert not by[7].counted_open
    kinds = {f.kind: f for f in r.flags}
    assert kinds["licence-contradiction"].evidence.startswith("team.yaml:releases.2.licence")
    assert "CC-BY-NC-4.0" in kinds["licence-contradiction"].message
    assert "missing-artifact" in kinds and "train" in kinds["missing-artifact"].message
    assert "outside-folder" in kinds and "licence-unverified" in kinds
    assert "no-licence-file" in kinds
    s = r.open_share
    assert (s.total, s.declared_open, s.counted_open, s.verified) == (8, 7, 4, 2)
    assert s.share == 0.5 and s.meets_pledge is True
    data = next(c for c in r.components if c.name == "Datasets")
    assert not data.included  # contradicted, so not released openly


def test_pledge_unmet_is_flagged() -> None:
    r = assess_openness([R("model weights", "Apache-2.0", "huggingface.co/t/m"),
                         R("agent platform", "proprietary", open_=False),
                         R("api", "proprietary", open_=False)], pledge=0.5)
    assert r.open_share.share == round(1 / 3, 4) and r.open_share.meets_pledge is False
    assert any(f.kind == "pledge-unmet" for f in r.flags)


def test_open_release_without_location_is_not_counted() -> None:
    r = assess_openness([R("model weights", "Apache-2.0")])
    assert r.open_share.counted_open == 0
    assert any(f.kind == "no-location" for f in r.flags)


def test_empty_release_list() -> None:
    r = assess_openness([])
    assert r.mof_class == "none" and r.open_share.share is None
    assert r.open_share.meets_pledge is None


def test_dossier_submission_input(tmp_path: Path) -> None:
    team = _team_folder(tmp_path)
    sub = Submission.model_validate({
        "releases": [{"component": "model weights", "licence": "Apache-2.0",
                      "location": "weights"},
                     {"component": "unknown-licence corpus", "licence": "mixed-open",
                      "location": "huggingface.co/datasets/x"}],
        "ecosystem": {"open_release_pledge": 0.6}})
    assert isinstance(sub.releases[0], Release)
    r = assess_submission(sub, base=team, source="t.yaml:submissions.stage1.releases")
    assert r.open_share.pledge == 0.6 and r.open_share.share == 1.0
    assert r.releases[0].verified
    assert any(f.kind == "licence-not-in-registry" and "mixed-open" in f.message
               for f in r.flags)
    dumped = r.model_dump(mode="json", by_alias=True)
    assert dumped["schema"] == "kaieval/openness/v1" and dumped["mof_class"] == "none"


def test_release_artifact_is_checked_instead_of_the_remote_location(tmp_path: Path) -> None:
    team = _team_folder(tmp_path)
    sub = Submission.model_validate({"releases": [
        {"component": "Kanana nano weights", "licence": "Apache-2.0",
         "location": "huggingface.co/kakaocorp", "artifact": "data"},
        {"component": "inference code", "licence": "MIT", "location": "github.com/k",
         "artifact": "code/LICENSE"}]})
    r = assess_submission(sub, base=team)
    weights, code = r.releases
    assert weights.location_kind == "local" and weights.artifact == "data"
    assert weights.licence_found == "CC-BY-NC-4.0" and not weights.counted_open
    flag = next(f for f in r.flags if f.kind == "licence-contradiction")
    assert flag.evidence.startswith("releases.0.licence")
    assert code.verified and code.counted_open
