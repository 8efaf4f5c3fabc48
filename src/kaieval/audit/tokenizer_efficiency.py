"""Korean tokenizer efficiency: how many tokens a tokenizer spends on Korean text.

Why this exists: the programme's sovereignty axis rewards models built *for*
Korean, and vendors claim "N % fewer tokens than GPT-4o" without a shared
yardstick. We measure every tokenizer on one fixed, bundled Korean corpus
(four genres, written for kaieval) so the figures are comparable and
reproducible: characters / UTF-8 bytes per token, tokens per eojeol
(whitespace-separated word), round-trip fidelity and unknown-token rate, each
optionally normalised against a reference tokenizer.

Design choices, and why:

* Counting never adds special tokens (``add_special_tokens=False`` / no BOS or
  EOS in SentencePiece): a BOS per line would inflate short conversational
  lines and punish nothing about the vocabulary.
* Encoding is batched in native code (Rust ``encode_batch`` /
  SentencePiece's threaded list encode). Python only sums lengths per line.
* A tokenizer file is parsed by its own library, never unpickled and never
  imported as code; anything unreadable becomes one-line ``KaiError`` naming
  the file.
* The corpus is split into lines; each non-empty, whitespace-stripped line is
  one sample. Round-trip fidelity is the share of lines for which
  ``decode(encode(line)) == line`` exactly (special tokens are *not* skipped
  on decode, so an unknown token shows up as a mismatch).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from kaieval.artifacts import check_tree
from kaieval.errors import KaiError
from kaieval.hashing import sha256_bytes
from kaieval.io import (
    DATA_MAX_BYTES,
    TOKENIZER_MAX_BYTES,
    json_depth_problem,
    open_regular,
    parse_json,
    read_bounded_bytes,
)

DEFAULT_CORPUS = Path(__file__).resolve().parent / "data" / "corpus_ko"
GENRES = ("news", "conversation", "legal", "technical")
OVERALL = "overall"
#: Figures that get a ratio against the reference (this / reference).
RATIO_FIGURES = ("chars_per_token", "bytes_per_token", "tokens_per_eojeol",
                 "roundtrip_fidelity", "unk_rate")
TokenizerKind = Literal["hf-tokenizers", "sentencepiece"]


class RoundTripFailure(BaseModel):
    """The first line whose decode(encode(line)) differs from the line."""

    model_config = ConfigDict(extra="forbid")
    genre: str
    line: int  # 1-based line number in the genre's file
    original: str
    decoded: str


class Figures(BaseModel):
    """Raw counts and derived figures for one genre (or the whole corpus)."""

    model_config = ConfigDict(extra="forbid")
    lines: int
    characters: int
    bytes: int
    eojeols: int
    tokens: int
    unk_tokens: int
    roundtrip_ok: int
    chars_per_token: float
    bytes_per_token: float
    tokens_per_eojeol: float
    roundtrip_fidelity: float
    unk_rate: float
    first_roundtrip_failure: RoundTripFailure | None = None


class ReferenceRatios(BaseModel):
    """Each figure divided by the reference tokenizer's, per genre and ``overall``.

    For chars/bytes per token a ratio above 1 means *more* text per token than
    the reference (better); for tokens per eojeol below 1 is better. ``None``
    where the reference's figure is zero.
    """

    model_config = ConfigDict(extra="forbid")
    tokenizer: str
    tokenizer_sha256: str
    ratios: dict[str, dict[str, float | None]]


class EfficiencyResult(BaseModel):
    """Everything measured for one tokenizer on one corpus, with what is needed to reproduce it."""

    model_config = ConfigDict(extra="forbid")
    format: str = "kaieval/tokenizer-efficiency/v1"
    tokenizer: str
    tokenizer_file: str
    tokenizer_kind: TokenizerKind
    tokenizer_sha256: str
    vocab_size: int
    corpus: str
    corpus_sha256: str
    genres: dict[str, Figures]
    overall: Figures
    reference: ReferenceRatios | None = None
    encode_decode_seconds: float
    versions: dict[str, str]


@dataclass(frozen=True)
class CorpusGenre:
    """One genre's samples: stripped non-empty lines and their 1-based line numbers."""

    name: str
    path: Path
    lines: list[str]
    line_numbers: list[int]


