"""``load_task``: a catalogue reference or a task YAML (ours or lm-eval's) -> a ``Task``.

A catalogue reference is ``name[@variant][:subset]``: ``kmmlu`` is the whole
benchmark (every subject, a ``GroupTask``), ``kmmlu:Korean-History`` one subject,
``kormedmcqa@loglikelihood`` a named variant that differs from the reference
definition in the way its ``differs`` line says.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from kaieval.bench.api import OutputType
from kaieval.bench.tasks.catalog import catalog_path, unknown_task
from kaieval.bench.tasks.config import MetricConfig, TaskConfig
from kaieval.bench.tasks.group import GroupTask
from kaieval.bench.tasks.lmeval import parse_lm_eval
from kaieval.bench.tasks.spec import (
    check_schema,
    is_ours,
    parse_ours,
    subset_names,
    subset_weighting,
)
from kaieval.bench.tasks.task import ConfiguredTask
from kaieval.errors import KaiError
from kaieval.spec.yamlload import LoadedYaml, load_yaml

_REF = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_.-]*)(?:@(?P<variant>[A-Za-z0-9_.-]+))?"
                  r"(?::(?P<subset>[A-Za-z0-9][A-Za-z0-9_.-]*))?$")


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``name@variant:subset`` -> its three parts (variant and subset may be None)."""
    m = _REF.match(ref)
    if m is None:
        raise unknown_task(ref)
    return m["name"], m["variant"], m["subset"]


def _resolve(ref: str | Path, base_dir: Path | None
             ) -> tuple[Path, str | None, str | None]:
    if isinstance(ref, str) and not ref.endswith((".yaml", ".yml")) and "/" not in ref:
        name, variant, subset = parse_ref(ref)
        found = catalog_path(name)
        if found is not None:
            return found, variant, subset
    path = Path(ref).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise unknown_task(str(ref))
    return path, None, None


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return over


def with_variant(doc: LoadedYaml, variant: str | None) -> LoadedYaml:
    """The task file with its ``variants:`` entry ``variant`` merged in (None: the default)."""
    data = dict(doc.data)
    variants = data.pop("variants", None) or {}
    if not isinstance(variants, dict):
        raise KaiError("variants: must be a mapping of name -> overrides",
                       where=doc.where(("variants",)))
    lines = {k: v for k, v in doc.lines.items() if not (k and k[0] == "variants")}
    if variant is None:
        return LoadedYaml(doc.path, data, lines)
    over = variants.get(variant)
    if not isinstance(over, dict):
        raise KaiError(f"unknown variant {variant!r} of task {data.get('name')!r} (variants: "
                       + (", ".join(sorted(variants)) or "none") + ")", where=str(doc.path))
    for k, v in doc.lines.items():
        if k[:2] == ("variants", variant):
            lines[k[2:]] = v
    merged = _merge(data, over)
    merged["variant"] = variant
    return LoadedYaml(doc.path, merged, lines)


def variant_names(doc: LoadedYaml) -> list[str]:
    variants = doc.data.get("variants") if isinstance(doc.data, dict) else None
    return sorted(variants) if isinstance(variants, dict) else []


def load_task(ref: str | Path, *, base_dir: Path | None = None,
              source: Literal["local", "hf"] | None = None,
              output_type: OutputType | None = None,
              data_files: dict[str, Path] | None = None) -> ConfiguredTask | GroupTask:
    """Load a task by catalogue reference or YAML path.

    ``source``: for our YAMLs with both a bundled sample and a Hugging Face id, which
    to read (default: the local sample). ``output_type="multiple_choice_generate"``
    runs a multiple-choice task by generation (lettered options, letter extracted)
    for endpoints without log-probs. ``data_files`` (``eval``, ``fewshot``): documents
    in the hub's layout from local files, for one subset (tests, offline copies).
    """
    path, variant, subset = _resolve(ref, base_dir)
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise KaiError("a task file must be a mapping", where=str(path))
    if is_ours(doc.data):
        check_schema(doc)
        doc = with_variant(doc, variant)
        subsets = subset_names(doc)
        if subsets and subset is None:
            if data_files is not None:
                raise KaiError("data_files: name one subset of a task with subsets",
                               where=str(path))
            tasks = [(s, _finish(parse_ours(doc, source=source, subset=s), output_type))
                     for s in subsets]
            weighting = subset_weighting(doc)
            name = str(doc.data.get("name")) + (f"@{variant}" if variant else "")
            return GroupTask(name, tasks, "mean" if weighting == "mean" else "size")
        cfg = parse_ours(doc, source=source, subset=subset, data_files=data_files)
    elif "task" in doc.data:
        if source == "hf":
            raise KaiError("source='hf' applies to kaieval task files only", where=str(path))
        cfg = parse_lm_eval(doc)
    else:
        raise KaiError("neither a kaieval task (`schema: kaieval/task/v1`) nor an lm-eval "
                       "task (`task:`)", where=str(path))
    return _finish(cfg, output_type)


def _finish(cfg: TaskConfig, output_type: OutputType | None) -> ConfiguredTask:
    if output_type is not None and output_type != cfg.output_type:
        if not (output_type == "multiple_choice_generate"
                and cfg.output_type == "multiple_choice"):
            raise KaiError(f"cannot run a {cfg.output_type} task as {output_type}",
                           where=str(cfg.source_file))
        cfg = replace(cfg, output_type=output_type, metrics=(MetricConfig("acc"),))
    return ConfiguredTask(cfg)
