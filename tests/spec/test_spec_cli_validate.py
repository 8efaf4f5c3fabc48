"""`kai validate` end to end through the Typer app: exit codes and one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaieval.spec.load import validate_paths

DATA = Path(__file__).resolve().parents[1] / "data"

# The CLI is written in parallel with the spec loader; these tests skip until it exists.
cli = pytest.importorskip("kaieval.cli")


def _invoke(*paths: Path) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, ["validate", *map(str, paths)])
    return result.exit_code, result.stdout, result.stderr


def test_good_files_exit_0() -> None:
    code, out, err = _invoke(DATA / "good" / "program.yaml",
                             *sorted((DATA / "good" / "teams").glob("*.yaml")))
    assert code == 0, err
    assert err == ""
    assert len(out.splitlines()) == 4


def test_bad_files_exit_2_with_one_line_per_error() -> None:
    bad = [DATA / "bad" / n for n in ("points_text.yaml", "unknown_field_stage.yaml",
                                     "yaml_tab_indent.yaml", "language_shares.yaml")]
    _, expected = validate_paths(bad)
    code, _, err = _invoke(*bad)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == len(expected) == 5  # language_shares has two problems
    for line, e in zip(lines, expected, strict=True):
        assert line.endswith(str(e))
    assert "Traceback" not in err


def test_missing_file_exit_2() -> None:
    code, _, err = _invoke(DATA / "bad" / "no_such_file.yaml")
    assert code == 2 and "no_such_file.yaml: file not found" in err
