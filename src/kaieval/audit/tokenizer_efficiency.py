"""Korean tokenizer efficiency: how many tokens a tokenizer spends on Korean text.

Why this exists: the programme's sovereignty axis rewards models built *for*
Korean, and vendors claim "N % fewer tokens than GPT-4o" without a shared
yardstick. We measure every tokenizer on one fixed, bundled Korean corpus
(four genres, written for kaieval) so the figures are comparable and
reproducible: characters / UTF-8 bytes per token, tokens per eojeol
(whitespace-separated word), unknown-token and byte-fallback rates and
round-trip fidelity, each optionally normalised against a reference tokenizer.

Design choices, and why:

* Text is measured as written. A genre file is cut into *documents* after each
  run of blank lines, so the documents of a file, concatenated, are the file:
  newlines and spaces count as characters (code points) and may cost tokens,
  and the characters per token are what a plain reading of the files gives.
  (Version 1 measured stripped lines, losing every newline: 2-6 % off.)
* Counting never adds special tokens (no BOS/EOS): a BOS per document would
  punish nothing about the vocabulary.
* Tokenizers are read by :mod:`kaieval.tokenizer` (every format models ship,
  detected by content, read bounded, never unpickled, no repository code) and
  encoded in native batches (Rust ``encode_batch``, SentencePiece's threaded
  list encode, tiktoken's threaded batch); Python only sums lengths.
* A tokenizer whose unknown-token rate is above 1 % or whose round trip fails
  on more than 1 % of documents is *not comparable*: its figures describe text
  it did not keep, so it is flagged in words and JSON and left out of ratios
  against a reference (and a not-comparable reference gives no ratios at all).
"""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from kaieval.errors import KaiError
from kaieval.hashing import sha256_bytes
from kaieval.io import DATA_MAX_BYTES, read_bounded_bytes
from kaieval.tokenizer import TokenizerFile
from kaieval.tokenizer import load_tokenizer as _load

DEFAULT_CORPUS = Path(__file__).resolve().parent / "data" / "corpus_ko"
GENRES = ("news", "conversation", "legal", "technical")
OVERALL = "overall"
#: Figures that get a ratio against the reference (this / reference).
RATIO_FIGURES = ("chars_per_token", "bytes_per_token", "tokens_per_eojeol",
                 "roundtrip_fidelity", "unk_rate")
#: Above this unknown-token rate, or this share of documents failing the round
#: trip, a tokenizer is not comparable (left out of ratios and rankings).
NOT_COMPARABLE_ABOVE = 0.01
_DOC_BREAK = re.compile(r"\n(?:[ \t\r]*\n)+")


class RoundTripFailure(BaseModel):
    """The first document whose decode(encode(document)) differs from the document."""

    model_config = ConfigDict(extra="forbid")
    genre: str
    line: int  # 1-based line number where the document starts in the genre's file
    original: str
    decoded: str


class Figures(BaseModel):
    """Raw counts and derived figures for one genre (or the whole corpus)."""

    model_config = ConfigDict(extra="forbid")
    documents: int
    characters: int
    bytes: int
    eojeols: int
    tokens: int
    unk_tokens: int
    byte_fallback_tokens: int
    roundtrip_ok: int
    chars_per_token: float
    bytes_per_token: float
    tokens_per_eojeol: float
    roundtrip_fidelity: float
    unk_rate: float
    byte_fallback_rate: float
    first_roundtrip_failure: RoundTripFailure | None = None


class ReferenceRatios(BaseModel):
    """Each figure divided by the reference tokenizer's, per genre and ``overall``.

    For chars/bytes per token a ratio above 1 means *more* text per token than
    the reference (better); for tokens per eojeol below 1 is better. ``None``
    where the reference's figure is zero. ``withheld`` says why there are no
    ratios (this tokenizer or the reference is not comparable).
    """

    model_config = ConfigDict(extra="forbid")
    tokenizer: str
    tokenizer_sha256: str
    ratios: dict[str, dict[str, float | None]]
    withheld: str | None = None


