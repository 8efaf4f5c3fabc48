"""Reference fingerprints: what the independence tests need from a model, without its weights.

Why: a submission must be checked against a registry of many open-weight models,
which no one keeps on disk in full. A fingerprint is one safetensors file (read
back through the same validating reader as weights -- no pickle, no code) holding:

* in ``__metadata__`` (JSON strings): the format name and version, the source
  model's name, the canonical hash of every informative tensor (exact reuse), the
  sampled vocabulary (token string -> stored row), the MLP sites and the seed;
* as tensors, under their original names: every norm vector, and the embedding /
  lm_head rows of a bounded seeded sample of tokens (for the residual alignment and
  the shared-vocabulary test);
* as tensors named ``kaifp.<mlp prefix><part>``: each MLP's hidden-unit sketch --
  every unit's gate row, up row and down column over a seeded subset of residual
  coordinates (``kaifp.coords``), unit-normalised, in fp16;
* (version 2) for every other same-position matrix (attention projections and the
  like), a seeded sub-matrix of at most :data:`SUB_ROWS` x :data:`SUB_UNITS`
  (``kaifp.sub.<name>``, fp32) with its row and column indices (``kaifp.rows.<name>``,
  ``kaifp.cols.<name>``). The candidate reads the same elements and the
  unit-permutation test runs on them: the indices were drawn from the shape and a
  seed, never from data, so the null stays exact.

Against a fingerprint the tests lose the same-position correlation of MLP matrices
(hidden-unit matching covers them) and the embedding rows outside the sample; they
keep exact reuse, norms, the sampled embedding rows, attention correlations on the
stored sub-matrices, and hidden-unit matching, which is the test that carries
derived-model detection in the calibration suite. Version 1 files (no sub-matrices)
are still read.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kaieval.errors import KaiError
from kaieval.io import atomic_path
from kaieval.provenance import weight_tests as tw
from kaieval.provenance.align import IntArray, sketch_coordinates
from kaieval.provenance.matching import (
    SKETCH_DIM,
    MlpSite,
    UnitSketch,
    find_sites,
    reference_sketch,
)
from kaieval.provenance.safetensors_io import ModelWeights, open_model
from kaieval.provenance.tensor_groups import EMBEDDINGS, HEAD, component_of, is_norm
from kaieval.provenance.vocab import model_vocab
from kaieval.safetensors_header import FLOAT_DTYPES, read_header

FORMAT = "kaieval-fingerprint"
VERSION = 2
READABLE_VERSIONS = ("1", "2")
SUB_ROWS = 512
SUB_UNITS = 128
"""Sub-matrix kept per attention-like matrix: 64k elements (256 KB in fp32), ~1/64 of a
2048-wide projection. A derived matrix's r over 64k elements is still decisive."""
FINGERPRINT_SEED = 20250804
MAX_FINGERPRINT_TOKENS = 4096
"""Embedding rows kept (seeded sample of the vocabulary): enough to align hidden sizes to ~2k."""

PREFIX = "kaifp."
SUB, ROWS, COLS = f"{PREFIX}sub.", f"{PREFIX}rows.", f"{PREFIX}cols."


@dataclass(frozen=True)
class StoredSub:
    """A reference matrix's stored sub-matrix: the full shape and which elements."""

    shape: tuple[int, int]
    plan: tw.NullPlan


def _sub_plan(name: str, shape: tuple[int, ...], seed: int) -> tw.NullPlan:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return tw.plan_null(shape, rows_exchangeable=True, rng=rng, max_rows=SUB_ROWS,
                        max_units=SUB_UNITS)


