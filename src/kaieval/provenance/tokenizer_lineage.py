"""Tokenizer lineage: was the candidate's tokenizer taken from (or grown out of) the reference's?

Why three statistics and a baseline: any two byte-level BPE tokenizers share the 256
byte tokens, and two tokenizers trained independently on similar text share most of
their frequent words, so vocabulary overlap alone is weak evidence (the public claim
that HyperCLOVA X's first 20 merges match Qwen2.5's is exactly that mistake). What an
independent training run does *not* reproduce is the id each learned token got and the
order the merges were learned in. So we measure

* ``jaccard``        -- |A ∩ B| / |A ∪ B| over token strings (specials excluded);
* ``identical_ids``  -- share of the shared *learned* tokens (two characters or more)
  that have the same id in both;
* ``order_prefix``   -- length of the common prefix of the two merge orders (the
  learned tokens in the order they were created), over the shorter order;

and compare each with a null distribution from pairs of tokenizers we trained ourselves,
independently, on different seeded samples of the same generator (same language, same
algorithm: the hardest, most conservative null). Empirical p = (1 + #{null >= x}) / (n + 1).

Token strings are canonicalised before comparison: byte-level BPE strings are decoded back
to text (so a Korean token of a byte-level BPE matches the same SentencePiece piece), and the
leading-space markers ``Ġ``/``▁`` are written as a space. Files are read as data: JSON, or a
SentencePiece protobuf through the ``sentencepiece`` parser -- no tokenizer code is run.

A shared tokenizer is not weight reuse: the verdict here is about the *tokenizer* only and
feeds the committee's tokenizer policy, not the weights verdict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kaieval.errors import KaiError
from kaieval.io import TOKENIZER_MAX_BYTES, atomic_write_text, parse_json, read_bounded_bytes
from kaieval.provenance.vocab import normalise
from kaieval.records import ComponentEvidence

LineageWord = Literal["same lineage", "extended", "independent", "inconclusive"]
STATISTICS = ("jaccard", "identical_ids", "order_prefix")
BASELINE_FILE = "tokenizer_baseline.json"
# The recipe of the bundled baseline: build_baseline(**BASELINE_RECIPE) reproduces the file.
BASELINE_RECIPE: dict[str, Any] = {
    "n_tokenizers": 30, "vocab_sizes": [800, 1000, 1500, 2000],
    "corpus_chars": [60000, 100000, 150000], "seed_offset": 1000,
}


@dataclass(frozen=True)
class TokenizerFacts:
    """What lineage needs from one tokenizer file, canonicalised."""

    path: Path
    kind: str  # "bpe", "unigram", "wordpiece", "wordlevel", "sentencepiece"
    vocab: dict[str, int]  # canonical token string -> id, specials excluded
    order: tuple[str, ...]  # learned tokens (>= 2 characters) in creation order
    sha256: str


@dataclass(frozen=True)
class StatisticTest:
    """One statistic against the independent-tokenizer null."""

    name: str
    value: float
    null_median: float
    null_q95: float
    null_q99: float
    null_max: float
    n_null: int
    p_value: float  # empirical, floor 1 / (n_null + 1)
    z: float  # (value - null mean) / null sd


@dataclass(frozen=True)
class TokenizerLineage:
    """The comparison of a candidate tokenizer with a reference tokenizer."""

    candidate: TokenizerFacts
    reference: TokenizerFacts
    jaccard: StatisticTest
    identical_ids: StatisticTest
    order_prefix: StatisticTest
    order_rank_correlation: float | None  # Spearman of creation ranks over shared learned
    shared_tokens: int
    reference_contained: bool  # every reference token is in the candidate at the same id
    alpha: float
    verdict: LineageWord
    reason: str

    @property
    def tests(self) -> tuple[StatisticTest, ...]:
        return (self.jaccard, self.identical_ids, self.order_prefix)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (tokenizer files by path, sha256, kind and size; no vocab)."""
        def side(f: TokenizerFacts) -> dict[str, Any]:
            return {"path": str(f.path), "sha256": f.sha256, "kind": f.kind,
                    "vocab_size": len(f.vocab), "learned_in_order": len(f.order)}

        return {"candidate": side(self.candidate), "reference": side(self.reference),
                "tests": [dataclasses.asdict(t) for t in self.tests],
                "order_rank_correlation": self.order_rank_correlation,
                "shared_tokens": self.shared_tokens,
                "reference_contained": self.reference_contained, "alpha": self.alpha,
                "verdict": self.verdict, "reason": self.reason,
                "null": "independent byte-level BPE pairs, " + BASELINE_FILE}


# --- reading ------------------------------------------------------------------------------

