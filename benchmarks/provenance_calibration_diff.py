"""Compare two calibration summaries: every verdict, p-value, kind, effect, share and rate.

Why: a change to the provenance engine that must not change any number (a faster
reader, a new schedule) changes the summary's ``code_sha256`` and nothing else. This
prints every other difference and exits 1 if there is one; the fields that name the code
or the run (``code_sha256``, ``git_commit``, timings) are left out.

    .venv/bin/python benchmarks/provenance_calibration_diff.py \\
        benchmarks/provenance_calibration.json /tmp/cal.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

IGNORED = frozenset({"code_sha256", "git_commit", "seconds", "build_seconds", "check_seconds",
                     "total_seconds", "created_at"})


def differences(a: object, b: object, path: str = "") -> list[tuple[str, object, object]]:
    """(path, left, right) for every leaf that differs, ignored fields left out."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) if k not in IGNORED
                for d in differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b and type(a) is type(b) else [(path, a, b)]


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[0])
        print("usage: provenance_calibration_diff.py BEFORE.json AFTER.json")
        return 2
    before, after = (json.loads(Path(p).read_text(encoding="utf-8")) for p in sys.argv[1:3])
    found = differences(before, after)
    for path, x, y in found[:50]:
        print(f"DIFF {path}: {str(x)[:160]!r} != {str(y)[:160]!r}")
    pairs = before.get("pairs", []) if isinstance(before, dict) else []
    print(f"{len(pairs)} pairs, {sum(len(p.get('p_values', {})) for p in pairs)} component "
          f"p-values compared; {len(found)} difference(s) outside {sorted(IGNORED)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
