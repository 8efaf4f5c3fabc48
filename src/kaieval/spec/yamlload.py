"""YAML loading that remembers where every value came from, and refuses hostile input.

pydantic reports a bad field by its path (``stages.1.composition.0.points``);
users need ``file:line``. We compose the YAML node tree once, keep a map from
path to line, and build plain data from it ourselves, which lets us:

- refuse duplicate keys (PyYAML silently keeps the last one, which hides
  copy-paste mistakes in score sheets and specs);
- refuse every tag outside YAML's plain-data set (``!!python/object`` and
  friends never reach a constructor);
- bound alias expansion ("billion laughs") and nesting depth, so a hostile or
  broken file costs milliseconds, not the machine's memory;
- support ``<<: *anchor`` merge keys, where explicit keys win.

Every problem is a one-line ``KaiError`` of the form ``file:line: message``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import ConstructorError, SafeConstructor

from kaieval.errors import KaiError, KaiErrors
from kaieval.io import read_bounded_bytes
from kaieval.spec.messages import clean_loc, describe, fmt_loc, show

Path_ = tuple[str | int, ...]

MAX_YAML_BYTES = 8 * 1024 * 1024
MAX_NODES = 2_000_000  # values in all; 8 MiB of YAML holds fewer
MAX_ALIAS_VALUES = 20_000  # values re-read through aliases; real anchors reuse a few hundred
MAX_DEPTH = 64

_T = "tag:yaml.org,2002:"
_MAP, _SEQ, _MERGE = _T + "map", _T + "seq", _T + "merge"
_EXP_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")
# libyaml's parser is ~20x faster and refuses nesting deeper than 1000 levels by itself;
# the pure-Python one recurses (and slows down quadratically on deep flow collections).
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALAR_TAGS = {_T + t for t in ("str", "int", "float", "bool", "null", "timestamp")}


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


class _Builder:
    """Turns a composed node tree into plain data, recording lines and enforcing limits."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.nodes = 0
        self.constructor = SafeConstructor()
        self.active: set[int] = set()
        self.seen: set[int] = set()
        self.repeats = 0

    def fail(self, node: yaml.Node, message: str, path: Path_ | None = None) -> KaiError:
        field = f"{fmt_loc(path)}: " if path else ""
        return KaiError(field + message, where=f"{self.file}:{node.start_mark.line + 1}")

    def build(self, node: yaml.Node, path: Path_, line: int) -> Any:
        self.nodes += 1
        if id(node) in self.seen:
            self.repeats += 1
            if self.repeats > MAX_ALIAS_VALUES:
                raise self.fail(node, f"aliases expand to more than {MAX_ALIAS_VALUES} repeated "
                                      "values; refusing what looks like an alias bomb")
        else:
            self.seen.add(id(node))
        if self.nodes > MAX_NODES:
            raise self.fail(node, f"more than {MAX_NODES} values; refusing a file this large")
        if len(path) > MAX_DEPTH:
            raise self.fail(node, f"nested more than {MAX_DEPTH} levels deep")
        if id(node) in self.active:
            raise self.fail(node, "an alias refers to the value that contains it (a cycle)")
        self.lines.setdefault(path, line)
        self._check_tag(node, path)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(c, (*path, i), c.start_mark.line + 1)
                        for i, c in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _check_tag(self, node: yaml.Node, path: Path_) -> None:
        allowed = (_MAP if isinstance(node, yaml.MappingNode) else
                   _SEQ if isinstance(node, yaml.SequenceNode) else None)
        if node.tag == allowed or (allowed is None and node.tag in _SCALAR_TAGS):
            return
        tag = node.tag.replace(_T, "!!")
        raise self.fail(node, f"the YAML tag '{tag}' is not allowed; specs hold plain data only "
                              "(text, numbers, dates, true/false, lists and mappings)", path)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, "a key must be plain text, not a list or mapping")
            self._check_tag(key_node, path)
            key = key_node.value
            if key in out:
                raise self.fail(key_node, f"duplicate key '{key}' (each key may appear once "
                                          "in a mapping; the second would silently win)")
            out[key] = self.build(value_node, (*path, key), key_node.start_mark.line + 1)
        for merge in merges:
            sources = merge.value if isinstance(merge, yaml.SequenceNode) else [merge]
            for src in sources:
                if not isinstance(src, yaml.MappingNode):
                    raise self.fail(src, "'<<' must merge a mapping (e.g. '<<: *defaults')")
                merged = self._mapping(src, path)
                for key, value in merged.items():
                    out.setdefault(key, value)
        return out

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        """Resolve a scalar with SafeLoader's rules (int, float, bool, null, date, str).

        One YAML 1.2 rule is added: a plain ``4.0e12`` or ``1e9`` is a number.
        PyYAML (YAML 1.1) reads exponents without a sign as text, which would make
        ``tokens: 4.0e12`` fail as "not a number" for no reason a user can see.
        """
        if node.tag == _T + "str" and not node.style and _EXP_FLOAT.fullmatch(node.value):
            return float(node.value)
        try:
            return self.constructor.construct_object(node, deep=True)
        except ConstructorError as e:
            raise self.fail(node, f"cannot read value: {e.problem}", path) from None
        except ValueError as e:  # e.g. 2025-13-01 matches the date pattern but is no date
            what = "date" if node.tag == _T + "timestamp" else "value"
            raise self.fail(node, f"{show(node.value)} is not a valid {what} ({e}); "
                                  "write dates as YYYY-MM-DD", path) from None


