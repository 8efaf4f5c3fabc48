"""A dossier's published target figures: bare numbers, or numbers with their protocol."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kaieval.spec.dossier import PublishedScore, Target


def test_a_published_figure_may_name_its_protocol() -> None:
    t = Target.model_validate({"name": "Frontier", "published": {
        "kmmlu": {"score": 0.61, "harness": "lm-eval", "version": "0.4.13", "shots": 0},
        "mmlu": 0.8}})
    assert isinstance(t.published["kmmlu"], PublishedScore)
    assert t.published_score("kmmlu") == 0.61 and t.published_score("mmlu") == 0.8
    proto = t.published_protocol("kmmlu")
    assert proto is not None and proto.describe() == "lm-eval 0.4.13 default 0-shot"
    assert t.published_protocol("mmlu") is None  # a bare number states no protocol


@pytest.mark.parametrize("bad", [
    {"score": 1.5, "harness": "lm-eval", "version": "0.4.13", "shots": 0},  # not a fraction
    {"score": 0.5, "harness": "lm-eval", "version": "0.4.13"},  # shots missing
    {"score": 0.5, "harness": "lm-eval", "version": "0.4.13", "shots": -1},
    {"score": 0.5, "harness": "", "version": "0.4.13", "shots": 0},
])
def test_an_incomplete_protocol_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Target.model_validate({"name": "Frontier", "published": {"kmmlu": bad}})
