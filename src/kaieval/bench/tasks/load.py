"""``load_task``: a catalogue name or a task YAML (ours or lm-eval's) -> a ``Task``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from kaieval.bench.api import OutputType
from kaieval.bench.tasks.catalog import catalog_path, unknown_task
from kaieval.bench.tasks.lmeval import parse_lm_eval
from kaieval.bench.tasks.spec import check_schema, is_ours, parse_ours
from kaieval.bench.tasks.task import ConfiguredTask
from kaieval.errors import KaiError
from kaieval.spec.yamlload import load_yaml


def _resolve(ref: str | Path, base_dir: Path | None) -> Path:
    if isinstance(ref, str) and not ref.endswith((".yaml", ".yml")) and "/" not in ref:
        found = catalog_path(ref)
        if found is not None:
            return found
    path = Path(ref).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise unknown_task(str(ref))
    return path


def load_task(ref: str | Path, *, base_dir: Path | None = None,
              source: Literal["local", "hf"] | None = None,
              output_type: OutputType | None = None) -> ConfiguredTask:
    """Load a task by catalogue name or YAML path.

    ``source``: for our YAMLs with both a bundled sample and a Hugging Face id, which
    to read (default: the local sample). ``output_type="multiple_choice_generate"``
    runs a multiple-choice task by generation (lettered options, letter extracted)
    for endpoints without log-probs.
    """
    path = _resolve(ref, base_dir)
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise KaiError("a task file must be a mapping", where=str(path))
    if is_ours(doc.data):
        check_schema(doc)
        cfg = parse_ours(doc, source=source)
    elif "task" in doc.data:
        if source == "hf":
            raise KaiError("source='hf' applies to kaieval task files only", where=str(path))
        cfg = parse_lm_eval(doc)
    else:
        raise KaiError("neither a kaieval task (`schema: kaieval/task/v1`) nor an lm-eval "
                       "task (`task:`)", where=str(path))
    if output_type is not None and output_type != cfg.output_type:
        if not (output_type == "multiple_choice_generate"
                and cfg.output_type == "multiple_choice"):
            raise KaiError(f"cannot run a {cfg.output_type} task as {output_type}",
                           where=str(path))
        from dataclasses import replace

        from kaieval.bench.tasks.config import MetricConfig
        cfg = replace(cfg, output_type=output_type, metrics=(MetricConfig("acc"),))
    return ConfiguredTask(cfg)
