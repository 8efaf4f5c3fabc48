"""Stage engine robustness benchmark: fast committee bootstrap vs a straightforward reference.

Generates a seeded committee problem (default 1,000 teams × 100 evaluators × 20
rubric items, 1,000 replicates), runs

* ``fast``: ``kaieval.scoring.robustness`` — evaluator weights, bootstrap committee
  points, survival probabilities and percentile intervals for all replicates;
* ``reference``: per replicate, repeat each evaluator's sheets by its weight,
  sort every (team, item) column with ``np.sort`` and average the middle — run on
  the first ``--reference-replicates`` replicates and extrapolated to all,

checks that both agree on those replicates to 1e-9, and prints a side-by-side
table. Peak memory is measured in a second, separate pass with ``tracemalloc``
(numpy reports its buffers to it), so the timed pass runs untraced.

    .venv/bin/python benchmarks/stage_engine.py            # acceptance size
    .venv/bin/python benchmarks/stage_engine.py --teams 100 --replicates 200   # quick

Exit status 1 if the implementations disagree or (with ``--target``) the fast
path misses the time target. Results are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from kaieval.scoring.robustness import (
    DEFAULT_WORKERS,
    bootstrap_committee_points,
    evaluator_weights,
    interval,
    survival_probability,
)

Array = NDArray[np.float64]
POINTS = 40.0
TRIM_MIN = 5


@dataclass(frozen=True)
class Problem:
    scores: Array  # [E, T, I], NaN = no sheet
    coi: NDArray[np.bool_]  # [E, T]
    item_max: Array  # [I]
    eligible: NDArray[np.bool_]  # [T]


def make_problem(teams: int, evaluators: int, items: int, seed: int) -> Problem:
    """Team quality + evaluator severity + item difficulty + noise, on a 0–10 scale.

    Scores are continuous (not rounded to a grid): the worst case for the exact
    sums, which need two slices instead of one. 3 % of sheets are missing, 2 % of
    (evaluator, team) pairs are conflicted and 2 % of teams fail a gate.
    """
    rng = np.random.default_rng(seed)
    quality = rng.normal(6.0, 1.2, teams)
    severity = rng.normal(0.0, 0.5, evaluators)
    difficulty = rng.normal(0.0, 0.4, items)
    noise = rng.normal(0.0, 1.0, (evaluators, teams, items))
    scores = quality[None, :, None] - severity[:, None, None] - difficulty[None, None, :] + noise
    scores = np.clip(scores, 0.0, 10.0)
    missing = rng.random((evaluators, teams)) < 0.03
    scores[missing] = np.nan
    coi = rng.random((evaluators, teams)) < 0.02
    eligible = rng.random(teams) >= 0.02
    return Problem(scores, coi, np.full(items, 10.0), eligible)


def reference_points(p: Problem, w: NDArray[np.int64]) -> Array:
    """One replicate the obvious way: repeat sheets by weight, sort, average the middle."""
    rows = np.repeat(p.scores, w, axis=0)  # [Σw, T, I]
    bad = np.repeat(p.coi, w, axis=0)[:, :, None] | np.isnan(rows)
    x = np.sort(np.where(bad, np.nan, rows), axis=0)  # valid first, ascending; NaN last
    n = (~bad).sum(axis=0)  # [T, I]
    pos = np.arange(x.shape[0])[:, None, None]
    trim = n >= TRIM_MIN
    lo = np.where(trim, 1, 0)
    hi = np.where(trim, n - 1, n)  # exclusive
    keep = (pos >= lo) & (pos < hi)
    kept = np.where(keep, np.nan_to_num(x), 0.0).sum(axis=0)
    count = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(count > 0, kept / count, np.nan)
    return np.asarray(POINTS * means.sum(axis=1) / p.item_max.sum(), dtype=np.float64)


def run_fast(p: Problem, weights: NDArray[np.int64], chunk: int | None, workers: int | None,
             cut: int) -> tuple[Array, Array]:
    totals = bootstrap_committee_points(p.scores, p.coi, p.item_max, POINTS, weights=weights,
                                        trim_min=TRIM_MIN, chunk_size=chunk, workers=workers)
    surv = survival_probability(totals, cut=cut, advance=None, eligible=p.eligible)
    interval(totals)
    return totals, surv


def run_reference(p: Problem, weights: NDArray[np.int64], cut: int) -> tuple[Array, Array]:
    totals = np.stack([reference_points(p, w) for w in weights])
    surv = survival_probability(totals, cut=cut, advance=None, eligible=p.eligible)
    interval(totals)
    return totals, surv


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU (all threads) seconds of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def traced_peak(fn: Callable[[], object]) -> float:
    """Peak bytes allocated during ``fn`` (tracemalloc), in MiB, above what was live before."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teams", type=int, default=1000)
    ap.add_argument("--evaluators", type=int, default=100)
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--reference-replicates", type=int, default=20)
    ap.add_argument("--cut", type=int, default=1, help="teams cut on score per replicate")
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--seed", type=int, default=20250801)
    ap.add_argument("--target", type=float, default=None,
                    help="fail (exit 1) if the fast path's wall time exceeds this many seconds")
    args = ap.parse_args(argv)

    p = make_problem(args.teams, args.evaluators, args.items, args.seed)
    k = min(args.reference_replicates, args.replicates)
    load_before = os.getloadavg()[0]

    # Timed passes (untraced). The fast path draws its weights inside the timing; it runs
    # with its default worker threads and with one, and must give the same bits both ways.
    holder: dict[str, tuple[Array, Array]] = {}
    weights_seen: list[NDArray[np.int64]] = []

    def fast(workers: int | None, key: str) -> Callable[[], None]:
        def go() -> None:
            w = evaluator_weights(args.evaluators, args.replicates,
                                  np.random.default_rng(args.seed))
            weights_seen.append(w)
            holder[key] = run_fast(p, w, args.chunk_size, workers, args.cut)
        return go

    # Warm-up (imports, allocator, BLAS threads) so that the first timed row is not penalised.
    run_fast(p, evaluator_weights(args.evaluators, 8, np.random.default_rng(0)),
             args.chunk_size, 2, args.cut)
    fast_wall, fast_cpu = timed(fast(None, "fast"))
    two_wall, two_cpu = timed(fast(2, "fast2"))
    weights = weights_seen[0]
    ref_wall, ref_cpu = timed(lambda: holder.__setitem__("ref",
                                                         run_reference(p, weights[:k], args.cut)))
    load_after = os.getloadavg()[0]

    diff = float(np.nanmax(np.abs(holder["fast"][0][:k] - holder["ref"][0])))
    same_nan = bool(np.array_equal(np.isnan(holder["fast"][0][:k]), np.isnan(holder["ref"][0])))
    same_bits = bool(np.array_equal(holder["fast"][0], holder["fast2"][0], equal_nan=True))
    agree = same_nan and diff <= 1e-9 and same_bits

    fast_mem = traced_peak(lambda: run_fast(p, weights, args.chunk_size, None, args.cut))
    two_mem = traced_peak(lambda: run_fast(p, weights, args.chunk_size, 2, args.cut))
    ref_mem = traced_peak(lambda: run_reference(p, weights[: min(k, 2)], args.cut))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    per_ref = ref_wall / k
    ref_full = per_ref * args.replicates
    print(f"stage engine robustness — {args.teams} teams × {args.evaluators} evaluators × "
          f"{args.items} items, {args.replicates} replicates, cut {args.cut}, seed {args.seed}")
    print(f"date {dt.date.today()}, {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} usable cores of {os.cpu_count()}, "
          f"numpy {np.__version__}, python {platform.python_version()}, "
          f"load average {load_before:.1f} → {load_after:.1f}")
    header = (f"{'implementation':<34} {'replicates':>10} {'wall s':>9} {'CPU s':>8} "
              f"{'ms/replicate':>13} {'peak MiB':>9} {'ratio':>7}")
    print(header)
    print("-" * len(header))
    rows = [(f"fast, {DEFAULT_WORKERS} worker (default)", fast_wall, fast_cpu, fast_mem),
            ("fast, 2 worker threads", two_wall, two_cpu, two_mem)]
    for name, wall, cpu, mem in rows:
        print(f"{name:<34} {args.replicates:>10} {wall:>9.2f} {cpu:>8.2f} "
              f"{wall / args.replicates * 1e3:>13.2f} {mem:>9.0f} {wall / fast_wall:>7.1f}")
    print(f"{'reference, measured':<34} {k:>10} {ref_wall:>9.2f} {ref_cpu:>8.2f} "
          f"{per_ref * 1e3:>13.2f} {ref_mem:>9.0f} {'':>7}")
    print(f"{'reference, extrapolated':<34} {args.replicates:>10} {ref_full:>9.1f} "
          f"{ref_cpu / k * args.replicates:>8.1f} {per_ref * 1e3:>13.2f} {'':>9} "
          f"{ref_full / fast_wall:>7.1f}")
    print("fast = evaluator weights + bootstrap committee points + survival + intervals; "
          "reference = the same per replicate by repeated rows and np.sort, timed on "
          f"{k} replicates and extrapolated (times {args.replicates // max(k, 1)})")
    print(f"peak MiB: tracemalloc peak during a separate untimed pass (reference: 2 replicates; "
          f"its memory does not grow with replicates); process max RSS {rss:.0f} MiB")
    print(f"agreement on the first {k} replicates: max |Δ| = {diff:.2e} points, "
          f"NaN pattern {'equal' if same_nan else 'DIFFERENT'}; {DEFAULT_WORKERS} vs 2 "
          f"workers {'bitwise equal' if same_bits else 'DIFFERENT'} "
          f"-> {'OK' if agree else 'FAIL'}")
    survivors = holder["fast"][1]
    print(f"survival: {int(np.sum(survivors == 1.0))} teams always survive, "
          f"{int(np.sum((survivors > 0) & (survivors < 1)))} sometimes, "
          f"{int(np.sum(survivors == 0))} never (incl. {int(np.sum(~p.eligible))} gated)")
    if not agree:
        return 1
    if args.target is not None and fast_wall > args.target:
        print(f"fast path took {fast_wall:.2f} s, above the target {args.target:g} s")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
