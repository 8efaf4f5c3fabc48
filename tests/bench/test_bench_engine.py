"""Engine: dedup, cache reuse across reruns and tasks, sample log, kill -9 resume, run record.

Everything runs the real HF backend on a real tiny stand-in model. ``MiniTask``
is a small but complete implementation of the ``Task`` Protocol (multiple
choice with few-shot prefixes and sentence answers) so the engine is tested
independently of the task package; the kill test's child process imports this
file to get the same task.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kaieval.bench.api import (
    Doc,
    DocRequests,
    DocScore,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
    MetricSummary,
    OutputType,
    Response,
)
from kaieval.bench.cache import RequestCache, request_key
from kaieval.bench.engine import answer_requests, run_task, write_sample_log
from kaieval.errors import KaiError

pytestmark = pytest.mark.slow  # builds the demo stand-in model (torch)


def _sentences(n: int) -> list[str]:
    from kaieval.synth.corpus import corpus_text

    parts = [s.strip() for s in corpus_text("train", 60_000).replace("\n", " ").split(". ")]
    return [s for s in parts if 16 <= len(s) <= 60][:n]


class MiniTask:
    """k-shot multiple choice: pick the true ending of a sentence among four."""

    output_type: OutputType = "multiple_choice"
    metrics: tuple[str, ...] = ("acc", "acc_norm")

    def __init__(self, n_docs: int = 12, shots: int = 2, name: str = "mini") -> None:
        self.name, self.shots = name, shots
        sents = _sentences(4 * n_docs + 8)
        self._docs = []
        for i in range(n_docs):
            four = sents[4 * i: 4 * i + 4]
            label = (i * 7) % 4
            stem = four[label][: len(four[label]) // 2]
            self._docs.append(Doc(f"d{i}", {"stem": stem, "label": label,
                                            "choices": [s[len(s) // 2:] for s in four]}))

    def task_hash(self) -> str:
        blob = json.dumps([self.name, self.shots, [d.fields for d in self._docs]],
                          ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def dataset_hashes(self) -> dict[str, str]:
        return {"test": self.task_hash()[:16]}

    def docs(self, limit: int | None = None) -> list[Doc]:
        return self._docs[:limit] if limit else list(self._docs)

    def _text(self, doc: Doc) -> str:
        return f"문장: {doc.fields['stem']}"

    def build(self, doc: Doc, num_fewshot: int | None = None) -> list[DocRequests]:
        k = self.shots if num_fewshot is None else num_fewshot
        others = [d for d in self._docs if d.doc_id != doc.doc_id][:k]
        shots = [self._text(d) + " " + d.fields["choices"][d.fields["label"]] for d in others]
        context = "\n\n".join([*shots, self._text(doc)])
        choices = tuple(doc.fields["choices"])
        reqs = tuple(LoglikelihoodRequest(context, " " + c) for c in choices)
        return [DocRequests(doc=doc, requests=reqs, prompt=context, choices=choices,
                            target=int(doc.fields["label"]))]

    def score(self, built: Sequence[DocRequests], responses: Sequence[Sequence[Response]]
              ) -> DocScore:
        b = built[0]
        lls = [r.logprob for r in responses[0] if isinstance(r, LoglikelihoodResponse)]
        pred = max(range(len(lls)), key=lambda i: lls[i])
        norm = max(range(len(lls)), key=lambda i: lls[i] / len(" " + b.choices[i]))
        return DocScore(doc_id=b.doc.doc_id,
                        prompt_hash=hashlib.sha256(b.prompt.encode()).hexdigest(),
                        metrics={"acc": float(pred == b.target),
                                 "acc_norm": float(norm == b.target)},
                        prediction=pred, target=b.target, loglikelihoods=tuple(lls))

    def aggregate(self, scores: Sequence[DocScore]) -> dict[str, MetricSummary]:
        out = {}
        for m in self.metrics:
            xs = [s.metrics[m] for s in scores]
            mean = sum(xs) / len(xs)
            sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / max(1, len(xs) - 1))
            se = sd / math.sqrt(len(xs))
            out[m] = MetricSummary(mean, se, mean - 1.96 * se, mean + 1.96 * se, len(xs))
        return out


class Counting:
    """The real backend, recording which requests it was asked to compute."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name
        self.seen: list[Any] = []

    def fingerprint(self) -> str:
        return str(self.inner.fingerprint())

    def describe(self) -> dict[str, Any]:
        return dict(self.inner.describe())

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[Any]:
        self.seen.extend(requests)
        return list(self.inner.loglikelihood(requests))

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        self.seen.extend(requests)
        return list(self.inner.generate(requests))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kaieval.demo.standins import build_standins

    return build_standins(tmp_path_factory.mktemp("standins"), names=["nc"])["nc"]


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> Any:
    from kaieval.bench.backends.hf import HFBackend

    return HFBackend(model_dir, batch_size=4)