@dataclass
class Reference:
    """A reference to test against: a model folder, or a fingerprint file."""

    weights: ModelWeights
    vocab: dict[str, int] | None
    sites: list[MlpSite]
    fingerprint: bool
    seed: int | None = None  # fingerprint: the seed its coordinates were drawn with
    stored_hashes: dict[str, str] | None = None
    stored_quick: dict[str, str] | None = None
    stored_coords: IntArray | None = None
    subs: dict[str, StoredSub] | None = None  # fingerprint v2: name -> sub-matrix

    @property
    def name(self) -> str:
        return self.weights.name

    def hashes(self, names: list[str] | None = None) -> dict[str, str]:
        """Canonical tensor hashes for exact reuse (stored, for a fingerprint)."""
        if self.stored_hashes is not None:
            return {k: v for k, v in self.stored_hashes.items() if names is None or k in names}
        return tw.hash_index(self.weights, names)

    def quick_hashes(self) -> dict[str, str] | None:
        """Quick prefilter hashes (:func:`tw.quick_hash`); None when not available."""
        if self.fingerprint:
            return self.stored_quick
        return tw.quick_index(self.weights)

    def coords(self, ref_dim: int, seed: int) -> IntArray:
        if self.stored_coords is not None:
            return self.stored_coords
        return sketch_coordinates(ref_dim, SKETCH_DIM, seed)

    def sketch_loader(self, coords: IntArray) -> Callable[[MlpSite], UnitSketch]:
        if not self.fingerprint:
            return lambda site: reference_sketch(self.weights, site, coords)
        return self._stored_sketch

    def prefetch_site(self, site: MlpSite) -> None:
        """Hint the kernel to read a site's tensors ahead (a fingerprint is small: no-op)."""
        if not self.fingerprint:
            self.weights.prefetch(site.parts.values())

    def _stored_sketch(self, site: MlpSite) -> UnitSketch:
        parts = {p: self.weights.load(f"{PREFIX}{site.prefix}{p}") for p in site.parts}
        return UnitSketch(site.label, site.block, site.expert,
                          np.arange(site.units, dtype=np.intp), site.units, parts)


def _sample_tokens(vocab: dict[str, int], rows: int, seed: int) -> list[tuple[str, int]]:
    items = sorted((t, i) for t, i in vocab.items() if i < rows)
    if len(items) <= MAX_FINGERPRINT_TOKENS:
        return items
    pick = np.random.default_rng([seed, len(items)]).choice(len(items), MAX_FINGERPRINT_TOKENS,
                                                            replace=False)
    return [items[k] for k in sorted(pick)]


