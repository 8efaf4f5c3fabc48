"""Shared fixtures for the store tests: every test runs on SQLite and, if configured, PostgreSQL.

PostgreSQL runs need ``KAI_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` starts a
local server and prints the URL). Each test gets a fresh schema on that server,
selected with libpq's ``options=-csearch_path=...``, and the schema is dropped
afterwards, so tests are independent and can run in any order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import get_args

import pytest
from sqlalchemy import Engine, create_engine

from kaieval.records import (
    AnyRecord,
    ArenaVotes,
    AuditItem,
    BenchmarkResult,
    CommitteeSheet,
    ComponentEvidence,
    EngineRun,
    IndependenceVerdict,
    Measurement,
    Record,
    RepechageVote,
    Retraction,
    UserRating,
    Vote,
)
from kaieval.store import Store, parse_url

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def raw(store_url: str) -> Iterator[Engine]:
    """A plain engine on the same database, for tampering behind the store's back."""
    engine = create_engine(parse_url(store_url))
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def samples() -> list[Record]:
    """One record of every concrete type in ``kaieval.records`` (two benchmarks)."""
    common = {"stage_id": "stage1", "created_at": T0, "input_hashes": {"dossier": "sha256:ab"}}
    return [
        BenchmarkResult(team_id="alpha", source="measured", benchmark_id="kmmlu", task="mcq",
                        score=0.61, item_scores=(1.0, 0.0, 1.0), stderr=0.02,
                        settings={"shots": 5, "seed": 7}, **common),
        BenchmarkResult(team_id="beta", source="measured", benchmark_id="kmmlu", task="mcq",
                        score=0.55, role="target", model_ref="ref/model", **common),
        CommitteeSheet(team_id="alpha", source="committee", component_id="tech",
                       evaluator_id="e1", scores={"novelty": 4.0, "rigour": 3.5},
                       comment="출처가 분명함", **common),
        *ArenaVotes(team_id="*", source="users",
                    votes=(Vote(voter_id="u1", a="alpha", b="beta", winner="a"),
                           Vote(voter_id="u2", a="beta", b="alpha", winner="tie",
                                battle_id="b-17")), **common).split(),
        IndependenceVerdict(team_id="alpha", source="measured", verdict="no_evidence",
                            references=("ref-a", "ref-b"), alpha=0.01,
                            evidence=(ComponentEvidence(component="embeddings",
                                                        verdict="no_evidence", test="cka",
                                                        statistic=0.12, p_value=0.4),),
                            summary="independent", **common),
        AuditItem(team_id="beta", source="declared", component_id="openness", item_id="licence",
                  points=2.0, max_points=3.0, evidence="LICENSE: Apache-2.0", **common),
        Measurement(team_id="beta", source="simulated", name="heldout_loss", value=2.31,
                    unit="nats", **common),
        RepechageVote(team_id="gamma", source="committee", evaluator_id="e2", **common),
        UserRating(team_id="alpha", source="users", component_id="panel", rater_id="u7",
                   scores={"fluency": 4.0, "usefulness": 5.0}, **common),
        Retraction(team_id="beta", source="measured",
                   target="benchmark/stage1/beta/candidate/kmmlu",
                   reason="wrong target checkpoint", **common),
        EngineRun(team_id="alpha", source="measured", engine="bench", status="measured",
                  job_key="sha256:cd", produced=("benchmark/stage1/alpha/candidate/kmmlu",),
                  notes=("ifeval: not measured",), **common),
    ]


@pytest.fixture
def record_kinds() -> set[str]:
    """Every stored ``kind`` in the ``AnyRecord`` union (so a new record type must be sampled).

    ``votes`` is a file format only: the store keeps one ``vote`` per vote.
    """
    union = get_args(AnyRecord)[0]
    return {cls.model_fields["kind"].default for cls in get_args(union)} - {"votes"}
