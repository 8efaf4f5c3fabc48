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
