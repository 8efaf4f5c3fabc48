"""A validating, streaming safetensors reader for untrusted model artifacts: a model's
folder (shards, index, sub-folder components) opened as :class:`ModelWeights`.

Why not ``safetensors.safe_open``: submitted weights are untrusted, and a bad
file must end in one readable :class:`~kaieval.errors.KaiError` naming the file
and the fault, not in a Rust panic or an allocation the size of a forged header.
Each header is checked completely before a single data byte is touched
(:mod:`~kaieval.safetensors_header`), and data is then read with
``pread`` into bounded buffers, only the rows and columns a test uses
(:mod:`~kaieval.provenance.safetensors_read`): a 200 GB model costs the memory of
the parts being compared, not of the model.

Pickle checkpoints are refused by file name and never opened; repository code
(``*.py``, ``auto_map``) is refused unless the caller acknowledges it, and even
then it is never imported -- only weights are read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kaieval.artifacts import check_tree, is_pickle, refuse_pickle
from kaieval.errors import KaiError
from kaieval.io import CONFIG_MAX_BYTES, INDEX_MAX_BYTES, load_json_file, willneed
from kaieval.provenance import fp8
from kaieval.provenance.safetensors_read import (
    UINT_OF_SIZE,
    FloatArray,
    check_indices,
    gather,
    pread_into,
    to_float32,
)
from kaieval.safetensors_header import (
    DTYPE_SIZES,
    TensorInfo,
    read_header,
)

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


@dataclass
class ModelWeights:
    """The tensors of one model, across shards and sub-folder components, read lazily.

    Names of tensors in a sub-folder component are qualified with the folder
    (``vision_encoder/blocks.0.attn.qkv.weight``) so they never collide with the
    language model's names.
    """

    root: Path
    tensors: dict[str, TensorInfo]
    weight_files: tuple[Path, ...]
    tokenizer: Path | None = None
    subfolders: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.root.stem if self.root.is_file() else self.root.name

    def names(self) -> list[str]:
        return sorted(self.tensors)

    def raw(self, name: str) -> npt.NDArray[np.uint8]:
        """The tensor's bytes as a read-only memory map (nothing is read until used).

        A fresh map per tensor, dropped with the array: the pages it touched leave the
        process when the comparison is done, so resident memory stays at ~two tensors.
        """
        info = self.tensors[name]
        if info.nbytes == 0:
            return np.zeros(0, dtype=np.uint8)
        return np.memmap(info.file, dtype=np.uint8, mode="r", offset=info.start,
                         shape=(info.nbytes,))

    def load(self, name: str) -> FloatArray:
        """One tensor as fp32 in its own shape (read with ``pread``, not faulted in)."""
        info = self.tensors[name]
        out = self.load_info(info)
        if info.scale is None:
            return out
        if len(info.shape) == 2:
            out *= fp8.scale_factors(self._scale(info), info.scale_block,
                                     np.arange(info.shape[0]), np.arange(info.shape[1]))
        else:
            out *= self._scale(info).reshape(-1)[0]
        return out

    def _scale(self, info: TensorInfo) -> FloatArray:
        """An FP8 weight's scale tensor as fp32 (small: one value per block)."""
        assert info.scale is not None
        return self.load_info(info.scale)

    def load_info(self, info: TensorInfo) -> FloatArray:
        """A tensor given by its :class:`TensorInfo` (e.g. a scale) as fp32."""
        buf = np.empty(info.nbytes, dtype=np.uint8)
        if info.nbytes:
            fd = os.open(info.file, os.O_RDONLY)
            try:
                pread_into(fd, buf, info.start, info)
            finally:
                os.close(fd)
        return to_float32(buf, info.dtype, str(info.file)).reshape(info.shape)

    def rows(self, name: str, index: npt.NDArray[np.intp]) -> FloatArray:
        """Selected rows of a 2-D tensor as fp32 (see :meth:`block`)."""
        return self.block(name, index)

    def block(self, name: str, rows: npt.ArrayLike | None = None,
              cols: npt.ArrayLike | None = None) -> FloatArray:
        """``tensor[rows][:, cols]`` of a 2-D tensor as fp32, reading little more than that.

        Why not the memory map: gathering scattered elements through a map faults pages
        in one by one and copies them as opaque items, which cost more than the
        statistics. Here the selected rows are read with ``preadv`` in spans (rows
        closer than :data:`GAP_BYTES` share one read; a span is at most
        :data:`SPAN_BYTES`), the columns are gathered as integer bit patterns, and only
        the selected elements are converted to fp32. ``rows`` may be in any order and
        repeat; ``None`` means all. Memory: the output plus one span.
        """
        info = self.tensors[name]
        where = str(info.file)
        if len(info.shape) != 2:
            raise KaiError(f"tensor {name!r} is not 2-D", where=where)
        n_rows, n_cols = info.shape
        idx = (np.arange(n_rows, dtype=np.intp) if rows is None
               else check_indices(rows, n_rows, name, "row", where))
        col = None if cols is None else check_indices(cols, n_cols, name, "column", where)
        item = DTYPE_SIZES[info.dtype]
        out = np.empty((len(idx), n_cols if col is None else len(col)), dtype=UINT_OF_SIZE[item])
        if out.size:
            gather(info, idx, col, out)
        flat = out.reshape(-1).view(np.uint8)
        values = to_float32(flat, info.dtype, where).reshape(out.shape)
        if info.scale is not None:
            values *= fp8.scale_factors(self._scale(info), info.scale_block, idx,
                                        np.arange(n_cols) if col is None else col)
        return values

    def prefetch(self, names: Iterable[str]) -> None:
        """Ask the kernel to start reading these tensors' bytes (``POSIX_FADV_WILLNEED``).

        Called for the next tensors while the current ones are tested, so on a cold page
        cache the disk works while the CPU does. Only a hint: unknown names, errors and
        platforms without ``posix_fadvise`` are ignored.
        """
        if not hasattr(os, "posix_fadvise"):
            return
        for name in names:
            info = self.tensors.get(name)
            if info is None or info.nbytes == 0:
                continue
            try:
                fd = os.open(info.file, os.O_RDONLY)
            except OSError:
                continue
            try:
                willneed(fd, info.start, info.nbytes)  # in pieces the kernel does not cut
            finally:
                os.close(fd)

    def chunks(self, name: str, size: int = 1 << 24) -> Iterator[memoryview]:
        """The tensor's raw bytes in chunks of at most ``size``, for hashing.

        Read with ``pread`` into one reused buffer, not through the memory map: every
        page a map touches stays in this process's resident set until the map is
        dropped, so hashing a 131 MB embedding that way added 131 MB to the peak RSS
        (and more for larger models), while this costs ``size`` whatever the tensor.
        Each chunk is valid only until the next one is requested.
        """
        info = self.tensors[name]
        if info.nbytes == 0:
            yield memoryview(b"")
            return
        buf = np.empty(min(size, info.nbytes), dtype=np.uint8)
        fd = os.open(info.file, os.O_RDONLY)
        try:
            for off in range(0, info.nbytes, size):
                part = buf[:min(size, info.nbytes - off)]
                pread_into(fd, part, info.start + off, info)
                yield part.data
        finally:
            os.close(fd)