class EfficiencyResult(BaseModel):
    """Everything measured for one tokenizer on one corpus, with what is needed to reproduce it."""

    model_config = ConfigDict(extra="forbid")
    format: str = "kaieval/tokenizer-efficiency/v2"
    tokenizer: str
    tokenizer_file: str
    tokenizer_format: str
    tokenizer_kind: str
    tokenizer_sha256: str
    tokenizer_notes: list[str]
    vocab_size: int
    corpus: str
    corpus_sha256: str
    genres: dict[str, Figures]
    overall: Figures
    comparable: bool
    not_comparable_because: list[str]
    reference: ReferenceRatios | None = None
    encode_decode_seconds: float
    versions: dict[str, str]


@dataclass(frozen=True)
class CorpusGenre:
    """One genre's documents (the file cut after blank lines) and their first line numbers."""

    name: str
    path: Path
    documents: list[str]
    line_numbers: list[int]


@dataclass(frozen=True)
class Corpus:
    """A corpus directory read into memory, with a content hash over all its files."""

    path: Path
    sha256: str
    genres: list[CorpusGenre]


def split_documents(text: str) -> tuple[list[str], list[int]]:
    """Cut ``text`` after each run of blank lines; the pieces concatenated are ``text``.

    Returns the documents and the 1-based line each starts on. Leading blank
    lines belong to the first document, trailing ones to the last, so nothing
    the file holds escapes the count.
    """
    docs: list[str] = []
    lines: list[int] = []
    start = 0
    for m in _DOC_BREAK.finditer(text):
        if m.end() < len(text) and text[start:m.end()].strip():
            docs.append(text[start:m.end()])
            lines.append(text.count("\n", 0, start) + 1)
            start = m.end()
    if text[start:]:
        if docs and not text[start:].strip():
            docs[-1] += text[start:]
        else:
            docs.append(text[start:])
            lines.append(text.count("\n", 0, start) + 1)
    return docs, lines


def load_corpus(corpus: Path | None = None) -> Corpus:
    """Read every ``*.txt`` in ``corpus`` (default: the bundled Korean corpus); genre = file stem.

    The hash covers file names and bytes in sorted order, so the same corpus
    always gives the same hash wherever it lives.
    """
    root = DEFAULT_CORPUS if corpus is None else corpus
    if not root.exists():
        raise KaiError("corpus not found", where=str(root))
    files = sorted(root.glob("*.txt")) if root.is_dir() else [root]
    if not files:
        raise KaiError("corpus directory has no *.txt files", where=str(root))
    digest_parts: list[str] = []
    genres: list[CorpusGenre] = []
    for f in files:
        raw = read_bounded_bytes(f, DATA_MAX_BYTES, "corpus files")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise KaiError(f"not valid UTF-8 at byte {e.start}", where=f"{f}:{line}") from None
        if not text.strip():
            raise KaiError("corpus file has no text", where=str(f))
        docs, numbers = split_documents(text)
        digest_parts.append(f"{f.name}\n{sha256_bytes(raw)}\n")
        genres.append(CorpusGenre(f.stem, f, docs, numbers))
    return Corpus(root, sha256_bytes("".join(digest_parts).encode()), genres)


def load_tokenizer(path: Path, *, pattern: str | None = None) -> TokenizerFile:
    """The tokenizer at ``path`` (any format :mod:`kaieval.tokenizer` reads) with its encoder
    built, so a file that cannot encode fails here, before any measuring."""
    tok = _load(path, pattern=pattern)
    tok.encoder()
    return tok


