"""Three kinds of evidence kept apart, how much of the model each covers, and the verdict.

Why: a permutation test on 100k weights finds the components of a model trained from
scratch *around* frozen foreign blocks significant (they co-adapted to the copies), with
effect sizes of 0.01-0.05. Calling those components "derived" turned "22 % copied, the
rest trained" into "derived: 8 of 10 components". Significance says *that* a component
depends on a reference; the effect size says *how much*. So each compared component gets
one kind:

* ``copied``: byte-identical tensors holding at least half of the component's
  parameters, or a correlation of at least :data:`IDENTICAL_EFFECT` after the
  alignments the engine applies (permutation, residual map), or a mean cosine that high
  between matched MLP units or attention heads (``aligned_similarity``: units or heads
  reordered, a function-preserving transform): numerically the same weights. A lightly
  fine-tuned encoder whose one untouched tensor is byte-identical is not "used as-is":
  its effect size decides, like any other;
* ``derived_by_training``: significant after Holm, with an effect size at least the
  smallest that the calibration suite's fine-tune and continued-pretraining controls
  produced for that type of component (:class:`EffectThresholds`, read from the suite's
  summary, never guessed);
* ``co_adapted``: significant, but with a smaller effect (next to frozen copies, or
  after very long training);
* ``no_evidence`` / ``not_comparable``.

The overall verdict follows from the kinds and the parameters they cover
(:func:`decide`); it is a pure function of the evidence records, so the calibration
suite can decide again with thresholds it has just measured.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kaieval.provenance.tensor_groups import is_language_model
from kaieval.records import ComponentEvidence, ComponentShare, EvidenceKind

IDENTICAL_EFFECT = 0.9999
"""Centred r at or above which aligned weights count as the same weights (a copy under a
function-preserving transform). Not a statistical threshold: float rounding of a copy
stays above it, and the suite's fine-tunes stay below it (their largest effect is in the
calibration summary, ``effect_thresholds.max_trained``)."""

WHOLE_MODEL_SHARE = 0.75
"""``derived`` needs copied or derived-by-training components to hold at least this share
of the compared language-model parameters for one reference; below it the dependence is a
strict part of the model (``partial``). The calibration summary records the smallest share
of any derived control and the largest of any partial one beside it."""

STRENGTH: tuple[EvidenceKind, ...] = ("copied", "derived_by_training", "co_adapted",
                                      "no_evidence", "not_comparable")
KIND_WORDS: dict[str, str] = {"copied": "copied", "derived_by_training": "derived by training",
                              "co_adapted": "co-adapted (weak)", "no_evidence": "no evidence",
                              "not_comparable": "not comparable"}
TRAINED_CONTROLS = ("finetune", "continued-pretraining")
MATCHING = "_matching"  # threshold key suffix: the bar for an MLP's matched rank rho


def component_type(component: str) -> str:
    """block.3.mlp -> mlp; embeddings, head, norms and encoders stay as they are."""
    return component.rsplit(".", 1)[-1] if component.startswith("block.") else component


@dataclass(frozen=True)
class EffectThresholds:
    """Smallest effect size of a derived-by-training component, per component type.

    ``by_type`` comes from the calibration suite (its fine-tune and continued-pretraining
    controls); a type the suite has no value for uses the smallest of all. Empty means
    not calibrated: then no significant component can be called co-adapted, and the
    verdict's sentence says so.
    """

    by_type: dict[str, float] = field(default_factory=dict)
    source: str = "not calibrated"

    def threshold(self, component: str, *, matching: bool = False) -> float | None:
        """The bar for the component's effect size (``matching``: for its matched rho)."""
        if matching:
            return self.by_type.get(component_type(component) + MATCHING)
        plain = {k: v for k, v in self.by_type.items() if not k.endswith(MATCHING)}
        if not plain:
            return None
        return plain.get(component_type(component), min(plain.values()))

    @classmethod
    def from_summary(cls, path: Path) -> EffectThresholds:
        """The thresholds a calibration summary states; empty when it states none."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))["effect_thresholds"]
            by_type = {str(k): float(v) for k, v in data["by_type"].items()}
            return cls(by_type, f"calibration suite ({', '.join(data['controls'])}; engine "
                                f"code {str(data.get('code_sha256', '?'))[:19]})")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls()


def effect_thresholds(lines: Mapping[str, Sequence[ComponentEvidence]]) -> dict[str, float]:
    """Per component type, the smallest effect among the trained controls' significant,
    not copied components (``lines[control]``: its weight evidence lines); for MLPs also
    the smallest matched rho (key ``mlp_matching``). Floored to 4 decimals, never
    rounded up: a control must meet the bar measured on it."""
    out: dict[str, float] = {}
    for evs in lines.values():
        for ev in evs:
            if ev.verdict != "derived" or ev.tensors_copied:
                continue
            t = component_type(ev.component)
            for key, value in ((t, ev.effect_size), (t + MATCHING, ev.match_rho)):
                if value is not None:
                    out[key] = min(out.get(key, math.inf), value)
    return {k: math.floor(v * 1e4) / 1e4 for k, v in sorted(out.items())}


def classify(ev: ComponentEvidence, thresholds: EffectThresholds) -> EvidenceKind:
    """The kind of one weight evidence line (see the module docstring)."""
    if ev.verdict == "inconclusive":
        return "not_comparable"
    if ev.tensors_copied and (ev.parameters_copied is None or not ev.parameters
                              or 2 * ev.parameters_copied >= ev.parameters):
        return "copied"
    if ev.verdict != "derived":
        return "no_evidence"
    if ev.effect_size is not None and ev.effect_size >= IDENTICAL_EFFECT and \
            ev.tensors_correlated:
        return "copied"
    if ev.aligned_similarity is not None and ev.aligned_similarity >= IDENTICAL_EFFECT:
        return "copied"  # heads or MLP units reordered, the weights themselves the same
    bar = thresholds.threshold(ev.component)
    if bar is None:
        return "derived_by_training"
    rho_bar = thresholds.threshold(ev.component, matching=True)
    if ev.effect_size is not None and ev.effect_size >= bar:
        return "derived_by_training"
    if rho_bar is not None and ev.match_rho is not None and ev.match_rho >= rho_bar:
        return "derived_by_training"
    return "co_adapted"


def is_weight_line(ev: ComponentEvidence) -> bool:
    """Weight-test lines, not tokenizer-lineage or black-box lines (those stay beside)."""
    return ev.lineage is None and ev.component != "behaviour"


def with_kinds(evidence: Sequence[ComponentEvidence], thresholds: EffectThresholds,
               ) -> tuple[ComponentEvidence, ...]:
    """Every weight line with its kind set; other lines unchanged."""
    return tuple(ev.model_copy(update={"kind": classify(ev, thresholds)})
                 if is_weight_line(ev) else ev for ev in evidence)


def _strongest(evidence: Sequence[ComponentEvidence], reference: str | None,
               ) -> dict[str, ComponentEvidence]:
    """Per component, the line of the strongest kind (against ``reference``, or any)."""
    best: dict[str, ComponentEvidence] = {}
    for ev in evidence:
        if not is_weight_line(ev) or ev.kind is None:
            continue
        if reference is not None and ev.reference not in (reference, None):
            continue
        old = best.get(ev.component)
        if old is None or STRENGTH.index(ev.kind) < STRENGTH.index(old.kind or "not_comparable"):
            best[ev.component] = ev
    return best


def shares(evidence: Sequence[ComponentEvidence], reference: str | None = None,
           ) -> tuple[ComponentShare, ...]:
    """Components and parameter share of each kind (strongest kind per component)."""
    best = _strongest(evidence, reference)
    total = sum(ev.parameters or 0 for ev in best.values())
    out = []
    for kind in STRENGTH:
        comps = [c for c, ev in best.items() if ev.kind == kind]
        n = sum(best[c].parameters or 0 for c in comps)
        out.append(ComponentShare(kind=kind, components=tuple(comps), parameters=n,
                                  share=n / total if total else 0.0))
    return tuple(out)


def lm_strong_share(evidence: Sequence[ComponentEvidence], reference: str) -> float | None:
    """Share of compared language-model parameters copied or derived by training."""
    best = _strongest(evidence, reference)
    lm = [ev for c, ev in best.items() if is_language_model(c) and ev.kind != "not_comparable"]
    total = sum(ev.parameters or 0 for ev in lm)
    if not lm or not total:
        return None
    strong = sum(ev.parameters or 0 for ev in lm if ev.kind in ("copied", "derived_by_training"))
    return strong / total


_BLOCK = re.compile(r"^block\.(\d+)\.(\w+)$")


def name_components(components: Sequence[str]) -> str:
    """Components in words, blocks grouped: 'attention and MLP of blocks 0-1, embeddings'."""
    blocks: dict[int, list[str]] = {}
    rest: list[str] = []
    for c in components:
        m = _BLOCK.match(c)
        if m:
            blocks.setdefault(int(m.group(1)), []).append(m.group(2))
        else:
            rest.append(c)
    by_parts: dict[tuple[str, ...], list[int]] = {}
    for b, got in sorted(blocks.items()):
        by_parts.setdefault(tuple(sorted(got)), []).append(b)
    words = []
    for parts, nums in by_parts.items():
        what = " and ".join("MLP" if p == "mlp" else p for p in parts)
        words.append(f"{what} of {_ranges(nums)}")
    return ", ".join(words + rest)


def _ranges(nums: list[int]) -> str:
    runs: list[list[int]] = []
    for n in nums:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    text = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
    return ("blocks " if len(nums) > 1 else "block ") + text


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %" if x >= 0.01 or x == 0 else "<1 %"


def _p_words(evs: Sequence[ComponentEvidence]) -> str:
    """The weakest p among lines (how sure the weakest of them is)."""
    lps = [ev.log10_p for ev in evs if ev.log10_p is not None]
    if not lps:
        return ""
    worst = max(lps)
    return f"p <= {10 ** worst:.2g}" if worst > -300 else f"p <= 1e{worst:.0f}"


def _strong_words(evs: Sequence[ComponentEvidence]) -> str:
    """How sure the copied and derived-by-training lines are: the weakest p among those
    derived by training; copies are certain whatever their p (a reordered copy's p can
    be as weak as 1/24 with four attention heads)."""
    trained = [ev for ev in evs if ev.kind != "copied"]
    return (_p_words(trained) if trained else "") or "all copied"


def _bars(evs: Sequence[ComponentEvidence], thresholds: EffectThresholds) -> str:
    """The thresholds that applied to these lines, e.g. 'head 0.84' (the report states them)."""
    out: dict[str, str] = {}
    for ev in evs:
        t = component_type(ev.component)
        bar = thresholds.threshold(ev.component)
        if bar is not None:
            out[t] = f"{t} {bar:.2f}"
        rho = thresholds.threshold(ev.component, matching=True)
        if rho is not None and ev.match_rho is not None:
            out[t + MATCHING] = f"{t} matched rho {rho:.2f}"
    return ", ".join(out[k] for k in sorted(out))


@dataclass(frozen=True)
class Decision:
    """The overall verdict, its plain sentence, and the shares it rests on."""

    verdict: str
    sentence: str
    reference: str | None
    shares: tuple[ComponentShare, ...]
    evidence: tuple[ComponentEvidence, ...]


def decide(evidence: Sequence[ComponentEvidence], references: Sequence[str], *, alpha: float,
           thresholds: EffectThresholds, power: str | None = None) -> Decision:
    """The verdict from the evidence lines (kinds set here from ``thresholds``).

    * ``derived``: for some reference, copied or derived-by-training components hold at
      least :data:`WHOLE_MODEL_SHARE` of the compared language-model parameters;
    * ``partial``: some component is copied, derived by training or co-adapted, but not the
      model as a whole: the sentence lists which, and says the rest was trained by the team;
    * ``no_evidence``: something was compared and nothing is significant;
    * ``inconclusive``: nothing could be compared.
    """
    evidence = with_kinds(evidence, thresholds)
    ranked = sorted(references, key=lambda r: -(lm_strong_share(evidence, r) or 0.0))
    ref = ranked[0] if ranked else None
    for r in ranked:
        lm_share = lm_strong_share(evidence, r)
        if lm_share is not None and lm_share >= WHOLE_MODEL_SHARE:
            ref = r
            break
    else:
        lm_share = None
    by_kind = {s.kind: s for s in shares(evidence, None if len(references) > 1 else ref)}
    weights = [ev for ev in evidence if is_weight_line(ev)]
    per_comp = _strongest(evidence, None)
    n_all = len(per_comp)
    compared = [c for c, ev in per_comp.items() if ev.kind != "not_comparable"]
    compared_share = 1.0 - by_kind["not_comparable"].share
    cover = (f"Compared {len(compared)} of {n_all} weight components "
             f"({_pct(compared_share)} of the parameters) with {', '.join(references)}")
    nc = by_kind["not_comparable"].components
    if nc:
        reasons = sorted({per_comp[c].not_compared or "nothing comparable" for c in nc})
        cover += f"; not comparable: {name_components(nc)} ({'; '.join(reasons[:2])})"
    cover += "."
    mostly_uncompared = compared_share < 0.5
    n_tests = sum(ev.p_value is not None for ev in weights)
    sure = f"α = {alpha:g}, Holm-corrected across {n_tests} tests"
    if lm_share is not None:
        strong = [ev for ev in per_comp.values()
                  if ev.kind in ("copied", "derived_by_training")]
        copied = by_kind["copied"]
        named = (f" Copied as-is: {name_components(copied.components)} ({_pct(copied.share)} "
                 "of the parameters)." if copied.components else "")
        text = (f"{cover} Derived from {ref}: {_pct(lm_share)} of the compared language-model "
                f"parameters are copied or derived by training "
                f"({len(strong)} components, {_strong_words(strong)}; {sure}).{named}")
        return Decision("derived", text, ref, tuple(by_kind.values()), evidence)
    found: list[EvidenceKind] = [k for k in ("copied", "derived_by_training", "co_adapted")
                                 if by_kind[k].components]
    if found:
        parts = []
        for k in found:
            s = by_kind[k]
            evs = [per_comp[c] for c in s.components]
            how = ("byte-identical or identical after alignment" if k == "copied"
                   else _p_words(evs))
            extra = ""
            effs = [ev.effect_size for ev in evs if ev.effect_size is not None]
            if k != "copied" and effs and thresholds.by_type:
                span = (f"{min(effs):.2f}" if f"{min(effs):.2f}" == f"{max(effs):.2f}"
                        else f"{min(effs):.2f}-{max(effs):.2f}")
                side = "below" if k == "co_adapted" else "at or above"
                extra = (f", effect {span}, {side} the smallest the calibration suite's "
                         f"fine-tunes produce: {_bars(evs, thresholds)}")
            parts.append(f"{KIND_WORDS[k]}: {name_components(s.components)} "
                         f"({_pct(s.share)} of the parameters; {how}{extra})")
        srcs = sorted({ev.reference for ev in weights
                       if ev.kind in found and ev.reference is not None})
        strong_share = by_kind["copied"].share + by_kind["derived_by_training"].share
        rest = ("the rest was trained by the team" if strong_share < 1.0
                else "nothing else was compared")
        if not by_kind["copied"].components and not by_kind["derived_by_training"].components:
            rest = ("no component is copied or derived by training; the rest shows no "
                    "dependence")
        calib = "" if thresholds.by_type else (
            " Effect-size thresholds are not calibrated, so no component could be called "
            "co-adapted.")
        text = (f"{cover} Partial, from {', '.join(srcs)}: " + "; ".join(parts)
                + f"; {rest} ({sure}).{calib}")
        return Decision("partial", text, ref, tuple(by_kind.values()), evidence)
    if compared:
        scope = (" Most of the model could not be compared, so this says little."
                 if mostly_uncompared else "")
        text = (f"{cover} No evidence of dependence: nothing significant ({sure}); this does "
                f"not prove training from scratch.{scope} Detection power: "
                f"{power or 'not yet measured by the calibration suite'}.")
        return Decision("no_evidence", text, ref, tuple(by_kind.values()), evidence)
    text = (f"Inconclusive: no weight of the candidate could be compared with "
            f"{', '.join(references)}.")
    return Decision("inconclusive", text, ref, tuple(by_kind.values()), evidence)
