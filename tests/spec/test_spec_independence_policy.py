"""An independence gate's policy is validated like the rest of the programme: one line per fault."""

from __future__ import annotations

from pathlib import Path

from kaieval.spec.load import validate_paths
from kaieval.spec.program import IndependencePolicy

PROGRAM = """\
schema: kaieval/program/v1
id: policy
name: Policy
axes: [{id: tech, name: Technology}]
stages:
  - id: stage1
    name: One
    date: 2026-01-15
    total: 100
    cut: 1
    composition:
      - {id: users, points: 100, kind: users}
    gates:
      - id: independence
        kind: independence
        rule: Foreign weights used as-is or fine-tuned fail; co-adaptation alone passes
GATE_EXTRA
"""


def _errors(tmp_path: Path, extra: str) -> list[str]:
    f = tmp_path / "p.yaml"
    f.write_text(PROGRAM.replace("GATE_EXTRA", extra), encoding="utf-8")
    _, errs = validate_paths([f])
    return [str(e) for e in errs]


def test_a_policy_is_read_and_defaults_are_the_stage1_rule(tmp_path: Path) -> None:
    assert _errors(tmp_path, "        policy: {co_adapted: pass, inconclusive: flag}") == []
    p = IndependencePolicy()
    assert (p.derived_model, p.copied, p.derived_by_training, p.co_adapted) == (
        "fail", "fail", "fail", "pass")


def test_unknown_policy_line_is_one_line_naming_it(tmp_path: Path) -> None:
    errs = _errors(tmp_path, "        policy: {copied: fail, reused: fail}")
    assert len(errs) == 1 and "\n" not in errs[0]
    assert "p.yaml" in errs[0] and "policy.reused" in errs[0]


def test_bad_policy_value_is_one_line_naming_it(tmp_path: Path) -> None:
    errs = _errors(tmp_path, "        policy: {copied: maybe}")
    assert len(errs) == 1 and "policy.copied" in errs[0] and "maybe" in errs[0]


def test_policy_and_disallow_together_are_refused(tmp_path: Path) -> None:
    errs = _errors(tmp_path, "        disallow: [derived]\n        policy: {copied: fail}")
    assert len(errs) == 1 and "not both" in errs[0]


def test_policy_only_on_independence_gates(tmp_path: Path) -> None:
    errs = _errors(tmp_path, "      - {id: floor, kind: min_points, rule: r, min: 1, "
                             "policy: {copied: fail}}")
    assert len(errs) == 1 and "only an independence gate has a policy" in errs[0]