def _figures(docs: Sequence[str], ids: Sequence[list[int]], decoded: Sequence[str],
             tok: TokenizerFile, genre: str, numbers: Sequence[int]) -> Figures:
    characters = sum(len(s) for s in docs)
    nbytes = sum(len(s.encode("utf-8")) for s in docs)
    eojeols = sum(len(s.split()) for s in docs)
    tokens = sum(len(x) for x in ids)
    unk = sum(x.count(tok.unk_id) for x in ids) if tok.unk_id is not None else 0
    fallback = tok.byte_fallback_ids
    nbyte = sum(1 for x in ids for i in x if i in fallback) if fallback else 0
    ok = [a == b for a, b in zip(docs, decoded, strict=True)]
    first: RoundTripFailure | None = None
    if not all(ok):
        i = ok.index(False)
        first = RoundTripFailure(genre=genre, line=numbers[i], original=docs[i],
                                 decoded=decoded[i])
    return _derive(len(docs), characters, nbytes, eojeols, tokens, unk, nbyte, sum(ok), first)


def _derive(documents: int, characters: int, nbytes: int, eojeols: int, tokens: int, unk: int,
            nbyte: int, ok: int, first: RoundTripFailure | None) -> Figures:
    def div(a: int, b: int) -> float:
        return a / b if b else 0.0

    return Figures(documents=documents, characters=characters, bytes=nbytes, eojeols=eojeols,
                   tokens=tokens, unk_tokens=unk, byte_fallback_tokens=nbyte, roundtrip_ok=ok,
                   chars_per_token=div(characters, tokens), bytes_per_token=div(nbytes, tokens),
                   tokens_per_eojeol=div(tokens, eojeols),
                   roundtrip_fidelity=div(ok, documents), unk_rate=div(unk, tokens),
                   byte_fallback_rate=div(nbyte, tokens), first_roundtrip_failure=first)


def _overall(parts: Sequence[Figures]) -> Figures:
    first = next((p.first_roundtrip_failure for p in parts if p.first_roundtrip_failure), None)
    return _derive(sum(p.documents for p in parts), sum(p.characters for p in parts),
                   sum(p.bytes for p in parts), sum(p.eojeols for p in parts),
                   sum(p.tokens for p in parts), sum(p.unk_tokens for p in parts),
                   sum(p.byte_fallback_tokens for p in parts),
                   sum(p.roundtrip_ok for p in parts), first)


def not_comparable_because(o: Figures) -> list[str]:
    """Why a tokenizer's figures may not be ranked or compared (empty: comparable)."""
    out = []
    if o.unk_rate > NOT_COMPARABLE_ABOVE:
        out.append(f"unknown-token rate {o.unk_rate:.2%} is above "
                   f"{NOT_COMPARABLE_ABOVE:.0%}")
    failed = 1.0 - o.roundtrip_fidelity
    if failed > NOT_COMPARABLE_ABOVE:
        out.append(f"round trip fails on {o.documents - o.roundtrip_ok} of {o.documents} "
                   f"documents ({failed:.1%}, above {NOT_COMPARABLE_ABOVE:.0%})")
    return out


def _versions() -> dict[str, str]:
    from kaieval.version import code_version

    out = {"kaieval": code_version(), "python": platform.python_version()}
    for mod in ("tokenizers", "sentencepiece", "tiktoken"):
        try:
            out[mod] = str(__import__(mod).__version__)
        except ImportError:  # pragma: no cover - optional dependency
            out[mod] = "not installed"
    return out


def measure_loaded(tok: TokenizerFile, corpus: Corpus, *, label: str | None = None
                   ) -> EfficiencyResult:
    """Measure an already-loaded tokenizer on an already-loaded corpus (no reference)."""
    all_docs = [s for g in corpus.genres for s in g.documents]
    encoder = tok.encoder()
    t0 = time.perf_counter()
    ids = encoder.encode(all_docs)
    decoded = encoder.decode(ids)
    seconds = time.perf_counter() - t0
    genres: dict[str, Figures] = {}
    start = 0
    for g in corpus.genres:
        end = start + len(g.documents)
        genres[g.name] = _figures(g.documents, ids[start:end], decoded[start:end], tok,
                                  g.name, g.line_numbers)
        start = end
    overall = _overall(list(genres.values()))
    why = not_comparable_because(overall)
    return EfficiencyResult(
        tokenizer=label or str(tok.path), tokenizer_file=str(tok.files[0]),
        tokenizer_format=tok.format, tokenizer_kind=tok.kind, tokenizer_sha256=tok.sha256,
        tokenizer_notes=list(tok.notes), vocab_size=tok.vocab_size, corpus=str(corpus.path),
        corpus_sha256=corpus.sha256, genres=genres, overall=overall, comparable=not why,
        not_comparable_because=why, encode_decode_seconds=seconds, versions=_versions())


