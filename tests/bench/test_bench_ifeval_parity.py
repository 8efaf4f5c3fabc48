"""IFEval scored by kaieval's catalogue task and by lm-eval 0.4.13's own ``process_results``.

The same IFEval-style rows (written here, in google/IFEval's layout: every instruction
type of lm-eval's registry, kwargs as the hub stores them, nulls included) and the same
responses (hand-written ones that follow or break each instruction, plus mechanical
variants: a chatty first or last line, markdown stars, quotes, case changes, commas,
fences, Korean text, empty text) go to both scorers. Every prompt-level and
instruction-level verdict, strict and loose, must be identical, and so must the four
aggregates. lm-eval's scorer needs NLTK's ``punkt_tab``, made local by
``punkt_offline.py`` (no download), and ``langdetect``, which both sides seed with 0
(lm-eval leaves it unseeded: docs/reference-tasks.md, intended difference 9).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from importlib import util
from pathlib import Path
from typing import Any

import pytest

from kaieval.bench import ifeval as script_checks
from kaieval.bench.api import GenerationResponse
from kaieval.bench.tasks import ConfiguredTask, load_task

for _mod in ("lm_eval", "langdetect", "nltk", "punkt", "immutabledict"):
    pytest.importorskip(_mod, reason=f"{_mod} is not installed (dev extra)")

_spec = util.spec_from_file_location("punkt_offline", Path(__file__).with_name(
    "punkt_offline.py"))
assert _spec is not None and _spec.loader is not None
punkt_offline: Any = util.module_from_spec(_spec)
_spec.loader.exec_module(punkt_offline)

HUB_KEYS = ("num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat",
            "num_bullets", "section_spliter", "num_sections", "capital_relation",
            "capital_frequency", "keywords", "num_paragraphs", "language", "let_relation",
            "letter", "let_frequency", "end_phrase", "forbidden_words", "keyword", "frequency",
            "num_sentences", "postscript_marker", "first_word", "nth_paragraph")
REPEAT = "Write a short note to a neighbour about the noise, in two sentences."

# (instruction ids, kwargs) -- as google/IFEval rows use them
ROWS: list[tuple[list[str], list[dict[str, Any]]]] = [
    (["keywords:existence"], [{"keywords": ["kimchi", "fermentation"]}]),
    (["keywords:existence", "punctuation:no_comma"], [{"keywords": ["Seoul"]}, {}]),
    (["keywords:frequency"], [{"keyword": "rice", "frequency": 3, "relation": "at least"}]),
    (["keywords:frequency"], [{"keyword": "the", "frequency": 2, "relation": "less than"}]),
    (["keywords:forbidden_words"], [{"forbidden_words": ["water", "cold", "ice"]}]),
    (["keywords:letter_frequency"], [{"letter": "z", "let_frequency": 3,
                                      "let_relation": "at least"}]),
    (["keywords:letter_frequency"], [{"letter": "e", "let_frequency": 10,
                                      "let_relation": "less than"}]),
    (["language:response_language"], [{"language": "ko"}]),
    (["language:response_language"], [{"language": "en"}]),
    (["language:response_language"], [{"language": "de"}]),
    (["length_constraints:number_sentences"], [{"num_sentences": 3, "relation": "at least"}]),
    (["length_constraints:number_sentences"], [{"num_sentences": 2, "relation": "less than"}]),
    (["length_constraints:number_paragraphs"], [{"num_paragraphs": 2}]),
    (["length_constraints:number_paragraphs"], [{"num_paragraphs": 3}]),
    (["length_constraints:number_words"], [{"num_words": 12, "relation": "less than"}]),
    (["length_constraints:number_words"], [{"num_words": 25, "relation": "at least"}]),
    (["length_constraints:nth_paragraph_first_word"], [{"num_paragraphs": 2,
                                                        "nth_paragraph": 2,
                                                        "first_word": "meanwhile"}]),
    (["length_constraints:nth_paragraph_first_word"], [{"num_paragraphs": 3,
                                                        "nth_paragraph": 1,
                                                        "first_word": "dear"}]),
    (["detectable_content:number_placeholders"], [{"num_placeholders": 2}]),
    (["detectable_content:postscript"], [{"postscript_marker": "P.S."}]),
    (["detectable_content:postscript"], [{"postscript_marker": "P.P.S"}]),
    (["detectable_format:number_bullet_lists"], [{"num_bullets": 3}]),
    (["detectable_format:constrained_response"], [{}]),
    (["detectable_format:number_highlighted_sections"], [{"num_highlights": 2}]),
    (["detectable_format:multiple_sections"], [{"section_spliter": "SECTION",
                                                "num_sections": 2}]),
    (["detectable_format:multiple_sections"], [{"section_spliter": "Part", "num_sections": 3}]),
    (["detectable_format:json_format"], [{}]),
    (["detectable_format:title"], [{}]),
    (["combination:two_responses"], [{}]),
    (["combination:repeat_prompt"], [{"prompt_to_repeat": REPEAT}]),
    (["startend:end_checker"], [{"end_phrase": "Is there anything else I can help with?"}]),
    (["startend:quotation"], [{}]),
    (["change_case:capital_word_frequency"], [{"capital_frequency": 3,
                                               "capital_relation": "at least"}]),
    (["change_case:capital_word_frequency"], [{"capital_frequency": 2,
                                               "capital_relation": "less than"}]),
    (["change_case:english_capital"], [{}]),
    (["change_case:english_lowercase"], [{}]),
    (["punctuation:no_comma"], [{}]),
    (["detectable_format:title", "change_case:english_lowercase", "punctuation:no_comma"],
     [{}, {}, {}]),
    (["length_constraints:number_sentences", "detectable_content:postscript",
      "keywords:forbidden_words"],
     [{"num_sentences": 4, "relation": "at least"}, {"postscript_marker": "P.S."},
      {"forbidden_words": ["very"]}]),
    (["startend:quotation", "language:response_language", "length_constraints:number_words"],
     [{}, {"language": "en"}, {"num_words": 30, "relation": "less than"}]),
]

# Responses written to follow or break the rows' instructions, and to hit the places
# where a scorer could differ (abbreviations, quotes, Korean, fences, stars, lines).
TEXTS: list[str] = [
    "Kimchi is made by fermentation. Dr. Lee says the U.S. market grew, e.g. in 2023.",
    "Kimchi tastes sour after FERMENTATION! Is it healthy? Yes. Mr. Kim ate it at 5 p.m. daily.",
    "Rice, rice and more rice: the rice harvest in Seoul was good.",
    "the rice was fine and nobody complained about it at all",
    "Drink water when it is cold. Waterfalls are pretty.",
    "Zebras zigzag across the zoo; the zookeeper dozes.",
    "서울은 한국의 수도입니다. 김치는 발효 음식입니다. 사과를 먹었다.",
    "Das ist ein kurzer deutscher Satz über das Wetter in Berlin.",
    "Bonjour tout le monde, ceci est une phrase en français.",
    "First paragraph here.\n***\nSecond paragraph here.",
    "One.\n***\nTwo.\n***\nThree.",
    "***\nOnly one paragraph with a leading divider.\n***",
    "Dear neighbour, hello.\n\nMeanwhile the dog barked.",
    "Dear friend,\n\nI hope you are well.\n\n\"Meanwhile\" it rained.",
    "'\"Meanwhile, the end.\n\nmeanwhile again\n\nthird",
    "Dear team.\n\n\n\nSecond.\n\nThird one.",
    "Send it to [address] before [date], signed [name].",
    "Thanks for reading.\nP.S. I will call tomorrow.",
    "All done.\n\np. p. s. one more thing",
    "Notes:\n* first point\n* second point\n* third point",
    "- apples\n- pears\n* plums\n**bold line**",
    "My answer is yes.",
    "I think so. My answer is maybe.",
    "This has *one highlight* and **another one** here.",
    "Only *  * empty highlights and ** ** too.",
    "SECTION 1\nIntro text.\nSECTION 2\nBody text.",
    "Part 1: a\nPart 2: b\nPart 3: c",
    '{"name": "kimchi", "spicy": true}',
    '```json\n{"a": [1, 2, 3]}\n```',
    "```JSON\n{broken: json}\n```",
    "<<A Poem of Joy>>\nRoses bloom in spring.",
    "<< >> no real title here",
    "Answer one is short.\n******\nAnswer two is different.",
    "Same.\n******\nSame.",
    REPEAT + " Sorry about the noise last night. It will not happen again.",
    "Here is my reply. Is there anything else I can help with?",
    '"Is there anything else I can help with?"',
    '"The whole response is quoted, as asked."',
    "\u201cTypographic quotes around the reply.\u201d",
    "THIS IS ALL IN CAPITAL LETTERS, SHOUTING LOUDLY ABOUT NASA AND THE U.S.A.",
    "this is all lowercase english text without any capitals at all.",
    "NASA and the FBI met the CIA. Then U.N. staff left.",
    "No commas here at all just words",
    "Full-width commas only\uff0c like this\uff0c in Korean style.",
    "Sure! Here is the answer:\n\"Wrapped answer in quotes.\"\nHope this helps!",
    "I went home. It was late. The end? Yes! Really.",
    "Pi is 3.14 exactly. Visit example.com today... or not.",
    "",
    "   \n  ",
]


def _variants(text: str, rnd: random.Random) -> list[str]:
    """The text and a few mechanical variants a model could produce."""
    out = [text]
    ops = [
        lambda t: "Sure, here is my answer:\n" + t,
        lambda t: t + "\nI hope this helps!",
        lambda t: "**Answer:**\n" + t + "\n*Thank you*",
        lambda t: t.upper(),
        lambda t: t.lower(),
        lambda t: f'"{t}"',
        lambda t: t.replace(",", ""),
        lambda t: t.replace(". ", ".\n\n"),
        lambda t: "```\n" + t + "\n```",
        lambda t: t + "\nP.S. see you soon",
    ]
    for op in rnd.sample(ops, 2):
        out.append(op(text))
    return out


def _hub_kwargs(kwargs: dict[str, Any], full: bool) -> dict[str, Any]:
    return {k: kwargs.get(k) for k in HUB_KEYS} if full else dict(kwargs)


@pytest.fixture(scope="module")
def lm_utils(tmp_path_factory: pytest.TempPathFactory) -> Any:
    punkt_offline.install_punkt_tab(tmp_path_factory.mktemp("nltk_data"))
    from lm_eval.tasks.ifeval import utils

    return utils


def _docs_and_responses() -> tuple[list[dict[str, Any]], list[str]]:
    rnd = random.Random(17)
    responses = sorted({v for t in TEXTS for v in _variants(t, rnd)})
    docs = []
    for i, (ids, kwargs) in enumerate(ROWS):
        prompt = (REPEAT + " First repeat the request word for word without change."
                  if "combination:repeat_prompt" in ids else f"IFEval-style prompt {i}.")
        docs.append({"key": 2000 + i, "prompt": prompt, "instruction_id_list": ids,
                     "kwargs": [_hub_kwargs(k, full=i % 2 == 0) for k in kwargs]})
    return docs, responses


def _kai_task(tmp_path: Path, docs: list[dict[str, Any]]) -> ConfiguredTask:
    path = tmp_path / "ifeval.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs),
                    encoding="utf-8")
    task = load_task("ifeval", data_files={"eval": path})
    assert isinstance(task, ConfiguredTask) and task.cfg.instruction_checks == "lm-eval"
    return task


def test_every_registry_instruction_is_covered(lm_utils: Any) -> None:
    from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_DICT

    covered = {iid for ids, _ in ROWS for iid in ids}
    assert covered == set(INSTRUCTION_DICT) == set(script_checks.INSTRUCTION_CHECKS)


def test_verdicts_and_scores_identical_to_lm_eval(lm_utils: Any, tmp_path: Path) -> None:
    from langdetect import DetectorFactory

    docs, responses = _docs_and_responses()
    task = _kai_task(tmp_path, docs)
    lm_values: dict[str, list[Any]] = {k: [] for k in (
        "prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc",
        "inst_level_loose_acc")}
    scores = []
    seen: Counter[tuple[str, bool]] = Counter()
    pairs = 0
    for doc, kdoc in zip(docs, task.docs(), strict=True):
        (built,) = task.build(kdoc)
        for text in responses:
            DetectorFactory.seed = 0  # lm-eval leaves langdetect unseeded
            want = lm_utils.process_results(doc, [text])
            got = task.score([built], [[GenerationResponse(text)]])
            where = f"{doc['instruction_id_list']} on {text!r}"
            for level in ("strict", "loose"):
                inst = [bool(v) for v in got.item_values[f"inst_level_{level}_acc"]]
                assert inst == want[f"inst_level_{level}_acc"], (level, where)
                assert got.metrics[f"prompt_level_{level}_acc"] == float(
                    want[f"prompt_level_{level}_acc"]), (level, where)
            for key, value in want.items():
                lm_values[key].append(value)
            seen.update(zip(doc["instruction_id_list"], want["inst_level_strict_acc"],
                            strict=True))
            scores.append(got.__class__(**{**got.__dict__, "doc_id": f"{got.doc_id}/{pairs}"}))
            pairs += 1
    agg = task.aggregate(scores)
    for key, values in lm_values.items():
        want_agg = (lm_utils.agg_inst_level_acc(values) if key.startswith("inst")
                    else sum(values) / len(values))
        assert agg[key].value == pytest.approx(want_agg, abs=1e-12), key
    # not vacuous: every instruction type is both followed and broken somewhere
    for iid in {i for ids, _ in ROWS for i in ids}:
        assert seen[(iid, True)] and seen[(iid, False)], (iid, seen[(iid, True)])
    assert pairs >= 2000


def test_the_kaieval_v1_variant_differs_where_documented(lm_utils: Any) -> None:
    """The Korean-aware checks (ifeval@kaieval-v1) part from lm-eval on purpose."""
    from langdetect import DetectorFactory

    cases = [  # (ids, kwargs, response): lm-eval says no, kaieval-v1 says yes (or reverse)
        (["punctuation:no_comma"], [{}], "Full-width commas only\uff0c here."),
        (["startend:quotation"], [{}], "\u201cTypographic.\u201d"),
        (["keywords:forbidden_words"], [{"forbidden_words": ["사과"]}], "사과를 먹었다."),
        (["length_constraints:number_sentences"], [{"num_sentences": 3,
                                                    "relation": "less than"}],
         "Dr. Lee came home. He slept."),
    ]
    task_v1 = load_task("ifeval@kaieval-v1")
    assert isinstance(task_v1, ConfiguredTask) and task_v1.cfg.instruction_checks == "script"
    for ids, kwargs, text in cases:
        DetectorFactory.seed = 0
        doc = {"key": 1, "prompt": "p", "instruction_id_list": ids, "kwargs": kwargs}
        lm = lm_utils.process_results(doc, [text])["inst_level_strict_acc"]
        ref = script_checks.check_instructions(text, ids, kwargs, checks="lm-eval")
        v1 = script_checks.check_instructions(text, ids, kwargs, checks="script")
        assert ref == lm and v1 != lm, (ids, text, lm, v1)
