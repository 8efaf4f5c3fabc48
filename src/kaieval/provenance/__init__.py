"""Independence engine: were a model's weights initialised and trained by the team?

Public API (the rest of the package is private detail):

* :func:`open_model` -- validating, streaming safetensors reader (refuses pickles and code);
* :func:`component_of` -- tensor name -> component (embeddings, block.<i>.attention, ...);
* :func:`check_independence` -- the measured :class:`~kaieval.records.IndependenceVerdict`;
* :func:`write_fingerprint` / :func:`load_reference` -- compact reference fingerprints.

Importing this package loads numpy and scipy only: no torch, no transformers.
"""

from kaieval.provenance.align import ResidualMap, estimate_map
from kaieval.provenance.fingerprint import (
    Reference,
    is_fingerprint,
    load_reference,
    write_fingerprint,
)
from kaieval.provenance.layers import SiteFinding, search_sites
from kaieval.provenance.matching import MatchResult, MlpSite, find_sites, match
from kaieval.provenance.safetensors_io import ModelWeights, open_model
from kaieval.provenance.tensor_groups import component_of, group_by_component, is_norm
from kaieval.provenance.verdict import check_independence
from kaieval.provenance.vocab import read_vocab, shared_rows
from kaieval.provenance.weight_tests import (
    CorrelationResult,
    ExactMatch,
    FisherResult,
    correlation_test,
    exact_reuse,
    fisher_combine,
    hash_index,
    holm,
)
from kaieval.safetensors_header import TensorInfo, read_header

__all__ = [
    "CorrelationResult", "ExactMatch", "FisherResult", "MatchResult", "MlpSite", "ModelWeights",
    "Reference", "ResidualMap", "SiteFinding", "TensorInfo", "check_independence",
    "component_of", "correlation_test", "estimate_map", "exact_reuse", "find_sites",
    "fisher_combine", "group_by_component", "hash_index", "holm", "is_fingerprint", "is_norm",
    "load_reference", "match", "open_model", "read_header", "read_vocab", "search_sites",
    "shared_rows", "write_fingerprint",
]
