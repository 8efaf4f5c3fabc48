"""Request cache: keys, JSON round trip, persistence across connections, damaged rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kaieval.bench.api import (
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from kaieval.bench.cache import RequestCache, request_key, response_matches
from kaieval.errors import KaiError


def test_round_trip_and_persistence(tmp_path: Path) -> None:
    ll = LoglikelihoodRequest("문맥", " 답")
    gen = GenerationRequest("질문", stop=("\n",), max_tokens=5)
    a = LoglikelihoodResponse(logprob=-1.2345678901234567, greedy=True, n_tokens=2)
    b = GenerationResponse(text="한국어 답")
    path = tmp_path / "sub" / "c.sqlite"
    with RequestCache(path) as cache:
        cache.put_many("fp", [(request_key("fp", ll), a), (request_key("fp", gen), b)])
    with RequestCache(path) as cache:  # a new connection, as after a crash
        got = cache.get_many([request_key("fp", ll), request_key("fp", gen), "absent"])
        assert len(cache) == 2
    assert got == {request_key("fp", ll): a, request_key("fp", gen): b}  # exact float


def test_keys_cover_type_and_every_field() -> None:
    base = GenerationRequest("q", stop=("x",), max_tokens=5)
    reqs: list[GenerationRequest | LoglikelihoodRequest] = [
        base, GenerationRequest("q", stop=("y",), max_tokens=5),
        GenerationRequest("q", stop=("x",), max_tokens=6),
        GenerationRequest("q", stop=("x",), max_tokens=5, chat=True),
        LoglikelihoodRequest("q", "x")]
    keys = {request_key("fp", r) for r in reqs}
    assert len(keys) == 5
    assert request_key("fp", base) == request_key("fp", GenerationRequest("q", ("x",), 5))
    assert request_key("fp", base) != request_key("fp2", base)


def test_damaged_rows_are_misses(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    req = LoglikelihoodRequest("a", " b")
    with RequestCache(path) as cache:
        cache.put_many("fp", [(request_key("fp", req), GenerationResponse("x"))])
    with sqlite3.connect(str(path)) as db:
        db.execute("INSERT INTO responses VALUES ('bad', 'fp', '{not json')")
    with RequestCache(path) as cache:
        got = cache.get_many([request_key("fp", req), "bad"])
    assert "bad" not in got
    assert not response_matches(req, got[request_key("fp", req)])  # wrong type is detected


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(KaiError, match="cannot open request cache"):
        RequestCache(path)