def _refuse_untrusted(root: Path, trust_remote_code: bool) -> None:
    """Refuse repository code unless acknowledged; it is never executed either way."""
    if trust_remote_code:
        return
    code = sorted(p for p in root.rglob("*.py")
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))
    if code:
        raise KaiError(f"repository code present ({code[0].relative_to(root)}); refused "
                       "unless trust_remote_code is set (it is never executed)", where=str(root))
    config = root / "config.json"
    if config.is_file():
        data = load_json_file(config, max_bytes=CONFIG_MAX_BYTES, what="config files")
        if isinstance(data, dict) and "auto_map" in data:
            raise KaiError("auto_map names repository code; refused unless trust_remote_code "
                           "is set (it is never executed)", where=str(config))


def _read_index(root: Path, index: Path) -> tuple[dict[str, TensorInfo], tuple[Path, ...]]:
    """Validate a sharded model's index: shards exist, every named tensor is in its shard."""
    where = str(index)
    data = load_json_file(index, max_bytes=INDEX_MAX_BYTES, what="safetensors index files")
    wmap = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wmap, dict) or not wmap or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in wmap.items()):
        raise KaiError("weight_map must be a non-empty object of tensor name -> shard file",
                       where=where)
    headers: dict[str, dict[str, TensorInfo]] = {}
    tensors: dict[str, TensorInfo] = {}
    for tname, shard in wmap.items():
        if shard not in headers:
            spath = root / shard
            if Path(shard).name != shard or not shard.endswith(".safetensors"):
                raise KaiError(f"shard {shard!r} must be a .safetensors file name in the model "
                               "folder", where=where)
            if not spath.is_file():
                raise KaiError(f"missing shard {shard!r} (named for tensor {tname!r})",
                               where=where)
            headers[shard] = read_header(spath)
        if tname not in headers[shard]:
            raise KaiError(f"tensor {tname!r} is not in its shard {shard!r}", where=where)
        tensors[tname] = headers[shard][tname]
    return tensors, tuple(root / s for s in sorted(headers))


