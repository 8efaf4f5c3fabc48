"""kaieval.io: the atomic write keeps the old file on failure; the JSON Lines reader
names file and line in one-line errors; untrusted files are opened only when regular."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kaieval.errors import KaiError
from kaieval.io import atomic_path, atomic_write_text, open_regular, parse_jsonl, read_jsonl


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "새 내용\n")
    assert target.read_bytes() == "새 내용\n".encode()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    target.write_text("old complete report", encoding="utf-8")

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new report")
    assert target.read_text(encoding="utf-8") == "old complete report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "w.safetensors"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_jsonl_rows_carry_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"b": "x\u2028y"}\n', encoding="utf-8")
    assert read_jsonl(path) == [(f"{path}:1", {"a": 1}), (f"{path}:3", {"b": "x\u2028y"})]
    assert parse_jsonl('{"a": 1}\n', "mem") == [("mem:1", {"a": 1})]


@pytest.mark.parametrize(("content", "message"), [
    (b'{"a": 1}\nnot json\n', r"r\.jsonl:2: not JSON"),
    (b'{"a": 1}\n[1, 2]\n', r"r\.jsonl:2: expected a JSON object"),
    (b'{"a": "\xff"}\n', r"r\.jsonl: not UTF-8"),
])
def test_bad_jsonl_is_a_one_line_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    with pytest.raises(KaiError, match=message) as err:
        read_jsonl(path)
    assert "\n" not in str(err.value)
    with pytest.raises(KaiError, match="file not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_open_regular_reads_a_file_and_refuses_fifos_and_folders(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(b"data")
    with open_regular(f) as fh:
        assert fh.read() == b"data"
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)  # no writer: a plain open() would block forever
    with pytest.raises(KaiError, match="is a FIFO, not a regular file: refused") as err:
        open_regular(fifo)
    assert str(fifo) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(KaiError, match="is a folder"):
        open_regular(tmp_path)
    with pytest.raises(KaiError, match="cannot read"):
        open_regular(tmp_path / "absent")


def test_kai_provenance_on_a_fifo_checkpoint_exits_2_at_once(tmp_path: Path) -> None:
    """Issue 11: `kai provenance` hung forever when model.safetensors was a FIFO."""
    import subprocess
    import sys

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", "utf-8")
    os.mkfifo(model / "model.safetensors")
    proc = subprocess.run([sys.executable, "-m", "kaieval.cli", "provenance", str(model),
                           "--ref", str(model)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "is a FIFO, not a regular file: refused" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_kai_provenance_on_a_deeply_nested_config_is_one_line(tmp_path: Path) -> None:
    """Issue 11: a config.json nested 200,000 deep gave a RecursionError traceback."""
    import subprocess
    import sys

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("[" * 200_000 + "]" * 200_000, "utf-8")
    (model / "model.safetensors").write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "kaieval.cli", "provenance", str(model),
                           "--ref", str(model)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "config.json: not valid JSON: nested deeper than 64 levels" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bounded_read_refuses_an_oversized_file_before_reading(tmp_path: Path) -> None:
    from kaieval.io import MiB, read_bounded_bytes

    big = tmp_path / "tokenizer.json"
    with big.open("wb") as f:
        f.truncate(3 * MiB)  # sparse: nothing is written
    with pytest.raises(KaiError, match=r"tokenizer\.json: 3 MB exceeds the 2 MB limit for "
                                       r"tokenizer files$"):
        read_bounded_bytes(big, 2 * MiB, "tokenizer files")
    assert read_bounded_bytes(big, 4 * MiB, "tokenizer files") == b"\0" * (3 * MiB)


@pytest.mark.parametrize(("text", "problem"), [
    ('{"a": [1, {"b": "]]]]"}], "c": "\\"[[["}', None),  # brackets in strings do not count
    ('"\\\\"', None),
    ("[" * 64 + "]" * 64, None),
    ("[" * 65 + "]" * 65, "nested deeper than 64 levels"),
    ('[' * 40 + '"]]]"' + "]" * 40, None),
    ("{\"a\": [}", None),  # a few stray brackets: the parser says where
    ("[" * 65 + "}" * 65, "brackets do not balance"),
    ("[" * 200_000, "brackets do not balance"),  # never handed to the parser either
])
def test_json_depth_is_measured_without_recursion(text: str, problem: str | None) -> None:
    from kaieval.io import json_depth_problem

    assert json_depth_problem(text.encode()) == problem


def test_parse_json_errors_are_one_line(tmp_path: Path) -> None:
    from kaieval.io import CONFIG_MAX_BYTES, load_json_file, parse_json

    assert parse_json(b'\xef\xbb\xbf{"a": 1}', "x") == {"a": 1}  # a BOM is allowed
    for raw, says in ((b"{", "not valid JSON: Expecting"), (b"\xff", "not UTF-8"),
                      (b"[" * 5000 + b"]" * 5000, "nested deeper than 64 levels")):
        with pytest.raises(KaiError, match=says) as err:
            parse_json(raw, "cfg.json")
        assert str(err.value).startswith("cfg.json: ") and "\n" not in str(err.value)
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    with pytest.raises(KaiError, match="is a FIFO"):
        load_json_file(fifo, max_bytes=CONFIG_MAX_BYTES, what="config files")


def test_jsonl_line_nested_too_deep_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n' + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(KaiError, match=r"r\.jsonl:2: not JSON: nested deeper than 64"):
        read_jsonl(path)


def test_readahead_hints_weight_files_and_never_waits_on_a_fifo(tmp_path: Path) -> None:
    from kaieval.io import _weight_files, readahead

    model = tmp_path / "model"
    (model / "vision_encoder").mkdir(parents=True)
    for name in ("model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors",
                 "vision_encoder/model.safetensors", "config.json"):
        (model / name).write_bytes(b"\0" * 4096)
    os.mkfifo(model / "trap.safetensors")  # opened without blocking, then skipped
    single = tmp_path / "fp.safetensors"
    single.write_bytes(b"\0" * 8)
    got = _weight_files([model, single, tmp_path / "missing"])
    assert [p.relative_to(tmp_path).as_posix() for p in got] == [
        "model/model-00001-of-00002.safetensors", "model/model-00002-of-00002.safetensors",
        "model/trap.safetensors", "model/vision_encoder/model.safetensors", "fp.safetensors"]
    thread = readahead([model, single])
    assert thread is not None
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_weight_files_interleave_models_in_turn(tmp_path: Path) -> None:
    """Candidate and reference take turns, so both halves of a test arrive together."""
    from kaieval.io import interleaved_weight_files

    for model, n in (("cand", 3), ("ref", 2)):
        (tmp_path / model).mkdir()
        for k in range(1, n + 1):
            (tmp_path / model / f"model-{k:05d}-of-{n:05d}.safetensors").write_bytes(b"\0")
    single = tmp_path / "fp.safetensors"
    single.write_bytes(b"\0")
    got = interleaved_weight_files([tmp_path / "cand", tmp_path / "ref", single])
    assert [f"{p.parent.name}/{p.name[6:11]}" if p != single else "fp" for p in got] == [
        "cand/00001", "ref/00001", "fp", "cand/00002", "ref/00002", "cand/00003"]


def test_readahead_leaves_out_the_files_being_hashed(tmp_path: Path) -> None:
    """Files the hashing reads anyway are not hinted; the others still are, per model."""
    from kaieval.io import readahead, readahead_files

    files = {}
    for model in ("cand", "ref"):
        (tmp_path / model).mkdir()
        for k in (1, 2):
            f = tmp_path / model / f"model-{k:05d}-of-00002.safetensors"
            f.write_bytes(b"\0" * 4096)
            files[f"{model}{k}"] = f
    plan = readahead_files([tmp_path / "cand", tmp_path / "ref"],
                           skip=[files["cand1"], files["ref2"]])
    assert plan == [[files["cand2"]], [files["ref1"]]]
    thread = readahead([tmp_path / "cand", tmp_path / "ref"], skip=[files["cand1"]])
    assert thread is not None
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_hint_size_comes_from_the_device(tmp_path: Path) -> None:
    """A hint is as long as the device reads for one (sysfs), else the usual 128 KiB."""
    from kaieval.io import HINT_BYTES_DEFAULT, _hint_bytes

    dev = os.stat(tmp_path).st_dev
    queue = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    got = _hint_bytes(dev)
    for q in (queue / "queue", queue.parent / "queue"):
        if (q / "read_ahead_kb").exists():
            want = max(int((q / n).read_text()) for n in ("read_ahead_kb", "max_sectors_kb"))
            assert got == max(want << 10, 4096)
            break
    else:
        assert got == HINT_BYTES_DEFAULT
    assert _hint_bytes(os.makedev(4095, 1048575)) == HINT_BYTES_DEFAULT  # no such device


def test_willneed_hints_a_range_in_pieces_and_ignores_errors(tmp_path: Path) -> None:
    """Every piece of the range is hinted (a short last one too); a closed descriptor or
    an empty range is no error: hints are only hints."""
    from kaieval.io import willneed

    f = tmp_path / "w.bin"
    f.write_bytes(b"\1" * 10_000)
    fd = os.open(f, os.O_RDONLY)
    try:
        willneed(fd, 100, 9_900, step=4096)
        willneed(fd, 0, 0)
    finally:
        os.close(fd)
    willneed(fd, 0, 10, step=4096)  # closed: ignored
