"""Tokenizer lineage: was the candidate's tokenizer taken from (or grown out of) the reference's?

Why several statistics and a baseline: any two byte-level BPE tokenizers share the 256
byte tokens, and two tokenizers trained independently on similar text share most of
their frequent words, so vocabulary overlap alone is weak evidence (the public claim
that HyperCLOVA X's first 20 merges match Qwen2.5's is exactly that mistake). What an
independent training run does *not* reproduce is the id each learned token got, and
the *exact* order of the merges. Over the learned tokens (special and user-defined
tokens are kept out of every order statistic) we measure

* ``jaccard``          -- |A ∩ B| / |A ∪ B| over token strings (context only);
* ``identical_ids``    -- share of the shared learned tokens (two characters or more)
  with the same id in both;
* ``id_offset_share``  -- share of them whose ids differ by the most common offset
  (control tokens inserted in front shift every id by one constant);
* ``order_prefix``     -- common prefix of the two merge orders, over the shorter;
* ``order_kept``       -- the longest run of shared learned tokens that both orders
  put in the same sequence (longest increasing subsequence), over the shared ones: 1.0
  when one tokenizer's merge order is the other's with tokens removed or added,
  whatever the ids; independent runs, though their orders correlate (Spearman ~0.9),
  keep far less;
* ``rank_correlation`` -- Spearman's rho of the creation ranks over the shared learned
  tokens (evidence, tested like the rest: alone it does not separate).

Each is compared with a null distribution from pairs of tokenizers we trained
ourselves, independently, on different seeded samples of the same generator (same
language, same algorithm: the hardest, most conservative null). Empirical
p = (1 + #{null >= x}) / (n + 1).

Verdicts (about the tokenizer only), checked in this order:

* ``identical``          -- the same learned and user-defined tokens at the same ids;
* ``extended``           -- a superset keeping every one of the reference's ids;
* ``extended, shifted``  -- a superset whose shared ids all differ by one constant;
* ``derived, reordered`` -- most of the reference's learned tokens shared and its order
  kept among them (``order_kept`` and ``rank_correlation`` both beat the null): ids
  permuted, or tokens pruned or appended, with the merge order preserved;
* ``independent``        -- no id or order statistic beats the null;
* ``inconclusive``       -- anything else.

Every verdict states its p-value against the null: ``identical_ids`` for identical and
extended, ``id_offset_share`` for shifted, the larger of ``order_kept`` and
``rank_correlation`` for derived (both must pass), and the smallest of all for
independent / inconclusive. Files are read by :mod:`kaieval.tokenizer` (every format,
as data: no tokenizer code is run).

A shared tokenizer is not weight reuse: the verdict here feeds the committee's
tokenizer policy, not the weights verdict.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kaieval.errors import KaiError
from kaieval.io import atomic_write_text
from kaieval.records import ComponentEvidence
from kaieval.tokenizer import TokenizerFile, load_tokenizer

LineageWord = Literal["identical", "extended", "extended, shifted", "derived, reordered",
                      "independent", "inconclusive"]
STATISTICS = ("jaccard", "identical_ids", "id_offset_share", "order_prefix", "order_kept",
              "rank_correlation")
#: The statistics that are evidence of lineage (jaccard is context: same-language
#: tokenizers overlap whatever their history).
EVIDENCE = STATISTICS[1:]
#: "Most of the reference's vocabulary": the share of its learned tokens the candidate
#: must hold for ``derived, reordered``.
DERIVED_MIN_SHARED = 0.5
BASELINE_FILE = "tokenizer_baseline.json"
#: Component and test names of the tokenizer line in a verdict record.
TOKENIZER_COMPONENT = "tokenizer"
TOKENIZER_TEST = "tokenizer_lineage"
# The recipe of the bundled baseline: build_baseline(**BASELINE_RECIPE) reproduces the file.
BASELINE_RECIPE: dict[str, Any] = {
    "n_tokenizers": 30, "vocab_sizes": [800, 1000, 1500, 2000],
    "corpus_chars": [60000, 100000, 150000], "seed_offset": 1000,
}

TokenizerFacts = TokenizerFile  # the name version 1 used


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

    candidate: TokenizerFile
    reference: TokenizerFile
    tests: tuple[StatisticTest, ...]
    id_offset: int  # the most common id difference (candidate - reference), shared learned
    shared_tokens: int  # learned and user-defined tokens in both
    shared_of_reference: float  # share of the reference's learned tokens in the candidate
    reference_contained: bool  # every reference token is in the candidate at the same id
    alpha: float
    verdict: LineageWord
    p_value: float  # of the verdict, against the null (see the module docstring)
    reason: str

    def test(self, name: str) -> StatisticTest:
        return next(t for t in self.tests if t.name == name)

    @property
    def jaccard(self) -> StatisticTest:
        return self.test("jaccard")

    @property
    def identical_ids(self) -> StatisticTest:
        return self.test("identical_ids")

    @property
    def order_prefix(self) -> StatisticTest:
        return self.test("order_prefix")

    @property
    def order_rank_correlation(self) -> float:
        return self.test("rank_correlation").value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (tokenizer files by path, format, sha256, sizes; no vocab)."""
        def side(f: TokenizerFile) -> dict[str, Any]:
            return {"path": str(f.path), "format": f.format, "kind": f.kind, "sha256": f.sha256,
                    "vocab_size": f.vocab_size, "learned": len(f.learned),
                    "user_defined": len(f.added), "special": len(f.specials),
                    "learned_in_order": len(f.order), "notes": list(f.notes)}

        return {"candidate": side(self.candidate), "reference": side(self.reference),
                "verdict": self.verdict, "p_value": self.p_value, "reason": self.reason,
                "tests": [dataclasses.asdict(t) for t in self.tests],
                "id_offset": self.id_offset, "shared_tokens": self.shared_tokens,
                "shared_of_reference": self.shared_of_reference,
                "reference_contained": self.reference_contained, "alpha": self.alpha,
                "null": "independent byte-level BPE pairs, " + BASELINE_FILE}