def _read_folder(root: Path) -> tuple[dict[str, TensorInfo], tuple[Path, ...]] | None:
    """The weights of one folder, or None when it holds no safetensors."""
    if (root / INDEX_NAME).is_file():
        return _read_index(root, root / INDEX_NAME)
    if (root / SINGLE_NAME).is_file():
        return read_header(root / SINGLE_NAME), (root / SINGLE_NAME,)
    files = sorted(root.glob("*.safetensors"))
    if len(files) == 1:
        return read_header(files[0]), (files[0],)
    if files:
        raise KaiError(f"{len(files)} .safetensors files but no {INDEX_NAME} to say which "
                       "tensors they hold", where=str(root))
    pickles = sorted(p for p in root.iterdir() if p.is_file() and is_pickle(p))
    if pickles:
        refuse_pickle(pickles[0], root)
    return None


def open_model(path: Path, *, trust_remote_code: bool = False) -> ModelWeights:
    """Open a model folder (single file or sharded, plus sub-folder components) or one file.

    Every header is validated here, so later reads cannot fail on a malformed file.
    """
    path = Path(path)
    if path.is_file():
        if is_pickle(path):
            refuse_pickle(path)
        if path.suffix != ".safetensors":
            raise KaiError("not a .safetensors file or a model folder", where=str(path))
        return ModelWeights(path, fp8.attach_scales(read_header(path), None), (path,))
    if not path.is_dir():
        raise KaiError("no such model file or folder", where=str(path))
    check_tree(path)  # special files, oversized configs, links out of the folder
    _refuse_untrusted(path, trust_remote_code)
    top = _read_folder(path)
    tensors: dict[str, TensorInfo] = dict(top[0]) if top else {}
    if tensors:
        from kaieval.provenance.fused import split_fused  # fused.py imports this module

        tensors = split_fused(fp8.attach_scales(tensors, path), path)
    files: list[Path] = list(top[1]) if top else []
    subs: list[str] = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = _read_folder(sub)
        if found is None:
            continue
        subs.append(sub.name)
        tensors.update({f"{sub.name}/{k}": v
                        for k, v in fp8.attach_scales(found[0], sub).items()})
        files.extend(found[1])
    if not tensors:
        raise KaiError("no safetensors weights found", where=str(path))
    tok = path / "tokenizer.json"
    return ModelWeights(path, tensors, tuple(files), tok if tok.is_file() else None, tuple(subs))
