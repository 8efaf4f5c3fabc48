"""The request cache in a database (what Ray workers share): round trip, idempotent writes,
the same answers an evaluation reads back, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaieval.bench.api import (
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from kaieval.bench.cache import request_key
from kaieval.bench.cache_db import DbRequestCache
from kaieval.errors import KaiError


def test_round_trip_exact_and_idempotent(store_url: str) -> None:
    ll = LoglikelihoodRequest("문맥", " 답")
    gen = GenerationRequest("질문", stop=("\n",), max_tokens=5)
    a = LoglikelihoodResponse(logprob=-1.2345678901234567, greedy=True, n_tokens=2)
    b = GenerationResponse(text="한국어 답")
    first = DbRequestCache(store_url)
    first.put_many("fp", [(request_key("fp", ll), a)])
    # a second worker (or a retried job) writes the same key again, and a new one
    second = DbRequestCache(store_url)
    second.put_many("fp", [(request_key("fp", ll), a), (request_key("fp", gen), b)])
    second.put_many("fp", [])
    got = first.get_many([request_key("fp", ll), request_key("fp", gen), "absent"])
    assert got == {request_key("fp", ll): a, request_key("fp", gen): b}  # exact float
    assert len(first) == 2  # no duplicate rows
    first.close()
    second.close()


def test_a_present_key_is_kept_not_overwritten(store_url: str) -> None:
    req = LoglikelihoodRequest("a", " b")
    cache = DbRequestCache(store_url)
    kept = LoglikelihoodResponse(logprob=-1.0, greedy=False, n_tokens=1)
    cache.put_many("fp", [(request_key("fp", req), kept)])
    cache.put_many("fp", [(request_key("fp", req),
                           LoglikelihoodResponse(logprob=-2.0, greedy=True, n_tokens=1))])
    assert cache.get_many([request_key("fp", req)])[request_key("fp", req)] == kept
    cache.close()


@pytest.mark.slow
def test_evaluate_with_a_database_cache_answers_the_same(store_url: str,
                                                         tmp_path: Path) -> None:
    from kaieval.bench.run import evaluate
    from kaieval.demo.standins import build_standins

    model = build_standins(tmp_path / "m", names=["nc"])["nc"]
    local = evaluate(str(model), ["kobest_copa"], cache_dir=tmp_path / "c", progress=False,
                     limit=8)
    shared = evaluate(str(model), ["kobest_copa"], cache_url=store_url, progress=False,
                      limit=8)
    again = evaluate(str(model), ["kobest_copa"], cache_url=store_url, progress=False,
                     limit=8)
    assert shared.tasks[0].item_scores == local.tasks[0].item_scores
    assert shared.tasks[0].computed > 0 and again.tasks[0].computed == 0  # all from the db
    assert again.tasks[0].item_scores == local.tasks[0].item_scores
    # the run record names the database, never its password
    assert again.cache_path is not None and again.cache_path.split(":")[0] in store_url
    assert ":kai@" not in again.cache_path


def test_unreachable_database_is_one_line() -> None:
    with pytest.raises(KaiError) as e:
        DbRequestCache("postgresql://kai:s3cret@127.0.0.1:1/nowhere")
    assert "\n" not in str(e.value) and "s3cret" not in str(e.value)