@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable alphabet for bytes, inverted (what ByteLevel pre-tokenizers use)."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _canon(token: str, byte_level: bool) -> str:
    """Byte-level strings back to text where they are whole UTF-8; markers to a space."""
    if byte_level:
        table = _byte_decoder()
        # a special token or a partial character keeps its byte-level spelling
        with contextlib.suppress(KeyError, UnicodeDecodeError):
            token = bytes(table[c] for c in token).decode("utf-8")
    return normalise(token)


def _has_type(node: Any, wanted: str) -> bool:
    """Is there a ``{"type": wanted}`` anywhere in this pre-tokenizer/decoder tree?"""
    if isinstance(node, dict):
        return node.get("type") == wanted or any(_has_type(v, wanted) for v in node.values())
    if isinstance(node, list):
        return any(_has_type(v, wanted) for v in node)
    return False


def resolve_tokenizer(path: Path) -> Path:
    """A model directory -> its ``tokenizer.json`` (else ``tokenizer.model``); a file as is."""
    if path.is_dir():
        for name in ("tokenizer.json", "tokenizer.model"):
            if (path / name).is_file():
                return path / name
        raise KaiError("no tokenizer.json or tokenizer.model in the directory", where=str(path))
    if not path.is_file():
        raise KaiError("tokenizer not found", where=str(path))
    return path


def read_tokenizer(path: Path) -> TokenizerFacts:
    """Read a ``tokenizer.json`` or a SentencePiece ``.model``; malformed -> one KaiError."""
    file = resolve_tokenizer(path)
    raw = read_bounded_bytes(file, TOKENIZER_MAX_BYTES, "tokenizer files")
    digest = hashlib.sha256(raw).hexdigest()
    if file.suffix == ".json" or (file.suffix != ".model" and raw.lstrip()[:1] == b"{"):
        return _read_json(file, raw, digest)
    return _read_sentencepiece(file, raw, digest)


def _read_json(file: Path, raw: bytes, digest: str) -> TokenizerFacts:
    where = str(file)
    data = parse_json(raw, where)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        raise KaiError("no 'model' object (not a tokenizers tokenizer.json)", where=where)
    specials = {t["content"] for t in data.get("added_tokens") or []
                if isinstance(t, dict) and t.get("special") and isinstance(t.get("content"), str)}
    byte_level = _has_type(data.get("pre_tokenizer"), "ByteLevel") or _has_type(
        data.get("decoder"), "ByteLevel")
    vocab_raw = model.get("vocab")
    merges = model.get("merges")
    kind = str(model.get("type") or ("BPE" if merges is not None else "Unigram")).lower()
    pairs: list[tuple[str, int]] = []
    scores: dict[str, float] = {}
    if isinstance(vocab_raw, dict):
        for token, idx in vocab_raw.items():
            if not isinstance(idx, int) or isinstance(idx, bool):
                raise KaiError(f"model.vocab[{token!r}] is not an integer id", where=where)
            pairs.append((token, idx))
    elif isinstance(vocab_raw, list):
        for i, item in enumerate(vocab_raw):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], int | float)):
                raise KaiError(f"model.vocab[{i}] is not a [piece, score] pair", where=where)
            pairs.append((item[0], i))
            scores[item[0]] = float(item[1])
    else:
        raise KaiError("model.vocab is missing (expected an object or a list)", where=where)
    for tok in data.get("added_tokens") or []:  # tokens a team added: part of the vocab
        if isinstance(tok, dict) and not tok.get("special") \
                and isinstance(tok.get("content"), str) and isinstance(tok.get("id"), int):
            pairs.append((tok["content"], tok["id"]))
    vocab = _canonical_vocab(pairs, specials, byte_level)
    if kind == "bpe":
        if not isinstance(merges, list):
            raise KaiError("model.merges is missing or not a list", where=where)
        created: list[str] = []
        for i, m in enumerate(merges):
            if isinstance(m, str) and m.count(" ") >= 1:
                left, right = m.split(" ", 1)
            elif isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m):
                left, right = m
            else:
                raise KaiError(f"model.merges[{i}] is not 'a b' or [a, b]", where=where)
            created.append(left + right)
        order = _learned(created, byte_level)
    elif scores:  # unigram: pieces by decreasing score (frequency order)
        order = _learned(sorted(scores, key=lambda t: -scores[t]), byte_level, specials)
    else:  # wordpiece / wordlevel: ids are the only order there is
        order = _learned([t for t, _ in sorted(pairs, key=lambda p: p[1])], byte_level, specials)
    return TokenizerFacts(file, kind, vocab, order, digest)


