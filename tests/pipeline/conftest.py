"""A small real programme for the pipeline tests: three teams' dossiers over real tiny models.

Models are the demo's recipes, built once per module with torch: ``foreign-base`` (the
reference and every team's declared target), ``kakao`` (fine-tuned from it: derived),
``nc`` and ``skt`` (trained from scratch: independent).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PROGRAM = """\
schema: kaieval/program/v1
id: test-programme
name: Test programme
axes:
  - {id: tech, name: Technology}
stages:
  - id: s1
    name: Stage one
    date: 2026-08-31
    total: 60
    cut: 1
    composition:
      - id: bench
        title: Benchmarks relative to the declared target
        points: 40
        axis: tech
        kind: benchmarks
        benchmarks:
          - {id: copa, task: kobest_copa}
          - {id: arc, task: arc}
      - id: audit
        title: Audited sovereignty
        points: 20
        axis: tech
        kind: audit
        rubric:
          - {id: owned, title: "Owned compute", max: 10,
             rule: {measure: sovereignty.owned_share, points: linear, from: 0, to: 1}}
          - {id: tok, title: "Korean tokenizer efficiency", max: 10,
             rule: {measure: tokenizer.chars_per_token, points: linear, from: 0.5, to: 3}}
    gates:
      - id: independence
        kind: independence
        rule: "Weights trained from initialisation by the team"
        disallow: [derived, partial]
        registry: registry
    tie_breakers: [bench]
    robustness_replicates: 200
"""


def dossier(tid: str, model: str, *, base: str | None = None, owned: bool = True) -> str:
    deps = f"    dependencies: {{base_models: [{base}]}}\n" if base else ""
    own = "owned" if owned else "rented"
    return f"""\
schema: kaieval/dossier/v1
team: {{id: {tid}, name: Team {tid.upper()}, lead: Org {tid}}}
submissions:
  s1:
    model: {{path: {model}}}
    target: {{name: Foreign Base, path: models/foreign-base}}
    compute:
      accelerators:
        - {{vendor: NVIDIA, model: H100, count: 8, ownership: {own}}}
{deps}"""


@pytest.fixture(scope="module")
def built_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kaieval.demo.standins import build_standins

    root = tmp_path_factory.mktemp("standins")
    build_standins(root, names=["kakao", "nc", "skt"])
    return root


@pytest.fixture()
def programme(built_models: Path, tmp_path: Path) -> Path:
    """A folder with program.yaml, three dossiers, models/ and an empty registry/."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("foreign-base", "kakao", "nc", "skt"):
        shutil.copytree(built_models / name, models / name)
    (tmp_path / "program.yaml").write_text(PROGRAM, "utf-8")
    (tmp_path / "a.yaml").write_text(dossier("a", "models/nc"), "utf-8")
    (tmp_path / "b.yaml").write_text(dossier("b", "models/kakao", base="foreign-base"), "utf-8")
    (tmp_path / "c.yaml").write_text(dossier("c", "models/skt", owned=False), "utf-8")
    return tmp_path
