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
    FilterConfig,
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
KNOWN_METRICS = frozenset({"acc", "acc_norm", "f1", "exact_match", "numeric_match",
                           "math_equiv", *_IFEVAL_METRICS})
_MC_METRICS = {"acc", "acc_norm", "f1"}
_GEN_METRICS = {"exact_match", "numeric_match", "math_equiv", *_IFEVAL_METRICS}


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
    prompt: str | None = None  # lm-eval's fewshot_config.doc_to_text for the examples
    target: str | None = None  # lm-eval's fewshot_config.doc_to_target ("" = text only)
    # draw k+1 and drop the evaluated doc (lm-eval does when its fewshot_split equals its
    # test_split, both unset included: HellaSwag, GPQA); None: only when the pool is the
    # evaluated split
    exclude_self: bool | None = None


class GenerationSpec(_Strict):
    stop: list[str] = Field(default_factory=lambda: ["\n\n"])
    max_tokens: int = Field(256, ge=1)
    chat: bool = False


class MetricSpec(_Strict):
    name: str
    filter: str = ""  # the `filters` pipeline whose output this metric scores
    ignore_case: bool = False
    ignore_punctuation: bool = False
    strip: bool = False
    regexes_to_ignore: list[str] = Field(default_factory=list)


class RegexSpec(_Strict):
    pattern: str
    group: int = 0
    fallback: str = "[invalid]"


class FilterSpec(_Strict):
    """A named answer-extraction pipeline (lm-eval's filter_list entry)."""

    name: str
    regex: str | None = None
    group: int = 0
    fallback: str = "[invalid]"
    cascade: Literal["kormedmcqa"] | None = None