def load_yaml(path: Path) -> LoadedYaml:
    """Read a YAML file; any problem becomes a one-line ``KaiError`` naming file and line."""
    where = str(path)
    if path.is_dir():
        raise KaiError("is a folder, expected a YAML file", where=where)
    if not path.exists():
        raise KaiError("file not found", where=where)
    # a FIFO or device is refused before it is read; the size before the parser runs
    raw = read_bounded_bytes(path, MAX_YAML_BYTES, "YAML files")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise KaiError(f"not UTF-8 text: byte 0x{raw[e.start]:02x} cannot be read ({e.reason}); "
                       "save the file as UTF-8", where=f"{path}:{line}") from None
    return load_yaml_text(text, path)


def load_yaml_text(text: str, path: Path) -> LoadedYaml:
    """Parse YAML text already in memory (templates, tests) with the same checks as files."""
    try:
        docs = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as e:
        e.text = text  # type: ignore[attr-defined]
        line, what = _syntax_message(e)
        raise KaiError(f"malformed YAML: {what}", where=f"{path}:{line}") from None
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1
        code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
        raise KaiError(f"malformed YAML: the control character U+{code:04X} is not allowed in "
                       "YAML text", where=f"{path}:{line}") from None
    except yaml.YAMLError as e:
        raise KaiError(f"malformed YAML: {str(e).splitlines()[0]}", where=str(path)) from None
    except RecursionError:
        raise KaiError("malformed YAML: nested more than 1000 levels deep",
                       where=str(path)) from None
    if not docs or (len(docs) == 1 and _is_empty(docs[0])):
        raise KaiError("file is empty; expected a mapping starting with 'schema:'",
                       where=f"{path}:1")
    if len(docs) > 1:
        raise KaiError("more than one YAML document ('---' separates documents); put one "
                       "programme or dossier in each file",
                       where=f"{path}:{_document_start(text, docs[1])}")
    builder = _Builder(path)
    data = builder.build(docs[0], (), docs[0].start_mark.line + 1)
    return LoadedYaml(path=path, data=data, lines=builder.lines)


def _document_start(text: str, node: yaml.Node) -> int:
    """The line of the '---' that opens the document holding ``node`` (or the node's line)."""
    lines = text.splitlines()
    for i in range(min(node.start_mark.line, len(lines) - 1), -1, -1):
        if lines[i].startswith("---"):
            return i + 1
    return node.start_mark.line + 1