def test_cache_makes_rerun_and_other_tasks_free(backend: Any, tmp_path: Path) -> None:
    task = MiniTask(n_docs=6)
    counting = Counting(backend)
    with RequestCache(tmp_path / "c.sqlite") as cache:
        first = run_task(task, counting, cache=cache, progress=False)
        assert first.stats.computed == first.stats.n_unique == 24
        assert len(counting.seen) == 24
        again = run_task(task, counting, cache=cache, progress=False)
        # same prompts under another task name (e.g. a new metric): still no inference
        renamed = run_task(MiniTask(n_docs=6, name="mini-renamed"), counting, cache=cache,
                           progress=False)
    assert len(counting.seen) == 24
    assert again.stats.cache_hits == 24 and again.stats.computed == 0
    assert renamed.stats.computed == 0
    assert [s.loglikelihoods for s in again.scores] == [s.loglikelihoods for s in first.scores]
    assert first.metrics["acc"].n == 6


def test_duplicate_requests_are_computed_once(backend: Any) -> None:
    req = LoglikelihoodRequest("문장: 오늘 날씨는", " 맑습니다")
    other = LoglikelihoodRequest("문장: 오늘 날씨는", " 흐립니다")
    counting = Counting(backend)
    answers, stats = answer_requests(counting, [req, other, req, req], progress=False)
    assert stats.n_requests == 4 and stats.n_unique == 2 and len(counting.seen) == 2
    assert answers[0] == answers[2] == answers[3] and answers[0] != answers[1]


def test_fingerprint_keys_the_cache(backend: Any) -> None:
    req = LoglikelihoodRequest("a", " b")
    assert request_key("fp1", req) != request_key("fp2", req)
    assert request_key("fp1", req) == request_key("fp1", LoglikelihoodRequest("a", " b"))


def test_sample_log(backend: Any, tmp_path: Path) -> None:
    out = run_task(MiniTask(n_docs=3), backend, progress=False)
    path = tmp_path / "logs" / "samples.jsonl"
    write_sample_log(path, [out])
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert [r["doc_id"] for r in rows] == ["d0", "d1", "d2"]
    for row, score in zip(rows, out.scores, strict=True):
        assert len(row["loglikelihoods"]) == 4
        assert row["prediction"] == max(range(4), key=lambda i: row["loglikelihoods"][i])
        assert set(row["metrics"]) == {"acc", "acc_norm"} and len(row["prompt_hash"]) == 64
        assert row["loglikelihoods"] == list(score.loglikelihoods)
    # every request verbatim, so another harness's log can be compared item by item
    for row, built in zip(rows, out.built, strict=True):
        sent = [r for b in built for r in b.requests]
        assert row["requests"] == [{"type": "loglikelihood", "context": r.context,
                                    "continuation": r.continuation} for r in sent]
        assert len(row["requests"]) == 4


def test_empty_task_is_an_error(backend: Any) -> None:
    task = MiniTask(n_docs=2)
    task._docs = []
    with pytest.raises(KaiError, match="no documents"):
        run_task(task, backend, progress=False)


CHILD = """
import sys, time
from importlib import util
from pathlib import Path
spec = util.spec_from_file_location("engine_test_mod", sys.argv[1])
mod = util.module_from_spec(spec); spec.loader.exec_module(mod)
from kaieval.bench.backends.hf import HFBackend
from kaieval.bench.cache import RequestCache
from kaieval.bench.engine import run_task

class Slow(mod.Counting):
    def loglikelihood(self, requests):
        time.sleep(0.4)  # leave the parent time to kill us mid-run
        return super().loglikelihood(requests)

cache = RequestCache(Path(sys.argv[3]))
run_task(mod.MiniTask(n_docs=16), Slow(HFBackend(sys.argv[2], batch_size=2)), cache=cache,
         contexts_per_chunk=2, progress=False)
print("FINISHED")
"""


def _rows(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(str(path)) as db:
        try:
            return {k for (k,) in db.execute("SELECT key FROM responses")}
        except sqlite3.OperationalError:
            return set()


def test_kill_9_then_rerun_recomputes_nothing_finished(backend: Any, model_dir: Path,
                                                        tmp_path: Path) -> None:
    db = tmp_path / "cache.sqlite"
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), __file__, str(model_dir), str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_rows(db)) < 16 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    done = _rows(db)
    assert 16 <= len(done) < 64, len(done)  # killed in the middle, chunks committed

    task = MiniTask(n_docs=16)
    counting = Counting(backend)
    with RequestCache(db) as cache:
        resumed = run_task(task, counting, cache=cache, progress=False)
    fp = backend.fingerprint()
    recomputed = {request_key(fp, r) for r in counting.seen}
    assert not recomputed & done  # no finished request computed again
    assert len(counting.seen) == 64 - len(done) == resumed.stats.computed
    fresh = run_task(task, backend, progress=False)
    for a, b in zip(resumed.scores, fresh.scores, strict=True):
        assert a.prediction == b.prediction and a.metrics == b.metrics
        assert max(abs(x - y) for x, y in zip(a.loglikelihoods, b.loglikelihoods,
                                              strict=True)) < 1e-5
    assert resumed.metrics == fresh.metrics
