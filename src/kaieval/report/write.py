"""Writing a report directory: the HTML page, one JSON file per stage, and the JSON schema.

Every file is written atomically (:func:`kaieval.io.atomic_write_text`), and
everything is rendered in memory before the first file is touched, so a crash or
a bad input never leaves a half-written report: each file on disk is either the
previous complete version or the new complete version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.io import atomic_write_text
from kaieval.report.html import check_results, render_html
from kaieval.scoring.results import StageResult

HTML_NAME = "report.html"
SCHEMA_NAME = "stage-result.schema.json"
_SAFE_STAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]{0,63}$")


def stage_result_json_schema() -> dict[str, Any]:
    """JSON Schema of the per-stage JSON files (field names as written, i.e. by alias)."""
    return StageResult.model_json_schema(by_alias=True)


def stage_json(result: StageResult) -> str:
    """One stage as JSON: the record and nothing else; its ``schema`` field names the version."""
    data = result.model_dump(mode="json", by_alias=True)
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def _prepare_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise KaiError("exists and is not a directory", where=str(out_dir))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KaiError(f"cannot create the report directory ({err.strerror})",
                       where=str(out_dir)) from err


def write_reports(results: Sequence[StageResult], out_dir: Path, *, title: str,
                  banner: str | None) -> list[Path]:
    """Write ``report.html``, ``<stage_id>.json`` per stage and the schema; return the paths.

    Paths come back in write order: the stage JSON files, the schema, then the
    HTML page last, so a page on disk never refers to stage files not yet written.
    """
    check_results(results)
    for res in results:
        if not _SAFE_STAGE_ID.match(res.stage_id) or res.stage_id == "stage-result.schema":
            raise KaiError(f"stage id {res.stage_id!r} cannot be used as a file name",
                           where=f"stage '{res.stage_id}'")
    files: list[tuple[Path, str]] = [(out_dir / f"{r.stage_id}.json", stage_json(r))
                                     for r in results]
    files.append((out_dir / SCHEMA_NAME,
                  json.dumps(stage_result_json_schema(), ensure_ascii=False, indent=2) + "\n"))
    files.append((out_dir / HTML_NAME, render_html(results, title=title, banner=banner)))
    _prepare_dir(out_dir)
    written: list[Path] = []
    for path, text in files:
        try:
            atomic_write_text(path, text)
        except OSError as err:
            raise KaiError(f"cannot write the report file ({err.strerror})",
                           where=str(path)) from err
        written.append(path)
    return written
