"""Sovereignty figures from a real dossier folder (YAML + files), with their evidence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kaieval.audit.measures import AuditContext, Figure
from kaieval.audit.sovereignty import (
    compute_figures,
    contradiction_flags,
    data_figures,
    dependency_figures,
    independence_figure,
    serving_figure,
)
from kaieval.records import IndependenceVerdict
from kaieval.spec.load import load_dossier
from kaieval.spec.program import Source

DossierWriter = Callable[..., Path]


def ctx_of(path: Path, verdict: IndependenceVerdict | None = None) -> AuditContext:
    return AuditContext(loaded=load_dossier(path, check_files=False), stage_id="selection",
                        verdict=verdict)


def by_name(figs: list[Figure]) -> dict[str, Figure]:
    return {f.measure: f for f in figs}


def verdict(v: str) -> IndependenceVerdict:
    return IndependenceVerdict(stage_id="selection", team_id="alpha", source=Source.MEASURED,
                               verdict=v, references=("base",), alpha=0.01,  # type: ignore[arg-type]
                               summary="test")


def test_compute_shares_by_count_with_evidence_line(write_team: DossierWriter) -> None:
    f = by_name(compute_figures(ctx_of(write_team())))
    assert f["sovereignty.accelerators"].value == 1000
    assert f["sovereignty.owned_share"].value == pytest.approx(0.6)
    assert f["sovereignty.rented_share"].value == pytest.approx(0.2)
    assert f["sovereignty.government_share"].value == pytest.approx(0.2)
    assert f["sovereignty.controlled_share"].value == pytest.approx(0.8)
    assert f["sovereignty.domestic_accelerator_share"].value == pytest.approx(0.2)
    ev = f["sovereignty.owned_share"].where
    assert ev.startswith("alpha.yaml:") and "compute.accelerators" in ev
    line = int(ev.split(":")[1].split(" ")[0])
    text = (write_team().read_text("utf-8").splitlines())
    assert "accelerators" in text[line - 1]


def test_no_accelerators_is_not_measured_not_zero(write_team: DossierWriter) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["compute"] = {}

    f = by_name(compute_figures(ctx_of(write_team(edit))))
    assert f["sovereignty.domestic_accelerator_share"].value is None
    assert "no accelerators" in f["sovereignty.domestic_accelerator_share"].detail


def test_data_shares_token_weighted_and_uncounted_left_out(write_team: DossierWriter) -> None:
    f = by_name(data_figures(ctx_of(write_team())))
    assert f["sovereignty.korean_origin_share"].value == pytest.approx(0.75)
    assert f["sovereignty.disclosed_share"].value == pytest.approx(0.75)
    assert f["sovereignty.licensed_share"].value == pytest.approx(0.75)
    assert f["sovereignty.korean_language_share"].value == pytest.approx(0.6)
    assert "1 without a token count left out" in f["sovereignty.korean_origin_share"].detail


def test_data_without_token_counts_is_not_measured(write_team: DossierWriter) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["data"] = {"datasets": [{"name": "x", "origin": "KR"}]}

    f = by_name(data_figures(ctx_of(write_team(edit))))
    assert all(x.value is None for x in f.values())


def test_dependencies_count_only_foreign_partners(write_team: DossierWriter) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["dependencies"].update(
            base_models=["Qwen2.5-7B"], foreign_apis=["OpenAI API"])

    f = by_name(dependency_figures(ctx_of(write_team(edit))))
    assert f["sovereignty.foreign_partnerships"].value == 1  # the KR partner is not foreign
    assert "Delta Labs (US)" in f["sovereignty.foreign_partnerships"].detail
    assert f["sovereignty.foreign_dependencies"].value == 3


@pytest.mark.parametrize(("v", "expected"), [("no_evidence", True), ("derived", False),
                                               ("partial", False), ("inconclusive", None)])
def test_independence_from_verdict(write_team: DossierWriter, v: str,
                                   expected: bool | None) -> None:
    fig = independence_figure(ctx_of(write_team(), verdict(v)))
    assert fig.value is expected
    assert fig.source == "measured"


def test_independence_without_verdict_is_not_measured(write_team: DossierWriter) -> None:
    assert independence_figure(ctx_of(write_team())).value is None


def test_serving_checked_from_local_weights(write_team: DossierWriter) -> None:
    fig = serving_figure(ctx_of(write_team()))
    assert fig.value is True and fig.source == "measured"
    assert "model.safetensors" in fig.detail


def test_serving_without_weights_or_endpoint_only_is_unknown(write_team: DossierWriter) -> None:
    assert serving_figure(ctx_of(write_team(weights=False))).value is None

    def endpoint(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["model"] = {"endpoint": "https://api.example.com/v1",
                                                  "model_name": "m"}

    fig = serving_figure(ctx_of(write_team(endpoint)))
    assert fig.value is None and "endpoint-only" in fig.detail


def test_serving_declaration_wins(write_team: DossierWriter) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["serving"] = {"requires_foreign_api": True}

    fig = serving_figure(ctx_of(write_team(edit)))
    assert fig.value is False and "serving.requires_foreign_api" in fig.where


def test_foreign_api_without_declaration_is_unknown(write_team: DossierWriter) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["dependencies"]["foreign_apis"] = ["OpenAI API"]

    assert serving_figure(ctx_of(write_team(edit))).value is None


def test_contradiction_no_base_model_declared_but_derived(write_team: DossierWriter) -> None:
    path = write_team()
    flags = contradiction_flags(ctx_of(path, verdict("partial")))
    assert [f.kind for f in flags] == ["contradiction"]
    assert "declares no base model" in flags[0].message
    assert contradiction_flags(ctx_of(path, verdict("no_evidence"))) == []
