"""IFEval's verifiable instructions as pure predicates, with its strict and loose verdicts.

Every instruction id of the IFEval paper (Zhou et al. 2023; the 25 that
google/IFEval and lm-eval's ``ifeval`` task use) is a small function
``check(response, **kwargs) -> bool``, with kwargs named as in the public data,
so hub rows run unchanged. These are the ``script`` checks (``ifeval@kaieval-v1``
and the default for users' own task files); the catalogue's ``ifeval`` uses lm-eval's
own (``checks: lm-eval``, in ``kaieval.bench.ifeval_reference``, which reuses the
predicates here that lm-eval shares). They follow lm-eval's implementation, with
three deliberate differences, because the catalogue also serves Korean:

* sentences are split on ``. ! ? 。 ！ ？`` followed by whitespace (lm-eval uses
  NLTK's English punkt model, which is not installed here and not Korean-aware);
* ``response_language`` and the English-case checks judge the dominant Unicode
  script (Hangul for ``ko``, Latin for ``en``...) instead of ``langdetect``: no
  extra dependency, deterministic, but Latin-script languages are not told apart;
* a forbidden word containing Hangul matches as a substring, because Korean
  particles attach to the word (``사과를`` uses ``사과``); other words need word
  boundaries, as in IFEval.

Strict accuracy checks the response as is (an empty one follows nothing); loose
accuracy (IFEval's upper bound) also accepts it with its first and/or last line
removed and/or ``*`` deleted.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kaieval.errors import KaiError

RELATIONS = ("less than", "at least")


def _compare(count: int, threshold: int, relation: str, what: str) -> bool:
    if relation == "less than":
        return count < threshold
    if relation == "at least":
        return count >= threshold
    raise KaiError(f"{what} relation must be 'less than' or 'at least', got {relation!r}")


# ------------------------------------------------------------------ length constraints


def count_words(text: str) -> int:
    """Words as IFEval counts them (runs of word characters; Hangul words count as words)."""
    return len(re.findall(r"\w+", text))


def split_sentences(text: str) -> list[str]:
    """Sentences: text cut after . ! ? 。 ！ ？ (or … ) followed by whitespace, and at newlines."""
    parts = re.split(r"(?<=[.!?。！？…])\s+|\n+", text.strip())
    return [p for p in (s.strip() for s in parts) if p]


def check_number_words(response: str, num_words: int, relation: str = "at least") -> bool:
    return _compare(count_words(response), num_words, relation, "number_words")


def check_number_sentences(response: str, num_sentences: int,
                           relation: str = "at least") -> bool:
    return _compare(len(split_sentences(response)), num_sentences, relation, "number_sentences")


def check_number_paragraphs(response: str, num_paragraphs: int) -> bool:
    """Exactly ``num_paragraphs`` paragraphs separated by the markdown divider ``***``."""
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    count = len(paragraphs)
    for i, p in enumerate(paragraphs):
        if not p.strip():
            if i in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False  # an empty paragraph between two dividers
    return count == num_paragraphs


def check_nth_paragraph_first_word(response: str, num_paragraphs: int, nth_paragraph: int,
                                   first_word: str) -> bool:
    """``num_paragraphs`` paragraphs (split on blank lines); the nth starts with ``first_word``."""
    paragraphs = response.split("\n\n")
    count = sum(1 for p in paragraphs if p.strip())
    if not 1 <= nth_paragraph <= count:
        return False
    paragraph = paragraphs[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'\"")
    head = re.split(r"[.,?!'\"]", word, maxsplit=1)[0].lower()
    return count == num_paragraphs and head == first_word.strip().lower()


# ------------------------------------------------------------------ keywords


def check_keywords(response: str, keywords: Sequence[str]) -> bool:
    """Every keyword appears (case-insensitive)."""
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in keywords)


def check_keyword_frequency(response: str, keyword: str, frequency: int,
                            relation: str = "at least") -> bool:
    n = len(re.findall(re.escape(keyword), response, flags=re.IGNORECASE))
    return _compare(n, frequency, relation, "keywords:frequency")


_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


def check_forbidden_words(response: str, forbidden_words: Sequence[str]) -> bool:
    """None of the words is used (word boundaries; Hangul words also inside an eojeol)."""
    for word in forbidden_words:
        pattern = re.escape(word) if _HANGUL.search(word) else rf"\b{re.escape(word)}\b"
        if re.search(pattern, response, flags=re.IGNORECASE):
            return False
    return True


def check_letter_frequency(response: str, letter: str, let_frequency: int,
                           let_relation: str = "at least") -> bool:
    """How often one letter (or Hangul syllable) occurs, case-insensitive."""
    if len(letter) != 1:
        raise KaiError(f"letter_frequency needs one letter, got {letter!r}")
    n = Counter(response.lower())[letter.lower()]
    return _compare(n, let_frequency, let_relation, "letter_frequency")


# ------------------------------------------------------------------ language and case

_SCRIPTS: dict[str, re.Pattern[str]] = {
    "hangul": _HANGUL,
    "latin": re.compile(r"[A-Za-z\u00c0-\u024f]"),
    "han": re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]"),
    "kana": re.compile(r"[\u3040-\u30ff]"),
    "cyrillic": re.compile(r"[\u0400-\u04ff]"),
    "arabic": re.compile(r"[\u0600-\u06ff]"),
    "devanagari": re.compile(r"[\u0900-\u097f]"),
    "thai": re.compile(r"[\u0e00-\u0e7f]"),
    "greek": re.compile(r"[\u0370-\u03ff]"),
    "hebrew": re.compile(r"[\u0590-\u05ff]"),
}
_LATIN_LANGS = ("en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "fi", "pl", "cs",
                "ro", "hu", "tr", "id", "vi", "sw", "tl", "ca", "hr", "sk", "sl", "et", "lv",
                "lt")
LANGUAGE_SCRIPT: dict[str, str] = {
    **dict.fromkeys(_LATIN_LANGS, "latin"), "ko": "hangul", "ja": "japanese", "zh": "han",
    "ru": "cyrillic", "uk": "cyrillic", "bg": "cyrillic", "sr": "cyrillic", "ar": "arabic",
    "fa": "arabic", "ur": "arabic", "hi": "devanagari", "mr": "devanagari", "ne": "devanagari",
    "th": "thai", "el": "greek", "he": "hebrew",
}


def script_counts(text: str) -> dict[str, int]:
    """Letters of each script in ``text``."""
    return {name: len(rx.findall(text)) for name, rx in _SCRIPTS.items()}


def dominant_script(text: str) -> str | None:
    """The script with the most letters; Han plus kana is 'japanese'; None without letters."""
    counts = script_counts(text)
    if counts["kana"]:
        counts["japanese"] = counts.pop("kana") + counts.pop("han")
    best = max(sorted(counts), key=lambda k: counts[k])
    return best if counts[best] else None


def check_response_language(response: str, language: str) -> bool:
    """The response is mostly written in the script of ``language`` (ISO 639-1 code)."""
    script = LANGUAGE_SCRIPT.get(language.lower())
    if script is None:
        raise KaiError(f"response_language: unsupported language {language!r} (supported: "
                       + ", ".join(sorted(LANGUAGE_SCRIPT)) + ")")
    found = dominant_script(response)
    return found is None or found == script  # no letters: IFEval counts it as followed


def check_english_capital(response: str) -> bool:
    return response.isupper() and dominant_script(response) == "latin"


def check_english_lowercase(response: str) -> bool:
    return response.islower() and dominant_script(response) == "latin"


def check_capital_word_frequency(response: str, capital_frequency: int,
                                 capital_relation: str = "at least") -> bool:
    """Words written all in capitals (hyphenated words count once)."""
    words = re.findall(r"\w+(?:[-']\w+)*", response)
    n = sum(1 for w in words if w.isupper())
    return _compare(n, capital_frequency, capital_relation, "capital_word_frequency")


# ------------------------------------------------------------------ content and format


def check_placeholders(response: str, num_placeholders: int) -> bool:
    """At least ``num_placeholders`` square-bracket placeholders such as [address]."""
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


def check_postscript(response: str, postscript_marker: str) -> bool:
    """A line starting with the marker (P.S. and P.P.S accept optional spaces)."""
    low = response.lower()
    if postscript_marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif postscript_marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(postscript_marker.lower()) + r".*$"
    return bool(re.findall(pattern, low, flags=re.MULTILINE))


def check_bullets(response: str, num_bullets: int) -> bool:
    """Exactly ``num_bullets`` markdown bullets ('* ' or '- ' lines)."""
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def check_constrained_response(response: str) -> bool:
    text = response.strip()
    return any(option in text for option in CONSTRAINED_RESPONSES)


def check_highlighted_sections(response: str, num_highlights: int) -> bool:
    """At least ``num_highlights`` non-empty *highlighted* (or **bold**) spans."""
    single = [h for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h[2:-2].strip()]
    return len(single) + len(double) >= num_highlights


def check_sections(response: str, section_spliter: str, num_sections: int) -> bool:
    """At least ``num_sections`` sections headed '<spliter> <number>' (e.g. 'SECTION 1')."""
    parts = re.split(r"\s?" + re.escape(section_spliter) + r"\s?\d+\s?", response)
    return len(parts) - 1 >= num_sections


def check_json_format(response: str) -> bool:
    """The whole response is JSON (a ```json fence around it is allowed)."""
    body = response.strip()
    body = re.sub(r"^```(?:json|Json|JSON)?\s*", "", body)
    body = re.sub(r"\s*```$", "", body).strip()
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def check_title(response: str) -> bool:
    """A non-empty title in double angular brackets, <<like this>>."""
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


def check_two_responses(response: str) -> bool:
    """Two different responses separated by six asterisks (******)."""
    valid = []
    parts = response.split("******")
    for i, part in enumerate(parts):
        if part.strip():
            valid.append(part.strip())
        elif i not in (0, len(parts) - 1):
            return False
    return len(valid) == 2 and valid[0] != valid[1]


def check_repeat_prompt(response: str, prompt_to_repeat: str) -> bool:
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


def check_end_phrase(response: str, end_phrase: str) -> bool:
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def check_quotation(response: str) -> bool:
    """Wrapped in double quotation marks ("..." or the Korean/typographic “...”)."""
    text = response.strip()
    return len(text) > 1 and ((text[0], text[-1]) in {('"', '"'), ("\u201c", "\u201d")})


def check_no_comma(response: str) -> bool:
    """No comma (ASCII or the full-width '，')."""
    return "," not in response and "，" not in response


INSTRUCTION_CHECKS: Mapping[str, Callable[..., bool]] = {
    "keywords:existence": check_keywords,
    "keywords:frequency": check_keyword_frequency,
    "keywords:forbidden_words": check_forbidden_words,
    "keywords:letter_frequency": check_letter_frequency,
    "language:response_language": check_response_language,
    "length_constraints:number_sentences": check_number_sentences,
    "length_constraints:number_paragraphs": check_number_paragraphs,
    "length_constraints:number_words": check_number_words,
    "length_constraints:nth_paragraph_first_word": check_nth_paragraph_first_word,
    "detectable_content:number_placeholders": check_placeholders,
    "detectable_content:postscript": check_postscript,
    "detectable_format:number_bullet_lists": check_bullets,
    "detectable_format:constrained_response": check_constrained_response,
    "detectable_format:number_highlighted_sections": check_highlighted_sections,
    "detectable_format:multiple_sections": check_sections,
    "detectable_format:json_format": check_json_format,
    "detectable_format:title": check_title,
    "combination:two_responses": check_two_responses,
    "combination:repeat_prompt": check_repeat_prompt,
    "startend:end_checker": check_end_phrase,
    "startend:quotation": check_quotation,
    "change_case:capital_word_frequency": check_capital_word_frequency,
    "change_case:english_capital": check_english_capital,
    "change_case:english_lowercase": check_english_lowercase,
    "punctuation:no_comma": check_no_comma,
}


def loose_variants(response: str) -> list[str]:
    """IFEval's loose variants: first/last/both lines removed, each with and without '*'."""
    lines = response.split("\n")
    cut = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(),
           "\n".join(lines[1:-1]).strip()]
    return [cut[0], cut[0].replace("*", "")] + [
        v for c in cut[1:] for v in (c, c.replace("*", ""))]


