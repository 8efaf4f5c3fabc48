"""Metrics on hand-computed cases, including where acc_norm and acc disagree."""

from __future__ import annotations

import pytest

from kaieval.bench import metrics as M
from kaieval.errors import KaiError


def test_acc_and_acc_norm_disagree_by_length() -> None:
    choices = ["yes", "a much longer answer"]
    lls = [-3.0, -8.0]  # per char: -1.0 vs -0.4
    assert M.acc(lls, 0) == 1.0
    assert M.acc_norm(lls, choices, 0) == 0.0
    assert M.acc_norm(lls, choices, 1) == 1.0


def test_argmax_takes_first_on_ties() -> None:
    assert M.argmax([-1.0, -1.0, -2.0]) == 0
    with pytest.raises(KaiError):
        M.argmax([])


def test_exact_match_options() -> None:
    assert M.exact_match("Seoul", "seoul") == 0.0
    assert M.exact_match("Seoul", "seoul", ignore_case=True) == 1.0
    assert M.exact_match("Seoul!", "Seoul", ignore_punctuation=True) == 1.0
    assert M.exact_match(" 42 ", "42") == 0.0
    assert M.exact_match(" 42 ", "42", strip=True) == 1.0
    assert M.exact_match("The answer is 42", "42", regexes_to_ignore=["The answer is "]) == 1.0


def test_numeric_match() -> None:
    assert M.numeric_match("so the total is 1,234", "1234.0") == 1.0
    assert M.numeric_match("3/4", "0.75") == 1.0
    assert M.numeric_match("answer: -5", "#### -5") == 1.0
    assert M.numeric_match("12 then 13", "12") == 0.0  # the *last* number counts
    assert M.numeric_match("no number here", "7") == 0.0
    with pytest.raises(KaiError, match="no number"):
        M.numeric_match("7", "seven")


def test_parse_last_number() -> None:
    from fractions import Fraction
    assert M.parse_last_number("x = 2.5, y = 1,000") == Fraction(1000)
    assert M.parse_last_number("half is 1 / 2") == Fraction(1, 2)
    assert M.parse_last_number("nothing") is None


def test_regex_extract_like_lm_eval() -> None:
    pat = r"#### (\-?[0-9\.\,]+)"
    assert M.regex_extract("work... #### 72", pat) == "72"
    assert M.regex_extract("no marker", pat) == "[invalid]"
    assert M.regex_extract("a=1 b=2", r"(a|b)=(\d)", group_select=1) == "b"
    with pytest.raises(KaiError, match="invalid answer regex"):
        M.regex_extract("x", "(")


@pytest.mark.parametrize(("text", "n", "want"), [
    ("B", 4, 1), ("(C)", 4, 2), ("The answer is D.", 4, 3), ("정답: A", 4, 0),
    ("Answer: b", 4, 1), ("E", 4, None), ("I think so", 4, None), (" J", 10, 9),
])
def test_extract_letter(text: str, n: int, want: int | None) -> None:
    assert M.extract_letter(text, n) == want


def test_instruction_checks() -> None:
    assert M.check_number_words("one two three", 3, "at least")
    assert not M.check_number_words("one two three", 3, "less than")
    assert M.check_keywords("A Durable and lightweight bottle", ["durable", "lightweight"])
    assert not M.check_keywords("durable", ["durable", "lightweight"])
    assert M.check_no_comma("no commas here") and not M.check_no_comma("a, b")
    assert M.check_end_phrase("Thanks. That is all.", "That is all.")
    assert M.check_json_format('```json\n{"a": 1}\n```') and not M.check_json_format("{a: 1}")
    assert M.check_bullets("* one\n* two\n- three", 3)
    assert not M.check_bullets("* one\n* two", 3)
    verdicts = M.check_instructions("a, b", ["punctuation:no_comma", "keywords:existence"],
                                    [{}, {"keywords": ["b"], "num_words": None}])
    assert verdicts == [False, True]
    with pytest.raises(KaiError, match="unsupported instruction"):
        M.check_instructions("x", ["detectable_format:rephrase"], [{}])


def test_macro_f1_matches_the_definition() -> None:
    from kaieval.bench.metrics import macro_f1

    pairs = [(0, 0), (0, 1), (1, 1), (1, 1), (0, 0), (1, 0)]
    # class 0: tp 2, fp 1, fn 1 -> 4/6; class 1: tp 2, fp 1, fn 1 -> 4/6
    assert macro_f1(pairs) == pytest.approx(2 / 3)
    assert macro_f1([(0, 1), (0, 1)]) == 0.0  # labels {0, 1}, no true positive
    sklearn = pytest.importorskip("sklearn.metrics")
    golds, preds = [0, 1, 2, 2, 1, 0, 2], [0, 2, 2, 1, 1, 0, 0]
    assert macro_f1(list(zip(golds, preds, strict=True))) == pytest.approx(
        sklearn.f1_score(golds, preds, average="macro"))


def test_kormedmcqa_choice_cascade() -> None:
    from kaieval.bench.metrics import choice_cascade

    assert choice_cascade("정답: B 입니다. 아니 정답: C") == "C"  # last match of the first rule
    assert choice_cascade("정답은 d 입니다") == "D"
    assert choice_cascade("A. 틀림, E. 맞음") == "E"
    assert choice_cascade("모르겠습니다") == ""
