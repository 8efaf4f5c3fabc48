"""Writing the report directory: JSON round trip, schema file, atomicity, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from report_factories import BANNER, make_selection, make_stage1

from kaieval.errors import KaiError
from kaieval.report import stage_result_json_schema, write_reports
from kaieval.scoring.results import STAGE_RESULT_SCHEMA, StageResult


def test_writes_html_json_per_stage_and_schema(tmp_path: Path) -> None:
    out = tmp_path / "new" / "reports"  # created, parents too
    paths = write_reports([make_selection(), make_stage1()], out, title="demo", banner=BANNER)
    assert [p.name for p in paths] == ["selection.json", "stage1.json",
                                       "stage-result.schema.json", "report.html"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "엡실론 Cloud" in html and 'id="stage-stage1"' in html


def test_json_is_the_record_and_roundtrips_equal(tmp_path: Path) -> None:
    original = make_stage1()
    write_reports([original], tmp_path, title="t", banner=None)
    data = json.loads((tmp_path / "stage1.json").read_text(encoding="utf-8"))
    assert data["schema"] == STAGE_RESULT_SCHEMA == "kaieval/stage-result/v1"
    assert set(data) == {f.alias or name for name, f in StageResult.model_fields.items()}
    assert data == original.model_dump(mode="json", by_alias=True)
    back = StageResult.model_validate(data)
    assert back == original
    assert back.team("delta").components[2].points is None  # not measured stays absent
    assert "델타 Foundation" in (tmp_path / "stage1.json").read_text(encoding="utf-8")


def test_schema_file_matches_model_schema(tmp_path: Path) -> None:
    write_reports([make_stage1()], tmp_path, title="t", banner=None)
    on_disk = json.loads((tmp_path / "stage-result.schema.json").read_text(encoding="utf-8"))
    assert on_disk == stage_result_json_schema()
    assert "schema" in on_disk["properties"] and "schema_" not in on_disk["properties"]
    assert {"TeamResult", "ComponentScore", "GateOutcome", "Robustness",
            "RepechageOutcome"} <= set(on_disk["$defs"])


def test_no_temp_files_left_and_rewrite_replaces(tmp_path: Path) -> None:
    write_reports([make_stage1()], tmp_path, title="first", banner=None)
    write_reports([make_stage1()], tmp_path, title="second", banner=None)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert "<title>second</title>" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_write_failure_is_a_one_line_kai_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KaiError) as err:
        write_reports([make_stage1()], tmp_path, title="t", banner=None)
    assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(KaiError, match="appears twice"):
        write_reports([make_stage1(), make_stage1()], tmp_path / "a", title="t", banner=None)
    assert not (tmp_path / "a").exists()
    evil = make_stage1().model_copy(update={"stage_id": "../escape"})
    with pytest.raises(KaiError, match="cannot be used as a file name"):
        write_reports([evil], tmp_path / "b", title="t", banner=None)
    assert not (tmp_path / "b").exists() and not (tmp_path / "escape.json").exists()


def test_out_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "report"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(KaiError, match="not a directory"):
        write_reports([make_stage1()], blocker, title="t", banner=None)
