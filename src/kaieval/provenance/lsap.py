"""SciPy's linear assignment solver, loaded without importing ``scipy.optimize``.

Why: ``from scipy.optimize import linear_sum_assignment`` runs ``scipy.optimize``'s
``__init__``, which imports linprog, shgo, scipy.linalg, scipy.fft and more: 0.5-1.3 s
of CPU on the two-core development machine, paid on the critical path of every ``kai
provenance`` before its first test. The solver itself is one compiled module
(``scipy/optimize/_lsap*.so``) that needs only numpy, so it is loaded from its file
(a few ms). The function is the same object code, so every assignment -- and every
statistic built on one -- is identical. Where the file is not found or does not load
(another SciPy layout), the ordinary import is used.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Solver = Callable[..., tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]


def _load() -> Solver:
    if "scipy.optimize" not in sys.modules:  # else the import below costs nothing
        try:
            import scipy

            found = sorted((Path(scipy.__file__).parent / "optimize").glob("_lsap.*"))
            spec = importlib.util.spec_from_file_location("scipy.optimize._lsap", found[0])
            if spec is not None and spec.loader is not None:
                module: Any = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                solver: Solver = module.linear_sum_assignment
                return solver
        except (ImportError, IndexError, OSError, AttributeError):
            pass
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment  # type: ignore[no-any-return]


linear_sum_assignment: Solver = _load()
"""``scipy.optimize.linear_sum_assignment`` (see the module docstring)."""


UNIQUE_MARGIN = 1e-9
"""How far each row's best score must lead its runner-up for the greedy answer to be taken.

The solver works in float64; its rounding on these matrices (scores within [-1, 1], at
most a few thousand per row) is around 1e-12, so an optimum that leads every other
assignment by more than this is the one it returns."""


def max_assignment(score: npt.NDArray[Any]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """``linear_sum_assignment(score, maximize=True)``, without the solver when the answer is plain.

    Why: for a derived model almost every unit's best match is its own, so the solver's
    O(n² m) search (a 2048 x 2048 residual map, three 256 x 5632 matchings per MLP) only
    confirms what the row maxima already say. When every row's maximum is strict (by
    :data:`UNIQUE_MARGIN`) and no two rows want the same column, giving each row its
    maximum is the unique optimum: any other assignment moves some row off its maximum
    and loses at least the margin, while no row can gain. The solver returns that same
    unique optimum, so the result is the solver's, in the solver's order (rows ascending).
    Otherwise -- ties, or rows competing for a column -- the solver runs.
    """
    s = np.asarray(score)
    if s.ndim != 2 or 0 in s.shape or not np.isfinite(s).all():
        return _solve(s)
    tall = s.shape[0] > s.shape[1]  # more rows than columns: columns choose rows
    m = s.T if tall else s
    best = np.argmax(m, axis=1)
    if len(np.unique(best)) != len(best):
        return _solve(s)
    lead = np.arange(len(best), dtype=np.intp)
    top = m[lead, best].astype(np.float64)
    runner = m.copy()
    runner[lead, best] = -np.inf
    if m.shape[1] > 1 and not bool((top - runner.max(axis=1) > UNIQUE_MARGIN).all()):
        return _solve(s)
    if not tall:
        return lead, best.astype(np.intp)
    order = np.argsort(best, kind="stable")
    return best[order].astype(np.intp), lead[order]


def _solve(s: npt.NDArray[Any]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    rows, cols = linear_sum_assignment(s, maximize=True)
    return rows.astype(np.intp), cols.astype(np.intp)
