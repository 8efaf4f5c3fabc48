"""Per-document metrics as pure functions (IFEval checks: kaieval.bench.ifeval).

Definitions follow lm-evaluation-harness where it has one, so a score computed
here equals lm-eval's on the same model outputs: ``acc`` is the argmax of the
summed log-likelihoods, ``acc_norm`` the argmax of log-likelihood divided by the
choice's length in characters, ``exact_match`` is HF-evaluate's (optional case,
punctuation and regex stripping). Math answers compare numerically after
parsing the last number; IFEval-style checks are small verifiable predicates.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from kaieval.bench.ifeval import INSTRUCTION_CHECKS as INSTRUCTION_CHECKS
from kaieval.bench.ifeval import check_bullets as check_bullets
from kaieval.bench.ifeval import check_end_phrase as check_end_phrase
from kaieval.bench.ifeval import check_instructions as check_instructions
from kaieval.bench.ifeval import check_json_format as check_json_format
from kaieval.bench.ifeval import check_keywords as check_keywords
from kaieval.bench.ifeval import check_no_comma as check_no_comma
from kaieval.bench.ifeval import check_number_words as check_number_words
from kaieval.errors import KaiError

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on ties (numpy's rule, which lm-eval uses)."""
    if not values:
        raise KaiError("argmax of an empty list of log-likelihoods")
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def acc(loglikelihoods: Sequence[float], target: int) -> float:
    """1.0 when the highest-likelihood choice is the target."""
    return 1.0 if argmax(loglikelihoods) == target else 0.0


def acc_norm_pred(loglikelihoods: Sequence[float], choices: Sequence[str]) -> int:
    """lm-eval's acc_norm prediction: argmax of ll / len(choice) (characters of the choice)."""
    if len(loglikelihoods) != len(choices):
        raise KaiError(f"{len(loglikelihoods)} log-likelihoods for {len(choices)} choices")
    return argmax([ll / float(len(c)) if len(c) else -math.inf
                   for ll, c in zip(loglikelihoods, choices, strict=True)])


def acc_norm(loglikelihoods: Sequence[float], choices: Sequence[str], target: int) -> float:
    return 1.0 if acc_norm_pred(loglikelihoods, choices) == target else 0.0


_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


def normalize_text(text: str, *, ignore_case: bool = False, ignore_punctuation: bool = False,
                   strip: bool = False, regexes_to_ignore: Sequence[str] = ()) -> str:
    """HF-evaluate's exact_match normalisation (regexes removed first, then case, punctuation)."""
    for rx in regexes_to_ignore:
        text = re.sub(rx, "", text)
    if ignore_case:
        text = text.lower()
    if ignore_punctuation:
        text = text.translate(_PUNCT_TABLE)
    if strip:
        text = text.strip()
    return text


def exact_match(prediction: str, reference: str, *, ignore_case: bool = False,
                ignore_punctuation: bool = False, strip: bool = False,
                regexes_to_ignore: Sequence[str] = ()) -> float:
    opts: dict[str, Any] = {"ignore_case": ignore_case, "ignore_punctuation": ignore_punctuation,
                            "strip": strip, "regexes_to_ignore": regexes_to_ignore}
    return 1.0 if normalize_text(prediction, **opts) == normalize_text(reference, **opts) else 0.0


def regex_extract(text: str, pattern: str, *, group_select: int = 0,
                  fallback: str = "[invalid]") -> str:
    """lm-eval's ``regex`` filter: findall, pick match ``group_select``, first non-empty group."""
    try:
        matches = re.findall(pattern, text)
    except re.error as exc:
        raise KaiError(f"invalid answer regex {pattern!r}: {exc}") from None
    if not matches:
        return fallback
    try:
        match = matches[group_select]
    except IndexError:
        return fallback
    if isinstance(match, tuple):
        non_empty = [m for m in match if m]
        match = non_empty[0] if non_empty else fallback
    return str(match).strip()


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")


def parse_last_number(text: str) -> Fraction | None:
    """The last number in ``text`` as an exact fraction: '1,234' -> 1234, '3/4' -> 3/4."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    raw = found[-1].replace(",", "").replace(" ", "")
    try:
        if "/" in raw:
            num, den = raw.split("/")
            return Fraction(num) / Fraction(den) if Fraction(den) != 0 else None
        return Fraction(raw)
    except (ValueError, ZeroDivisionError):
        return None


def numeric_match(prediction: str, reference: str, *, tolerance: float = 1e-6) -> float:
    """1.0 when the last numbers of prediction and reference are equal (within tolerance)."""
    ref = parse_last_number(reference)
    if ref is None:
        raise KaiError(f"reference answer {reference[-60:]!r} contains no number")
    pred = parse_last_number(prediction)
    if pred is None:
        return 0.0
    return 1.0 if abs(float(pred - ref)) <= tolerance * max(1.0, abs(float(ref))) else 0.0


def extract_letter(text: str, n_choices: int) -> int | None:
    """Index of the answer letter in a generated answer ('B', '(B)', 'Answer: B.'), else None.

    A standalone letter among the first ``n_choices`` wins; the first such letter is taken,
    after looking for an explicit 'answer'/'정답' marker.
    """
    allowed = LETTERS[:n_choices]
    if not allowed:
        return None
    marker = r"(?:answer|정답|답)\s*(?:is|은|는|:)?\s*[:：]?\s*"
    marked = re.search(rf"{marker}\(?([{allowed}])\)?(?![A-Za-z])", text, flags=re.IGNORECASE)
    if marked:
        return allowed.index(marked.group(1).upper())
    plain = re.search(rf"(?<![A-Za-z])\(?([{allowed}])\)?(?![A-Za-z])", text)
    return allowed.index(plain.group(1)) if plain else None


# IFEval-style checks live in kaieval.bench.ifeval; re-exported for existing callers.


_CHOICE_CASCADE = (
    re.compile(r"정답[:\s]*([ABCDE])", re.IGNORECASE),
    re.compile(r"정답은\s*([ABCDE])\s*입니다", re.IGNORECASE),
    re.compile(r"\b([ABCDE])\.", re.IGNORECASE),
    re.compile(r"\b([ABCDE])\b", re.IGNORECASE),
)


def choice_cascade(text: str) -> str:
    """KorMedMCQA's answer extraction (paper, appendix B; lm-eval's ExtractChoiceFilter).

    The last match of the first pattern that matches, upper-cased; '' when none does.
    """
    for pattern in _CHOICE_CASCADE:
        found = pattern.findall(text)
        if found:
            return str(found[-1]).upper()
    return ""


def macro_f1(pairs: Sequence[tuple[int, int]]) -> float:
    """Macro-averaged F1 over (gold, prediction) pairs, as scikit-learn's ``f1_score``.

    Labels are every class seen as gold or prediction; a class with no true positive
    scores 0 (scikit-learn's zero_division default). KoBEST reports this as ``f1``.
    """
    if not pairs:
        raise KaiError("macro F1 of zero documents")
    labels = sorted({g for g, _ in pairs} | {p for _, p in pairs})
    scores = []
    for label in labels:
        tp = sum(1 for g, p in pairs if g == label and p == label)
        fp = sum(1 for g, p in pairs if g != label and p == label)
        fn = sum(1 for g, p in pairs if g == label and p != label)
        denom = 2 * tp + fp + fn
        scores.append(0.0 if denom == 0 else 2 * tp / denom)
    return sum(scores) / len(scores)
