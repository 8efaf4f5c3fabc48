"""The reader: shards and sub-folders, streaming, and every refusal."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file as np_save

from kaieval.errors import KaiError
from kaieval.provenance import check_independence, open_model
from kaieval.provenance.weight_tests import tensor_hash


def test_sharded_model_with_subfolder_component(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(6).astype(
        np.float32)
    np_save({"x.weight": a}, str(tmp_path / "model-00001-of-00002.safetensors"))
    np_save({"y.weight": b}, str(tmp_path / "model-00002-of-00002.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "x.weight": "model-00001-of-00002.safetensors",
        "y.weight": "model-00002-of-00002.safetensors"}}))
    (tmp_path / "vision_encoder").mkdir()
    np_save({"x.weight": 2 * a}, str(tmp_path / "vision_encoder" / "model.safetensors"))
    (tmp_path / "docs").mkdir()  # a folder without weights is not a component
    w = open_model(tmp_path)
    assert w.names() == ["vision_encoder/x.weight", "x.weight", "y.weight"]
    assert w.subfolders == ("vision_encoder",)
    assert len(w.weight_files) == 3
    np.testing.assert_array_equal(w.load("y.weight"), b)
    np.testing.assert_array_equal(w.load("vision_encoder/x.weight"), 2 * a)


def test_reads_one_tensor_without_loading_the_model(tmp_path: Path) -> None:
    """Streaming: loading one 1 MB tensor from a 16 MB file allocates about 1 MB."""
    rng = np.random.default_rng(2)
    np_save({f"t{i}": rng.standard_normal((512, 512)).astype(np.float32) for i in range(16)},
            str(tmp_path / "big.safetensors"))
    tracemalloc.start()
    w = open_model(tmp_path / "big.safetensors")
    x = w.load("t7")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert x.shape == (512, 512)
    assert peak < 3 * x.nbytes, f"peak {peak} bytes for a {x.nbytes}-byte tensor"
    assert isinstance(w.raw("t3"), np.memmap)


def test_chunks_stream_the_bytes_through_a_bounded_buffer(tmp_path: Path) -> None:
    """The streamed hash equals the hash of the whole tensor's bytes read at once."""
    rng = np.random.default_rng(3)
    t = rng.standard_normal((300, 70)).astype(np.float32)
    np_save({"t": t, "tiny": np.zeros(0, dtype=np.float32)}, str(tmp_path / "m.safetensors"))
    w = open_model(tmp_path / "m.safetensors")
    parts = [bytes(c) for c in w.chunks("t", size=1000)]
    assert len(parts) == -(-t.nbytes // 1000) and max(map(len, parts)) == 1000
    assert b"".join(parts) == t.tobytes()
    whole = hashlib.sha256(b"F32|[300, 70]|" + t.tobytes()).hexdigest()
    assert tensor_hash(w, "t") == "sha256:" + whole
    assert [bytes(c) for c in w.chunks("tiny")] == [b""]


def test_pickle_next_to_safetensors_is_ignored_not_read(tmp_path: Path) -> None:
    np_save({"x": np.arange(4, dtype=np.float32)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "training_args.bin").write_bytes(b"\x80\x04K\x01.")
    assert open_model(tmp_path).names() == ["x"]


BAD = {
    "truncated": "file truncated",
    "tiny_file": "file truncated",
    "header_too_long": "larger than the file",
    "header_over_limit": "exceeds the 100 MB limit",
    "header_not_json": "not valid JSON",
    "header_not_object": "expected an object",
    "overlap": "overlap",
    "out_of_range": "out of range",
    "size_mismatch": "size mismatch",
    "unknown_dtype": "unknown dtype 'Q4_K'",
    "negative_shape": "not a list of non-negative integers",
    "missing_shard": "missing shard 'model-00002-of-00002.safetensors'",
    "index_missing_tensor": "tensor 'c.weight' is not in its shard",
    "pickle_dir": "refused (never unpickled); convert the weights to safetensors",
    "pickle_file": "refused (never unpickled); convert the weights to safetensors",
    "remote_code": "repository code present (modeling_x.py)",
    "auto_map": "auto_map names repository code",
    "fp8_scale_mismatch": "does not tile 'a.weight' of shape [256, 256]",
    "fifo_weights": "model.safetensors: is a FIFO, not a regular file: refused",
    "fifo_tokenizer": "tokenizer.json: is a FIFO, not a regular file: refused",
    "deep_config": "config.json: not valid JSON: nested deeper than 64 levels",
    "huge_tokenizer": "tokenizer.json: 128.0 MB exceeds the 128 MB limit for tokenizer files",
    "tokenizer_link_outside": "tokenizer.json: is a symbolic link to ",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_checkpoint_is_one_clear_error(case: str, bad_cases: dict[str, Path]) -> None:
    path = bad_cases[case]
    with pytest.raises(KaiError) as info:
        open_model(path)
    msg = str(info.value)
    assert BAD[case] in msg
    assert "\n" not in msg
    assert path.name in msg  # names the file or folder at fault


def test_repository_code_never_runs(bad_cases: dict[str, Path],
                                    models: dict[str, Path]) -> None:
    folder = bad_cases["remote_code"]
    marker = folder / "EXECUTED"
    with pytest.raises(KaiError):
        open_model(folder)
    w = open_model(folder, trust_remote_code=True)  # acknowledged: weights only
    assert w.names() == ["a.weight", "b.weight"]
    v = check_independence(folder, [models["parent"]], stage_id="s1", team_id="t",
                           trust_remote_code=True)
    assert v.verdict == "inconclusive"
    assert v.settings["trust_remote_code"] is True
    assert not marker.exists()
    with pytest.raises(KaiError, match="repository code"):
        check_independence(folder, [models["parent"]], stage_id="s1", team_id="t")
    assert not marker.exists()


def test_prefetch_is_only_a_hint(tmp_path: Path) -> None:
    full = {"bf": np.arange(12, dtype=np.float32).reshape(3, 4), "f": np.ones(5, np.float32)}
    np_save(full, str(tmp_path / "m.safetensors"))
    w = open_model(tmp_path / "m.safetensors")
    w.prefetch(["bf", "no such tensor", "f"])  # unknown names are ignored
    np.testing.assert_array_equal(w.load("bf"), full["bf"])