def normalise(result: EfficiencyResult, reference: EfficiencyResult) -> EfficiencyResult:
    """Return ``result`` with each figure divided by the reference's (same corpus required).

    No ratios (``withheld`` says why) when either side is not comparable.
    """
    if result.corpus_sha256 != reference.corpus_sha256:
        raise KaiError("reference was measured on a different corpus", where=reference.tokenizer)

    def ratios(a: Figures, b: Figures) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name in RATIO_FIGURES:
            den = float(getattr(b, name))
            out[name] = float(getattr(a, name)) / den if den else None
        return out

    withheld = None
    if not reference.comparable:
        withheld = "the reference is not comparable: " + "; ".join(
            reference.not_comparable_because)
    elif not result.comparable:
        withheld = "not comparable: " + "; ".join(result.not_comparable_because)
    table: dict[str, dict[str, float | None]] = {}
    if withheld is None:
        table = {name: ratios(fig, reference.genres[name])
                 for name, fig in result.genres.items()}
        table[OVERALL] = ratios(result.overall, reference.overall)
    ref = ReferenceRatios(tokenizer=reference.tokenizer,
                          tokenizer_sha256=reference.tokenizer_sha256, ratios=table,
                          withheld=withheld)
    return result.model_copy(update={"reference": ref})


def measure(tokenizer: Path, *, corpus: Path | None = None, reference: Path | None = None,
            pattern: str | None = None) -> EfficiencyResult:
    """Measure ``tokenizer`` on ``corpus`` (default: bundled Korean corpus), normalised to
    ``reference`` when given. Raises ``KaiError`` (one line naming the file) on bad input."""
    data = load_corpus(corpus)
    result = measure_loaded(load_tokenizer(tokenizer, pattern=pattern), data,
                            label=str(tokenizer))
    if reference is not None:
        result = normalise(result, measure_loaded(load_tokenizer(reference), data,
                                                   label=str(reference)))
    return result


class EfficiencyReport(BaseModel):
    """Several tokenizers on one corpus (what ``kai tokenizer-efficiency --json`` writes).

    ``ranking`` lists the comparable tokenizers by characters per token, best
    first; a not-comparable one is never in it.
    """

    model_config = ConfigDict(extra="forbid")
    format: str = "kaieval/tokenizer-efficiency-report/v2"
    corpus: str
    corpus_sha256: str
    reference: EfficiencyResult | None = None
    results: list[EfficiencyResult]
    ranking: list[str]


def measure_many(tokenizers: Sequence[Path], *, corpus: Path | None = None,
                 reference: Path | None = None, pattern: str | None = None
                 ) -> EfficiencyReport:
    """Like :func:`measure` for several tokenizers, reading the corpus and reference once.

    Every tokenizer is loaded before any is measured, so one bad file fails the
    whole run at once instead of after minutes of work. ``pattern`` applies to
    every tiktoken / vocab.json tokenizer among them (not the reference).
    """
    data = load_corpus(corpus)
    loaded = [(path, load_tokenizer(path, pattern=pattern)) for path in tokenizers]
    ref = (measure_loaded(load_tokenizer(reference), data, label=str(reference))
           if reference is not None else None)
    out = []
    for path, tok in loaded:
        r = measure_loaded(tok, data, label=str(path))
        out.append(normalise(r, ref) if ref is not None else r)
    ranking = [r.tokenizer for r in sorted((r for r in out if r.comparable),
                                           key=lambda r: -r.overall.chars_per_token)]
    return EfficiencyReport(corpus=str(data.path), corpus_sha256=data.sha256, reference=ref,
                            results=out, ranking=ranking)


