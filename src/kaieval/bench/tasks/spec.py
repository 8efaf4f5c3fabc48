"""Our task YAML schema, ``kaieval/task/v1``: validated with pydantic, errors as file:line.

A task names where its documents live (a local file, and/or a Hugging Face id with a
pinned revision), how a document becomes a prompt (Jinja2), its choices and target
(same field/template/literal rules as lm-eval), few-shot count and seeded sampling,
generation limits, metrics, and the CircularEval / answer-regex / instruction options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kaieval.bench.api import OutputType
from kaieval.bench.tasks.config import (
    Gather,
    HFSplit,
    LocalSplit,
    MetricConfig,
    RegexFilter,
    RowMap,
    TaskConfig,
)
from kaieval.bench.tasks.data import resolve_data_path
from kaieval.errors import KaiError
from kaieval.spec.yamlload import LoadedYaml, parse_model

SCHEMA = "kaieval/task/v1"
_IFEVAL_METRICS = {"prompt_level_strict_acc", "inst_level_strict_acc",
                   "prompt_level_loose_acc", "inst_level_loose_acc"}
KNOWN_METRICS = frozenset({"acc", "acc_norm", "exact_match", "numeric_match",
                           *_IFEVAL_METRICS})
_MC_METRICS = {"acc", "acc_norm"}
_GEN_METRICS = {"exact_match", "numeric_match", *_IFEVAL_METRICS}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatherSpec(_Strict):
    """Options gathered from separate hub columns (GPQA), shuffled per doc by a seed."""

    into: str = "choices"
    correct: str
    others: list[str] = Field(min_length=1)
    answer: str = "answer"
    seed: int = 1234
    key: str | None = None
    clean: bool = False


class HFSource(_Strict):
    """The public dataset, and how its rows differ from the bundled sample's layout.

    ``fields`` copies hub columns to the field names the templates use (ours: theirs);
    ``gather`` builds an options list; ``prompt`` / ``choices`` / ``target`` /
    ``options`` replace the task's own when the hub's layout needs other templates.
    """

    path: str
    name: str | None = None
    split: str = "test"
    fewshot_split: str | None = None
    revision: str = "unpinned-unknown"  # a commit sha pins it; unknown is recorded as such
    fields: dict[str, str] = Field(default_factory=dict)
    gather: GatherSpec | None = None
    prompt: str | None = None
    choices: str | list[str] | None = None
    target: str | int | None = None
    options: list[str] | str | None = None


class DataSpec(_Strict):
    path: str | None = None  # local JSONL / JSON / CSV / Parquet, relative to the YAML
    fewshot_path: str | None = None  # few-shot pool; default: the eval docs minus the doc
    hf: HFSource | None = None
    id_field: str | None = None


class FewshotSpec(_Strict):
    sampler: Literal["per_doc", "first_n", "default"] = "per_doc"
    seed: int = 1234


class GenerationSpec(_Strict):
    stop: list[str] = Field(default_factory=lambda: ["\n\n"])
    max_tokens: int = Field(256, ge=1)
    chat: bool = False


class MetricSpec(_Strict):
    name: str
    ignore_case: bool = False
    ignore_punctuation: bool = False
    strip: bool = False
    regexes_to_ignore: list[str] = Field(default_factory=list)


class RegexSpec(_Strict):
    pattern: str
    group: int = 0
    fallback: str = "[invalid]"


class InstructionSpec(_Strict):
    ids_field: str = "instruction_id_list"
    kwargs_field: str = "kwargs"


class TaskSpec(_Strict):
    schema_: Literal["kaieval/task/v1"] = Field(alias="schema")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    language: str = ""
    output_type: OutputType = "multiple_choice"
    data: DataSpec
    prompt: str
    choices: str | list[str] | None = None
    target: str | int = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = Field(0, ge=0)
    fewshot: FewshotSpec = Field(default_factory=FewshotSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    metrics: list[str | MetricSpec] = Field(default_factory=list)
    answer_regex: str | RegexSpec | None = None
    circular: bool = False
    options: list[str] | str | None = None  # the doc field(s) CircularEval rotates
    instructions: InstructionSpec | None = None
    answer_prefix: str = "Answer:"

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: list[str | MetricSpec]) -> list[str | MetricSpec]:
        for m in value:
            name = m if isinstance(m, str) else m.name
            if name not in KNOWN_METRICS:
                raise ValueError(f"unknown metric {name!r} (known: "
                                 + ", ".join(sorted(KNOWN_METRICS)) + ")")
        return value


def _metric_configs(spec: TaskSpec) -> tuple[MetricConfig, ...]:
    if not spec.metrics:
        default = ["acc", "acc_norm"] if spec.output_type == "multiple_choice" else (
            ["acc"] if spec.output_type == "multiple_choice_generate" else ["exact_match"])
        return tuple(MetricConfig(m) for m in default)
    out = []
    for m in spec.metrics:
        if isinstance(m, str):
            out.append(MetricConfig(m))
        else:
            opts: list[tuple[str, Any]] = [("ignore_case", m.ignore_case),
                                           ("ignore_punctuation", m.ignore_punctuation),
                                           ("strip", m.strip),
                                           ("regexes_to_ignore", tuple(m.regexes_to_ignore))]
            out.append(MetricConfig(m.name, tuple(opts)))
    return tuple(out)


def parse_ours(doc: LoadedYaml, *, source: str | None = None) -> TaskConfig:
    """Validate a ``kaieval/task/v1`` YAML into a TaskConfig (local data unless source='hf')."""
    spec = parse_model(TaskSpec, doc)
    where = str(doc.path)
    metrics = _metric_configs(spec)
    allowed = _MC_METRICS if spec.output_type == "multiple_choice" else (
        {"acc"} if spec.output_type == "multiple_choice_generate" else _GEN_METRICS)
    for m in metrics:
        if m.name not in allowed:
            raise KaiError(f"metrics: {m.name!r} does not apply to output_type "
                           f"{spec.output_type}", where=doc.where(("metrics",)))
    if spec.output_type != "generate_until" and spec.choices is None:
        raise KaiError("choices: required for multiple choice tasks",
                       where=doc.where(("choices",)))
    if spec.circular and spec.output_type == "generate_until":
        raise KaiError("circular: needs a multiple choice task", where=doc.where(("circular",)))
    use_hf = source == "hf" or (source is None and spec.data.path is None)
    eval_split: LocalSplit | HFSplit
    fewshot_split: LocalSplit | HFSplit | None = None
    prompt, choices, target, options = spec.prompt, spec.choices, spec.target, spec.options
    row_map: RowMap | None = None
    if use_hf:
        hf = spec.data.hf
        if hf is None:
            raise KaiError("data.hf: this task has no Hugging Face source",
                           where=doc.where(("data",)))
        prompt = hf.prompt if hf.prompt is not None else prompt
        choices = hf.choices if hf.choices is not None else choices
        target = hf.target if hf.target is not None else target
        options = hf.options if "options" in hf.model_fields_set else options
        row_map = _row_map(hf)
        eval_split = HFSplit(hf.path, hf.name, hf.split, hf.revision)
        if hf.fewshot_split:
            fewshot_split = HFSplit(hf.path, hf.name, hf.fewshot_split, hf.revision)
    else:
        if spec.data.path is None:
            raise KaiError("data.path: this task has no local data", where=doc.where(("data",)))
        eval_split = LocalSplit(resolve_data_path(spec.data.path, doc.path.parent,
                                                  where=doc.where(("data", "path"))))
        if spec.data.fewshot_path:
            fewshot_split = LocalSplit(resolve_data_path(
                spec.data.fewshot_path, doc.path.parent,
                where=doc.where(("data", "fewshot_path"))))
    regex: RegexFilter | None = None
    if isinstance(spec.answer_regex, str):
        regex = RegexFilter(spec.answer_regex)
    elif spec.answer_regex is not None:
        regex = RegexFilter(spec.answer_regex.pattern, spec.answer_regex.group,
                            spec.answer_regex.fallback)
    rotate = (options,) if isinstance(options, str) else tuple(options or ())
    ins = spec.instructions
    if ins is None and any(m.name in _IFEVAL_METRICS for m in metrics):
        raise KaiError("instructions: required by the instruction-following metrics",
                       where=where)
    return TaskConfig(
        name=spec.name, source_file=doc.path, dialect="kaieval", output_type=spec.output_type,
        eval_split=eval_split, fewshot_split=fewshot_split, exclude_self=fewshot_split is None,
        doc_to_text=prompt, doc_to_choice=choices,
        doc_to_target=target, target_delimiter=spec.target_delimiter,
        fewshot_delimiter=spec.fewshot_delimiter, num_fewshot=spec.num_fewshot,
        sampler=spec.fewshot.sampler, fewshot_seed=spec.fewshot.seed,
        stop=tuple(spec.generation.stop), max_tokens=spec.generation.max_tokens,
        metrics=metrics, regex_filter=regex, circular=spec.circular, rotate_fields=rotate,
        instruction_fields=(ins.ids_field, ins.kwargs_field) if ins else None,
        answer_prefix=spec.answer_prefix, chat=spec.generation.chat,
        id_field=spec.data.id_field, description=spec.description, language=spec.language,
        extra={"hf": spec.data.hf.model_dump() if spec.data.hf else None,
               "local_path": spec.data.path},
        row_map=row_map,
    )


def _row_map(hf: HFSource) -> RowMap | None:
    if not hf.fields and hf.gather is None:
        return None
    g = hf.gather
    gather = None if g is None else Gather(
        into=g.into, correct=g.correct, others=tuple(g.others), answer=g.answer, seed=g.seed,
        key=g.key, clean=g.clean)
    return RowMap(fields=tuple(sorted(hf.fields.items())), gather=gather)


def is_ours(data: Any) -> bool:
    return isinstance(data, dict) and "schema" in data


def check_schema(doc: LoadedYaml) -> None:
    if doc.data.get("schema") != SCHEMA:
        raise KaiError(f"schema: expected {SCHEMA!r}, got {doc.data.get('schema')!r}",
                       where=doc.where(("schema",)))


def spec_path_hint(path: Path) -> str:
    return f"{path} (a kaieval/task/v1 file needs `schema: {SCHEMA}`)"