class SubsetSpec(_Strict):
    """One subject / subset of a benchmark, with the options that differ per subset."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    hf_name: str | None = None  # hub configuration (by: config); default: the subset's name
    filter: str | None = None  # template; a row belongs to the subset when it renders True
    preamble: str | None = None
    prompt: str | None = None


class SubsetsSpec(_Strict):
    """A whole benchmark: its subsets and how their scores make the benchmark's score.

    ``by: config``: each subset is a hub configuration; the bundled sample names each
    row's subset in ``field``. ``by: filter``: each subset keeps the rows its ``filter``
    accepts, hub and bundled alike. ``weighting: size`` is lm-eval's weight_by_size (the
    benchmark score is the mean over all documents); ``mean`` averages subset scores.
    """

    by: Literal["config", "filter"] = "config"
    field: str | None = None
    weighting: Literal["size", "mean"] = "size"
    items: list[SubsetSpec] = Field(min_length=1)


class InstructionSpec(_Strict):
    ids_field: str = "instruction_id_list"
    kwargs_field: str = "kwargs"
    # "script": kaieval's Korean-aware predicates, no extra dependency (kaieval.bench.ifeval);
    # "lm-eval": lm-evaluation-harness 0.4.13's (kaieval.bench.ifeval_reference)
    checks: Literal["script", "lm-eval"] = "script"


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
    preamble: str = ""  # lm-eval's `description`: before the few-shot examples (template)
    process: str = ""  # named document processor (kaieval.bench.tasks.process)
    filter: str = ""  # template; rows rendering anything but "True" are dropped
    filters: list[FilterSpec] = Field(default_factory=list)
    subsets: SubsetsSpec | None = None
    reference: str = ""  # the definition this default reproduces (e.g. "lm-eval 0.4.13 kmmlu")
    variant: str = ""  # set by a `variants:` entry; "" is the reference default
    differs: str = ""  # what a variant changes relative to the reference default

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
            out.append(MetricConfig(m.name, tuple(opts), filter=m.filter))
    return tuple(out)


def _filter_configs(spec: TaskSpec, doc: LoadedYaml) -> tuple[FilterConfig, ...]:
    out = []
    for i, f in enumerate(spec.filters):
        if (f.regex is None) == (f.cascade is None):
            raise KaiError("filters: give exactly one of `regex` or `cascade`",
                           where=doc.where(("filters", i)))
        if f.regex is not None:
            out.append(FilterConfig(f.name, "regex", f.regex, f.group, f.fallback))
        else:
            out.append(FilterConfig(f.name, "choice_cascade"))
    names = {f.name for f in out}
    for m in spec.metrics:
        if isinstance(m, MetricSpec) and m.filter and m.filter not in names:
            raise KaiError(f"metrics: filter {m.filter!r} is not one of `filters`",
                           where=doc.where(("metrics",)))
    return tuple(out)


def subset_names(doc: LoadedYaml) -> list[str]:
    """The subsets a task file declares (empty: the task is one set)."""
    subsets = doc.data.get("subsets") if isinstance(doc.data, dict) else None
    if not isinstance(subsets, dict) or not isinstance(subsets.get("items"), list):
        return []
    return [str(i.get("name")) for i in subsets["items"] if isinstance(i, dict)]


def subset_weighting(doc: LoadedYaml) -> str:
    subsets = doc.data.get("subsets") if isinstance(doc.data, dict) else None
    return str(subsets.get("weighting", "size")) if isinstance(subsets, dict) else "size"


def _subset(spec: TaskSpec, name: str | None, doc: LoadedYaml) -> SubsetSpec | None:
    if spec.subsets is None:
        if name is not None:
            raise KaiError(f"task {spec.name} has no subsets (asked for {name!r})",
                           where=str(doc.path))
        return None
    if name is None:
        raise KaiError(f"task {spec.name} has subsets: load it as a group or name one",
                       where=str(doc.path))
    for item in spec.subsets.items:
        if item.name == name:
            return item
    raise KaiError(f"task {spec.name} has no subset {name!r} (subsets: "
                   + ", ".join(i.name for i in spec.subsets.items) + ")", where=str(doc.path))


def parse_ours(doc: LoadedYaml, *, source: str | None = None, subset: str | None = None,
               data_files: dict[str, Path] | None = None) -> TaskConfig:
    """Validate a ``kaieval/task/v1`` YAML into a TaskConfig (local data unless source='hf').

    ``subset`` names one subset of a task with ``subsets``. ``data_files`` (keys ``eval``
    and optionally ``fewshot``) reads the documents from local files in the hub's column
    layout instead of the bundled sample or the hub: the reference-identity tests use it
    to feed lm-eval and kaieval the same documents. Few-shot exclusion then follows the
    hub splits: a doc is left out of its own draw only when the few-shot split is the
    evaluated split, as in lm-eval.
    """
    spec = parse_model(TaskSpec, doc)
    where = str(doc.path)
    metrics = _metric_configs(spec)
    filters = _filter_configs(spec, doc)
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
    sub = _subset(spec, subset, doc)
    use_hf = data_files is None and (source == "hf" or (source is None and spec.data.path is None))
    eval_split: LocalSplit | HFSplit
    fewshot_split: LocalSplit | HFSplit | None = None
    prompt, choices, target, options = spec.prompt, spec.choices, spec.target, spec.options
    preamble, row_filter = spec.preamble, spec.filter
    select: tuple[str, str] | None = None
    row_map: RowMap | None = None
    exclude_self: bool | None = None
    if sub is not None:
        prompt = sub.prompt if sub.prompt is not None else prompt
        preamble = sub.preamble if sub.preamble is not None else preamble
        if sub.filter is not None:
            row_filter = sub.filter
    by_config = spec.subsets is not None and spec.subsets.by == "config"
    if data_files is not None:
        if "eval" not in data_files:
            raise KaiError("data_files: needs an 'eval' file", where=where)
        eval_split = LocalSplit(data_files["eval"])
        if "fewshot" in data_files:
            fewshot_split = LocalSplit(data_files["fewshot"])
        hf = spec.data.hf
        exclude_self = hf is not None and hf.fewshot_split == hf.split
    elif use_hf:
        hf = spec.data.hf
        if hf is None:
            raise KaiError("data.hf: this task has no Hugging Face source",
                           where=doc.where(("data",)))
        prompt = hf.prompt if hf.prompt is not None else prompt
        choices = hf.choices if hf.choices is not None else choices
        target = hf.target if hf.target is not None else target
        options = hf.options if "options" in hf.model_fields_set else options
        row_map = _row_map(hf)
        hf_name = hf.name
        if sub is not None and by_config:
            hf_name = sub.hf_name or sub.name
        eval_split = HFSplit(hf.path, hf_name, hf.split, hf.revision)
        if hf.fewshot_split:
            fewshot_split = HFSplit(hf.path, hf_name, hf.fewshot_split, hf.revision)
            exclude_self = hf.fewshot_split == hf.split
    else:
        if spec.data.path is None:
            raise KaiError("data.path: this task has no local data", where=doc.where(("data",)))
        eval_split = LocalSplit(resolve_data_path(spec.data.path, doc.path.parent,
                                                  where=doc.where(("data", "path"))))
        if spec.data.fewshot_path:
            fewshot_split = LocalSplit(resolve_data_path(
                spec.data.fewshot_path, doc.path.parent,
                where=doc.where(("data", "fewshot_path"))))
        if sub is not None and by_config:
            assert spec.subsets is not None
            if not spec.subsets.field:
                raise KaiError("subsets.field: the bundled sample needs the column naming each "
                               "row's subset", where=doc.where(("subsets",)))
            select = (spec.subsets.field, sub.name)
    if exclude_self is None:
        exclude_self = fewshot_split is None
    if spec.fewshot.exclude_self is not None:
        exclude_self = spec.fewshot.exclude_self
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
    name = spec.name if sub is None else f"{spec.name}:{sub.name}"
    if spec.variant:
        name = f"{spec.name}@{spec.variant}" + ("" if sub is None else f":{sub.name}")
    return TaskConfig(
        name=name, source_file=doc.path, dialect="kaieval", output_type=spec.output_type,
        eval_split=eval_split, fewshot_split=fewshot_split, exclude_self=exclude_self,
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
               "local_path": spec.data.path, "reference": spec.reference,
               "differs": spec.differs},
        row_map=row_map, preamble=preamble, fewshot_text=spec.fewshot.prompt,
        fewshot_target=spec.fewshot.target, process=spec.process, row_filter=row_filter,
        select=select, filters=filters, variant=spec.variant,
        instruction_checks=ins.checks if ins else "script",
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
