"""IFEval's 25 verifiable instructions: each predicate, strict vs loose, and the aggregates."""

from __future__ import annotations

from typing import Any

import pytest

from kaieval.bench import ifeval as I
from kaieval.bench.api import GenerationResponse
from kaieval.bench.tasks import load_task
from kaieval.errors import KaiError

# (instruction id, kwargs, a response that follows it, one that does not)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("keywords:existence", {"keywords": ["서울", "Han"]}, "서울과 han 강", "서울만"),
    ("keywords:frequency", {"keyword": "배추", "frequency": 3, "relation": "at least"},
     "배추 배추를 배추김치", "배추 두 번 배추"),
    ("keywords:frequency", {"keyword": "a.b", "frequency": 1, "relation": "less than"},
     "axb", "a.b"),
    ("keywords:forbidden_words", {"forbidden_words": ["water", "사과"]},
     "Waterfall is fine; 배는 좋다", "I drink WATER"),
    ("keywords:forbidden_words", {"forbidden_words": ["사과"]}, "배를 먹었다", "사과를 먹었다"),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "at least"},
     "Zig zag zoo", "zig zag"),
    ("keywords:letter_frequency", {"letter": "가", "let_frequency": 2,
                                   "let_relation": "less than"}, "가나다", "가가"),
    ("language:response_language", {"language": "ko"}, "한국어로 답합니다. OK", "English only"),
    ("language:response_language", {"language": "en"}, "Plain English text.", "모두 한국어"),
    ("language:response_language", {"language": "ja"}, "これは日本語です", "这是中文"),
    ("language:response_language", {"language": "zh"}, "这是中文", "これは日本語です"),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"},
     "첫 문장이다. 둘째 문장이다! 셋째인가?", "한 문장. 두 문장."),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"},
     "Pi is 3.14 exactly.", "One. Two."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "one\n***\ntwo",
     "one\n***\n\n***\ntwo"),
    ("length_constraints:number_words", {"num_words": 4, "relation": "less than"},
     "세 단어 입니다", "one two three four"),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
     "Tea is old.\n\n\"However, coffee.\"", "Tea.\n\nBut coffee."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[이름] 님, [주소]",
     "[이름] 님"),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\np. s. see you",
     "Hi. PS see you"),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi\nP.P.S more",
     "Hi\nP.S. more"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* 하나\n- 둘",
     "* 하나\n**굵게**"),
    ("detectable_format:constrained_response", {}, "  My answer is maybe. ",
     "My answer is perhaps."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "*one* and **two**", "*one* and ** **"),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\na\nSECTION 2\nb", "SECTION 1 only"),
    ("detectable_format:json_format", {}, '```JSON\n{"도시": "서울"}\n```', "{도시: 서울}"),
    ("detectable_format:title", {}, "<<한글의 장점>>\n본문", "<< >> 본문"),
    ("combination:two_responses", {}, "첫 답\n******\n둘째 답", "같은 답\n******\n같은 답"),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "say hi. Hi!", "Hi!"),
    ("startend:end_checker", {"end_phrase": "That is all."}, '"Done. That is all."',
     "That is all. Bye"),
    ("startend:quotation", {}, '"좋아요"', "좋아요"),
    ("startend:quotation", {}, "\u201c좋아요\u201d", "\u201c좋아요\""),
    ("change_case:english_capital", {}, "STOP NOW!", "STOP now"),
    ("change_case:english_capital", {}, "STOP NOW!", "안녕하세요 HI"),
    ("change_case:english_lowercase", {}, "quiet room.", "Quiet room."),
    ("change_case:capital_word_frequency", {"capital_frequency": 2,
                                            "capital_relation": "at least"},
     "BUY this PHONE-X", "BUY this phone"),
    ("punctuation:no_comma", {}, "쉼표 없음", "쉼표，있음"),
]


def test_every_ifeval_instruction_is_supported() -> None:
    assert len(I.INSTRUCTION_CHECKS) == 25
    assert {c[0] for c in CASES} == set(I.INSTRUCTION_CHECKS)


