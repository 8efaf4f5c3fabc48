"""The tokenizer loader on tokenizers trained here, in every format: the same tokenizer in
two formats gives the same vocabulary, order and counts; formats are found by content;
bad files are one line (exit 2 through the command), never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tokfiles as tf
from kaieval.audit.tokenizer_efficiency import load_corpus, measure
from kaieval.errors import KaiError
from kaieval.tokenizer import load_tokenizer
from kaieval.tokenizer.encodings import identify

pytest.importorskip("tokenizers")
pytest.importorskip("sentencepiece")
pytest.importorskip("tiktoken")


@pytest.fixture(scope="session")
def formats(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    text = tf.korean(60000, 11)
    bpe = tf.train_bpe(text, 900, root / "bpe" / "tokenizer.json")
    folder = tf.write_bpe_folder(bpe, root / "gpt2")
    tt = tf.write_tiktoken(bpe, root / "ranks.tiktoken")
    llama_style = root / "llama" / "tokenizer.model"  # tiktoken under a SentencePiece name
    llama_style.parent.mkdir()
    llama_style.write_bytes(tt.read_bytes())
    wp = tf.train_wordpiece(text, 900, root / "wp" / "tokenizer.json")
    cased = tf.write_vocab_txt(wp, root / "bert-cased", config={"do_lower_case": False})
    uncased = tf.write_vocab_txt(wp, root / "bert-uncased", config=None)
    sp = tf.train_sentencepiece(text, 700, root / "sp")
    unigram = tf.train_unigram(text, 700, root / "unigram.json")
    return {"bpe": bpe, "folder": folder, "tiktoken": tt, "llama": llama_style, "wp": wp,
            "cased": cased, "uncased": uncased, "sp": sp, "unigram": unigram, "root": root}


def test_bpe_in_three_formats_is_one_tokenizer(formats: dict[str, Path]) -> None:
    js, folder = load_tokenizer(formats["bpe"]), load_tokenizer(formats["folder"])
    tt = load_tokenizer(formats["tiktoken"], pattern=tf.GPT2_PATTERN)
    llama = load_tokenizer(formats["llama"].parent, pattern=tf.GPT2_PATTERN)
    assert (js.format, folder.format, tt.format, llama.format) == (
        "tokenizer.json", "vocab.json + merges.txt", "tiktoken", "tiktoken")
    assert js.learned == folder.learned == tt.learned == llama.learned
    assert js.order == folder.order == tt.order
    assert js.specials == folder.specials and tt.specials == {}
    results = [measure(p, pattern=tf.GPT2_PATTERN) for p in
               (formats["bpe"], formats["folder"], formats["tiktoken"], formats["llama"])]
    counts = {(r.overall.tokens, r.overall.roundtrip_ok, r.overall.characters) for r in results}
    assert len(counts) == 1, counts
    assert all(r.comparable and r.overall.roundtrip_fidelity == 1.0 for r in results)
    assert "pattern given with --pattern" in results[2].tokenizer_notes


def test_wordpiece_json_and_vocab_txt_agree(formats: dict[str, Path]) -> None:
    a, b = measure(formats["wp"]), measure(formats["cased"].parent)
    assert b.tokenizer_format == "WordPiece vocab.txt"
    assert (a.overall.tokens, a.overall.unk_tokens, a.overall.roundtrip_ok) == (
        b.overall.tokens, b.overall.unk_tokens, b.overall.roundtrip_ok)
    assert "lower-casing off, accent stripping off (tokenizer_config.json)" in b.tokenizer_notes


def test_uncased_wordpiece_says_it_decomposes_hangul(formats: dict[str, Path]) -> None:
    r = measure(formats["uncased"])
    assert any("decomposes Hangul" in n for n in r.tokenizer_notes)
    assert any("BERT's defaults" in n for n in r.tokenizer_notes)
    assert r.overall.roundtrip_ok == 0 and not r.comparable  # jamo never decode to syllables


def test_sentencepiece_byte_fallback_and_user_defined(formats: dict[str, Path]) -> None:
    import sentencepiece as spm

    tok = load_tokenizer(formats["sp"])
    assert tok.format == "SentencePiece" and tok.kind == "bpe"
    assert len(tok.byte_fallback_ids) == 256 and "byte fallback on" in tok.notes
    assert tok.added == {"<k>": 3} and {"<unk>", "<s>", "</s>"} <= set(tok.specials)
    r = measure(formats["sp"])
    sp = spm.SentencePieceProcessor(model_file=str(formats["sp"]))
    docs = [d for g in load_corpus().genres for d in g.documents]
    ids = [sp.encode(d) for d in docs]
    assert r.overall.tokens == sum(map(len, ids))
    nbyte = sum(1 for x in ids for i in x if sp.IsByte(i))
    assert nbyte > 0 and r.overall.byte_fallback_tokens == nbyte
    assert r.overall.byte_fallback_rate == pytest.approx(nbyte / r.overall.tokens)


def test_unigram_json(formats: dict[str, Path]) -> None:
    tok = load_tokenizer(formats["unigram"])
    assert tok.kind == "unigram" and tok.unk_id == 0 and len(tok.order) > 100


def test_tiktoken_identification() -> None:
    assert identify("sha256:" + "0" * 64, 12345, None).pattern is None
    by_size = identify("sha256:" + "0" * 64, 199998, None)
    assert by_size.encoding is not None and by_size.encoding.name == "o200k_base"
    assert "from its 199998 ranks" in by_size.how
    cl = identify("sha256:223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
                  1, None)
    assert cl.encoding is not None and "by its SHA-256" in cl.how
    assert identify("x", 199998, r"\S+").how == "pattern given with --pattern"


def test_unknown_tiktoken_needs_a_pattern(formats: dict[str, Path]) -> None:
    with pytest.raises(KaiError, match="--pattern") as e:
        measure(formats["tiktoken"])
    assert "\n" not in str(e.value)


def _kai(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.run([sys.executable, "-m", "kaieval.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def _bad_inputs(root: Path, good: Path) -> dict[str, tuple[Path, str]]:
    out: dict[str, tuple[Path, str]] = {}
    p = root / "notjson" / "tokenizer.json"
    p.parent.mkdir(parents=True)
    p.write_text('{"model": {"type": "BPE", "vocab": {"a": 0,}', encoding="utf-8")
    out["not JSON"] = (p, "not valid JSON")
    data = json.loads(good.read_text(encoding="utf-8"))
    d = root / "dup"
    d.mkdir()
    text = json.dumps(data["model"]["vocab"], ensure_ascii=False)
    (d / "vocab.json").write_text(text[:-1] + ', "Ġ": 99999}', encoding="utf-8")
    (d / "merges.txt").write_text("", encoding="utf-8")
    out["duplicate token"] = (d, "duplicate token")
    m = root / "merges"
    tf.write_bpe_folder(good, m)
    with (m / "merges.txt").open("a", encoding="utf-8") as f:
        f.write("없는토큰 Ġ\n")
    out["merge not in vocab"] = (m, "which is not in vocab.json")
    t = root / "bad.tiktoken"
    t.write_text("IQ== 0\nIg== 1\nnot*base64 2\nJA== 3\n", encoding="ascii")
    out["bad base64"] = (t, "bad.tiktoken:3: bad base64")
    b = root / "b64.tiktoken"
    b.write_text("IQ== 0\nIg= 1\n", encoding="ascii")
    out["bad base64 padding"] = (b, "b64.tiktoken:2: bad base64")
    huge = root / "huge" / "tokenizer.model"
    huge.parent.mkdir()
    with huge.open("wb") as f:
        f.truncate(2 * 1024**3)  # sparse: 2 GB on paper, nothing on disk
    out["2 GB file"] = (huge, "exceeds the 128 MB limit")
    notsp = root / "notsp" / "tokenizer.model"
    notsp.parent.mkdir()
    notsp.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    out["not SentencePiece"] = (notsp, "tried")
    return out


def test_bad_inputs_are_one_line_exit_2(formats: dict[str, Path],
                                        tmp_path: Path) -> None:
    for case, (path, says) in _bad_inputs(tmp_path, formats["bpe"]).items():
        for cmd in (["tokenizer-efficiency", str(path)],
                    ["tokenizer-lineage", str(path), "--ref", str(formats["bpe"])]):
            proc = _kai(*cmd)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2, (case, proc.stderr)
            assert len(lines) == 1 and "Traceback" not in proc.stderr, (case, proc.stderr)
            assert says in lines[0], (case, lines[0])


def test_unreadable_file_names_every_format_tried(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(KaiError) as e:
        load_tokenizer(bad)
    msg = str(e.value)
    for fmt in ("tokenizer.json", "tiktoken", "SentencePiece", "WordPiece vocab.txt"):
        assert fmt in msg
    assert "\n" not in msg


def test_fifo_and_link_out_of_folder_refused(tmp_path: Path, formats: dict[str, Path]) -> None:
    fifo = tmp_path / "fifo" / "tokenizer.json"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    with pytest.raises(KaiError, match="FIFO"):
        load_tokenizer(fifo.parent)
    with pytest.raises(KaiError, match="FIFO"):
        load_tokenizer(fifo)
    link = tmp_path / "link"
    link.mkdir()
    (link / "tokenizer.json").symlink_to(formats["bpe"])
    with pytest.raises(KaiError, match="outside"):
        load_tokenizer(link)