def _run(check: Callable[..., bool], iid: str, response: str, kwargs: dict[str, Any]) -> bool:
    try:
        return bool(check(response, **kwargs))
    except TypeError as exc:
        raise KaiError(f"instruction {iid!r}: bad arguments {kwargs}: {exc}") from None


CHECK_SETS = ("script", "lm-eval")


def check_instructions(response: str, instruction_ids: Sequence[str],
                       kwargs: Sequence[Mapping[str, Any] | None], *,
                       loose: bool = False, checks: str = "script") -> list[bool]:
    """One verdict per instruction; ``loose``: followed by any non-empty loose variant.

    ``checks`` picks the predicates: ``script`` (this module's, Korean-aware, no extra
    dependency) or ``lm-eval`` (lm-evaluation-harness 0.4.13's, in
    ``kaieval.bench.ifeval_reference``; the catalogue's default). With ``script``,
    kwargs whose value is None are dropped (the public data stores every key of every
    instruction, null where unused); ``lm-eval`` drops every falsy value, as lm-eval does.
    """
    if len(instruction_ids) != len(kwargs):
        raise KaiError(f"{len(instruction_ids)} instruction ids but {len(kwargs)} kwargs")
    if checks == "lm-eval":
        from kaieval.bench import ifeval_reference as R

        table, clean_args = R.CHECKS, R.arguments
    elif checks == "script":
        table, clean_args = INSTRUCTION_CHECKS, _drop_none
    else:
        raise KaiError(f"instruction checks must be one of {', '.join(CHECK_SETS)}, "
                       f"got {checks!r}")
    variants = loose_variants(response) if loose else [response]
    out: list[bool] = []
    for iid, kw in zip(instruction_ids, kwargs, strict=True):
        check = table.get(iid)
        if check is None:
            raise KaiError(f"unsupported instruction id {iid!r}; supported: "
                           + ", ".join(sorted(table)))
        clean = clean_args(iid, kw)
        if loose:
            out.append(any(v.strip() and _run(check, iid, v, clean) for v in variants))
        else:  # an empty response follows no instruction (IFEval's rule)
            out.append(bool(response.strip()) and _run(check, iid, response, clean))
    return out


def _drop_none(iid: str, kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (kwargs or {}).items() if v is not None}