def _is_empty(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _T + "null" and node.value == ""


def _line(e: yaml.MarkedYAMLError) -> str:
    """The text of the line the error points at (libyaml's marks carry no buffer)."""
    mark = e.problem_mark
    text = getattr(e, "text", "")
    if mark is None or not text:
        return ""
    lines = text.splitlines()
    return lines[mark.line] if mark.line < len(lines) else ""


def _syntax_message(e: yaml.MarkedYAMLError) -> tuple[int, str]:
    """The most useful line and a plain description for libyaml's / PyYAML's syntax errors."""
    problem = (e.problem or "").strip()
    context = (e.context or "").strip()
    p_line = e.problem_mark.line + 1 if e.problem_mark else None
    c_line = e.context_mark.line + 1 if e.context_mark else None
    line = p_line or c_line or 1
    if "'\\t'" in problem or ("cannot start any token" in problem and "\t" in _line(e)):
        return line, "a tab character is used for indentation; YAML indents with spaces only"
    if "maximum nesting depth" in problem:
        return line, "nested more than 1000 levels deep"
    if "quoted scalar" in context and "end of stream" in problem:
        return c_line or line, "a quote opened on this line is never closed"
    if context.startswith("while parsing a flow"):
        bracket = "[" if "sequence" in context else "{"
        closer = "]" if bracket == "[" else "}"
        return c_line or line, (f"a '{bracket}' opened on this line is not closed with "
                                f"'{closer}' (the parser gave up on line {p_line})")
    if "block" in context and ("expected <block end>" in problem
                               or problem in ("did not find expected key",
                                              "did not find expected '-' indicator")):
        return line, ("bad indentation: this line does not line up with the lines above it "
                      f"(the block starting on line {c_line})")
    if problem.startswith("mapping values are not allowed"):
        return line, ("a ':' is not allowed here; check this line's indentation, or put a "
                      "value that contains ': ' in quotes")
    if problem.startswith("found undefined alias"):
        name = re.search(r"\*([^\s,\]}]+)", _line(e))
        alias = f" '*{name.group(1)}'" if name else ""
        return line, f"the alias{alias} names no '&anchor' defined above it"
    if context:
        where = f" (started on line {c_line})" if c_line and c_line != line else ""
        return line, f"{problem}, {context}{where}"
    return line, problem or "malformed YAML"


def validation_errors(err: ValidationError, doc: LoadedYaml,
                      model: type[BaseModel] | None = None) -> KaiErrors:
    """Turn pydantic's errors into one ``file:line: field: message`` line each.

    pydantic may report one field several times (once per union branch); only
    the first problem per field is kept.
    """
    out: list[tuple[int, KaiError]] = []
    seen: set[Path_] = set()
    items = [(clean_loc(i, lambda p: p in doc.lines), i) for i in err.errors(include_url=False)]
    for loc, item in items:
        if item["type"] == "too_short" and any(o[: len(loc)] == loc and o != loc for o, _ in items):
            continue  # "needs at least 1 entry" only because its entries failed: noise
        if loc in seen:
            continue
        seen.add(loc)
        msg = describe(item, model, loc)
        out.append((doc.line_of(loc), KaiError(f"{fmt_loc(loc)}: {msg}", where=doc.where(loc))))
    out.sort(key=lambda pair: pair[0])
    return KaiErrors([e for _, e in out])


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], doc: LoadedYaml) -> M:
    """Validate ``doc`` as ``model``; raise ``KaiErrors`` with file:line for every problem."""
    if not isinstance(doc.data, dict):
        raise KaiError(f"expected a mapping (key: value lines) at the top level, "
                       f"got {show(doc.data)}", where=f"{doc.path}:{doc.line_of(())}")
    try:
        return model.model_validate(doc.data)
    except ValidationError as e:
        raise validation_errors(e, doc, model) from None
