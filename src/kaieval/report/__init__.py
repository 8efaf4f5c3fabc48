"""Stage reports: a self-contained HTML page, versioned JSON per stage, a terminal summary.

Public API::

    write_reports(results, out_dir, title=..., banner=...) -> list[Path]
    render_html(results, title=..., banner=...) -> str
    print_summary(result, console) -> None
    stage_result_json_schema() -> dict

The report reads only ``kaieval.scoring.results.StageResult``; it never
recomputes a score, so what it shows is exactly what the stage engine decided.
``report.independence`` shows an ``IndependenceVerdict`` (``kai provenance``) the same way:
from the record's fields only.
"""

from __future__ import annotations

from kaieval.report.html import render_html
from kaieval.report.terminal import print_summary
from kaieval.report.write import stage_result_json_schema, write_reports

__all__ = [
    "print_summary",
    "render_html",
    "stage_result_json_schema",
    "write_reports",
]