def _read_sentencepiece(file: Path, raw: bytes, digest: str) -> TokenizerFacts:
    try:
        import sentencepiece as spm
    except ImportError:
        raise KaiError("reading a .model needs the sentencepiece package (pip install "
                       "'kaieval[hf]')", where=str(file)) from None
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(raw)
    except (RuntimeError, OSError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise KaiError(f"not a SentencePiece model ({first.split(' from ')[0]})",
                       where=str(file)) from None
    pairs: list[tuple[str, int]] = []
    specials: set[str] = set()
    scored: list[tuple[float, int, str]] = []
    for i in range(sp.GetPieceSize()):
        piece = str(sp.IdToPiece(i))
        if sp.IsControl(i) or sp.IsUnknown(i) or sp.IsUnused(i):
            specials.add(piece)
            continue
        pairs.append((piece, i))
        if not sp.IsByte(i):
            scored.append((-float(sp.GetScore(i)), i, piece))
    vocab = _canonical_vocab(pairs, specials, False)
    order = _learned([p for _, _, p in sorted(scored)], False, specials)
    return TokenizerFacts(file, "sentencepiece", vocab, order, digest)


def _canonical_vocab(pairs: Iterable[tuple[str, int]], specials: set[str],
                     byte_level: bool) -> dict[str, int]:
    vocab: dict[str, int] = {}
    for token, idx in sorted(pairs, key=lambda p: p[1]):
        if token not in specials:
            vocab.setdefault(_canon(token, byte_level), idx)  # lowest id wins a collision
    return vocab


def _learned(tokens: Iterable[str], byte_level: bool,
             specials: set[str] | None = None) -> tuple[str, ...]:
    out: list[str] = []
    seen: set[str] = set()
    for token in tokens:
        if specials and token in specials:
            continue
        c = _canon(token, byte_level)
        if len(c) >= 2 and c not in seen:
            seen.add(c)
            out.append(c)
    return tuple(out)


# --- statistics ---------------------------------------------------------------------------

def pair_statistics(a: TokenizerFacts, b: TokenizerFacts) -> dict[str, float]:
    """The three lineage statistics of a pair (symmetric)."""
    shared = a.vocab.keys() & b.vocab.keys()
    union = len(a.vocab.keys() | b.vocab.keys())
    learned = [t for t in shared if len(t) >= 2]
    same = sum(1 for t in learned if a.vocab[t] == b.vocab[t])
    n = min(len(a.order), len(b.order))
    lcp = 0
    while lcp < n and a.order[lcp] == b.order[lcp]:
        lcp += 1
    return {"jaccard": len(shared) / union if union else 0.0,
            "identical_ids": same / len(learned) if learned else 0.0,
            "order_prefix": lcp / n if n else 0.0}


def _rank_correlation(a: TokenizerFacts, b: TokenizerFacts) -> float | None:
    from scipy.stats import spearmanr

    rank_b = {t: i for i, t in enumerate(b.order)}
    pairs = [(i, rank_b[t]) for i, t in enumerate(a.order) if t in rank_b]
    if len(pairs) < 3:
        return None
    x, y = zip(*pairs, strict=True)
    rho = float(spearmanr(x, y).statistic)
    return None if math.isnan(rho) else rho


def _test(name: str, value: float, null: Sequence[float]) -> StatisticTest:
    arr = np.asarray(null, dtype=np.float64)
    if arr.size == 0:
        raise KaiError(f"baseline has no values for {name}", where="tokenizer baseline")
    mean, sd = float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    if sd > 0:
        z = (value - mean) / sd
    else:
        z = 0.0 if value == mean else math.copysign(math.inf, value - mean)
    p = (1 + int(np.sum(arr >= value))) / (arr.size + 1)
    q = np.quantile(arr, [0.5, 0.95, 0.99])
    return StatisticTest(name, value, float(q[0]), float(q[1]), float(q[2]), float(arr.max()),
                         int(arr.size), p, z)


def load_baseline() -> dict[str, list[float]]:
    """The bundled null: statistic name -> values over independent tokenizer pairs."""
    text = resources.files("kaieval.provenance").joinpath("data", BASELINE_FILE).read_text(
        encoding="utf-8")
    data = json.loads(text)
    return {k: [float(v) for v in data["statistics"][k]] for k in STATISTICS}


def compare_tokenizers(candidate: Path, reference: Path, *, alpha: float = 0.01,
                       baseline: dict[str, list[float]] | None = None) -> TokenizerLineage:
    """Compare two tokenizers (files or model directories) against the independent null.

    Verdict: ``extended`` when every reference token sits in the candidate at the same id and
    the candidate has more; ``same lineage`` when the vocabularies are identical or all three
    statistics beat the null at ``alpha``; ``independent`` when none does; otherwise
    ``inconclusive``. "independent" means no evidence of a shared tokenizer lineage.
    """
    if not 0 < alpha < 1:
        raise KaiError(f"alpha must be in (0, 1), got {alpha}", where="--alpha")
    cand, ref = read_tokenizer(candidate), read_tokenizer(reference)
    null = baseline if baseline is not None else load_baseline()
    stats = pair_statistics(cand, ref)
    tests = {k: _test(k, stats[k], null[k]) for k in STATISTICS}
    contained = bool(ref.vocab) and all(cand.vocab.get(t) == i for t, i in ref.vocab.items())
    shared = len(cand.vocab.keys() & ref.vocab.keys())
    significant = [k for k in STATISTICS if tests[k].p_value <= alpha]
    verdict: LineageWord
    if contained and len(cand.vocab) == len(ref.vocab):
        verdict, reason = "same lineage", "identical vocabularies with identical ids"
    elif contained:
        verdict = "extended"
        reason = (f"all {len(ref.vocab)} reference tokens keep their ids; the candidate adds "
                  f"{len(cand.vocab) - len(ref.vocab)}")
    elif len(significant) == len(STATISTICS):
        verdict, reason = "same lineage", f"all statistics beat the independent null at {alpha}"
    elif not significant:
        verdict = "independent"
        reason = f"no statistic beats the independent null at {alpha}"
    else:
        verdict = "inconclusive"
        reason = f"only {', '.join(significant)} beat the independent null at {alpha}"
    return TokenizerLineage(cand, ref, tests["jaccard"], tests["identical_ids"],
                            tests["order_prefix"], _rank_correlation(cand, ref), shared,
                            contained, alpha, verdict, reason)


def lineage_evidence(result: TokenizerLineage, reference: str) -> ComponentEvidence:
    """One evidence line for the verdict record, component ``tokenizer``.

    ``derived`` here means the *tokenizer* is the reference's (same lineage or extended);
    whether that matters is tokenizer policy, not weight reuse. The p-value is the largest
    of the three (an intersection-union test: "same lineage" needs all three).
    """
    word = {"same lineage": "derived", "extended": "derived", "independent": "no_evidence",
            "inconclusive": "inconclusive"}[result.verdict]
    stats = ", ".join(f"{t.name} {t.value:.3f} (null q99 {t.null_q99:.3f}, p {t.p_value:.3g})"
                      for t in result.tests)
    return ComponentEvidence(
        component="tokenizer", verdict=word, test="tokenizer_lineage",  # type: ignore[arg-type]
        statistic=result.identical_ids.value, p_value=max(t.p_value for t in result.tests),
        reference=reference, detail=f"tokenizer {result.verdict}: {result.reason}; {stats}")


# --- the baseline -------------------------------------------------------------------------

def train_bpe(text: str, vocab_size: int, out: Path) -> Path:
    """A byte-level BPE trained on ``text`` (deterministic), saved as ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text.split("\n"), trainer)
    tok.save(str(out))
    return out


def build_baseline(workdir: Path, *, n_tokenizers: int, vocab_sizes: Sequence[int],
                   corpus_chars: Sequence[int], seed_offset: int) -> dict[str, list[float]]:
    """Train ``n_tokenizers`` independent byte-level BPEs and return every pair's statistics.

    Tokenizer i is trained on ``corpus_text("train", corpus_chars[i % ..], seed=seed_offset+i)``
    with vocabulary ``vocab_sizes[i % ..]``: disjoint seeded samples of the same generator.
    """
    from kaieval.synth.corpus import corpus_text

    facts = []
    for i in range(n_tokenizers):
        text = corpus_text("train", corpus_chars[i % len(corpus_chars)], seed=seed_offset + i)
        path = train_bpe(text, vocab_sizes[i % len(vocab_sizes)], workdir / f"tok{i}.json")
        facts.append(read_tokenizer(path))
    out: dict[str, list[float]] = {k: [] for k in STATISTICS}
    for i in range(n_tokenizers):
        for j in range(i + 1, n_tokenizers):
            for k, v in pair_statistics(facts[i], facts[j]).items():
                out[k].append(round(v, 12))
    return out


def write_baseline(workdir: Path, out: Path) -> None:
    """Rebuild the bundled baseline file from :data:`BASELINE_RECIPE`."""
    import tokenizers

    stats = build_baseline(workdir, **BASELINE_RECIPE)
    payload = {
        "what": "lineage statistics of pairs of independently trained byte-level BPE "
                "tokenizers (the null for compare_tokenizers)",
        "how": "kaieval.provenance.tokenizer_lineage.build_baseline(**recipe): tokenizer i "
               "trained on kaieval.synth.corpus.corpus_text('train', corpus_chars[i % 3], "
               "seed=seed_offset + i), vocab_sizes[i % 4], all pairs i < j",
        "recipe": BASELINE_RECIPE, "tokenizers_version": tokenizers.__version__,
        "statistics": stats,
    }
    atomic_write_text(out, json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":  # python -m kaieval.provenance.tokenizer_lineage OUT_DIR
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_baseline(Path(tmp), Path(sys.argv[1]) / BASELINE_FILE)
