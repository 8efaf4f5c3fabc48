"""The independence verdict: run the weight tests per component and reference, decide, record.

Decision rule (documented in docs/provenance.md):

* a component is significant against a reference when one of its informative
  tensors is a byte-identical copy, or when its p-value is significant after Holm
  correction across every (component, reference) pair. The p-value of a component
  is Fisher's combination of its same-position tensor correlations; for an MLP it
  is twice the smaller of that and the hidden-unit matching p-value
  (:mod:`kaieval.provenance.matching`, Fisher over a mixture's experts), whose
  block search (:mod:`kaieval.provenance.layers`) also says which reference block
  seeded it -- and the block's other tensors are then compared with that block;
* its effect size then says which kind of evidence it is -- copied, derived by
  training or co-adapted -- and the verdict (derived, partial, no_evidence,
  inconclusive) follows from the parameters each kind covers: both in
  :mod:`kaieval.provenance.evidence_kind`.

Beside the weight lines, one ``tokenizer`` line per reference gives the tokenizer
lineage verdict of :mod:`kaieval.provenance.tokenizer_lineage` (the code of ``kai
tokenizer-lineage``) on the two folders' tokenizers, read by :mod:`kaieval.tokenizer`
in whatever format they ship; "not measured" where a side has none it can read. A
shared tokenizer is not weight reuse: these lines join neither the Holm correction
nor the decision above.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from threadpoolctl import threadpool_limits

from kaieval.errors import KaiError
from kaieval.hashing import sha256_file
from kaieval.provenance import weight_tests as tw
from kaieval.provenance.compare import Finding, compare_reference
from kaieval.provenance.evidence_kind import (
    IDENTICAL_EFFECT,
    WHOLE_MODEL_SHARE,
    EffectThresholds,
    decide,
)
from kaieval.provenance.fingerprint import load_reference
from kaieval.provenance.heads import SCREEN_COORDS
from kaieval.provenance.layers import SiteFinding, block_mapping
from kaieval.provenance.matching import SKETCH_DIM, UNIT_CAP, find_sites
from kaieval.provenance.safetensors_io import ModelWeights, open_model
from kaieval.provenance.tensor_groups import (
    component_of,
    group_by_component,
)
from kaieval.provenance.tokenizer_lineage import (
    BASELINE_FILE,
    compare_loaded,
    lineage_evidence,
    lineage_not_measured,
    load_baseline,
)
from kaieval.provenance.verdict_evidence import evidence_list
from kaieval.provenance.vocab import model_vocab
from kaieval.records import ComponentEvidence, IndependenceVerdict
from kaieval.tokenizer import TokenizerFile, load_tokenizer

PERMUTATIONS = 999
PERMUTATION_SEED = 20250804

DETECTION_POWER: str | None = None
"""What the calibration suite measured, quoted in a ``no_evidence`` summary. ``None`` means:
read the bundled summary (``provenance/data/calibration.json``, written by
``benchmarks/provenance_calibration.py``); ``check_independence(detection_power=...)``
overrides both."""

CALIBRATION_SUMMARY = Path(__file__).parent / "data" / "calibration.json"


def bundled_thresholds() -> EffectThresholds:
    """The effect-size thresholds of the bundled calibration summary (empty if none)."""
    return EffectThresholds.from_summary(CALIBRATION_SUMMARY)


def bundled_detection_power() -> str | None:
    """The calibration suite's measured rates as one sentence, or ``None`` if not bundled.

    The summary records which engine code it measured; when the code has changed since, the
    sentence says so rather than passing old rates off as this code's.
    """
    from kaieval.provenance.calibration import code_fingerprint, measured_rates

    if not CALIBRATION_SUMMARY.is_file():
        return None
    try:
        rates = measured_rates(CALIBRATION_SUMMARY)
    except KaiError:
        return None
    text = rates.sentence()
    if rates.code_sha256 != code_fingerprint():
        text += f" (measured on engine code {rates.code_sha256[:19]}…, not this version)"
    return text


def _input_hashes(label: str, w: ModelWeights) -> dict[str, str]:
    base = w.root if w.root.is_dir() else w.root.parent
    files = list(w.weight_files) + [base / n for n in ("tokenizer.json", "config.json")
                                    if w.root.is_dir() and (base / n).is_file()]
    return {f"{label}/{p.relative_to(base).as_posix()}": sha256_file(p) for p in files}


class _BackgroundHashes:
    """Input-file hashes computed on one background thread while the tests run.

    The record must name every input byte, so every weight file is read and hashed once.
    File reads and SHA-256 release the GIL, so on a cold page cache this I/O overlaps the
    (CPU-bound) tests instead of adding to them. A daemon thread: an error elsewhere does
    not wait for the hashing to finish.
    """

    def __init__(self) -> None:
        self._todo: queue.Queue[tuple[str, ModelWeights] | None] = queue.Queue()
        self._done: list[dict[str, str] | BaseException] = []
        self._thread = threading.Thread(target=self._run, name="kai-input-hashes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._todo.get()) is not None:
            try:
                self._done.append(_input_hashes(*job))
            except BaseException as e:  # re-raised in the caller's thread by result()
                self._done.append(e)

    def add(self, label: str, w: ModelWeights) -> None:
        self._todo.put((label, w))

    def result(self) -> dict[str, str]:
        """Every queued model's hashes, in the order they were added."""
        self._todo.put(None)
        self._thread.join()
        out: dict[str, str] = {}
        for item in self._done:
            if isinstance(item, BaseException):
                raise item
            out.update(item)
        return out


