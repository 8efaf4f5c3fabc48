"""The bad-input corpus (tests/data/bad/cases.yaml) and the good examples, through validate_paths.

Every bad case must produce at least one error line naming the right file, line
and field with a clear message, every error must be a single well-formed line,
and nothing may escape ``validate_paths`` as an exception.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaieval.errors import KaiError
from kaieval.spec.load import load_program, validate_paths
from kaieval.spec.yamlload import MAX_YAML_BYTES

DATA = Path(__file__).resolve().parents[1] / "data"
BAD = DATA / "bad"
GOOD = DATA / "good"
CASES: dict[str, dict[str, Any]] = yaml.safe_load((BAD / "cases.yaml").read_text("utf-8"))


def _prepare(name: str, case: dict[str, Any], tmp: Path) -> tuple[list[Path], Path]:
    """The paths to validate and the file the error must name, building generated cases."""
    gen = case.get("generate")
    if gen == "huge":
        big = tmp / "huge.yaml"
        line = "# " + "x" * 1021 + "\n"
        with big.open("w", encoding="utf-8") as f:
            f.write("schema: kaieval/program/v1\n")
            for _ in range(MAX_YAML_BYTES // len(line) + 2):
                f.write(line)
        return [big], big
    if gen == "symlink":
        folder = tmp / "team"
        shutil.copytree(BAD / "missing_report", folder)  # a dossier whose report.md is absent
        outside = tmp / "outside.md"
        outside.write_text("# not the team's\n", encoding="utf-8")
        os.symlink(outside, folder / "report.md")
        return [folder / "dossier.yaml"], folder / "dossier.yaml"
    paths = [BAD / p for p in case["paths"]]
    return paths, BAD / case["file"]


def _line_re(file: Path) -> re.Pattern[str]:
    """``<file>:<line>: ...`` or ``<file>: ...``."""
    return re.compile(rf"^{re.escape(str(file))}(?::(\d+))?: (.+)$")


def _run(paths: list[Path]) -> tuple[list[str], list[KaiError], float]:
    t0 = time.perf_counter()
    ok, errs = validate_paths(paths)
    return ok, errs, time.perf_counter() - t0


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_case(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    paths, file = _prepare(name, case, tmp_path)
    ok, errs, seconds = _run(paths)
    lines = [str(e) for e in errs]
    assert errs, f"{name}: no error reported (ok lines: {ok})"
    assert seconds < 5, f"{name}: took {seconds:.1f} s"
    for text in lines:  # every error is one clean line naming one of the given files
        assert "\n" not in text and "Traceback" not in text
        assert "internal error" not in text, text
        assert "Input should" not in text and "Value error" not in text, text
        assert any(_line_re(p).match(text) for p in paths), text
    pattern = _line_re(file)
    matches = []
    for text in lines:
        m = pattern.match(text)
        if not m:
            continue
        line, rest = m.group(1), m.group(2)
        if "line" in case and line != str(case["line"]):
            continue
        if "field" in case and not rest.startswith(f"{case['field']}: "):
            continue
        if all(s in rest for s in case["says"]):
            matches.append(text)
    assert matches, f"{name}: expected {case} in:\n" + "\n".join(lines)


def test_corpus_is_large_and_documented() -> None:
    assert len(CASES) >= 40
    with_lines = [n for n, c in CASES.items() if "line" in c]
    assert len(with_lines) >= 40
    for name, case in CASES.items():
        assert case.get("doc"), name
        for p in case.get("paths", []):
            target = BAD / p
            if name not in ("missing_file",):
                assert target.exists(), f"{name}: {p} missing from the corpus"


def test_good_examples_validate() -> None:
    paths = [GOOD / "program.yaml", *sorted((GOOD / "teams").glob("*.yaml"))]
    ok, errs = validate_paths(paths)
    assert [str(e) for e in errs] == []
    assert len(ok) == 4
    assert ok[0].endswith("programme 'mini-2026' with 2 stages")
    assert {line.rsplit("'", 2)[1] for line in ok[1:]} == {"alpha", "beta", "gamma"}


def test_good_program_shape() -> None:
    program, digest = load_program(GOOD / "program.yaml")
    assert digest.startswith("sha256:")
    first = program.stage("stage1")
    assert [c.id for c in first.leaves()] == ["korean", "global", "experts", "users"]
    assert first.repechage is not None and first.repechage.candidates == "cut"
    assert first.component("korean").mapping.floor == 0.5
    assert [g.id for g in first.gates] == ["independence", "experts_floor"]


def test_builtin_template_loads() -> None:
    program, digest = load_program("k-ai-2025")
    assert program.id == "k-ai-2025"
    assert [s.id for s in program.stages] == ["selection", "stage1", "stage2", "stage3"]
    assert all(abs(sum(c.points for c in s.composition) - s.total) < 1e-9 for s in program.stages)
    assert digest.startswith("sha256:")


def test_errors_from_several_files_are_all_reported() -> None:
    """One run reports every bad file, and the good ones still get their ok line."""
    paths = [BAD / "points_text.yaml", GOOD / "program.yaml", BAD / "id_uppercase.yaml"]
    ok, errs = validate_paths(paths)
    assert len(ok) == 1 and "mini-2026" in ok[0]
    named = {str(e).split(":", 1)[0] for e in errs}
    assert named == {str(BAD / "points_text.yaml"), str(BAD / "id_uppercase.yaml")}


def test_same_file_twice_is_checked_once() -> None:
    dossier = GOOD / "teams" / "alpha.yaml"
    ok, errs = validate_paths([dossier, str(dossier)])
    assert errs == [] and len(ok) == 1


def test_several_errors_in_one_file_are_listed_in_line_order(tmp_path: Path) -> None:
    text = (BAD / "points_text.yaml").read_text("utf-8")
    text = text.replace("id: bad-case", "id: Bad-Case").replace("cut: 1", "cut: -1")
    bad = tmp_path / "two.yaml"
    bad.write_text(text, encoding="utf-8")
    _, errs = validate_paths([bad])
    got = [(str(e).split(":")[1], str(e).split(": ")[1]) for e in errs]
    assert got == [("2", "id"), ("11", "stages.0.cut"), ("14", "stages.0.composition.0.points")]