@dataclass(frozen=True)
class Corpus:
    """A corpus directory read into memory, with a content hash over all its files."""

    path: Path
    sha256: str
    genres: list[CorpusGenre]


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
        lines: list[str] = []
        numbers: list[int] = []
        for number, raw_line in enumerate(text.splitlines(), start=1):
            stripped = raw_line.strip()
            if stripped:
                lines.append(stripped)
                numbers.append(number)
        if not lines:
            raise KaiError("corpus file has no text", where=str(f))
        digest_parts.append(f"{f.name}\n{sha256_bytes(raw)}\n")
        genres.append(CorpusGenre(f.stem, f, lines, numbers))
    return Corpus(root, sha256_bytes("".join(digest_parts).encode()), genres)


class LoadedTokenizer:
    """A loaded tokenizer behind one batch interface (HF ``tokenizers`` or SentencePiece)."""

    def __init__(self, file: Path, kind: TokenizerKind, impl: Any, unk_id: int | None,
                 vocab_size: int, sha256: str) -> None:
        self.file = file
        self.sha256 = sha256  # of the bytes loaded, not of the file read again later
        self.kind: TokenizerKind = kind
        self.impl = impl
        self.unk_id = unk_id
        self.vocab_size = vocab_size

    def encode(self, lines: list[str]) -> list[list[int]]:
        """Token ids of every line, in one native batch call, never with BOS/EOS added."""
        if self.kind == "hf-tokenizers":
            return [e.ids for e in self.impl.encode_batch(lines, add_special_tokens=False)]
        out: list[list[int]] = self.impl.encode(lines, out_type=int, add_bos=False,
                                                add_eos=False, num_threads=-1)
        return out

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Text of every id list; special tokens are kept so an unk shows as a mismatch."""
        if self.kind == "hf-tokenizers":
            out: list[str] = self.impl.decode_batch(ids, skip_special_tokens=False)
            return out
        out = self.impl.decode(ids, num_threads=-1)
        return out


def _resolve_file(path: Path) -> tuple[Path, TokenizerKind]:
    """Find the tokenizer file (a directory may hold ``tokenizer.json`` or ``tokenizer.model``)."""
    if not path.exists():
        raise KaiError("tokenizer not found", where=str(path))
    if path.is_dir():
        check_tree(path)  # special files, oversized tokenizers, links out of the folder
        for name, kind in (("tokenizer.json", "hf-tokenizers"),
                           ("tokenizer.model", "sentencepiece")):
            if (path / name).is_file():
                return path / name, kind  # type: ignore[return-value]
        raise KaiError("directory has no tokenizer.json or tokenizer.model", where=str(path))
    if path.suffix == ".json":
        return path, "hf-tokenizers"
    if path.suffix == ".model":
        return path, "sentencepiece"
    with open_regular(path) as fh:
        head = fh.read(64).lstrip()
    return path, "hf-tokenizers" if head.startswith(b"{") else "sentencepiece"


def _hf_unk_id(tok: Any, raw: bytes, file: Path) -> int | None:
    """The unknown token's id, or None when the model has none (byte-level BPE usually)."""
    unk = getattr(tok.model, "unk_token", None)  # BPE, WordPiece, WordLevel
    if isinstance(unk, str):
        uid = tok.token_to_id(unk)
        return int(uid) if uid is not None else None
    if type(tok.model).__name__ == "Unigram":  # the binding does not expose unk_id
        spec = parse_json(raw, str(file))
        uid = spec.get("model", {}).get("unk_id")
        return int(uid) if isinstance(uid, int) else None
    return None