def print_report(report: EfficiencyReport, console: Any, *, per_genre: bool = False) -> None:
    """Render a report with rich: one row per tokenizer (or one table per tokenizer, by genre).

    Headers are short so a table fits 80 columns; ratio columns (``rel``)
    appear only when a reference was given. After the tables, the first
    round-trip failure of every tokenizer that has one is printed, so the user
    sees *what* was lost, not just a percentage.
    """
    from rich import box
    from rich.table import Table

    ref = report.reference
    results = [*report.results, ref] if ref is not None else list(report.results)

    def name(r: EfficiencyResult) -> str:
        return (r.tokenizer + (" (reference)" if ref is not None and r is ref else "")
                + ("" if r.comparable else " (not comparable)"))

    def new_table(title: str, first: str) -> Table:
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 1), collapse_padding=True)
        t.add_column(first, overflow="fold", min_width=12, ratio=1)
        if not per_genre:
            t.add_column("vocab", justify="right", no_wrap=True)
        for c in ("c/tok", "B/tok", "tok/ej", "rt", "unk", "bytes"):
            t.add_column(c, justify="right", no_wrap=True)
        if ref is not None:
            t.add_column("rel c/tok", justify="right", no_wrap=True)
            t.add_column("rel tok/ej", justify="right", no_wrap=True)
        return t

    def cells(r: EfficiencyResult, genre: str, f: Figures) -> list[str]:
        out = [f"{f.chars_per_token:.3f}", f"{f.bytes_per_token:.3f}",
               f"{f.tokens_per_eojeol:.3f}", f"{f.roundtrip_fidelity:.1%}", f"{f.unk_rate:.2%}",
               f"{f.byte_fallback_rate:.2%}"]
        if ref is not None:
            withheld = r.reference is not None and r.reference.withheld is not None
            ratios = r.reference.ratios.get(genre, {}) if r.reference is not None else {}
            for key in ("chars_per_token", "tokens_per_eojeol"):
                x = ratios.get(key, 1.0)
                out.append("—" if withheld else "n/a" if x is None else f"{x:.3f}")
        return out

    head = f"Korean tokenizer efficiency on {report.corpus} ({report.corpus_sha256[:19]})"
    if per_genre:
        console.print(head, markup=False)
        for r in results:
            table = new_table(f"{name(r)}: {r.tokenizer_format} ({r.tokenizer_kind}), vocab "
                              f"{r.vocab_size}", "genre")
            for genre, f in [*r.genres.items(), (OVERALL, r.overall)]:
                table.add_row(genre, *cells(r, genre, f))
            console.print(table)
    else:
        table = new_table(head, "tokenizer")
        for r in results:
            table.add_row(name(r), str(r.vocab_size), *cells(r, OVERALL, r.overall))
        console.print(table)
    console.print("c/tok, B/tok: characters, UTF-8 bytes per token (higher: fewer tokens); "
                  "tok/ej: tokens per eojeol (lower is better); rt: round-trip fidelity; "
                  "unk: unknown-token rate; bytes: byte-fallback rate"
                  + ("; rel: this / reference" if ref else ""),
                  markup=False, style="dim")
    if report.ranking:
        console.print("ranking by c/tok (comparable tokenizers only): "
                      + ", ".join(report.ranking), markup=False)
    for r in results:
        for note in r.tokenizer_notes:
            console.print(f"{r.tokenizer}: {note}", markup=False)
        if not r.comparable:
            console.print(f"{r.tokenizer}: NOT COMPARABLE, left out of the ranking and of "
                          "ratios: " + "; ".join(r.not_comparable_because), markup=False)
        fail = r.overall.first_roundtrip_failure
        if fail is not None:
            console.print(f"{r.tokenizer}: first round-trip failure in the document at "
                          f"{fail.genre}:{fail.line}: {_clip(fail.original)!r} -> "
                          f"{_clip(fail.decoded)!r}", markup=False)


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
