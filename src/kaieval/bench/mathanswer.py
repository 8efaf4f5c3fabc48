"""Boxed-answer extraction and math equivalence, as HRM8K's reference scorer defines them.

A port of lm-evaluation-harness's ``tasks/hrm8k/default/utils.py`` (MIT), itself
built on Hendrycks et al.'s MATH ``math_equivalence.py``: the answer is the last
``\\boxed{...}`` (else the last ``$...$``, else the text after the last ``=``,
else the last number), normalised (fractions, ``\\left``/``\\right``, units,
spaces, ``0.5`` -> ``\\frac{1}{2}``) and compared as strings with the gold answer.
Kept line for line so a generation scores exactly as lm-eval scores it -- the
quirks (a failed normalisation falls back to comparing the raw extractions) are
part of the reference.
"""

from __future__ import annotations

import re
from typing import Any


def postprocess(s: Any) -> str:
    """Gold answers: '3.0' -> '3', '2.50' -> '2.5', anything else stripped as is."""
    text = str(s).strip()
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return text
    try:
        return str(int(value)) if value.is_integer() else str(value)
    except (ValueError, OverflowError):
        return text


def _remove_boxed(s: str | None) -> str | None:
    left = "\\boxed{"
    if s is None or s[: len(left)] != left or not s or s[-1] != "}":
        return None
    answer = s[len(left):-1]
    if "=" in answer:
        answer = answer.split("=")[-1].lstrip(" ")
    return answer


def _last_boxed_only_string(string: str) -> str | None:
    idx = string.rfind("\\boxed")
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None
    depth = 0
    for i in range(idx, len(string)):
        if string[i] == "{":
            depth += 1
        if string[i] == "}":
            depth -= 1
            if depth == 0:
                return string[idx:i + 1]
    return None


def _with_dollar_sign(s: str) -> str | None:
    matches = re.findall(r"\$(.*)\$", s)
    if not matches:
        return None
    last: str = matches[-1]
    if "=" in last:
        last = last.split("=")[-1].lstrip(" ")
    return last


def _without_dollar_sign(s: str) -> str | None:
    if "=" in s:
        last = s.split("=")[-1].lstrip(" ").rstrip(".")
        if "\\n" in last:
            last = last.split("\\n")[0]
        return last
    matches = re.findall("(?:\\$)?\\d+(?:\\.\\d+)?(?![\\w\\d])", s)
    return matches[-1] if matches else None


def parse_math_answer(raw: str) -> str | None:
    """The answer a generation states (see the module docstring for the order of rules)."""
    if "\\boxed" in raw:
        return _remove_boxed(_last_boxed_only_string(raw))
    answer = _with_dollar_sign(raw)
    if not answer:
        answer = _without_dollar_sign(raw)
    return answer


def _fix_fracs(string: str) -> str:
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if substr[0] == "{":
            new_str += substr
            continue
        if len(substr) < 2:
            return string
        a, b = substr[0], substr[1]
        if b != "{":
            new_str += "{" + a + "}{" + b + "}" + substr[2:]
        else:
            new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def _fix_a_slash_b(string: str) -> str:
    parts = string.split("/")
    if len(parts) != 2:
        return string
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return string
    if string != f"{a}/{b}":
        return string
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _remove_right_units(string: str) -> str:
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        if len(splits) != 2:
            raise ValueError("more than one unit")
        return splits[0]
    return string


def _fix_sqrt(string: str) -> str:
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        if split[0] != "{":
            new_string += "\\sqrt{" + split[0] + "}" + split[1:]
        else:
            new_string += "\\sqrt" + split
    return new_string


def strip_string(string: str) -> str:
    """Hendrycks' normalisation of a math answer string."""
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = _remove_right_units(string)
    string = string.replace("\\%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)


def is_equiv(generation: str | None, gold: str | None) -> bool:
    """lm-eval HRM8K's ``is_equiv``: both sides parsed, normalised, compared as text."""
    if generation is None and gold is None:
        return True
    if generation is None or gold is None:
        return False
    s1, s2 = parse_math_answer(generation), parse_math_answer(gold)
    try:
        return postprocess(strip_string(s1)) == strip_string(s2)  # type: ignore[arg-type]
    except (AttributeError, IndexError, ValueError, TypeError):
        return s1 == s2


def math_equiv(generation: str, gold: Any) -> float:
    """HRM8K's exact_match: 1.0 when the generation's answer equals ``postprocess(gold)``."""
    return 1.0 if is_equiv(generation, postprocess(gold)) else 0.0
