"""Run lm-evaluation-harness task YAMLs unchanged, for their common subset.

Users bring the task files they already have. We accept the keys whose meaning
we reproduce exactly (prompt construction, few-shot sampling, request shapes,
acc / acc_norm / exact_match) and refuse everything else by name, rather than
run a task whose numbers would silently differ from lm-eval's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaieval.bench.tasks.config import LocalSplit, MetricConfig, RegexFilter, Split, TaskConfig
from kaieval.bench.tasks.data import resolve_data_path
from kaieval.errors import KaiError
from kaieval.spec.yamlload import LoadedYaml

SUPPORTED_KEYS = frozenset({
    "task", "tag", "dataset_path", "dataset_name", "dataset_kwargs", "training_split",
    "validation_split", "test_split", "fewshot_split", "doc_to_text", "doc_to_choice",
    "doc_to_target", "target_delimiter", "fewshot_delimiter", "fewshot_config", "num_fewshot",
    "output_type", "metric_list", "generation_kwargs", "filter_list", "metadata", "repeats",
    "description",
})
_FORMATS = {"json", "csv", "parquet"}
_METRICS = {"acc", "acc_norm", "exact_match"}
_METRIC_KEYS = {"metric", "aggregation", "higher_is_better", "ignore_case",
                "ignore_punctuation", "regexes_to_ignore"}
_GEN_KEYS = {"until", "max_gen_toks", "do_sample", "temperature"}


def _fail(doc: LoadedYaml, key: tuple[str | int, ...], message: str) -> KaiError:
    return KaiError(f"{'.'.join(str(k) for k in key)}: {message}", where=doc.where(key))


def _data_files(doc: LoadedYaml, base_dir: Path) -> dict[str, list[Path]]:
    kwargs = doc.data.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise _fail(doc, ("dataset_kwargs",), "must be a mapping")
    for key in kwargs:
        if key != "data_files":
            raise _fail(doc, ("dataset_kwargs", key), "not supported (only data_files)")
    files = kwargs.get("data_files")
    if files is None:
        raise _fail(doc, ("dataset_kwargs",), "needs data_files pointing at local files")
    # datasets' rules: a bare path or list is the "train" split.
    by_split: dict[str, Any] = files if isinstance(files, dict) else {"train": files}
    out: dict[str, list[Path]] = {}
    for split, paths in by_split.items():
        plist = paths if isinstance(paths, list) else [paths]
        if not all(isinstance(p, str) for p in plist):
            raise _fail(doc, ("dataset_kwargs", "data_files", split), "must be file paths")
        out[str(split)] = [resolve_data_path(p, base_dir,
                                             where=doc.where(("dataset_kwargs", "data_files")))
                           for p in plist]
    return out


def _split(doc: LoadedYaml, files: dict[str, list[Path]], key: str) -> Split | None:
    name = doc.data.get(key)
    if name is None:
        return None
    if name not in files:
        raise _fail(doc, (key,), f"split {name!r} is not among data_files {sorted(files)}")
    if len(files[name]) != 1:
        raise _fail(doc, (key,), f"split {name!r} must be exactly one file")
    return LocalSplit(files[name][0])


def _metrics(doc: LoadedYaml, output_type: str) -> tuple[MetricConfig, ...]:
    raw = doc.data.get("metric_list")
    if raw is None:
        default = ("acc", "acc_norm") if output_type == "multiple_choice" else ("exact_match",)
        return tuple(MetricConfig(m) for m in default)
    if not isinstance(raw, list) or not raw:
        raise _fail(doc, ("metric_list",), "must be a non-empty list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "metric" not in item:
            raise _fail(doc, ("metric_list", i), "each entry needs a `metric`")
        for key in item:
            if key not in _METRIC_KEYS:
                raise _fail(doc, ("metric_list", i, key), "not supported")
        name = item["metric"]
        if name not in _METRICS:
            raise _fail(doc, ("metric_list", i, "metric"),
                        f"{name!r} not supported (supported: {', '.join(sorted(_METRICS))})")
        if item.get("aggregation", "mean") != "mean":
            raise _fail(doc, ("metric_list", i, "aggregation"), "only `mean` is supported")
        if item.get("higher_is_better", True) is not True:
            raise _fail(doc, ("metric_list", i, "higher_is_better"), "only true is supported")
        opts = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                            for k, v in item.items()
                            if k in {"ignore_case", "ignore_punctuation", "regexes_to_ignore"}))
        out.append(MetricConfig(name, opts))
    return tuple(out)


def _regex_filter(doc: LoadedYaml) -> RegexFilter | None:
    raw = doc.data.get("filter_list")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 1 or not isinstance(raw[0], dict):
        raise _fail(doc, ("filter_list",), "only one filter pipeline (regex, take_first)")
    steps = raw[0].get("filter")
    if (not isinstance(steps, list) or len(steps) != 2 or not isinstance(steps[0], dict)
            or steps[0].get("function") != "regex"
            or not isinstance(steps[1], dict) or steps[1].get("function") != "take_first"):
        raise _fail(doc, ("filter_list", 0, "filter"),
                    "only [regex, take_first] is supported")
    for key in steps[0]:
        if key not in {"function", "regex_pattern", "group_select", "fallback"}:
            raise _fail(doc, ("filter_list", 0, "filter", 0, key), "not supported")
    return RegexFilter(pattern=str(steps[0].get("regex_pattern", r"#### (\-?[0-9\.\,]+)")),
                       group_select=int(steps[0].get("group_select", 0)),
                       fallback=str(steps[0].get("fallback", "[invalid]")))


def parse_lm_eval(doc: LoadedYaml) -> TaskConfig:
    """lm-eval task YAML -> TaskConfig, refusing anything outside the supported subset."""
    data: dict[str, Any] = doc.data
    for key in data:
        if key not in SUPPORTED_KEYS:
            raise _fail(doc, (key,), "lm-eval key not supported by kaieval (supported: "
                        + ", ".join(sorted(SUPPORTED_KEYS)) + ")")
    name = data.get("task")
    if not isinstance(name, str) or not name:
        raise _fail(doc, ("task",), "must be a task name")
    fmt = data.get("dataset_path")
    if fmt not in _FORMATS:
        raise _fail(doc, ("dataset_path",), f"{fmt!r} not supported: only local files "
                    "(dataset_path: json, csv or parquet with dataset_kwargs.data_files)")
    if data.get("repeats", 1) != 1:
        raise _fail(doc, ("repeats",), "only 1 is supported")
    output_type = data.get("output_type", "generate_until")
    if output_type not in {"multiple_choice", "generate_until"}:
        raise _fail(doc, ("output_type",), f"{output_type!r} not supported "
                    "(multiple_choice, generate_until)")
    files = _data_files(doc, doc.path.parent)
    test = _split(doc, files, "test_split")
    val = _split(doc, files, "validation_split")
    train = _split(doc, files, "training_split")
    fs = _split(doc, files, "fewshot_split")
    eval_split = test or val
    if eval_split is None:
        raise _fail(doc, ("test_split",), "needs test_split or validation_split")
    # lm-eval: fewshot_split, else training, else validation, else the test docs; the doc
    # itself is dropped from its own draw only when fewshot_split names the test split.
    exclude_self = data.get("fewshot_split") is not None and (
        data.get("fewshot_split") == data.get("test_split"))
    fewshot_split = fs or train or val or eval_split
    fs_cfg = data.get("fewshot_config") or {}
    if not isinstance(fs_cfg, dict):
        raise _fail(doc, ("fewshot_config",), "must be a mapping")
    for key in fs_cfg:
        if key not in {"sampler", "doc_to_text", "doc_to_target"}:
            raise _fail(doc, ("fewshot_config", key),
                        "not supported (only sampler, doc_to_text, doc_to_target)")
        if key != "sampler" and not isinstance(fs_cfg[key], str):
            raise _fail(doc, ("fewshot_config", key), "must be a field name or a template")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail(doc, ("description",), "must be text (or a template)")
    sampler = fs_cfg.get("sampler", "default")
    if sampler not in {"default", "first_n"}:
        raise _fail(doc, ("fewshot_config", "sampler"), f"{sampler!r} not supported "
                    "(default, first_n)")
    fewshot_delimiter = str(data.get("fewshot_delimiter", "\n\n"))
    gen = data.get("generation_kwargs")
    stop: tuple[str, ...] = (fewshot_delimiter,)
    max_tokens = 256
    if gen is not None:
        if not isinstance(gen, dict):
            raise _fail(doc, ("generation_kwargs",), "must be a mapping")
        for key, value in gen.items():
            if key not in _GEN_KEYS:
                raise _fail(doc, ("generation_kwargs", key), "not supported")
            if key == "do_sample" and value:
                raise _fail(doc, ("generation_kwargs", key), "only greedy decoding (false)")
            if key == "temperature" and float(value) != 0.0:
                raise _fail(doc, ("generation_kwargs", key), "only 0 (greedy)")
        until = gen.get("until", [fewshot_delimiter])
        stop = tuple([until] if isinstance(until, str) else until)
        max_tokens = int(gen.get("max_gen_toks", 256))
    for key in ("doc_to_text", "doc_to_target"):
        if key not in data:
            raise _fail(doc, (key,), "is required")
    if output_type == "multiple_choice" and "doc_to_choice" not in data:
        raise _fail(doc, ("doc_to_choice",), "is required for multiple_choice")
    num_fewshot = data.get("num_fewshot") or 0
    if not isinstance(num_fewshot, int) or num_fewshot < 0:
        raise _fail(doc, ("num_fewshot",), "must be a non-negative integer")
    return TaskConfig(
        name=name, source_file=doc.path, dialect="lm_eval", output_type=output_type,
        eval_split=eval_split, fewshot_split=fewshot_split, exclude_self=exclude_self,
        doc_to_text=data["doc_to_text"], doc_to_choice=data.get("doc_to_choice"),
        doc_to_target=data["doc_to_target"],
        target_delimiter=str(data.get("target_delimiter", " ")),
        fewshot_delimiter=fewshot_delimiter, num_fewshot=num_fewshot, sampler=sampler,
        stop=stop if output_type == "generate_until" else (), max_tokens=max_tokens,
        metrics=_metrics(doc, output_type), regex_filter=_regex_filter(doc),
        preamble=description, fewshot_text=fs_cfg.get("doc_to_text"),
        fewshot_target=fs_cfg.get("doc_to_target"),
    )
