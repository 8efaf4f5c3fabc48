"""Korean tokenizer efficiency with real tokenizers trained here (HF tokenizers, SentencePiece).

Figures are checked against hand-computed values on a small text, against an
independent per-line encode with the tokenizer's own library, and on the
bundled corpus. Bad inputs must give one-line errors naming the file.
"""

from __future__ import annotations

import io
import json
import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kaieval.audit.tokenizer_efficiency import (
    GENRES,
    load_corpus,
    load_tokenizer,
    measure,
    measure_many,
)
from kaieval.cli import app
from kaieval.errors import KaiError
from kaieval.hashing import sha256_file

tokenizers = pytest.importorskip("tokenizers")
spm = pytest.importorskip("sentencepiece")

TRAIN_TEXT = [
    "대한민국의 인공지능 모델은 한국어 문장을 잘 이해해야 한다.",
    "정부는 GPU 1만 장을 확보해 대학과 기업에 나눠 준다고 밝혔다.",
    "토크나이저는 문장을 토큰으로 나누고 다시 문장으로 되돌린다.",
    "손님: 김치찌개 하나랑 제육볶음 하나 주세요.",
    "제1조(목적) 이 규정은 사업의 공정성과 투명성을 확보함을 목적으로 한다.",
] * 20


def _bpe(path: Path, *, lowercase: bool = False, bos_eos: bool = False, vocab: int = 400) -> Path:
    """A tiny byte-level BPE trained on Korean text, saved as tokenizer.json."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "</s>"] if bos_eos else []
    tok.train_from_iterator(TRAIN_TEXT, trainers.BpeTrainer(
        vocab_size=vocab, show_progress=False, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if bos_eos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")),
                                                  ("</s>", tok.token_to_id("</s>"))])
    tok.save(str(path))
    return path


def _corpus(folder: Path, **genres: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in genres.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def bpe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bpe(tmp_path_factory.mktemp("bpe") / "tokenizer.json")


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SentencePiece unigram model without byte fallback (so unknown characters -> unk)."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TRAIN_TEXT), model_writer=buf, vocab_size=120,
        model_type="unigram", character_coverage=1.0, byte_fallback=False,
        hard_vocab_limit=False, minloglevel=2)
    path = tmp_path_factory.mktemp("spm") / "ko.model"
    path.write_bytes(buf.getvalue())
    return path


def test_bundled_corpus_is_large_enough_and_has_four_genres() -> None:
    corpus = load_corpus()
    sizes = {g.name: sum(len(s) for s in g.documents) for g in corpus.genres}
    assert set(sizes) == set(GENRES)
    assert sum(sizes.values()) >= 50_000
    assert min(sizes.values()) >= 13_000
    text = "".join(s for g in corpus.genres for s in g.documents)
    assert all("".join(g.documents) == g.path.read_text(encoding="utf-8") for g in corpus.genres)
    assert unicodedata.is_normalized("NFC", text)
    hangul = sum("\uac00" <= ch <= "\ud7a3" for ch in text)
    assert hangul / len(text) > 0.6  # mostly Korean ...
    assert any(ch.isdigit() for ch in text) and any("A" <= ch <= "Z" for ch in text)  # ... not only
    assert corpus.sha256 == load_corpus().sha256


def test_corpus_readme_states_the_real_sizes() -> None:
    """The README's table is what users read; it must match the files, line for line."""
    corpus = load_corpus()
    readme = (corpus.path / "README.md").read_text(encoding="utf-8")
    assert "CC-BY-4.0" in readme
    for g in corpus.genres:
        row = next(r for r in readme.splitlines() if r.startswith(f"| `{g.name}.txt` |"))
        docs, chars = (int(c.strip().replace(",", "")) for c in row.strip("|").split("|")[-2:])
        assert (docs, chars) == (len(g.documents), sum(len(s) for s in g.documents))


