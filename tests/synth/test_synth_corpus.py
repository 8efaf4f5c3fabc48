"""The generated Korean corpus: deterministic, split-disjoint, varied and mostly Hangul."""

from __future__ import annotations

import pytest

from kaieval.synth.corpus import attach, corpus_text, hangul_ratio, vocabulary


def test_same_arguments_give_the_same_text() -> None:
    assert corpus_text("train", 5000, seed=3) == corpus_text("train", 5000, seed=3)


def test_length_is_exact_and_longer_requests_extend_shorter_ones() -> None:
    short, long = corpus_text("heldout", 1234), corpus_text("heldout", 9000)
    assert len(short) == 1234 and len(long) == 9000
    assert long.startswith(short)
    assert corpus_text("train", 0) == ""


def test_splits_and_seeds_differ() -> None:
    train, heldout = corpus_text("train", 20_000), corpus_text("heldout", 20_000)
    assert train != heldout
    assert corpus_text("train", 20_000, seed=1) != train
    # not just shifted: few paragraphs of the held-out text occur verbatim in train
    big_train = corpus_text("train", 200_000)
    paras = [p for p in heldout.split("\n\n")[:-1] if len(p) > 80]
    shared = sum(p in big_train for p in paras)
    assert paras and shared / len(paras) < 0.2


def test_text_is_mostly_hangul_and_varied() -> None:
    text = corpus_text("train", 50_000)
    assert hangul_ratio(text) > 0.75
    words = set(text.split())
    assert len(words) > 800  # inflected word forms actually used
    assert len(vocabulary()) > 400  # base lexicon
    assert all(marker in text for marker in ("습니다", "어요", "하여야 한다", "했다", "?"))
    sentences = [s for s in text.replace("\n", " ").split(". ") if s]
    assert len(set(sentences)) / len(sentences) > 0.9


@pytest.mark.parametrize(("word", "particle", "expected"), [
    ("책", "을", "책을"), ("사과", "을", "사과를"), ("정부", "은", "정부는"),
    ("법원", "는", "법원은"), ("서울", "으로", "서울로"), ("부산", "로", "부산으로"),
    ("교사", "으로", "교사로"), ("학생", "이", "학생이"), ("친구", "이", "친구가"),
    ("정부", "과", "정부와"), ("3", "이", "3이"), ("34건", "으로", "34건으로"),
    ("데이터", "에서", "데이터에서"),
])
def test_particles_follow_the_final_consonant(word: str, particle: str, expected: str) -> None:
    assert attach(word, particle) == expected


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="split"):
        corpus_text("dev", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_chars"):
        corpus_text("train", -1)
