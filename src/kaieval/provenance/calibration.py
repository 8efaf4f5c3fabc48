"""Calibration of the independence verdict: check known controls, measure rates and thresholds.

Why: a verdict is only as good as its measured error rates. "No evidence of
dependence" means something only at a known detection rate, and "derived" only
at a known false-positive rate. Published models cannot supply controls whose
lineage is certain, so the suite *builds* them, deterministically, on CPU
(:mod:`kaieval.provenance.calibration_controls`; which controls and pairs, and what
each must show: :mod:`kaieval.provenance.calibration_suite`):

* derived controls from one briefly trained ``parent`` (:data:`DERIVED_KINDS`);
* independent controls: other seeds (same architecture and data), other tokenizers.
  Every pair of independent models is a negative.

This module runs :func:`check_independence` as a black box on every (derived,
parent) and (independent, independent) pair, measures the effect-size thresholds on
the trained controls, and summarises: rates get exact Clopper-Pearson intervals; the
negatives' component p-values are tested against U(0, 1) (spread, not piled at 0).
The suite's public names are re-exported here, so callers import from one place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import betaincinv

from kaieval.errors import KaiError
from kaieval.hashing import sha256_file, sha256_json
from kaieval.provenance.calibration_controls import build_suite as build_suite
from kaieval.provenance.calibration_suite import DERIVED_KINDS as DERIVED_KINDS
from kaieval.provenance.calibration_suite import DETECTED as DETECTED
from kaieval.provenance.calibration_suite import ENCODER_REFERENCE as ENCODER_REFERENCE
from kaieval.provenance.calibration_suite import PARTIAL_KINDS as PARTIAL_KINDS
from kaieval.provenance.calibration_suite import STRONG as STRONG
from kaieval.provenance.calibration_suite import SUITE_VERSION as SUITE_VERSION
from kaieval.provenance.calibration_suite import Pair as Pair
from kaieval.provenance.calibration_suite import Progress as Progress
from kaieval.provenance.calibration_suite import SuiteConfig as SuiteConfig
from kaieval.provenance.calibration_suite import frozen_blocks as frozen_blocks
from kaieval.provenance.calibration_suite import independent_names as independent_names
from kaieval.provenance.calibration_suite import suite_pairs as suite_pairs
from kaieval.provenance.evidence_kind import (
    IDENTICAL_EFFECT,
    TRAINED_CONTROLS,
    WHOLE_MODEL_SHARE,
    EffectThresholds,
    decide,
    effect_thresholds,
    is_weight_line,
    lm_strong_share,
)
from kaieval.provenance.safetensors_io import open_model
from kaieval.provenance.tensor_groups import is_norm
from kaieval.provenance.tokenizer_lineage import TOKENIZER_TEST
from kaieval.provenance.verdict import check_independence
from kaieval.records import ComponentEvidence, IndependenceVerdict


@dataclass
class Outcome:
    """What :func:`check_independence` said about one pair."""

    pair: Pair
    verdict: str
    seconds: float
    p_values: dict[str, float | None] = field(default_factory=dict)
    derived_components: list[str] = field(default_factory=list)
    raw_norm_cosine: float | None = None
    summary: str = ""
    kinds: dict[str, str] = field(default_factory=dict)  # component -> kind of evidence
    effects: dict[str, float | None] = field(default_factory=dict)  # component -> effect
    parameters: dict[str, int | None] = field(default_factory=dict)
    lm_strong_share: float | None = None  # compared LM parameters copied / derived
    evidence: tuple[ComponentEvidence, ...] = ()  # the record's lines, kinds set
    thresholds: dict[str, float] = field(default_factory=dict)  # effect thresholds used

    @property
    def detected(self) -> bool:
        return self.verdict in DETECTED

    @property
    def as_expected(self) -> bool:
        """The expected verdict, naming the components known to come from the parent with
        the kind of evidence they should show; for a partial control nothing else is
        copied or derived by training (the rest was trained by the team)."""
        if self.verdict not in self.pair.expected or \
                not set(self.pair.must_name) <= set(self.derived_components):
            return False
        if self.pair.must_be and any(self.kinds.get(c) not in self.pair.must_be
                                     for c in self.pair.must_name):
            return False
        if self.pair.kind in PARTIAL_KINDS:
            return not [c for c, k in self.kinds.items()
                        if k in STRONG and c not in self.pair.must_name
                        and c != "norms"]  # norms hold the copied blocks' norm weights
        return True


# --- statistics -----------------------------------------------------------------------------
def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion k/n."""
    if not (0 <= k <= n) or n == 0 or not 0.0 < level < 1.0:
        raise KaiError(f"clopper_pearson: need 0 <= k <= n, n > 0, 0 < level < 1 "
                       f"(got k={k}, n={n}, level={level})")
    a = 1.0 - level
    lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, a / 2))
    hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - a / 2))
    return lo, hi


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n) if n else (0.0, 1.0)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": [lo, hi]}


