"""The comparison's thread pool: order kept, errors raised, and records identical on any count."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kaieval.errors import KaiError
from kaieval.provenance import check_independence
from kaieval.provenance.workers import ENV, ordered_imap, ordered_map, thread_count


def test_results_come_back_in_input_order_from_several_threads() -> None:
    names: set[str] = set()

    def slow_first(k: int) -> int:
        names.add(threading.current_thread().name)
        time.sleep(0.05 if k == 0 else 0.0)  # the first item finishes last
        return k * k

    assert ordered_map(slow_first, range(6), threads=3) == [0, 1, 4, 9, 16, 25]
    assert len(names) > 1 and all(n.startswith("kai-provenance") for n in names)


def test_one_thread_runs_on_the_caller() -> None:
    seen = ordered_map(lambda _: threading.current_thread().name, range(3), threads=1)
    assert seen == [threading.current_thread().name] * 3


def test_first_error_is_raised_and_the_rest_cancelled() -> None:
    started: list[int] = []

    def fail_at_one(k: int) -> int:
        started.append(k)
        if k == 1:
            raise ValueError("item 1")
        time.sleep(0.01)
        return k

    with pytest.raises(ValueError, match="item 1"):
        list(ordered_imap(fail_at_one, range(200), threads=2))
    assert len(started) < 200  # not-yet-started calls were cancelled


def test_thread_count_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "3")
    assert thread_count() == 3
    monkeypatch.setenv(ENV, "two")
    with pytest.raises(KaiError, match=ENV):
        thread_count()
    monkeypatch.setenv(ENV, "0")
    with pytest.raises(KaiError, match="whole number"):
        thread_count()
    monkeypatch.delenv(ENV)
    assert thread_count() >= 1


@pytest.mark.parametrize(("cand", "refs"), [
    ("finetune", ("parent",)),  # derived: diagonal matches, every component correlated
    ("independent", ("parent",)),  # no evidence: the block search screens every site
    ("pruned", ("parent", "independent")),  # moved blocks, two references, Holm
])
def test_record_is_identical_on_one_and_four_threads(
        models: dict[str, Path], variants: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        cand: str, refs: tuple[str, ...]) -> None:
    paths = {**models, **variants}
    out = []
    for n in ("1", "4"):
        monkeypatch.setenv(ENV, n)
        v = check_independence(paths[cand], [paths[r] for r in refs], stage_id="s",
                               team_id="t")
        out.append(v.model_dump(mode="json") | {"created_at": None})
    assert out[0] == out[1]
    assert out[0]["verdict"] in ("derived", "no_evidence", "partial")


def test_schedule_puts_each_blocks_sites_before_its_components() -> None:
    """Tasks follow the files' order: block b's MLP sites just before block b's tests;
    the norms, the longest single task with the least to read, first."""
    from types import SimpleNamespace

    from kaieval.provenance.compare import schedule

    comps = [("embeddings", []), ("block.0.attention", []), ("block.0.mlp", []),
             ("block.1.attention", []), ("block.1.mlp", []), ("norms", []), ("head", [])]
    plan = SimpleNamespace(sites=[SimpleNamespace(block=b) for b in (0, 1, 1, 7)])
    got = schedule(comps, plan)  # type: ignore[arg-type]
    assert got == [("component", 5), ("site", 3), ("component", 0), ("site", 0),
                   ("component", 1), ("component", 2), ("site", 1), ("site", 2),
                   ("component", 3), ("component", 4), ("component", 6)]  # norms first
    assert schedule(comps, None) == [("component", k) for k in (5, 0, 1, 2, 3, 4, 6)]


def test_assignment_solver_loads_without_scipy_optimize() -> None:
    """``kai provenance`` pays no scipy.optimize import, and solves with the same function."""
    import subprocess
    import sys

    code = ("import sys; import kaieval.provenance.verdict, kaieval.provenance.lsap as l; "
            "print('scipy.optimize' in sys.modules); import scipy.optimize as so; "
            "print(so.linear_sum_assignment is l.linear_sum_assignment)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]
