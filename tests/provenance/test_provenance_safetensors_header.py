"""Headers are checked whole before any data byte is read (every fault: the reader's
test_bad_checkpoint_is_one_clear_error)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from kaieval.errors import KaiError
from kaieval.provenance.safetensors_header import read_header


def test_header_is_checked_before_any_data(bad_cases: dict[str, Path]) -> None:
    with pytest.raises(KaiError, match="overlap"):
        read_header(bad_cases["overlap"])


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
