"""The bad-records corpus (tests/data/bad_records/cases.yaml) through `kai records import`.

Each case must be refused whole: exit 2, one line naming file:line and field, and the
store exactly as it was (same audit head, same records). The corpus also runs against
one database per backend, so PostgreSQL refuses the same way.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from kaieval.cli import app
from kaieval.store import Store

HERE = Path(__file__).resolve().parents[1] / "data" / "bad_records"
CASES: dict[str, dict[str, Any]] = yaml.safe_load((HERE / "cases.yaml").read_text("utf-8"))
TEAMS = [str(HERE / f"{t}.yaml") for t in ("alpha", "beta", "gamma")]
HASHES = {"model": "sha256:" + "ab" * 32}
BASES: dict[str, dict[str, Any]] = {
    "sheet": {"kind": "sheet", "stage_id": "s1", "team_id": "alpha", "source": "committee",
              "component_id": "experts", "evaluator_id": "e1", "affiliation": "Seoul Institute",
              "scores": {"report": 8, "logs": 4}},
    "vote": {"kind": "vote", "stage_id": "s1", "team_id": "*", "source": "users",
             "vote": {"voter_id": "u1", "a": "alpha", "b": "beta", "winner": "a"}},
    "rating": {"kind": "rating", "stage_id": "s2", "team_id": "alpha", "source": "users",
               "component_id": "panel", "rater_id": "u1",
               "scores": {"useful": 4, "korean": 5}},
    "votes": {"kind": "votes", "stage_id": "s1", "team_id": "*", "source": "users",
              "votes": [{"voter_id": "u1", "a": "alpha", "b": "beta", "winner": "a"},
                        {"voter_id": "u2", "a": "beta", "b": "beta", "winner": "a"},
                        {"voter_id": "u3", "a": "omega", "b": "alpha", "winner": "b"}]},
    "benchmark": {"kind": "benchmark", "stage_id": "s1", "team_id": "alpha",
                  "source": "measured", "benchmark_id": "kmmlu", "task": "kmmlu", "score": 0.61,
                  "input_hashes": HASHES},
    "audit": {"kind": "audit", "stage_id": "s1", "team_id": "alpha", "source": "measured",
              "component_id": "openness", "item_id": "licence", "points": 2, "max_points": 3,
              "evidence": "LICENSE: Apache-2.0", "input_hashes": HASHES},
    "verdict": {"kind": "verdict", "stage_id": "s1", "team_id": "alpha", "source": "measured",
                "verdict": "no_evidence", "references": ["ref"], "alpha": 0.01,
                "input_hashes": HASHES},
    "repechage_vote": {"kind": "repechage_vote", "stage_id": "s1", "team_id": "gamma",
                       "source": "committee", "evaluator_id": "e1"},
    "engine_run": {"kind": "engine_run", "stage_id": "s1", "team_id": "alpha",
                   "source": "measured", "engine": "bench", "status": "measured",
                   "job_key": "sha256:cd", "input_hashes": HASHES},
    "retraction": {"kind": "retraction", "stage_id": "s1", "team_id": "alpha",
                   "source": "committee", "target": "sheet/s1/experts/alpha/e1",
                   "reason": "withdrawn"},
}


def _line(spec: str | dict[str, Any]) -> str:
    if isinstance(spec, str):
        return spec
    if "raw_nested" in spec:
        depth = int(spec["raw_nested"])
        return '{"kind": "sheet", "x": ' + "[" * depth + "]" * depth + "}"
    rec = copy.deepcopy(BASES[spec["base"]])
    for key, value in spec.get("set", {}).items():
        if isinstance(value, dict) and "repeat" in value:
            value = value["repeat"] * value["times"]
        rec[key] = value
    for key in spec.get("drop", []):
        rec.pop(key)
    return json.dumps(rec, ensure_ascii=False)


def _write(path: Path, lines: list[str | dict[str, Any]]) -> Path:
    path.write_text("\n".join(_line(x) for x in lines) + "\n", encoding="utf-8")
    return path


def _import(file: Path, db: str, *extra: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["records", "import", str(file), *TEAMS, "--program",
                                   str(HERE / "program.yaml"), "--db", db, *extra])
    return res.exit_code, res.output


def _expect_refused(name: str, case: dict[str, Any], tmp: Path, db: str) -> None:
    if case.get("stored"):
        code, out = _import(_write(tmp / f"{name}-stored.jsonl", case["stored"]), db)
        assert code == 0, f"{name}: could not store the setup records: {out}"
    store = Store(db)
    head, before = store.audit_head(), store.records(include_retracted=True)
    file = _write(tmp / f"{name}.jsonl", case["lines"])
    extra = ("--allow-simulated",) if case.get("allow_simulated") else ()
    code, out = _import(file, db, *extra)
    assert code == 2, f"{name}: exit {code}\n{out}"
    assert "Traceback" not in out
    errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert errors, f"{name}: no error line in\n{out}"
    prefix = f"error: {file}:{case['line']}: " + (f"{case['field']}: " if "field" in case
                                                  else "")
    hits = [ln for ln in errors if ln.startswith(prefix)]
    assert hits, f"{name}: expected a line starting {prefix!r} in\n{out}"
    text = " ".join(hits)
    for says in case["says"]:
        assert says in text, f"{name}: {says!r} not in {text!r}"
    assert store.audit_head() == head, f"{name}: the store changed"
    assert store.records(include_retracted=True) == before


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_record_is_refused_with_one_line(name: str, tmp_path: Path) -> None:
    _expect_refused(name, CASES[name], tmp_path, f"sqlite:///{tmp_path / 'store.sqlite'}")


def test_every_case_on_each_backend(store_url: str, tmp_path: Path) -> None:
    """One database per backend for the whole corpus: refusals leave no trace between cases."""
    for name in sorted(CASES):
        if CASES[name].get("stored"):
            continue  # its setup records would change what later cases start from
        _expect_refused(name, CASES[name], tmp_path, store_url)
