"""The benchmark engine's contracts: requests, responses, backends, tasks.

Three parts meet here and nowhere else: a *task* turns documents into requests
and responses into per-document metric values; a *backend* answers requests
(one small Protocol, registered lazily so the core imports without torch); the
*engine* batches, caches and logs. Keeping these types plain and frozen is what
lets a rerun reuse cached answers and a new metric re-score without inference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

OutputType = Literal["multiple_choice", "generate_until", "multiple_choice_generate"]


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """log P(continuation | context), summed over the continuation's tokens.

    Tokenisation follows lm-evaluation-harness: trailing spaces of the context
    move to the continuation, the pair is encoded whole and the continuation is
    the tail of that encoding (so the numbers match lm-eval's).
    """

    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikelihoodResponse:
    logprob: float  # sum of log-probabilities of the continuation tokens (nats)
    greedy: bool  # every continuation token was the argmax
    n_tokens: int


@dataclass(frozen=True)
class GenerationRequest:
    """Greedy continuation of ``context`` until a stop string or ``max_tokens``."""

    context: str
    stop: tuple[str, ...] = ()
    max_tokens: int = 256
    chat: bool = False  # send as one user message through the chat template / chat endpoint


@dataclass(frozen=True)
class GenerationResponse:
    text: str


Request = LoglikelihoodRequest | GenerationRequest
Response = LoglikelihoodResponse | GenerationResponse


@runtime_checkable
class Backend(Protocol):
    """A model that answers requests. Implementations: hf (local), openai (HTTP), vllm."""

    name: str

    def fingerprint(self) -> str:
        """Stable id of the model *and* every setting that can change an answer (weights hash,
        dtype, chat template hash, endpoint model name); keys the request cache."""
        ...

    def describe(self) -> dict[str, Any]:
        """Settings to record in the run record (backend, dtype, device, batch size...)."""
        ...

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]
                      ) -> list[LoglikelihoodResponse]:
        """One response per request, in order. Must not depend on batch size."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        """One response per request, in order (greedy)."""
        ...


@dataclass(frozen=True)
class Doc:
    """One benchmark item after loading: its id and raw fields."""

    doc_id: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class DocRequests:
    """What one document needs from the model: either LL requests (one per choice, in
    choice order) or a single generation request; plus what scoring needs to know."""

    doc: Doc
    requests: tuple[Request, ...]
    prompt: str  # the full rendered prompt (few-shot prefix included), for the sample log
    choices: tuple[str, ...] = ()
    target: str | int = ""  # index into choices for multiple choice, answer text otherwise
    meta: Mapping[str, Any] = field(default_factory=dict)  # e.g. circular rotation


@dataclass(frozen=True)
class DocScore:
    """Per-document outcome, written to the sample log."""

    doc_id: str
    prompt_hash: str
    metrics: Mapping[str, float]
    prediction: str | int
    target: str | int
    loglikelihoods: tuple[float, ...] = ()
    generation: str | None = None
    # per-item values of metrics that aggregate over items inside a doc, not over docs
    # (IFEval's instruction level: the mean over all instructions of all prompts)
    item_values: Mapping[str, tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSummary:
    """An aggregate with its uncertainty: value, standard error, bootstrap 95 % CI."""

    value: float
    stderr: float
    ci_low: float
    ci_high: float
    n: int


class Task(Protocol):
    """A loaded, validated task (ours or an lm-eval YAML)."""

    name: str
    output_type: OutputType
    metrics: tuple[str, ...]

    def task_hash(self) -> str:
        """Hash of the task definition and its data: keys the cache with the request."""
        ...

    def dataset_hashes(self) -> dict[str, str]:
        ...

    def docs(self, limit: int | None = None) -> list[Doc]:
        ...

    def build(self, doc: Doc, num_fewshot: int | None = None) -> list[DocRequests]:
        """Requests for one document (several with CircularEval rotation)."""
        ...

    def score(self, built: Sequence[DocRequests], responses: Sequence[Sequence[Response]]
              ) -> DocScore:
        """Metric values for one document from its requests' responses."""
        ...

    def aggregate(self, scores: Sequence[DocScore]) -> dict[str, MetricSummary]:
        ...