def read_tokenizer(path: Path) -> TokenizerFile:
    """Any tokenizer file or model folder (:func:`kaieval.tokenizer.load_tokenizer`)."""
    return load_tokenizer(path)


# --- statistics ---------------------------------------------------------------------------

def _lis_length(seq: Sequence[int]) -> int:
    """Length of the longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    for x in seq:
        i = bisect.bisect_left(tails, x)
        if i == len(tails):
            tails.append(x)
        else:
            tails[i] = x
    return len(tails)


def _spearman(x: Sequence[int], y: Sequence[int]) -> float:
    """Spearman's rho of two rank sequences without ties (ranks of ranks)."""
    n = len(x)
    if n < 3:
        return 0.0
    rx = np.empty(n)
    rx[np.argsort(np.asarray(x))] = np.arange(n)
    ry = np.empty(n)
    ry[np.argsort(np.asarray(y))] = np.arange(n)
    d = rx - ry
    return float(1.0 - 6.0 * float(np.dot(d, d)) / (n * (n * n - 1.0)))


def pair_details(a: TokenizerFile, b: TokenizerFile) -> tuple[dict[str, float], int]:
    """The lineage statistics of a pair (symmetric) and the most common id offset a - b."""
    va, vb = a.vocab, b.vocab
    shared = va.keys() & vb.keys()
    union = len(va.keys() | vb.keys())
    learned = [t for t in a.learned.keys() & b.learned.keys() if len(t) >= 2]
    offsets = Counter(a.learned[t] - b.learned[t] for t in learned)
    offset, count = offsets.most_common(1)[0] if offsets else (0, 0)
    same = offsets.get(0, 0)
    n = min(len(a.order), len(b.order))
    lcp = 0
    while lcp < n and a.order[lcp] == b.order[lcp]:
        lcp += 1
    rank_a = {t: i for i, t in enumerate(a.order)}
    seq_b = [(j, rank_a[t]) for j, t in enumerate(b.order) if t in rank_a]
    ranks_a = [r for _, r in seq_b]
    kept = _lis_length(ranks_a) / len(ranks_a) if ranks_a else 0.0
    rho = _spearman([j for j, _ in seq_b], ranks_a)
    return ({"jaccard": len(shared) / union if union else 0.0,
             "identical_ids": same / len(learned) if learned else 0.0,
             "id_offset_share": count / len(learned) if learned else 0.0,
             "order_prefix": lcp / n if n else 0.0,
             "order_kept": kept, "rank_correlation": rho}, offset)


def pair_statistics(a: TokenizerFile, b: TokenizerFile) -> dict[str, float]:
    """The lineage statistics of a pair (symmetric)."""
    return pair_details(a, b)[0]


def _test(name: str, value: float, null: Sequence[float]) -> StatisticTest:
    arr = np.asarray(null, dtype=np.float64)
    if arr.size == 0:
        raise KaiError(f"baseline has no values for {name}", where="tokenizer baseline")
    mean, sd = float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    if sd > 0:
        z = (value - mean) / sd
    else:
        z = 0.0 if value == mean else math.copysign(math.inf, value - mean)
    p = (1 + int(np.sum(arr >= value - 1e-12))) / (arr.size + 1)
    q = np.quantile(arr, [0.5, 0.95, 0.99])
    return StatisticTest(name, value, float(q[0]), float(q[1]), float(q[2]), float(arr.max()),
                         int(arr.size), p, z)


def load_baseline() -> dict[str, list[float]]:
    """The bundled null: statistic name -> values over independent tokenizer pairs."""
    text = resources.files("kaieval.provenance").joinpath("data", BASELINE_FILE).read_text(
        encoding="utf-8")
    data = json.loads(text)
    return {k: [float(v) for v in data["statistics"][k]] for k in STATISTICS}


