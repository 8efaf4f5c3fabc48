"""Headers are checked whole before any data byte is read (every fault through a model
folder: tests/provenance/test_provenance_safetensors_io.py)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from kaieval.errors import KaiError
from kaieval.safetensors_header import read_header


def _raw_file(path: Path, header: dict[str, object], data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_header_is_checked_before_any_data(tmp_path: Path) -> None:
    """Overlapping tensors are refused from the header alone, naming both."""
    path = _raw_file(tmp_path / "m.safetensors", {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12))
    with pytest.raises(KaiError, match="'b' data_offsets \\[4, 12\\] overlap tensor 'a'") as err:
        read_header(path)
    assert "\n" not in str(err.value) and "m.safetensors" in str(err.value)


@pytest.mark.parametrize(("header", "data", "fault"), [
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8), "file truncated"),
    ({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}}, bytes(2), "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8), "size mismatch"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(8), "trailing bytes"),
])
def test_each_fault_is_one_line(tmp_path: Path, header: dict[str, object], data: bytes,
                                fault: str) -> None:
    with pytest.raises(KaiError, match=fault) as err:
        read_header(_raw_file(tmp_path / "m.safetensors", header, data))
    assert "\n" not in str(err.value)


def test_a_valid_header_gives_every_tensor_where_its_bytes_lie(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"b": np.zeros((2, 3), dtype=np.float32), "a": np.ones(4, dtype=np.float16)},
              str(path), metadata={"format": "np"})
    infos = read_header(path)
    assert sorted(infos) == ["a", "b"]
    assert (infos["a"].dtype, infos["a"].shape, infos["a"].nbytes) == ("F16", (4,), 8)
    assert (infos["b"].dtype, infos["b"].shape, infos["b"].nbytes) == ("F32", (2, 3), 24)
    data = path.read_bytes()
    assert data[infos["a"].start:infos["a"].start + 8] == np.ones(4, dtype=np.float16).tobytes()