def write_fingerprint(model_dir: Path, out: Path, *, trust_remote_code: bool = False,
                      seed: int = FINGERPRINT_SEED) -> Path:
    """Write ``model_dir``'s fingerprint to ``out`` (one safetensors file) and return ``out``."""
    from safetensors.numpy import save_file

    w = open_model(Path(model_dir), trust_remote_code=trust_remote_code)
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    vocab = model_vocab(w)
    sampled: dict[str, int] = {}
    for name in w.names():
        info = w.tensors[name]
        if "/" in name or info.dtype not in FLOAT_DTYPES:
            continue
        comp = component_of(name)
        if is_norm(name) and len(info.shape) == 1:
            tensors[name] = w.load(name)
        elif comp in (EMBEDDINGS, HEAD) and len(info.shape) == 2 and vocab is not None:
            toks = _sample_tokens(vocab, info.shape[0], seed)
            if not sampled:
                sampled = {t: k for k, (t, _) in enumerate(toks)}
            idx = np.array([vocab[t] for t in sampled], dtype=np.intp)
            tensors[name] = w.rows(name, idx)
    sites = find_sites(w)
    site_parts = {n for site in sites for n in site.parts.values()}
    subs: dict[str, dict[str, Any]] = {}
    for name in w.names():
        info = w.tensors[name]
        if ("/" in name or info.dtype not in FLOAT_DTYPES or len(info.shape) != 2
                or is_norm(name) or name in site_parts
                or component_of(name) in (EMBEDDINGS, HEAD)):
            continue
        plan = _sub_plan(name, info.shape, seed)
        tensors[f"{SUB}{name}"] = w.block(name, plan.rows, plan.cols)
        tensors[f"{ROWS}{name}"] = plan.rows.astype(np.int64)
        tensors[f"{COLS}{name}"] = plan.cols.astype(np.int64)
        subs[name] = {"shape": list(info.shape), "transposed": plan.transposed,
                      "cut": plan.cut}
    coords = sketch_coordinates(sites[0].dim, SKETCH_DIM, seed) if sites else np.zeros(
        0, dtype=np.intp)
    for site in sites:
        sk = reference_sketch(w, site, coords)
        for part, vec in sk.parts.items():
            tensors[f"{PREFIX}{site.prefix}{part}"] = vec.astype(np.float16)
    tensors[f"{PREFIX}coords"] = coords.astype(np.int64)
    meta = {
        "format": FORMAT, "version": str(VERSION), "source": w.name, "seed": str(seed),
        "hashes": json.dumps(tw.hash_index(w), sort_keys=True),
        "quick": json.dumps(tw.quick_index(w), sort_keys=True),
        "vocab": json.dumps(sampled, sort_keys=True, ensure_ascii=False),
        "sites": json.dumps([{"prefix": s.prefix, "block": s.block, "expert": s.expert,
                              "parts": s.parts, "units": s.units, "dim": s.dim}
                             for s in sites], sort_keys=True),
        "subs": json.dumps(subs, sort_keys=True),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:  # readers see the old file or the new one, never half
        save_file(tensors, str(tmp), metadata=meta)
    return out


def _metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file already validated by ``read_header``."""
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def _field(meta: dict[str, str], key: str, where: str) -> Any:
    try:
        return json.loads(meta[key])
    except (KeyError, ValueError) as err:
        raise KaiError(f"fingerprint field {key!r} missing or not JSON ({err})",
                       where=where) from None


def _sites(raw: object, w: ModelWeights, where: str) -> list[MlpSite]:
    if not isinstance(raw, list):
        raise KaiError("fingerprint field 'sites' must be a list", where=where)
    out: list[MlpSite] = []
    for k, s in enumerate(raw):
        try:
            site = MlpSite(str(s["prefix"]), int(s["block"]),
                           None if s["expert"] is None else int(s["expert"]),
                           {str(p): str(n) for p, n in s["parts"].items()},
                           int(s["units"]), int(s["dim"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise KaiError(f"fingerprint sites[{k}] is malformed", where=where) from None
        for part in site.parts:
            info = w.tensors.get(f"{PREFIX}{site.prefix}{part}")
            if info is None or len(info.shape) != 2 or info.shape[0] != site.units \
                    or info.dtype not in FLOAT_DTYPES:
                raise KaiError(f"fingerprint sketch for {site.prefix}{part} missing or "
                               "malformed", where=where)
        out.append(site)
    return out


def is_fingerprint(path: Path) -> bool:
    """Whether ``path`` is a file carrying the fingerprint format marker (header only)."""
    if not path.is_file() or path.suffix != ".safetensors":
        return False
    try:
        read_header(path)
    except KaiError:
        return False
    return _metadata(path).get("format") == FORMAT


def load_reference(path: Path, *, trust_remote_code: bool = False) -> Reference:
    """Open a reference: a model folder (or weights file) or a fingerprint file."""
    path = Path(path)
    w = open_model(path, trust_remote_code=trust_remote_code)  # validates any header
    where = str(path)
    meta = _metadata(path) if path.is_file() else {}
    if meta.get("format") != FORMAT:
        vocab = model_vocab(w)
        return Reference(w, vocab, find_sites(w), fingerprint=False)
    if meta.get("version") not in READABLE_VERSIONS:
        raise KaiError(f"fingerprint format version {meta.get('version')!r} is not supported "
                       f"(this kaieval reads versions {', '.join(READABLE_VERSIONS)})",
                       where=where)
    hashes = _field(meta, "hashes", where)
    vocab = _field(meta, "vocab", where)
    if not (isinstance(hashes, dict) and all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in hashes.items())):
        raise KaiError("fingerprint field 'hashes' must map tensor names to hashes", where=where)
    if not (isinstance(vocab, dict) and all(isinstance(k, str) and isinstance(v, int)
                                            and not isinstance(v, bool) and v >= 0
                                            for k, v in vocab.items())):
        raise KaiError("fingerprint field 'vocab' must map tokens to row numbers", where=where)
    quick = _field(meta, "quick", where) if "quick" in meta else None
    if quick is not None and not (isinstance(quick, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in quick.items())):
        raise KaiError("fingerprint field 'quick' must map tensor names to hashes", where=where)
    sites = _sites(_field(meta, "sites", where), w, where)
    cinfo = w.tensors.get(f"{PREFIX}coords")
    if cinfo is None or cinfo.dtype != "I64" or len(cinfo.shape) != 1:
        raise KaiError("fingerprint has no valid kaifp.coords tensor", where=where)
    coords = np.frombuffer(np.ascontiguousarray(w.raw(f"{PREFIX}coords")).tobytes(),
                           dtype="<i8").astype(np.intp)
    dims = {s.dim for s in sites}
    if any(c < 0 for c in coords) or (dims and any(c >= min(dims) for c in coords)) or (
            sites and any(w.tensors[f"{PREFIX}{s.prefix}{p}"].shape[1] != len(coords)
                          for s in sites for p in s.parts)):
        raise KaiError("fingerprint coordinates do not fit its sketches", where=where)
    try:
        seed = int(meta.get("seed", ""))
    except ValueError:
        raise KaiError("fingerprint seed is not an integer", where=where) from None
    subs = _subs(_field(meta, "subs", where), w, where) if "subs" in meta else None
    return Reference(w, {str(k): int(v) for k, v in vocab.items()}, sites, fingerprint=True,
                     seed=seed, stored_hashes=dict(hashes), stored_quick=quick,
                     stored_coords=coords, subs=subs)


def _index(w: ModelWeights, name: str, bound: int, where: str) -> IntArray:
    info = w.tensors.get(name)
    if info is None or info.dtype != "I64" or len(info.shape) != 1:
        raise KaiError(f"fingerprint index {name!r} missing or malformed", where=where)
    idx = np.frombuffer(np.ascontiguousarray(w.raw(name)).tobytes(), dtype="<i8")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= bound):
        raise KaiError(f"fingerprint index {name!r} out of range 0..{bound - 1}", where=where)
    return idx.astype(np.intp)


def _subs(raw: object, w: ModelWeights, where: str) -> dict[str, StoredSub]:
    """Validate the stored sub-matrices: shapes, index ranges, data shape agree."""
    if not isinstance(raw, dict):
        raise KaiError("fingerprint field 'subs' must map tensor names to shapes", where=where)
    out: dict[str, StoredSub] = {}
    for name, spec in raw.items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if not (isinstance(name, str) and isinstance(shape, list) and len(shape) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                        for v in shape) and isinstance(spec.get("transposed"), bool)
                and isinstance(spec.get("cut"), bool)):
            raise KaiError(f"fingerprint subs entry {name!r} is malformed", where=where)
        rows = _index(w, f"{ROWS}{name}", shape[0], where)
        cols = _index(w, f"{COLS}{name}", shape[1], where)
        info = w.tensors.get(f"{SUB}{name}")
        if info is None or info.dtype not in FLOAT_DTYPES or info.shape != (len(rows),
                                                                              len(cols)):
            raise KaiError(f"fingerprint sub-matrix for {name!r} missing or mis-shaped",
                           where=where)
        out[name] = StoredSub((shape[0], shape[1]),
                              tw.NullPlan(rows, cols, spec["transposed"], spec["cut"]))
    return out
