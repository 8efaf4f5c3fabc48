"""The one internal task definition both YAML dialects (ours, lm-eval's) are parsed into.

Frozen and plain so it can be hashed into the cache key: two files that mean the
same task produce the same ``TaskConfig`` and hence the same cached answers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from kaieval.bench.api import OutputType

Sampler = Literal["default", "first_n", "per_doc"]


@dataclass(frozen=True)
class MetricConfig:
    """A metric and its options (exact_match: ignore_case, ignore_punctuation, strip...).

    ``filter`` names the answer-extraction pipeline (``TaskConfig.filters``) whose output
    the metric scores; the reported key is then ``metric,filter`` as in lm-eval's tables
    (GSM8K reports ``exact_match,strict-match`` and ``exact_match,flexible-extract``).
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()
    filter: str = ""

    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def key(self) -> str:
        return f"{self.name},{self.filter}" if self.filter else self.name


@dataclass(frozen=True)
class RegexFilter:
    """lm-eval's regex filter then take_first: what a generation is reduced to before scoring."""

    pattern: str
    group_select: int = 0
    fallback: str = "[invalid]"


@dataclass(frozen=True)
class FilterConfig:
    """One named answer-extraction pipeline applied to a generation before scoring.

    ``kind``: ``regex`` (lm-eval's regex filter then take_first) or ``choice_cascade``
    (KorMedMCQA's answer-letter cascade from the paper's appendix B).
    """

    name: str
    kind: Literal["regex", "choice_cascade"] = "regex"
    pattern: str = ""
    group_select: int = 0
    fallback: str = "[invalid]"


@dataclass(frozen=True)
class LocalSplit:
    """One split read from a local file (JSONL, JSON, CSV, Parquet)."""

    path: Path


@dataclass(frozen=True)
class HFSplit:
    """One split of a Hugging Face dataset; only loaded online with ``datasets`` installed."""

    path: str
    name: str | None
    split: str
    revision: str = "unpinned-unknown"


Split = LocalSplit | HFSplit


@dataclass(frozen=True)
class Gather:
    """Build a choices list from separate answer columns, shuffled by a seed per document.

    Hub sets such as GPQA store 'Correct Answer' and 'Incorrect Answer 1..3'; the
    option order must be random (else the answer is always A) yet reproducible,
    so each document's order comes from ``random.Random(f"{seed}:{doc key}")``.
    """

    into: str  # the field that receives the list of options
    correct: str  # column holding the right answer
    others: tuple[str, ...]  # columns holding the wrong answers
    answer: str  # the field that receives the right answer's index
    seed: int = 1234
    key: str | None = None  # column naming the doc for its shuffle; default: row index
    clean: bool = False  # lm-eval's GPQA text clean-up (strip, ' [title]' -> '. ', '  ' -> ' ')


@dataclass(frozen=True)
class RowMap:
    """How a hub dataset's rows become documents in the task's own field layout."""

    fields: tuple[tuple[str, str], ...] = ()  # (our field, hub column) copies
    gather: Gather | None = None


@dataclass(frozen=True)
class TaskConfig:
    name: str
    source_file: Path
    dialect: Literal["kaieval", "lm_eval"]
    output_type: OutputType
    eval_split: Split
    fewshot_split: Split | None  # None: sample from the eval split itself
    exclude_self: bool  # drop the doc being evaluated from its own few-shot draw
    doc_to_text: Any
    doc_to_choice: Any = None
    doc_to_target: Any = None
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    sampler: Sampler = "default"
    fewshot_seed: int = 1234
    stop: tuple[str, ...] = ()
    max_tokens: int = 256
    metrics: tuple[MetricConfig, ...] = ()
    regex_filter: RegexFilter | None = None
    circular: bool = False
    rotate_fields: tuple[str, ...] = ()  # doc fields holding the options, for CircularEval
    instruction_fields: tuple[str, str] | None = None  # (ids field, kwargs field), IFEval
    answer_prefix: str = "Answer:"  # for multiple_choice_generate prompts
    chat: bool = False
    id_field: str | None = None
    description: str = ""
    language: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    row_map: RowMap | None = None  # applied to every row read (hub sources only)
    # --- reference-definition options (defaults keep older task hashes unchanged) ---
    preamble: str = ""  # lm-eval's `description`: text (template) before the few-shot examples
    fewshot_text: Any = None  # lm-eval's fewshot_config.doc_to_text (None: doc_to_text)
    fewshot_target: Any = None  # lm-eval's fewshot_config.doc_to_target (None: doc_to_target)
    process: str = ""  # a named document processor (kaieval.bench.tasks.process)
    row_filter: str = ""  # template; a row is kept when it renders "True"
    select: tuple[str, str] | None = None  # (field, value): the bundled sample's subset rows
    filters: tuple[FilterConfig, ...] = ()  # named extraction pipelines for metric.filter
    variant: str = ""  # the catalogue variant this config was built from ("" = default)
    instruction_checks: str = "script"  # IFEval predicates: "script" or "lm-eval" (reference)

    def canonical(self) -> dict[str, Any]:
        """JSON-able content (paths made relative) for the task hash."""
        data = asdict(self)
        data.pop("source_file")
        data.pop("extra")
        if data.get("row_map") is None:
            data.pop("row_map", None)  # keeps the hashes of tasks without a mapping stable
        defaults = {"preamble": "", "fewshot_text": None, "fewshot_target": None,
                    "process": "", "row_filter": "", "select": None, "filters": (),
                    "variant": "", "instruction_checks": "script"}
        for key, default in defaults.items():
            if key in data and data[key] == default:
                data.pop(key, None)
        for m in data.get("metrics", []):
            if m.get("filter") == "":
                m.pop("filter")
        for key in ("eval_split", "fewshot_split"):
            split = data.get(key)
            if isinstance(split, dict) and "path" in split and isinstance(split["path"], Path):
                split["path"] = split["path"].name
        return data