def test_figures_match_hand_computed_values(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "안녕하세요": 1, "세계": 2, "hello": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = tmp_path / "wordlevel.json"
    tok.save(str(path))
    corpus = _corpus(tmp_path / "c", news="안녕하세요 세계\n\n  hello 모르는말  \n")

    r = measure(path, corpus=corpus)
    f = r.genres["news"]
    # document 1 (line 1): "안녕하세요 세계\n\n"  10 chars, 5*3+1+2*3+2 = 24 bytes, 2 eojeols,
    #   2 tokens; decodes to "안녕하세요 세계" (the newlines are lost): fails
    # document 2 (line 3): "  hello 모르는말  \n"  15 chars, 2+5+1+4*3+2+1 = 23 bytes,
    #   2 eojeols, 2 tokens (1 unk): fails
    assert (f.documents, f.characters, f.bytes, f.eojeols, f.tokens) == (2, 25, 47, 4, 4)
    assert (f.unk_tokens, f.roundtrip_ok, f.byte_fallback_tokens) == (1, 0, 0)
    assert f.chars_per_token == pytest.approx(6.25)
    assert f.bytes_per_token == pytest.approx(11.75)
    assert f.tokens_per_eojeol == pytest.approx(1.0)
    assert f.roundtrip_fidelity == pytest.approx(0.0)
    assert f.unk_rate == pytest.approx(0.25)
    fail = f.first_roundtrip_failure
    assert fail is not None and fail.line == 1 and fail.original == "안녕하세요 세계\n\n"
    assert fail.decoded == "안녕하세요 세계"
    assert r.overall == f  # one genre: overall is the same
    assert r.tokenizer_sha256 == sha256_file(path)
    assert r.vocab_size == 4 and r.tokenizer_kind == "wordlevel"
    assert r.tokenizer_format == "tokenizer.json"
    assert r.versions["tokenizers"] == tokenizers.__version__
    assert not r.comparable and len(r.not_comparable_because) == 2


def test_counts_agree_with_the_library_and_skip_bos_eos(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    path = _bpe(tmp_path / "tokenizer.json", bos_eos=True)
    r = measure(tmp_path)  # a folder holding tokenizer.json works too
    tok = Tokenizer.from_file(str(path))
    docs = [s for g in load_corpus().genres for s in g.documents]
    plain = sum(len(tok.encode(s, add_special_tokens=False).ids) for s in docs)
    with_specials = sum(len(tok.encode(s).ids) for s in docs)
    assert r.overall.tokens == plain
    assert with_specials == plain + 2 * len(docs)  # the template really adds BOS/EOS ...
    assert r.overall.roundtrip_fidelity == 1.0  # ... and byte-level BPE is lossless
    assert r.overall.unk_tokens == 0
    assert r.overall.characters == sum(len(s) for s in docs)
    assert r.comparable and r.reference is None
    assert set(r.genres) == set(GENRES)
    assert sum(g.tokens for g in r.genres.values()) == r.overall.tokens


def test_lossy_normaliser_fails_round_trip(tmp_path: Path) -> None:
    path = _bpe(tmp_path / "lower.json", lowercase=True)
    corpus = _corpus(tmp_path / "c", technical="한국어 문장입니다.\n\nGPU 서버를 늘린다.\n")
    r = measure(path, corpus=corpus)
    assert r.overall.roundtrip_ok == 1 and r.overall.roundtrip_fidelity == pytest.approx(0.5)
    fail = r.overall.first_roundtrip_failure
    assert fail is not None and fail.genre == "technical" and fail.line == 3
    assert fail.decoded == "gpu 서버를 늘린다.\n"
    assert not r.comparable and "round trip fails on 1 of 2" in r.not_comparable_because[0]
    assert "normaliser lower-cases text" in r.tokenizer_notes


def test_sentencepiece_unk_rate_and_no_bos(tmp_path: Path, sp_model: Path) -> None:
    corpus = _corpus(tmp_path / "c", conversation="한국어 문장 😀 漢字 테스트\n\n대한민국 모델")
    r = measure(sp_model, corpus=corpus)
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    lines = ["한국어 문장 😀 漢字 테스트\n\n", "대한민국 모델"]
    ids = [sp.encode(s) for s in lines]
    unk = sum(x.count(sp.unk_id()) for x in ids)
    assert unk >= 1  # emoji and hanja were never seen in training
    assert r.overall.unk_tokens == unk
    assert r.overall.tokens == sum(len(x) for x in ids)
    assert r.overall.unk_rate == pytest.approx(unk / r.overall.tokens)
    assert r.overall.roundtrip_ok == 1  # the line with unknown characters cannot come back
    assert r.tokenizer_format == "SentencePiece" and r.vocab_size == sp.get_piece_size()
    assert r.overall.byte_fallback_tokens == 0 and "no byte fallback" in r.tokenizer_notes


def test_reference_ratios(tmp_path: Path, bpe: Path, sp_model: Path) -> None:
    other = _bpe(tmp_path / "other.json", vocab=300)
    a = measure(other)
    b = measure(bpe)
    r = measure(other, reference=bpe)
    assert r.reference is not None and r.reference.tokenizer_sha256 == b.tokenizer_sha256
    overall = r.reference.ratios["overall"]
    assert overall["chars_per_token"] == pytest.approx(
        a.overall.chars_per_token / b.overall.chars_per_token)
    assert overall["tokens_per_eojeol"] == pytest.approx(
        a.overall.tokens_per_eojeol / b.overall.tokens_per_eojeol)
    assert overall["unk_rate"] is None  # the byte-level reference has no unknown tokens
    news = r.reference.ratios["news"]
    assert news["bytes_per_token"] == pytest.approx(
        a.genres["news"].bytes_per_token / b.genres["news"].bytes_per_token)
    same = measure(bpe, reference=bpe)
    assert same.reference is not None
    assert same.reference.ratios["overall"]["chars_per_token"] == pytest.approx(1.0)
    # a tokenizer losing text gets no ratio, and neither does anyone against such a reference
    lossy = measure(sp_model, reference=bpe)
    assert not lossy.comparable and lossy.reference is not None
    assert lossy.reference.ratios == {} and "not comparable" in (lossy.reference.withheld or "")
    against = measure(bpe, reference=sp_model)
    assert against.reference is not None and against.reference.ratios == {}
    assert "the reference is not comparable" in (against.reference.withheld or "")


def test_corpus_hash_follows_content(tmp_path: Path, bpe: Path) -> None:
    c = _corpus(tmp_path / "c", news="첫 문장.\n")
    h1 = measure(bpe, corpus=c).corpus_sha256
    (c / "news.txt").write_text("첫 문장!\n", encoding="utf-8")
    assert measure(bpe, corpus=c).corpus_sha256 != h1


@pytest.mark.parametrize("case", ["missing", "bad_json", "no_model", "not_sp", "empty_dir"])
def test_bad_tokenizers_are_one_line_errors(tmp_path: Path, case: str) -> None:
    path = {"missing": tmp_path / "nope.json", "bad_json": tmp_path / "t.json",
            "no_model": tmp_path / "m.json", "not_sp": tmp_path / "x.model",
            "empty_dir": tmp_path / "d"}[case]
    if case == "bad_json":
        path.write_text('{"model": {"type": "BPE", "vocab": 3', encoding="utf-8")
    elif case == "no_model":
        path.write_text('{"version": "1.0"}', encoding="utf-8")
    elif case == "not_sp":
        path.write_bytes(b"this is not a protobuf")
    elif case == "empty_dir":
        path.mkdir()
    with pytest.raises(KaiError) as e:
        load_tokenizer(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_bad_corpora_are_one_line_errors(tmp_path: Path, bpe: Path) -> None:
    with pytest.raises(KaiError, match="corpus not found"):
        measure(bpe, corpus=tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KaiError, match=r"no \*\.txt"):
        measure(bpe, corpus=tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "news.txt").write_bytes("좋은 줄\n".encode() + b"\xff\xfe\n")
    with pytest.raises(KaiError, match=r"news\.txt:2: not valid UTF-8"):
        measure(bpe, corpus=bad)


def test_measure_many_checks_every_tokenizer_first(tmp_path: Path, bpe: Path) -> None:
    with pytest.raises(KaiError, match=r"nope\.json"):
        measure_many([bpe, tmp_path / "nope.json"])
    report = measure_many([bpe, bpe], reference=bpe)
    assert len(report.results) == 2 and report.reference is not None
    assert report.corpus_sha256 == report.results[0].corpus_sha256


def test_cli_table_and_json(tmp_path: Path, bpe: Path, sp_model: Path) -> None:
    out = tmp_path / "eff.json"
    res = CliRunner().invoke(app, ["tokenizer-efficiency", str(sp_model), str(bpe),
                                   "--reference", str(bpe), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "ko.model" in res.output and "rel c/tok" in res.output
    assert "first round-trip failure" in res.output  # SentencePiece NFKC-normalises ㅋ etc.
    flat = "".join(res.output.split())  # rich wraps long names in the narrow test console
    assert "NOTCOMPARABLE" in flat and "(notcomparable)" in flat
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["format"] == "kaieval/tokenizer-efficiency-report/v2"
    assert [r["tokenizer"] for r in data["results"]] == [str(sp_model), str(bpe)]
    assert data["reference"]["tokenizer"] == str(bpe)
    assert data["ranking"] == [str(bpe)]  # the lossy SentencePiece model is left out
    assert data["results"][0]["comparable"] is False
    assert data["results"][1]["reference"]["ratios"]["overall"]["chars_per_token"] == 1.0
    assert set(data["results"][0]["genres"]) == set(GENRES)
    res = CliRunner().invoke(app, ["tokenizer-efficiency", str(bpe), "--per-genre"])
    assert res.exit_code == 0 and "conversation" in res.output and "overall" in res.output


@pytest.mark.parametrize("args", [["nope.json"], ["{bpe}", "--corpus", "nowhere"],
                                  ["{bpe}", "--reference", "nope.model"],
                                  ["{bpe}", "--json", "no/such/dir/x.json"]])
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, bpe: Path, args: list[str]) -> None:
    argv = [a.format(bpe=bpe) if "{" in a else str(tmp_path / a) if a[0] != "-" else a
            for a in args]
    res = CliRunner().invoke(app, ["tokenizer-efficiency", *argv])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output
