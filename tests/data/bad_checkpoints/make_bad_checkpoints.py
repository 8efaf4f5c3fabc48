"""Write malformed and untrusted checkpoints into a directory, for the reader's refusal tests.

Usage: ``python make_bad_checkpoints.py OUT_DIR`` -- prints ``name<TAB>path`` per case.
Nothing binary is committed: the tests run this into a temporary directory.

The untrusted-file cases (issue 11) are model folders whose weights or tokenizer is a
FIFO (a plain ``open`` would block forever), whose ``config.json`` or ``tokenizer.json``
is nested 200,000 deep, whose ``tokenizer.json`` is one byte over the tokenizer limit
(a sparse file: nothing big is written), or whose ``tokenizer.json`` is a link to a file
outside the folder.

The pickle case is plain bytes that merely *start* like a pickle stream (protocol
header, no reduce payload): the reader must refuse it by name without reading it,
and even if something did unpickle it, nothing would run.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from kaieval.io import TOKENIZER_MAX_BYTES


def _pack(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _good_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"a.weight": rng.standard_normal((8, 8)).astype(np.float32),
            "b.weight": rng.standard_normal((4, 8)).astype(np.float32)}


def _two_tensor_header(a_off: list[int], b_off: list[int]) -> dict[str, Any]:
    return {"a.weight": {"dtype": "F32", "shape": [8, 8], "data_offsets": a_off},
            "b.weight": {"dtype": "F32", "shape": [4, 8], "data_offsets": b_off}}


def make_bad_checkpoints(out: Path) -> dict[str, Path]:
    """Create every bad case under ``out``; returns case name -> path to open."""
    out.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Path] = {}
    data = b"\x00" * (64 * 4 + 32 * 4)

    good = out / "good.safetensors"
    save_file(_good_tensors(), str(good))
    blob = good.read_bytes()

    cases["truncated"] = out / "truncated.safetensors"
    cases["truncated"].write_bytes(blob[: len(blob) - 100])

    cases["tiny_file"] = out / "tiny_file.safetensors"
    cases["tiny_file"].write_bytes(b"\x10\x00\x00")

    cases["header_too_long"] = out / "header_too_long.safetensors"
    cases["header_too_long"].write_bytes(struct.pack("<Q", 10_000) + b"{}")

    cases["header_over_limit"] = out / "header_over_limit.safetensors"
    cases["header_over_limit"].write_bytes(struct.pack("<Q", 2**40) + b"{}")

    cases["header_not_json"] = out / "header_not_json.safetensors"
    cases["header_not_json"].write_bytes(struct.pack("<Q", 9) + b"not json!")

    cases["header_not_object"] = out / "header_not_object.safetensors"
    cases["header_not_object"].write_bytes(_pack([1, 2], b""))  # type: ignore[arg-type]

    cases["overlap"] = out / "overlap.safetensors"
    cases["overlap"].write_bytes(_pack(_two_tensor_header([0, 256], [128, 256]), data[:256]))

    cases["out_of_range"] = out / "out_of_range.safetensors"
    cases["out_of_range"].write_bytes(
        _pack(_two_tensor_header([0, 256], [4096, 4224]), data))

    cases["size_mismatch"] = out / "size_mismatch.safetensors"
    cases["size_mismatch"].write_bytes(
        _pack(_two_tensor_header([0, 128], [128, 256]), data[:256]))

    cases["unknown_dtype"] = out / "unknown_dtype.safetensors"
    cases["unknown_dtype"].write_bytes(_pack(
        {"a.weight": {"dtype": "Q4_K", "shape": [8, 8], "data_offsets": [0, 256]}}, data[:256]))

    cases["negative_shape"] = out / "negative_shape.safetensors"
    cases["negative_shape"].write_bytes(_pack(
        {"a.weight": {"dtype": "F32", "shape": [-8, 8], "data_offsets": [0, 256]}}, data[:256]))

    sharded = out / "missing_shard"
    sharded.mkdir(exist_ok=True)
    save_file({"a.weight": _good_tensors()["a.weight"]},
              str(sharded / "model-00001-of-00002.safetensors"))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a.weight": "model-00001-of-00002.safetensors",
        "b.weight": "model-00002-of-00002.safetensors"}}))
    cases["missing_shard"] = sharded

    named = out / "index_missing_tensor"
    named.mkdir(exist_ok=True)
    save_file({"a.weight": _good_tensors()["a.weight"]},
              str(named / "model-00001-of-00001.safetensors"))
    (named / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a.weight": "model-00001-of-00001.safetensors",
        "c.weight": "model-00001-of-00001.safetensors"}}))
    cases["index_missing_tensor"] = named

    pkl = out / "pickle_dir"
    pkl.mkdir(exist_ok=True)
    (pkl / "config.json").write_text(json.dumps({"model_type": "llama"}))
    # protocol-4 header + a short opcode stream with no GLOBAL/REDUCE: inert bytes
    (pkl / "pytorch_model.bin").write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.")
    cases["pickle_dir"] = pkl
    cases["pickle_file"] = out / "weights.pt"
    cases["pickle_file"].write_bytes(b"\x80\x04K\x01.")

    code = out / "remote_code"
    code.mkdir(exist_ok=True)
    save_file(_good_tensors(), str(code / "model.safetensors"))
    (code / "config.json").write_text(json.dumps({"model_type": "x"}))
    (code / "modeling_x.py").write_text(
        "from pathlib import Path\n"
        "Path(__file__).with_name('EXECUTED').write_text('modeling_x.py ran')\n")
    cases["remote_code"] = code

    auto = out / "auto_map"
    auto.mkdir(exist_ok=True)
    save_file(_good_tensors(), str(auto / "model.safetensors"))
    (auto / "config.json").write_text(json.dumps(
        {"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}}))
    cases["auto_map"] = auto

    fp8 = out / "fp8_scale_mismatch"  # FP8 codes whose block scales cannot tile them
    fp8.mkdir(exist_ok=True)
    (fp8 / "model.safetensors").write_bytes(_pack(
        {"a.weight": {"dtype": "F8_E4M3", "shape": [256, 256], "data_offsets": [0, 65536]},
         "a.weight_scale_inv": {"dtype": "F32", "shape": [3, 5],
                                "data_offsets": [65536, 65596]}},
        b"\x38" * 65536 + b"\x00\x00\x80\x3f" * 15))
    cases["fp8_scale_mismatch"] = fp8

    _untrusted_files(out, cases)
    return cases


def _model(folder: Path) -> Path:
    """A valid small model folder: weights, config and a tokenizer.json."""
    folder.mkdir(exist_ok=True)
    save_file(_good_tensors(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "tokenizer.json").write_text(json.dumps({
        "version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None,
        "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "a": 1}, "unk_token": "<unk>"}}))
    return folder


def _untrusted_files(out: Path, cases: dict[str, Path]) -> None:
    """Folders that are valid but for one file a reader must refuse without hanging,
    recursing or allocating: FIFOs, deep nesting, an oversized tokenizer, a link out."""
    deep = "[" * 200_000 + "]" * 200_000
    for name, file in (("fifo_weights", "model.safetensors"), ("fifo_tokenizer",
                                                                 "tokenizer.json")):
        folder = _model(out / name)
        (folder / file).unlink()
        os.mkfifo(folder / file)  # no writer ever: a blocking open would wait forever
        cases[name] = folder
    for name, file in (("deep_config", "config.json"), ("deep_tokenizer", "tokenizer.json")):
        folder = _model(out / name)
        (folder / file).write_text(deep)
        cases[name] = folder
    huge = _model(out / "huge_tokenizer")
    with (huge / "tokenizer.json").open("r+b") as f:
        f.truncate(TOKENIZER_MAX_BYTES + 1)  # sparse: one byte over, nothing written
    cases["huge_tokenizer"] = huge
    secret = out / "outside_secret.json"  # e.g. another team's file, or /etc/passwd
    secret.write_text(json.dumps({"model": {"type": "WordLevel", "vocab": {"x": 0}}}))
    linked = _model(out / "tokenizer_link_outside")
    (linked / "tokenizer.json").unlink()
    (linked / "tokenizer.json").symlink_to(secret)
    cases["tokenizer_link_outside"] = linked


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_bad_checkpoints.py OUT_DIR")
    for case, path in make_bad_checkpoints(Path(sys.argv[1])).items():
        print(f"{case}\t{path}")
