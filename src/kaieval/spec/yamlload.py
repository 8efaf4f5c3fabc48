"""YAML loading that remembers where every value came from.

pydantic reports a bad field by its path (``stages.1.composition.0.points``);
users need ``file:line``. We compose the YAML node tree once, keep a map from
path to line, and refuse duplicate keys (PyYAML silently keeps the last one,
which hides copy-paste mistakes in score sheets and specs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kaieval.errors import KaiError, KaiErrors

Path_ = tuple[str | int, ...]

MAX_YAML_BYTES = 8 * 1024 * 1024


@dataclass
class LoadedYaml:
    """Parsed data plus the line of every path in it (1-based)."""

    path: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, loc: Path_) -> int:
        """Line of the deepest known prefix of ``loc`` (a missing field points at its parent)."""
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in self.lines:
                return self.lines[loc[:cut]]
        return 1

    def where(self, loc: Path_) -> str:
        return f"{self.path}:{self.line_of(loc)}"


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], file: Path) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise KaiError("mapping keys must be plain scalars",
                               where=f"{file}:{key_node.start_mark.line + 1}")
            key = key_node.value
            if key in out:
                raise KaiError(f"duplicate key '{key}'",
                               where=f"{file}:{key_node.start_mark.line + 1}")
            out[key] = _walk(value_node, (*path, key), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(child, (*path, i), lines, file) for i, child in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    """Resolve a scalar with SafeLoader's rules (int, float, bool, null, date, str)."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load_yaml(path: Path) -> LoadedYaml:
    """Read a YAML file; any problem becomes a one-line ``KaiError`` naming file and line."""
    try:
        if path.is_dir():
            raise KaiError("is a directory, expected a YAML file", where=str(path))
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise KaiError(f"file is {size} bytes, larger than the {MAX_YAML_BYTES} allowed",
                           where=str(path))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KaiError("file not found", where=str(path)) from None
    except UnicodeDecodeError as e:
        raise KaiError(f"not UTF-8 text ({e.reason} at byte {e.start})", where=str(path)) from None
    except OSError as e:
        raise KaiError(f"cannot read: {e.strerror}", where=str(path)) from None
    return load_yaml_text(text, path)


def load_yaml_text(text: str, path: Path) -> LoadedYaml:
    try:
        docs = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        what = (e.problem or e.context or "malformed YAML").strip()
        raise KaiError(f"malformed YAML: {what}", where=f"{path}:{line}") from None
    except yaml.YAMLError as e:
        raise KaiError(f"malformed YAML: {str(e).splitlines()[0]}", where=str(path)) from None
    if len(docs) != 1 or docs[0] is None:
        raise KaiError("expected exactly one YAML document" if docs else "file is empty",
                       where=f"{path}:1")
    lines: dict[Path_, int] = {}
    try:
        data = _walk(docs[0], (), lines, path)
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        raise KaiError(f"cannot read value: {e.problem}",
                       where=f"{path}:{mark.line + 1 if mark else 1}") from None
    return LoadedYaml(path=path, data=data, lines=lines)


def _fmt_loc(loc: Path_) -> str:
    return ".".join(str(p) for p in loc) if loc else "(top level)"


def validation_errors(err: ValidationError, doc: LoadedYaml) -> KaiErrors:
    """Turn pydantic's errors into one ``file:line: field: message`` line each."""
    out: list[KaiError] = []
    for item in err.errors(include_url=False):
        loc: Path_ = tuple(p for p in item["loc"] if not (isinstance(p, str) and "[" in p))
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown field"
        elif item["type"] == "missing":
            msg = "missing required field"
        out.append(KaiError(f"{_fmt_loc(loc)}: {msg}", where=doc.where(loc)))
    return KaiErrors(out)


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], doc: LoadedYaml) -> M:
    """Validate ``doc`` as ``model``; raise ``KaiErrors`` with file:line for every problem."""
    if not isinstance(doc.data, dict):
        raise KaiError(f"expected a mapping at the top level, got {type(doc.data).__name__}",
                       where=f"{doc.path}:1")
    try:
        return model.model_validate(doc.data)
    except ValidationError as e:
        raise validation_errors(e, doc) from None