def _moved_blocks(found: list[SiteFinding], alpha: float) -> dict[int, int]:
    """Candidate block -> reference block for dense MLPs the search placed elsewhere."""
    out: dict[int, int] = {}
    for s in found:
        if s.expert is None and s.ref_site is not None and s.log_p <= math.log(alpha) \
                and s.ref_site.block != s.block:
            out[s.block] = s.ref_site.block
    return out


def _model_tokenizer(w: ModelWeights, *, fingerprint: bool = False,
                     ) -> tuple[TokenizerFile | None, str]:
    """The tokenizer of a model folder (any format :mod:`kaieval.tokenizer` reads), or why not.

    An unreadable tokenizer does not stop the weight tests: its one-line error becomes
    the tokenizer line's "not measured" reason.
    """
    if fingerprint:
        return None, "a fingerprint keeps no tokenizer files"
    if not w.root.is_dir():
        return None, "a single weights file has no tokenizer folder"
    try:
        return load_tokenizer(w.root), ""
    except KaiError as e:
        return None, str(e)


def _tokenizer_line(cand: tuple[TokenizerFile | None, str],
                    ref: tuple[TokenizerFile | None, str], name: str, alpha: float,
                    baseline: dict[str, list[float]]) -> ComponentEvidence:
    if cand[0] is None:
        return lineage_not_measured(name, f"candidate: {cand[1]}")
    if ref[0] is None:
        return lineage_not_measured(name, f"reference {name}: {ref[1]}")
    return lineage_evidence(compare_loaded(cand[0], ref[0], alpha=alpha, baseline=baseline),
                            name)


def _tokenizer_hashes(label: str, w: ModelWeights, tok: TokenizerFile | None,
                      ) -> dict[str, str]:
    """The tokenizer files read (``tokenizer.json`` is hashed with the weights already)."""
    if tok is None or not w.root.is_dir():
        return {}
    return {f"{label}/{p.relative_to(w.root).as_posix()}": sha256_file(p) for p in tok.files
            if p.is_file() and p.resolve().is_relative_to(w.root.resolve())}


def _tick(progress: Callable[[int, int, str], None], done: list[int], total: int,
          ref_name: str, _k: int, component: str) -> None:
    """One component's tests are in: tell ``progress`` (done so far, total, label)."""
    done[0] += 1
    progress(done[0], total, f"{component} vs {ref_name}")


