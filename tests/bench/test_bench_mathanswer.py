"""HRM8K's answer extraction and math equivalence (lm-eval's hrm8k scorer, ported)."""

from __future__ import annotations

import pytest

from kaieval.bench.mathanswer import math_equiv, parse_math_answer, postprocess, strip_string


@pytest.mark.parametrize(("text", "answer"), [
    ("풀이 ... 따라서 답은 $\\boxed{42}$ 입니다.", "42"),
    ("\\boxed{x = 7} and later \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("the result is $3.5$", "3.5"),
    ("so y = 12.", "12"),
    ("first 3 then 19 apples", "19"),
    ("no digits here", None),
])
def test_the_stated_answer_is_found(text: str, answer: str | None) -> None:
    assert parse_math_answer(text) == answer


def test_a_blank_line_in_a_chain_of_thought_does_not_cut_the_answer() -> None:
    text = "먼저 12 + 7 = 19.\n\n그다음 19 - 5 = 14.\n\n최종 답: $\\boxed{14}$"
    assert math_equiv(text, 14) == 1.0
    assert math_equiv(text, 19) == 0.0


@pytest.mark.parametrize(("gold", "text", "ok"), [
    ("0.5", "\\boxed{\\frac{1}{2}}", 1.0),  # 0.5 -> \frac{1}{2}
    ("14.0", "\\boxed{14}", 1.0),  # gold '14.0' -> '14'
    ("0.5", "\\boxed{1/2}", 1.0),  # a/b -> \frac{a}{b}
    ("\\frac{1}{3}", "\\boxed{\\frac{1}{3}}", 0.0),  # the reference reads the gold's last digit
    ("2.5", "\\boxed{2.50}", 1.0),  # postprocess on both sides' floats
    ("7", "\\boxed{8}", 0.0),
])
def test_math_equivalence(gold: str, text: str, ok: float) -> None:
    assert math_equiv(text, gold) == ok


def test_normalisation_pieces() -> None:
    assert postprocess(" 3.0 ") == "3" and postprocess("abc") == "abc"
    assert strip_string("\\dfrac12") == "\\frac{1}{2}"
    assert strip_string("\\left( 3 \\right)") == "(3)"
    assert strip_string("x=5") == "5"


def test_same_verdicts_as_lm_eval_on_many_answers() -> None:
    """Differential check against lm-eval's own hrm8k scorer, quirks included."""
    utils = pytest.importorskip("lm_eval.tasks.hrm8k.default.utils")
    import random

    from kaieval.bench.mathanswer import is_equiv

    rnd = random.Random(5)
    atoms = ["\\boxed{", "}", "$", "=", " ", "\n", "\\frac", "{1}", "{2}", "3", "0.5", ".",
             "/", "\\sqrt", "2", "x", "\\text{ cm}", "\\left(", "\\right)", "-", "7", "\\%",
             "^\\circ", "\\dfrac12", "\\!", "1,000", "{", "답: "]
    for _ in range(3000):
        a = "".join(rnd.choice(atoms) for _ in range(rnd.randint(1, 9)))
        b = utils.postprocess("".join(rnd.choice(atoms) for _ in range(rnd.randint(1, 4))))
        assert is_equiv(a, b) == utils.is_equiv(a, b), (a, b)
        assert parse_math_answer(a) == utils.parse_math_answer(a), a
