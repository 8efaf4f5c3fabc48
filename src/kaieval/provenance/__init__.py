"""Independence engine: were a model's weights initialised and trained by the team?

Public API (the rest of the package is private detail):

* :func:`open_model` -- validating, streaming safetensors reader (refuses pickles and code);
* :func:`component_of` -- tensor name -> component (embeddings, block.<i>.attention, ...);
* :func:`check_independence` -- the measured :class:`~kaieval.records.IndependenceVerdict`.

Importing this package loads numpy and scipy only: no torch, no transformers.
"""

from kaieval.provenance.components import component_of, group_by_component, is_norm
from kaieval.provenance.safetensors_io import ModelWeights, TensorInfo, open_model, read_header
from kaieval.provenance.tests_weights import (
    CorrelationResult,
    ExactMatch,
    FisherResult,
    correlation_test,
    exact_reuse,
    fisher_combine,
    hash_index,
    holm,
)
from kaieval.provenance.verdict import check_independence
from kaieval.provenance.vocab import read_vocab, shared_rows

__all__ = [
    "CorrelationResult", "ExactMatch", "FisherResult", "ModelWeights", "TensorInfo",
    "check_independence", "component_of", "correlation_test", "exact_reuse", "fisher_combine",
    "group_by_component", "hash_index", "holm", "is_norm", "open_model", "read_header",
    "read_vocab", "shared_rows",
]