_F = TypeVar("_F", bound=Callable[..., Any])


def _one_blas_thread(fn: _F) -> _F:
    """Run ``fn`` with BLAS limited to one thread.

    Why: the products here are small (at most 2048 x 512 per tensor), so a second BLAS
    thread mostly spins -- measured on the 2 GB benchmark it burnt 9 s of CPU for no
    gain in wall time -- while the input-hashing thread needs that core.
    """
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return cast(_F, run)


@_one_blas_thread
def check_independence(candidate: Path, references: Sequence[Path], *, alpha: float = 0.01,
                       stage_id: str, team_id: str, trust_remote_code: bool = False,
                       permutations: int = PERMUTATIONS,
                       seed: int = PERMUTATION_SEED,
                       progress: Callable[[int, int, str], None] | None = None,
                       detection_power: str | None = None,
                       reference_names: Sequence[str] | None = None,
                       effect_thresholds: EffectThresholds | None = None,
                       ) -> IndependenceVerdict:
    """Test whether ``candidate``'s weights derive from any of ``references`` (measured).

    References are model folders or fingerprint files
    (:func:`kaieval.provenance.fingerprint.write_fingerprint`).
    ``progress(done, total, label)`` is called after each component comparison so a
    CLI can show a rich progress bar without this module importing one.
    ``detection_power`` (default :data:`DETECTION_POWER`) is quoted in a
    ``no_evidence`` summary: what the calibration suite measured.
    ``reference_names`` (one per reference) replace the names read from the files, so a
    verdict names registry references as the registry does.
    ``effect_thresholds`` (default: the bundled calibration summary's) separate derived by
    training from co-adapted components.
    """
    if not references:
        raise KaiError("no reference models given to test independence against",
                       where=str(candidate))
    if not 0.0 < alpha < 1.0:
        raise KaiError(f"alpha must be in (0, 1), got {alpha}", where="check_independence")
    cand = open_model(Path(candidate), trust_remote_code=trust_remote_code)
    hashing = _BackgroundHashes()  # started first: it reads every byte, the rest samples
    hashing.add("candidate", cand)
    groups = group_by_component(cand.names())
    cand_quick = tw.quick_index(cand)
    cand_full: dict[str, str] = {}  # full hashes, computed only where quick hashes collide
    cand_vocab = model_vocab(cand)
    cand_sites = find_sites(cand)
    cand_tok = _model_tokenizer(cand)
    tok_baseline = load_baseline()
    tok_lines: list[ComponentEvidence] = []
    tok_hashes = _tokenizer_hashes("candidate", cand, cand_tok[0])
    findings: list[Finding] = []
    ref_names: list[str] = []
    maps: dict[str, str] = {}
    block_map: list[str] = []
    if reference_names is not None and len(reference_names) != len(references):
        raise KaiError("one name per reference", where="check_independence")
    for k, path in enumerate(references):
        ref = load_reference(Path(path), trust_remote_code=trust_remote_code)
        given = reference_names[k] if reference_names is not None else ref.name
        name = given if given not in ref_names else f"{given}#{len(ref_names)}"
        ref_names.append(name)
        hashing.add(f"reference/{name}", ref.weights)
        ref_tok = _model_tokenizer(ref.weights, fingerprint=ref.fingerprint)
        tok_lines.append(_tokenizer_line(cand_tok, ref_tok, name, alpha, tok_baseline))
        tok_hashes.update(_tokenizer_hashes(f"reference/{name}", ref.weights, ref_tok[0]))
        ref_quick = ref.quick_hashes()
        if ref_quick is None:  # a fingerprint without quick hashes: compare every tensor
            want, ref_full = list(cand_quick), ref.hashes()
        else:
            want, ref_want = tw.collisions(cand_quick, ref_quick)
            ref_full = ref.hashes(ref_want) if ref_want else {}
        missing = [n for n in want if n not in cand_full]
        cand_full.update(tw.hash_index(cand, missing))
        copies = tw.exact_reuse({n: cand_full[n] for n in want if n in cand_full}, ref_full)
        vocabs = (cand_vocab, ref.vocab) if cand_vocab is not None and ref.vocab else None
        comps = list(groups.items())
        before = len(findings)
        tick = None if progress is None else functools.partial(
            _tick, progress, [before], len(groups) * len(references), name)
        got = compare_reference(cand, ref, name, comps, cand_sites, vocabs, seed=seed,
                                alpha=alpha, permutations=permutations,
                                moved_blocks=_moved_blocks, progress=tick)
        if got.rmap is not None:
            maps[name] = got.rmap.describe()
        found, kin = got.found, got.kinship
        block_map += [f"{name}: {line}" for line in block_mapping(found, math.log(alpha))]
        for (comp, _), f in zip(comps, got.findings, strict=True):
            f.copies = [c for c in copies if component_of(c.candidate) == comp]
            f.copied_parameters = sum(math.prod(cand.tensors[n].shape)
                                      for n in {c.candidate for c in f.copies})
            f.sites = [s for s in found if f"block.{s.block}.mlp" == comp]
            f.kinship = [f"{a}/{b} log10 p={tw.log10(lp):.1f}" for a, b, lp in kin
                         if a.startswith(f"block {comp.split('.')[1]} ")
                         and lp <= math.log(alpha / len(kin))] \
                if comp.endswith(".mlp") else []  # Bonferroni over all expert pairs
            findings.append(f)
    tested = [f for f in findings if f.log_p is not None]
    for f, rej in zip(tested, tw.holm([f.log_p for f in tested if f.log_p is not None], alpha),
                      strict=True):
        f.significant = rej
    power = detection_power if detection_power is not None else DETECTION_POWER
    if power is None:
        power = bundled_detection_power()
    thresholds = effect_thresholds if effect_thresholds is not None else bundled_thresholds()
    params = {comp: sum(math.prod(cand.tensors[n].shape) for n in names)
              for comp, names in groups.items()}
    decision = decide(evidence_list(findings, params) + tuple(tok_lines), ref_names,
                      alpha=alpha, thresholds=thresholds, power=power)
    tests = ["exact_reuse", "weight_correlation", "norm_correlation", "embedding_shared_vocab",
             "hidden_unit_matching", "attention_head_matching"]
    settings = {"alpha": alpha, "tests": tests, "permutation_seed": seed,
                "permutations": permutations, "matrix_null": "unit_permutation",
                "unit_clt_min": tw.UNIT_CLT_MIN,
                "min_hash_numel": tw.MIN_HASH_NUMEL, "quick_hash_bytes": tw.QUICK_BYTES,
                "multiplicity": "holm",
                "combine": "fisher", "whole_model_share": WHOLE_MODEL_SHARE,
                "effect_thresholds_source": thresholds.source,
                "trust_remote_code": trust_remote_code,
                "matching": {"unit_cap": UNIT_CAP, "sketch_dim": SKETCH_DIM, "seed": seed,
                             "statistics": ["identity_order_spearman", "gate_up_agreement"],
                             "residual_maps": maps},
                "head_matching": {"sketch_coords": SCREEN_COORDS,
                                  "descriptors": ["query_key_circuit", "output_value_circuit"],
                                  "statistics": ["circuit_matching_agreement"],
                                  "copied_at_similarity": IDENTICAL_EFFECT},
                "tokenizer_lineage": {"null": BASELINE_FILE, "alpha": alpha,
                                      "in_verdict": False}}
    return IndependenceVerdict(
        stage_id=stage_id, team_id=team_id, source="measured",
        input_hashes={**hashing.result(), **tok_hashes},
        settings=settings, verdict=decision.verdict, references=tuple(ref_names), alpha=alpha,
        evidence=decision.evidence, summary=decision.sentence, sentence=decision.sentence,
        block_map=tuple(block_map), shares=decision.shares,
        effect_thresholds=dict(thresholds.by_type))
