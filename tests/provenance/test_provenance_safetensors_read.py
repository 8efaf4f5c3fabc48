"""Reading validated tensors: exact fp32 conversion, any rows and columns over any spans,
and refusals of bad indices and of a file that shrank after its header was read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file as torch_save

from kaieval.errors import KaiError
from kaieval.provenance import open_model


def test_bf16_fp16_fp32_convert_exactly(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    src = {"bf": torch.randn(7, 5, generator=g).to(torch.bfloat16),
           "hf": torch.randn(3, 4, generator=g).to(torch.float16),
           "f": torch.randn(11, generator=g)}
    torch_save(src, str(tmp_path / "m.safetensors"))
    w = open_model(tmp_path / "m.safetensors")
    assert w.names() == ["bf", "f", "hf"]
    for name, t in src.items():
        got = w.load(name)
        assert got.dtype == np.float32 and got.shape == tuple(t.shape)
        np.testing.assert_array_equal(got, t.float().numpy())
    rows = w.rows("bf", np.array([4, 0], dtype=np.intp))
    np.testing.assert_array_equal(rows, src["bf"].float().numpy()[[4, 0]])


def _block_model(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    g = torch.Generator().manual_seed(5)
    src = {"bf": torch.randn(37, 29, generator=g).to(torch.bfloat16),
           "hf": torch.randn(23, 11, generator=g).to(torch.float16),
           "f": torch.randn(41, 7, generator=g)}
    torch_save(src, str(tmp_path / "m.safetensors"))
    return tmp_path / "m.safetensors", {k: v.float().numpy() for k, v in src.items()}


@pytest.mark.parametrize("span,gap", [(1 << 25, 1 << 16), (64, 1), (200, 100)])
def test_block_equals_the_indexed_tensor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         span: int, gap: int) -> None:
    """Any rows (unsorted, repeated) and columns, over one span or many small ones."""
    import kaieval.provenance.safetensors_read as sio

    monkeypatch.setattr(sio, "SPAN_BYTES", span)
    monkeypatch.setattr(sio, "GAP_BYTES", gap)
    path, full = _block_model(tmp_path)
    w = open_model(path)
    rng = np.random.default_rng(0)
    for name, x in full.items():
        n, m = x.shape
        picks: list[tuple[np.ndarray | None, np.ndarray | None]] = [
            (None, None), (np.sort(rng.choice(n, n // 2, replace=False)), None),
            (None, np.sort(rng.choice(m, m // 3, replace=False))),
            (rng.integers(0, n, 3 * n), rng.permutation(m)[: m // 2]),  # unsorted, repeats
            (np.arange(n), np.arange(m)), (np.array([], dtype=np.intp), None)]
        for rows, cols in picks:
            want = x if rows is None else x[rows]
            want = want if cols is None else want[:, cols]
            got = w.block(name, rows, cols)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want)


def test_block_refuses_bad_indices_and_a_file_that_shrank(tmp_path: Path) -> None:
    path, _ = _block_model(tmp_path)
    w = open_model(path)
    with pytest.raises(KaiError, match="row index out of range"):
        w.block("bf", np.array([0, 37]))
    with pytest.raises(KaiError, match="column index out of range"):
        w.block("bf", None, np.array([-1]))
    with pytest.raises(KaiError, match="must be integers"):
        w.block("bf", np.array([0.5]))
    size = path.stat().st_size
    with path.open("r+b") as f:  # truncated after the header was validated
        f.truncate(size - 100)
    with pytest.raises(KaiError, match="short read") as err:
        w.block(max(w.tensors, key=lambda n: w.tensors[n].start))
    assert str(path) in str(err.value)
