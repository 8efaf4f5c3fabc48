"""Text matching behind ``detect_licence``: normalisation, clause sets, scoring.

Why clause sets and not whole-text hashes: real LICENSE files are re-wrapped,
have markdown headings and bullets, copyright lines, the licence's own
appendix or a project preamble, and model licences are long documents we do
not (and may not) store verbatim. So each licence is a small set of
*distinctive clauses* (``data/licence_texts/*.txt``), and a document is scored
by the weighted share of those clauses it contains:

- text and clauses are normalised the same way (Unicode NFKC, lower case,
  quotes and dashes folded, "licence" == "license", copyright lines, bullets,
  list numbers and punctuation dropped, whitespace collapsed);
- a clause is *present* when at least ``CLAUSE_HIT`` of its 3-word shingles
  occur in the document (containment, so extra text around it costs nothing);
- ``!``-marked *key* clauses (a licence's title, the NonCommercial definition)
  weigh ``KEY_WEIGHT`` and, when one is missing, the score is halved -- this is
  what keeps CC-BY from matching a CC-BY-NC text, Apache-2.0 from matching the
  Apache-based Solar licence, or Llama 3.1 from matching Llama 3.2;
- among licences tied on score, the one with more matched clause weight (the
  more specific text: BSD-3 over BSD-2) wins.

Scores below ``THRESHOLD`` give no identification: the caller reports
"unknown" rather than a guess.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

SHINGLE = 3
CLAUSE_HIT = 0.8  # share of a clause's shingles that must occur in the document
KEY_WEIGHT = 3.0
KEY_MISSING_FACTOR = 0.5
THRESHOLD = 0.6  # licence score needed to name a licence

_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
    "\u00a9": " ",
})
_COPYRIGHT_LINE = re.compile(r"^\s*(?:[#*>\-\s]*)(?:copyright\b|\(c\)\s|all rights reserved)",
                             re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[#>*\-+•·|]+|\(?[0-9]{1,2}[.)]|\(?[a-z][.)]|\([ivx]+\))\s+",
                     re.IGNORECASE)
_WORD = re.compile(r"[0-9a-z\uac00-\ud7a3]+")


def normalise(text: str) -> list[str]:
    """Words of ``text`` after the normalisation described in the module docstring."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD)
    kept: list[str] = []
    for line in text.splitlines():
        if _COPYRIGHT_LINE.match(line):
            continue
        while True:  # "1. (a) - text" -> "text"
            stripped = _BULLET.sub("", line, count=1)
            if stripped == line:
                break
            line = stripped
        kept.append(line)
    words = _WORD.findall(" ".join(kept).lower())
    return ["license" if w == "licence" else "licenses" if w == "licences" else w for w in words]


def shingles(words: list[str]) -> set[tuple[str, ...]]:
    """The set of consecutive ``SHINGLE``-word tuples (a shorter text is one tuple)."""
    if len(words) < SHINGLE:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


@dataclass(frozen=True)
class Clause:
    """One distinctive clause of a reference file."""

    text: str  # as written in the reference file, for evidence
    shingles: frozenset[tuple[str, ...]]
    key: bool


@dataclass(frozen=True)
class ClauseSet:
    """All clauses of one reference file for one licence id."""

    licence_id: str
    file: str
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class SetScore:
    """How well one document matched one clause set."""

    licence_id: str
    file: str
    score: float
    matched_weight: float
    matched: tuple[str, ...]
    missing_keys: tuple[str, ...]


def parse_clause_file(licence_id: str, name: str, text: str) -> ClauseSet:
    """Parse a reference file: ``#`` comments, blank-line separated clauses, ``!`` = key."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    clauses: list[Clause] = []
    for para in re.split(r"\n\s*\n", body):
        para = " ".join(para.split())
        if not para:
            continue
        key = para.startswith("! ")
        para = para[2:] if key else para
        sh = shingles(normalise(para))
        if sh:
            clauses.append(Clause(text=para, shingles=frozenset(sh), key=key))
    return ClauseSet(licence_id=licence_id, file=name, clauses=tuple(clauses))


@lru_cache(maxsize=1)
def bundled_clause_sets(pairs: tuple[tuple[str, str], ...]) -> tuple[ClauseSet, ...]:
    """Load ``(licence id, file name)`` pairs from the package's ``licence_texts`` folder."""
    folder = resources.files("kaieval.audit") / "data" / "licence_texts"
    return tuple(parse_clause_file(lid, name, (folder / name).read_text("utf-8"))
                 for lid, name in pairs)


def score_set(doc: set[tuple[str, ...]], cs: ClauseSet) -> SetScore:
    """Weighted share of ``cs``'s clauses present in the document's shingles."""
    total = hit = 0.0
    matched: list[str] = []
    missing_keys: list[str] = []
    for clause in cs.clauses:
        weight = KEY_WEIGHT if clause.key else 1.0
        total += weight
        found = len(clause.shingles & doc) / len(clause.shingles)
        if found >= CLAUSE_HIT:
            hit += weight
            matched.append(clause.text)
        elif clause.key:
            missing_keys.append(clause.text)
    score = hit / total if total else 0.0
    if missing_keys:
        score *= KEY_MISSING_FACTOR
    return SetScore(cs.licence_id, cs.file, round(score, 4), hit, tuple(matched),
                    tuple(missing_keys))


def rank(text: str, sets: Iterable[ClauseSet]) -> list[SetScore]:
    """Best score per licence id, best first (ties: more matched weight, then id)."""
    doc = shingles(normalise(text))
    best: dict[str, SetScore] = {}
    for cs in sets:
        s = score_set(doc, cs)
        old = best.get(s.licence_id)
        if old is None or (s.score, s.matched_weight) > (old.score, old.matched_weight):
            best[s.licence_id] = s
    return sorted(best.values(), key=lambda s: (-s.score, -s.matched_weight, s.licence_id))
