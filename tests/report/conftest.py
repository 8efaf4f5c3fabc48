"""Fixtures for the report tests; the builders live in ``report_factories``."""

from __future__ import annotations

import pytest
from report_factories import make_selection, make_stage1

from kaieval.scoring.results import StageResult


@pytest.fixture
def stage1() -> StageResult:
    return make_stage1()


@pytest.fixture
def selection() -> StageResult:
    return make_selection()