def compare_loaded(cand: TokenizerFile, ref: TokenizerFile, *, alpha: float = 0.01,
                   baseline: dict[str, list[float]] | None = None) -> TokenizerLineage:
    """:func:`compare_tokenizers` on tokenizers already read."""
    if not 0 < alpha < 1:
        raise KaiError(f"alpha must be in (0, 1), got {alpha}", where="--alpha")
    null = baseline if baseline is not None else load_baseline()
    stats, offset = pair_details(cand, ref)
    tests = {k: _test(k, stats[k], null[k]) for k in STATISTICS}
    cv, rv = cand.vocab, ref.vocab
    contained = bool(rv) and all(cv.get(t) == i for t, i in rv.items())
    shifted = bool(rv) and offset != 0 and all(cv.get(t) == i + offset for t, i in rv.items())
    shared = len(cv.keys() & rv.keys())
    shared_ref = (len(cand.learned.keys() & ref.learned.keys()) / len(ref.learned)
                  if ref.learned else 0.0)
    significant = [k for k in EVIDENCE if tests[k].p_value <= alpha]
    smallest = min(tests[k].p_value for k in EVIDENCE)
    specials = _special_difference(cand, ref)
    verdict: LineageWord
    if contained and len(cv) == len(rv):
        verdict, p = "identical", tests["identical_ids"].p_value
        reason = f"the same {len(rv)} tokens at the same ids" + specials
    elif contained:
        verdict, p = "extended", tests["identical_ids"].p_value
        reason = (f"all {len(rv)} reference tokens keep their ids; the candidate adds "
                  f"{len(cv) - len(rv)}" + specials)
    elif shifted:
        verdict, p = "extended, shifted", tests["id_offset_share"].p_value
        reason = (f"all {len(rv)} reference tokens are in the candidate at their id "
                  f"{offset:+d}; the candidate adds {len(cv) - len(rv)}" + specials)
    elif (shared_ref >= DERIVED_MIN_SHARED and tests["order_kept"].p_value <= alpha
          and tests["rank_correlation"].p_value <= alpha):
        verdict = "derived, reordered"
        p = max(tests["order_kept"].p_value, tests["rank_correlation"].p_value)
        reason = (f"{shared_ref:.0%} of the reference's learned tokens are shared and "
                  f"{stats['order_kept']:.1%} of them keep its merge order (rank correlation "
                  f"{stats['rank_correlation']:.3f}); {stats['identical_ids']:.0%} keep their id")
    elif not significant:
        verdict, p = "independent", smallest
        reason = f"no id or order statistic beats the independent null at {alpha}"
    else:
        verdict, p = "inconclusive", smallest
        reason = f"only {', '.join(significant)} beat the independent null at {alpha}"
    return TokenizerLineage(cand, ref, tuple(tests[k] for k in STATISTICS), offset, shared,
                            shared_ref, contained, alpha, verdict, p, reason)


def _special_difference(cand: TokenizerFile, ref: TokenizerFile) -> str:
    if cand.specials == ref.specials:
        return ""
    added = len(cand.specials.keys() - ref.specials.keys())
    gone = len(ref.specials.keys() - cand.specials.keys())
    return f" (special tokens differ: {added} only in the candidate, {gone} only in the reference)"


def compare_tokenizers(candidate: Path, reference: Path, *, alpha: float = 0.01,
                       baseline: dict[str, list[float]] | None = None) -> TokenizerLineage:
    """Compare two tokenizers (files or model folders, any format) against the null."""
    return compare_loaded(load_tokenizer(candidate), load_tokenizer(reference), alpha=alpha,
                          baseline=baseline)


def lineage_evidence(result: TokenizerLineage, reference: str) -> ComponentEvidence:
    """One evidence line for the verdict record, component ``tokenizer``.

    ``derived`` here means the *tokenizer* is the reference's (identical, extended,
    shifted or reordered); whether that matters is tokenizer policy, not weight reuse.
    The p-value is the verdict's (see the module docstring), against the bundled null
    (not Holm-corrected with the weight tests, which it does not join); ``lineage``
    carries the verdict word itself.
    """
    word = {"identical": "derived", "extended": "derived", "extended, shifted": "derived",
            "derived, reordered": "derived", "independent": "no_evidence",
            "inconclusive": "inconclusive"}[result.verdict]
    stats = ", ".join(f"{t.name} {t.value:.3f} (null q99 {t.null_q99:.3f}, p {t.p_value:.3g})"
                      for t in result.tests)
    sides = (f"candidate {result.candidate.format} ({result.candidate.vocab_size} tokens), "
             f"reference {result.reference.format} ({result.reference.vocab_size} tokens)")
    return ComponentEvidence(
        component=TOKENIZER_COMPONENT, verdict=word,  # type: ignore[arg-type]
        test=TOKENIZER_TEST, statistic=result.identical_ids.value, p_value=result.p_value,
        log10_p=math.log10(result.p_value), reference=reference, lineage=result.verdict,
        detail=f"tokenizer {result.verdict}: {result.reason}; {sides}; {stats}")


def lineage_not_measured(reference: str, why: str) -> ComponentEvidence:
    """The tokenizer line when one side has no tokenizer this package can read."""
    return ComponentEvidence(component=TOKENIZER_COMPONENT, verdict="inconclusive",
                             test=TOKENIZER_TEST, reference=reference, lineage="not measured",
                             detail=f"tokenizer not measured: {why}")


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
        facts.append(load_tokenizer(path))
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