def load_tokenizer(path: Path) -> LoadedTokenizer:
    """Load a HF ``tokenizer.json`` or a SentencePiece ``.model``; bad file -> one-line KaiError."""
    file, kind = _resolve_file(path)
    # read here, bounded, and handed over as bytes: the libraries never open the path
    raw = read_bounded_bytes(file, TOKENIZER_MAX_BYTES, "tokenizer files")
    if kind == "hf-tokenizers":
        try:
            from tokenizers import Tokenizer
        except ImportError:  # pragma: no cover - optional dependency
            raise KaiError("reading tokenizer.json needs the `tokenizers` package "
                           "(pip install 'kaieval[hf]')", where=str(file)) from None
        problem = json_depth_problem(raw)  # the same depth rule as every JSON read
        if problem is not None:
            raise KaiError(f"not valid JSON: {problem}", where=str(file))
        try:  # the Rust loader parses the text once
            tok = Tokenizer.from_str(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as e:
            raise KaiError(f"not a valid tokenizer.json: not UTF-8 ({e.reason} at byte "
                           f"{e.start})", where=str(file)) from None
        except Exception as e:  # the Rust loader raises a bare Exception
            raise KaiError(f"not a valid tokenizer.json: {str(e).splitlines()[0]}",
                           where=str(file)) from None
        return LoadedTokenizer(file, kind, tok, _hf_unk_id(tok, raw, file),
                               int(tok.get_vocab_size(with_added_tokens=True)),
                               sha256_bytes(raw))
    try:
        import sentencepiece as spm
    except ImportError:  # pragma: no cover - optional dependency
        raise KaiError("reading a .model needs the `sentencepiece` package "
                       "(pip install 'kaieval[hf]')", where=str(file)) from None
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(raw)
    except (RuntimeError, OSError, TypeError) as e:
        msg = str(e).splitlines()[0] if str(e) else "unreadable"
        raise KaiError(f"not a SentencePiece model: {msg}", where=str(file)) from None
    unk = int(sp.unk_id())
    return LoadedTokenizer(file, kind, sp, unk if unk >= 0 else None, int(sp.get_piece_size()),
                           sha256_bytes(raw))


def _figures(lines: Sequence[str], ids: Sequence[list[int]], decoded: Sequence[str],
             unk_id: int | None, genre: str, numbers: Sequence[int]) -> Figures:
    characters = sum(len(s) for s in lines)
    nbytes = sum(len(s.encode("utf-8")) for s in lines)
    eojeols = sum(len(s.split()) for s in lines)
    tokens = sum(len(x) for x in ids)
    unk = sum(x.count(unk_id) for x in ids) if unk_id is not None else 0
    ok = [a == b for a, b in zip(lines, decoded, strict=True)]
    first: RoundTripFailure | None = None
    if not all(ok):
        i = ok.index(False)
        first = RoundTripFailure(genre=genre, line=numbers[i], original=lines[i],
                                 decoded=decoded[i])
    return _derive(len(lines), characters, nbytes, eojeols, tokens, unk, sum(ok), first)


def _derive(lines: int, characters: int, nbytes: int, eojeols: int, tokens: int, unk: int,
            ok: int, first: RoundTripFailure | None) -> Figures:
    def div(a: int, b: int) -> float:
        return a / b if b else 0.0

    return Figures(lines=lines, characters=characters, bytes=nbytes, eojeols=eojeols,
                   tokens=tokens, unk_tokens=unk, roundtrip_ok=ok,
                   chars_per_token=div(characters, tokens), bytes_per_token=div(nbytes, tokens),
                   tokens_per_eojeol=div(tokens, eojeols), roundtrip_fidelity=div(ok, lines),
                   unk_rate=div(unk, tokens), first_roundtrip_failure=first)


def _overall(parts: Sequence[Figures]) -> Figures:
    first = next((p.first_roundtrip_failure for p in parts if p.first_roundtrip_failure), None)
    return _derive(sum(p.lines for p in parts), sum(p.characters for p in parts),
                   sum(p.bytes for p in parts), sum(p.eojeols for p in parts),
                   sum(p.tokens for p in parts), sum(p.unk_tokens for p in parts),
                   sum(p.roundtrip_ok for p in parts), first)


def _versions() -> dict[str, str]:
    from kaieval.version import code_version

    out = {"kaieval": code_version(), "python": platform.python_version()}
    for mod in ("tokenizers", "sentencepiece"):
        try:
            out[mod] = str(__import__(mod).__version__)
        except ImportError:  # pragma: no cover - optional dependency
            out[mod] = "not installed"
    return out


def measure_loaded(tok: LoadedTokenizer, corpus: Corpus, *, label: str | None = None
                   ) -> EfficiencyResult:
    """Measure an already-loaded tokenizer on an already-loaded corpus (no reference)."""
    all_lines = [s for g in corpus.genres for s in g.lines]
    t0 = time.perf_counter()
    ids = tok.encode(all_lines)
    decoded = tok.decode(ids)
    seconds = time.perf_counter() - t0
    genres: dict[str, Figures] = {}
    start = 0
    for g in corpus.genres:
        end = start + len(g.lines)
        genres[g.name] = _figures(g.lines, ids[start:end], decoded[start:end], tok.unk_id,
                                  g.name, g.line_numbers)
        start = end
    return EfficiencyResult(
        tokenizer=label or str(tok.file), tokenizer_file=str(tok.file),
        tokenizer_kind=tok.kind, tokenizer_sha256=tok.sha256,
        vocab_size=tok.vocab_size, corpus=str(corpus.path), corpus_sha256=corpus.sha256,
        genres=genres, overall=_overall(list(genres.values())), encode_decode_seconds=seconds,
        versions=_versions())


def normalise(result: EfficiencyResult, reference: EfficiencyResult) -> EfficiencyResult:
    """Return ``result`` with each figure divided by the reference's (same corpus required)."""
    if result.corpus_sha256 != reference.corpus_sha256:
        raise KaiError("reference was measured on a different corpus", where=reference.tokenizer)

    def ratios(a: Figures, b: Figures) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name in RATIO_FIGURES:
            den = float(getattr(b, name))
            out[name] = float(getattr(a, name)) / den if den else None
        return out

    table = {name: ratios(fig, reference.genres[name]) for name, fig in result.genres.items()}
    table[OVERALL] = ratios(result.overall, reference.overall)
    ref = ReferenceRatios(tokenizer=reference.tokenizer,
                          tokenizer_sha256=reference.tokenizer_sha256, ratios=table)
    return result.model_copy(update={"reference": ref})


def measure(tokenizer: Path, *, corpus: Path | None = None,
            reference: Path | None = None) -> EfficiencyResult:
    """Measure ``tokenizer`` on ``corpus`` (default: bundled Korean corpus), normalised to
    ``reference`` when given. Raises ``KaiError`` (one line naming the file) on bad input."""
    data = load_corpus(corpus)
    result = measure_loaded(load_tokenizer(tokenizer), data, label=str(tokenizer))
    if reference is not None:
        result = normalise(result, measure_loaded(load_tokenizer(reference), data,
                                                   label=str(reference)))
    return result


class EfficiencyReport(BaseModel):
    """Several tokenizers on one corpus (what ``kai tokenizer-efficiency --json`` writes)."""

    model_config = ConfigDict(extra="forbid")
    format: str = "kaieval/tokenizer-efficiency-report/v1"
    corpus: str
    corpus_sha256: str
    reference: EfficiencyResult | None = None
    results: list[EfficiencyResult]


def measure_many(tokenizers: Sequence[Path], *, corpus: Path | None = None,
                 reference: Path | None = None) -> EfficiencyReport:
    """Like :func:`measure` for several tokenizers, reading the corpus and reference once.

    Every tokenizer is loaded before any is measured, so one bad file fails the
    whole run at once instead of after minutes of work.
    """
    data = load_corpus(corpus)
    loaded = [(path, load_tokenizer(path)) for path in tokenizers]
    ref = (measure_loaded(load_tokenizer(reference), data, label=str(reference))
           if reference is not None else None)
    out = []
    for path, tok in loaded:
        r = measure_loaded(tok, data, label=str(path))
        out.append(normalise(r, ref) if ref is not None else r)
    return EfficiencyReport(corpus=str(data.path), corpus_sha256=data.sha256, reference=ref,
                            results=out)


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
        return r.tokenizer + (" (reference)" if ref is not None and r is ref else "")

    def new_table(title: str, first: str) -> Table:
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 1), collapse_padding=True)
        t.add_column(first, overflow="fold", min_width=12, ratio=1)
        if not per_genre:
            t.add_column("vocab", justify="right", no_wrap=True)
        for c in ("c/tok", "B/tok", "tok/ej", "rt", "unk"):
            t.add_column(c, justify="right", no_wrap=True)
        if ref is not None:
            t.add_column("rel c/tok", justify="right", no_wrap=True)
            t.add_column("rel tok/ej", justify="right", no_wrap=True)
        return t

    def cells(r: EfficiencyResult, genre: str, f: Figures) -> list[str]:
        out = [f"{f.chars_per_token:.3f}", f"{f.bytes_per_token:.3f}",
               f"{f.tokens_per_eojeol:.3f}", f"{f.roundtrip_fidelity:.1%}", f"{f.unk_rate:.2%}"]
        if ref is not None:
            ratios = r.reference.ratios.get(genre, {}) if r.reference is not None else {}
            for key in ("chars_per_token", "tokens_per_eojeol"):
                x = ratios.get(key, 1.0)
                out.append("n/a" if x is None else f"{x:.3f}")
        return out

    head = f"Korean tokenizer efficiency on {report.corpus} ({report.corpus_sha256[:19]})"
    if per_genre:
        console.print(head, markup=False)
        for r in results:
            table = new_table(f"{name(r)}: {r.tokenizer_kind}, vocab {r.vocab_size}", "genre")
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
                  "unk: unknown-token rate" + ("; rel: this / reference" if ref else ""),
                  markup=False, style="dim")
    for r in results:
        fail = r.overall.first_roundtrip_failure
        if fail is not None:
            console.print(f"{r.tokenizer}: first round-trip failure at {fail.genre}:{fail.line}: "
                          f"{fail.original!r} -> {fail.decoded!r}", markup=False)