@pytest.mark.parametrize(("iid", "kwargs", "good", "bad"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_instruction_predicate(iid: str, kwargs: dict[str, Any], good: str, bad: str) -> None:
    assert I.check_instructions(good, [iid], [kwargs]) == [True]
    assert I.check_instructions(bad, [iid], [kwargs]) == [False]


def test_none_kwargs_are_dropped_and_bad_ones_are_one_error() -> None:
    hub_style = {"num_words": 2, "relation": "at least", "keywords": None, "language": None}
    assert I.check_instructions("two words", ["length_constraints:number_words"],
                                [hub_style]) == [True]
    with pytest.raises(KaiError, match="bad arguments"):
        I.check_instructions("x", ["length_constraints:number_words"], [{"words": 3}])
    with pytest.raises(KaiError, match="relation must be"):
        I.check_number_words("x", 3, "exactly")
    with pytest.raises(KaiError, match="unsupported language"):
        I.check_response_language("x", "tlh")
    with pytest.raises(KaiError, match="2 instruction ids but 1 kwargs"):
        I.check_instructions("x", ["startend:quotation", "detectable_format:title"], [{}])


def test_empty_response_follows_nothing() -> None:
    assert I.check_instructions("  ", ["punctuation:no_comma"], [{}]) == [False]
    assert I.check_instructions("  ", ["punctuation:no_comma"], [{}], loose=True) == [False]


def test_loose_accepts_a_preamble_a_closing_line_or_markdown_stars() -> None:
    response = "Sure, here it is:\n\"quoted answer\"\nHope that helps, friend."
    ids = ["startend:quotation", "punctuation:no_comma"]
    assert I.check_instructions(response, ids, [{}, {}]) == [False, False]
    assert I.check_instructions(response, ids, [{}, {}], loose=True) == [True, True]
    starred = "**MY ANSWER IS YES.**"
    assert I.check_instructions(starred, ["detectable_format:constrained_response"], [{}],
                                loose=True) == [False]
    assert I.loose_variants("a\nb\nc")[:2] == ["a\nb\nc", "a\nb\nc"]
    assert len(I.loose_variants("a*\nb")) == 8


def test_sentence_splitting_handles_korean_and_decimals() -> None:
    assert I.split_sentences("날씨가 좋다. 산책을 갔다!\n집에 왔다") == [
        "날씨가 좋다.", "산책을 갔다!", "집에 왔다"]
    assert I.split_sentences("원주율은 3.14이다. 끝.") == ["원주율은 3.14이다.", "끝."]
    assert I.dominant_script("") is None


def test_instruction_level_aggregate_pools_instructions() -> None:
    task = load_task("ifeval")
    docs = task.docs()
    one = next(d for d in docs if d.fields["instruction_id_list"] == ["punctuation:no_comma"])
    two = next(d for d in docs if d.fields["instruction_id_list"] == [
        "detectable_format:number_bullet_lists", "punctuation:no_comma"])
    s1 = task.score(task.build(one), [[GenerationResponse("a, b")]])  # 0 of 1
    s2 = task.score(task.build(two), [[GenerationResponse("* a\n* b\n* c\n* d")]])  # 2 of 2
    agg = task.aggregate([s1, s2])
    assert agg["prompt_level_strict_acc"].value == 0.5 and agg["prompt_level_strict_acc"].n == 2
    # IFEval's instruction level: 2 of 3 instructions, not the mean of 0/1 and 2/2
    assert agg["inst_level_strict_acc"].value == pytest.approx(2 / 3)
    assert agg["inst_level_strict_acc"].n == 3
    assert s2.item_values["inst_level_strict_acc"] == (1.0, 1.0)


def test_every_bundled_ifeval_item_has_valid_kwargs() -> None:
    task = load_task("ifeval")
    seen: set[str] = set()
    for doc in task.docs():
        (b,) = task.build(doc)
        for loose in (False, True):
            verdicts = I.check_instructions("A reply.", b.meta["instruction_ids"],
                                            b.meta["instruction_kwargs"], loose=loose)
            assert len(verdicts) == len(b.meta["instruction_ids"])
        seen.update(b.meta["instruction_ids"])
    assert seen == set(I.INSTRUCTION_CHECKS)  # the sample uses every instruction type