def null_p_spread(p_values: Sequence[float]) -> dict[str, Any]:
    """Deciles and a KS test against U(0, 1): independent pairs' p-values should spread out."""
    ps = np.asarray([p for p in p_values if p is not None], dtype=float)
    if ps.size == 0:
        return {"n": 0}
    from scipy import stats  # here, not at the top: a verdict quoting the rates needs no KS

    ks = stats.kstest(ps, "uniform")
    counts, _ = np.histogram(ps, bins=10, range=(0.0, 1.0))
    return {"n": int(ps.size), "ks_statistic": float(ks.statistic), "ks_p": float(ks.pvalue),
            "decile_counts": [int(c) for c in counts], "min": float(ps.min()),
            "median": float(np.median(ps)), "below_0.01": int((ps < 0.01).sum()),
            "below_0.05": int((ps < 0.05).sum())}



# --- running the checks ---------------------------------------------------------------------
def raw_norm_cosine(candidate: Path, reference: Path) -> float | None:
    """Raw cosine of all same-name norm weights concatenated: the misleading number."""
    a, b = open_model(candidate), open_model(reference)
    names = [n for n in a.names() if is_norm(n) and n in b.tensors
             and a.tensors[n].shape == b.tensors[n].shape]
    if not names:
        return None
    x = np.concatenate([a.load(n).ravel() for n in names]).astype(np.float64)
    y = np.concatenate([b.load(n).ravel() for n in names]).astype(np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def evaluate(pairs: Sequence[Pair], models: dict[str, Path], *, alpha: float = 0.01,
             progress: Progress | None = None,
             thresholds: EffectThresholds | None = None) -> list[Outcome]:
    """Run :func:`check_independence` on each pair (one reference each), then decide.

    The checks run with no effect-size thresholds; the thresholds are then measured on
    the trained controls' outcomes (:func:`measure_thresholds`, unless ``thresholds`` is
    given) and every verdict is decided again from its evidence with them -- the same
    :func:`~kaieval.provenance.evidence_kind.decide` that ``check_independence`` calls.
    """
    raw: list[tuple[Pair, IndependenceVerdict, float]] = []
    for i, pair in enumerate(pairs, start=1):
        start = time.perf_counter()
        v = check_independence(models[pair.candidate], [models[pair.reference]], alpha=alpha,
                               stage_id="calibration", team_id=pair.candidate,
                               effect_thresholds=EffectThresholds())
        raw.append((pair, v, round(time.perf_counter() - start, 3)))
        if progress is not None:
            progress(f"[{i}/{len(pairs)}] {pair.candidate} vs {pair.reference}: checked")
    if thresholds is None:
        thresholds = measure_thresholds([(p, v) for p, v, _ in raw])
    out: list[Outcome] = []
    for pair, v, seconds in raw:
        d = decide(v.evidence, v.references, alpha=alpha, thresholds=thresholds)
        weights = [e for e in d.evidence if e.test != TOKENIZER_TEST]  # not weight tests
        out.append(Outcome(
            pair, d.verdict, seconds, {e.component: e.p_value for e in weights},
            [e.component for e in weights if e.verdict == "derived"],
            raw_norm_cosine(models[pair.candidate], models[pair.reference]), d.sentence,
            {e.component: e.kind or "" for e in weights},
            {e.component: e.effect_size for e in weights},
            {e.component: e.parameters for e in weights},
            lm_strong_share(d.evidence, pair.reference), d.evidence, dict(thresholds.by_type)))
        if progress is not None:
            progress(f"{pair.candidate} vs {pair.reference}: {d.verdict}")
    return out


def measure_thresholds(checked: Sequence[tuple[Pair, IndependenceVerdict]],
                       ) -> EffectThresholds:
    """Per component type, the smallest effect of a Holm-significant, not copied component
    of the fine-tune and continued-pretraining controls: the low end of the range that
    training a foreign model produces. Empty when neither control was run."""
    lines = {pair.kind: [e for e in v.evidence if is_weight_line(e)]
             for pair, v in checked if pair.kind in TRAINED_CONTROLS}
    by_type = effect_thresholds(lines)
    return EffectThresholds(by_type, f"calibration suite ({', '.join(sorted(lines))})"
                            if by_type else "not calibrated")


def code_fingerprint() -> str:
    """SHA-256 over the provenance package's sources: which engine code was calibrated."""
    here = Path(__file__).parent
    return sha256_json({p.name: sha256_file(p) for p in sorted(here.glob("*.py"))})


def _type(component: str) -> str:
    """block.3.mlp -> mlp: p-values pooled by the kind of test that produced them."""
    return component.rsplit(".", 1)[-1] if component.startswith("block.") else component


def summarise(outcomes: Sequence[Outcome], *, alpha: float, config: SuiteConfig,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rates with exact intervals, per-pair outcomes and the null p-value spread, as JSON data."""
    pos = [o for o in outcomes if o.pair.role == "derived"]
    neg = [o for o in outcomes if o.pair.role == "independent"]
    null_ps = [p for o in neg for p in o.p_values.values() if p is not None]
    pair_ps = [min(1.0, len(ps) * min(ps)) for o in neg
               if (ps := [p for p in o.p_values.values() if p is not None])]
    high = [o for o in neg if o.raw_norm_cosine is not None and o.raw_norm_cosine > 0.95]
    trained = [e for o in pos if o.pair.kind in TRAINED_CONTROLS
               for c, e in o.effects.items() if e is not None and o.kinds.get(c) in STRONG]
    whole = [o.lm_strong_share for o in pos if o.verdict == "derived"
             and o.lm_strong_share is not None]
    part = [o.lm_strong_share for o in pos if o.verdict == "partial"
            and o.lm_strong_share is not None]
    thresholds = {
        "by_type": outcomes[0].thresholds if outcomes else {},
        "controls": [k for k in TRAINED_CONTROLS if any(o.pair.kind == k for o in pos)],
        "code_sha256": code_fingerprint(),
        "identical_effect": IDENTICAL_EFFECT,
        "max_trained": max(trained, default=None),
        "whole_model_share": WHOLE_MODEL_SHARE,
        "min_share_of_derived": min(whole, default=None),
        "max_share_of_partial": max(part, default=None)}
    return {
        "suite_version": SUITE_VERSION, "alpha": alpha, "config": asdict(config),
        "code_sha256": code_fingerprint(), **(extra or {}),
        "true_positive": _rate(sum(o.detected for o in pos), len(pos)),
        "derived_as_expected": _rate(sum(o.as_expected for o in pos), len(pos)),
        "false_positive": _rate(sum(o.detected for o in neg), len(neg)),
        "effect_thresholds": thresholds,
        "partial_controls": {
            "detected": _rate(sum(o.detected for o in pos if o.pair.kind in PARTIAL_KINDS),
                              sum(o.pair.kind in PARTIAL_KINDS for o in pos)),
            "as_expected": _rate(sum(o.as_expected for o in pos
                                     if o.pair.kind in PARTIAL_KINDS),
                                 sum(o.pair.kind in PARTIAL_KINDS for o in pos))},
        "null_component_p": null_p_spread(null_ps),
        "null_pair_bonferroni_p": null_p_spread(pair_ps),
        "null_component_p_by_type": {t: null_p_spread([
            p for o in neg for c, p in o.p_values.items() if p is not None and _type(c) == t])
            for t in sorted({_type(c) for o in neg for c in o.p_values})},
        "high_norm_cosine": {"pairs": len(high), "detected": sum(o.detected for o in high),
                             "min_raw_cosine": min((o.raw_norm_cosine or 1.0 for o in high),
                                                   default=None)},
        "pairs": [{**asdict(o.pair), "verdict": o.verdict, "detected": o.detected,
                   "as_expected": o.as_expected, "seconds": o.seconds,
                   "derived_components": o.derived_components, "p_values": o.p_values,
                   "raw_norm_cosine": o.raw_norm_cosine, "summary": o.summary,
                   "kinds": o.kinds, "effects": o.effects, "parameters": o.parameters,
                   "lm_strong_share": o.lm_strong_share}
                  for o in outcomes],
    }


def run_suite(cache_dir: Path, config: SuiteConfig | None = None, *, alpha: float = 0.01,
              progress: Progress | None = None) -> dict[str, Any]:
    """Build the controls, check every pair, and return the summary (see :func:`summarise`)."""
    config = config or SuiteConfig()
    t = [time.perf_counter()]
    models = build_suite(cache_dir, config, progress=progress)
    t.append(time.perf_counter())
    outcomes = evaluate(suite_pairs(config), models, alpha=alpha, progress=progress)
    t.append(time.perf_counter())
    return summarise(outcomes, alpha=alpha, config=config, extra={
        "build_seconds": round(t[1] - t[0], 1), "check_seconds": round(t[2] - t[1], 1)})


@dataclass(frozen=True)
class MeasuredRates:
    """The suite's measured rates, for a verdict to quote its detection power."""

    alpha: float
    detected: int
    derived_pairs: int
    tpr_ci95: tuple[float, float]
    false_positives: int
    independent_pairs: int
    fpr_ci95: tuple[float, float]
    code_sha256: str

    def sentence(self) -> str:
        return (f"calibration suite at alpha {self.alpha:g}: detected {self.detected}/"
                f"{self.derived_pairs} derived controls (95 % CI {self.tpr_ci95[0]:.2f}-"
                f"{self.tpr_ci95[1]:.2f}); {self.false_positives}/{self.independent_pairs} "
                f"independent pairs called derived or partial (95 % CI "
                f"{self.fpr_ci95[0]:.2f}-{self.fpr_ci95[1]:.2f})")


def measured_rates(summary_json: Path) -> MeasuredRates:
    """Read the rates back from a summary written by ``benchmarks/provenance_calibration.py``."""
    where = str(summary_json)
    try:
        data = json.loads(Path(summary_json).read_text(encoding="utf-8"))
        tp, fp = data["true_positive"], data["false_positive"]
        return MeasuredRates(
            float(data["alpha"]), int(tp["k"]), int(tp["n"]),
            (float(tp["ci95"][0]), float(tp["ci95"][1])), int(fp["k"]), int(fp["n"]),
            (float(fp["ci95"][0]), float(fp["ci95"][1])), str(data["code_sha256"]))
    except OSError as err:
        raise KaiError(f"cannot read calibration summary: {err.strerror}", where=where) from None
    except (ValueError, KeyError, TypeError) as err:
        raise KaiError(f"not a calibration summary ({type(err).__name__}: {err})",
                       where=where) from None
