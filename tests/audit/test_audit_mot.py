"""Model Openness Tool YAML: read both spellings, write, round-trip, convert, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kaieval.audit.licence_registry import UNKNOWN
from kaieval.audit.mot import (
    MotComponent,
    MotRecord,
    MotRelease,
    dump_mot,
    mot_to_releases,
    read_mot,
    releases_to_mot,
    write_mot,
)
from kaieval.audit.openness import MOF_COMPONENTS, ReleasedComponent, assess_openness
from kaieval.errors import KaiError

MOT = Path(__file__).resolve().parents[1] / "data" / "audit" / "mot"


def test_reads_the_older_spelling_and_keeps_extra_keys() -> None:
    rec = read_mot(MOT / "older-spelling.yml")
    assert rec.framework.name == "Model Openness Framework"
    assert rec.release.name == "Example-7B" and rec.release.producer == "Example Lab"
    arch = rec.release.components[0]
    assert (arch.license, arch.component_path) == ("Apache-2.0", "https://github.com/example/example")
    assert rec.release.model_extra == {"huggingface": "https://huggingface.co/example/Example-7B"}


def test_global_licences_resolve_like_mot() -> None:
    rec = read_mot(MOT / "global-licences.yml")
    assert rec.release.date == "2025-10-30" and rec.framework.date == "2024-12-15"
    rel = {r.name: r for r in mot_to_releases(rec)}
    assert rel["Model architecture"].licence == "Apache-2.0"        # distribution
    assert rel["Model parameters (Final)"].licence == "Apache-2.0"  # distribution
    assert rel["Model card"].licence == "CC-BY-4.0"                 # document licence
    assert rel["Evaluation data"].licence == "CC-BY-NC-4.0"         # its own
    result = assess_openness(list(rel.values()), require_location=False)
    assert result.progress("Class III").missing == ()
    assert result.mof_class == "Class III"
    ev = next(c for c in result.components if c.name == "Evaluation data")
    assert not ev.included  # NC is not open


def test_unlicensed_components_are_not_open() -> None:
    rel = {r.name: r for r in mot_to_releases(read_mot(MOT / "older-spelling.yml"))}
    assert rel["Datasets"].open is False and rel["Model card"].open is False
    assert rel["Model parameters (Final)"].open is True


def test_round_trip(tmp_path: Path) -> None:
    rec = read_mot(MOT / "global-licences.yml")
    out = tmp_path / "sub" / "record.yml"
    write_mot(rec, out)
    again = read_mot(out)
    assert again == rec
    text = out.read_text("utf-8")
    data = yaml.safe_load(text)
    assert list(data) == ["framework", "release"]
    assert list(data["release"])[:3] == ["name", "version", "date"]
    assert "repository" in data["release"]
    assert not list(tmp_path.glob("sub/.*tmp"))  # no temp file left behind
    old = read_mot(MOT / "older-spelling.yml")
    write_mot(old, out)
    assert read_mot(out) == old
    assert "license_name" not in out.read_text("utf-8")  # written with current names


def test_releases_to_mot_and_back() -> None:
    releases = [ReleasedComponent(name="model weights", licence="apache-2.0",
                                  location="huggingface.co/t/m"),
                ReleasedComponent(name="inference code", licence="MIT", location="github.com/t"),
                ReleasedComponent(name="agent platform", licence="proprietary", open=False),
                ReleasedComponent(name="technical report", licence="proprietary", open=False)]
    rec = releases_to_mot(releases, name="Team-Model", producer="Team", date="2026-01-15")
    names = [c.name for c in rec.release.components]
    assert names == ["Inference code", "Model parameters (Final)", "Technical report"]  # MOF order
    comps = {c.name: c for c in rec.release.components}
    assert comps["Model parameters (Final)"].license == "Apache-2.0"
    assert comps["Technical report"].license == "unlicensed"
    back = {r.name: r for r in mot_to_releases(rec)}
    assert back["Inference code"] == ReleasedComponent(name="Inference code", licence="MIT",
                                                       location="github.com/t", open=True)
    assert back["Technical report"].open is False
    assert "Model Openness Framework" in dump_mot(rec)


def test_description_defaults_are_mof_descriptions() -> None:
    rec = releases_to_mot([ReleasedComponent(name="Datasets", licence="CC-BY-4.0",
                                             location="x.org/d")], name="m")
    want = next(c.description for c in MOF_COMPONENTS if c.name == "Datasets")
    assert rec.release.components[0].description == want


def test_malformed_yaml_is_one_line_error_with_line() -> None:
    with pytest.raises(KaiError) as e:
        read_mot(MOT / "malformed.yml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{MOT / 'malformed.yml'}:")
    line = int(msg.split(":")[1])
    assert 7 <= line <= 8


def test_unknown_component_name_points_at_its_line() -> None:
    with pytest.raises(KaiError) as e:
        read_mot(MOT / "bad-component.yml")
    msg = str(e.value)
    assert msg.startswith(f"{MOT / 'bad-component.yml'}:10:")
    assert "'Model weights' is not one of the 17 MOF component names" in msg


def test_missing_file_and_duplicate_components(tmp_path: Path) -> None:
    with pytest.raises(KaiError, match="file not found"):
        read_mot(tmp_path / "none.yml")
    dup = tmp_path / "dup.yml"
    dup.write_text("release:\n  name: x\n  components:\n    - {name: Datasets}\n"
                   "    - {name: Datasets}\n", "utf-8")
    with pytest.raises(KaiError, match="more than once: Datasets"):
        read_mot(dup)
    both = tmp_path / "both.yml"
    both.write_text("release:\n  name: x\n  components:\n"
                    "    - {name: Datasets, license: MIT, license_name: MIT}\n", "utf-8")
    with pytest.raises(KaiError, match="not both"):
        read_mot(both)


def test_model_level_record_construction() -> None:
    rec = MotRecord(release=MotRelease(name="m", components=(
        MotComponent(name="Model card", license=""),)))
    (only,) = mot_to_releases(rec)
    assert only.licence == UNKNOWN and only.open is False
