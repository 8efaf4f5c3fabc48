"""doc_to_text / doc_to_choice / doc_to_target with lm-evaluation-harness's exact semantics.

A field spec is a field name (returned as is), a Jinja2 template (rendered with the
doc's fields), or a literal (int / list). lm-eval's quirks are kept on purpose --
a target that renders to digits becomes an int index when the task has choices, a
choice template is rendered then parsed as a Python literal -- because prompts
that differ by one character give different scores. Our templates run in Jinja's
sandbox: a task file is data, not code.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from kaieval.errors import KaiError

FieldSpec = str | int | list[Any] | dict[str, Any]


def _regex_replace(value: str, pattern: str, repl: str, count: int = 0) -> str:
    return re.sub(pattern, repl, value, count=count)


_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
_ENV.filters["regex_replace"] = _regex_replace


@lru_cache(maxsize=512)
def _compile(template: str) -> Any:
    return _ENV.from_string(template)


def render(template: str, fields: Mapping[str, Any], *, where: str) -> str:
    """Render a Jinja2 template; a missing field or a template error is a one-line KaiError."""
    try:
        return str(_compile(template).render(**fields))
    except UndefinedError as exc:
        raise KaiError(f"template refers to a field the doc lacks ({exc.message})",
                       where=where) from None
    except TemplateError as exc:
        raise KaiError(f"template error: {exc}", where=where) from None
    except (TypeError, ValueError, AttributeError, IndexError, KeyError) as exc:
        raise KaiError(f"template failed on this doc: {type(exc).__name__}: {exc}",
                       where=where) from None


def doc_to_text(spec: FieldSpec, fields: Mapping[str, Any], *, has_choices: bool,
                where: str) -> str:
    """The doc's question text (lm-eval: field name or template)."""
    if isinstance(spec, str):
        if spec in fields:
            value = fields[spec]
        else:
            value = render(spec, fields, where=where)
            if value.isdigit() and has_choices:
                raise KaiError("doc_to_text rendered to a choice index (multiple-input tasks "
                               "are not supported)", where=where)
        if not isinstance(value, str):
            raise KaiError(f"doc_to_text gave {type(value).__name__}, expected text", where=where)
        return value
    raise KaiError(f"doc_to_text must be a field name or template, got {type(spec).__name__}",
                   where=where)


def doc_to_choice(spec: FieldSpec, fields: Mapping[str, Any], *, where: str) -> list[str]:
    """The doc's answer options (lm-eval: field, template parsed as a literal, list, dict)."""
    value: Any
    if isinstance(spec, str):
        if spec in fields:
            value = fields[spec]
        else:
            rendered = render(spec, fields, where=where)
            try:
                value = ast.literal_eval(rendered)
            except (ValueError, SyntaxError):
                raise KaiError(f"doc_to_choice rendered {rendered[:60]!r}, not a list literal",
                               where=where) from None
    elif isinstance(spec, list):
        value = spec
    elif isinstance(spec, dict):
        value = list(spec.values())
    else:
        raise KaiError(f"doc_to_choice has unsupported type {type(spec).__name__}", where=where)
    if not isinstance(value, (list, tuple)):
        raise KaiError(f"choices must be a list, got {type(value).__name__}", where=where)
    if not value:
        raise KaiError("the doc has no choices (empty list)", where=where)
    if not all(isinstance(c, str) for c in value):
        raise KaiError("every choice must be text", where=where)
    return list(value)


def doc_to_target(spec: FieldSpec, fields: Mapping[str, Any], *, has_choices: bool,
                  where: str) -> int | str | list[Any]:
    """The doc's answer: an index into the choices or the answer text (lm-eval's rules)."""
    if isinstance(spec, bool):
        raise KaiError("doc_to_target must not be a boolean", where=where)
    if isinstance(spec, int):
        return spec
    if isinstance(spec, list):
        return spec
    if isinstance(spec, str):
        if spec in fields:
            value = fields[spec]
            if isinstance(value, bool) or not isinstance(value, (int, str, list)):
                raise KaiError(f"target field {spec!r} holds {type(value).__name__}, "
                               "expected an index or text", where=where)
            return value
        rendered = render(spec, fields, where=where)
        if rendered.isdigit() and has_choices:
            return int(ast.literal_eval(rendered))
        if len(rendered) >= 2 and rendered[0] == "[" and rendered[-1] == "]":
            try:
                parsed = ast.literal_eval(rendered)
            except (SyntaxError, ValueError):
                return rendered
            return parsed if isinstance(parsed, list) else rendered
        return rendered
    raise KaiError(f"doc_to_target has unsupported type {type(spec).__name__}", where=where)


def target_index(target: int | str | list[Any], choices: list[str], *, where: str) -> int:
    """Resolve a multiple-choice target to a valid index, or fail naming the doc."""
    if isinstance(target, list):
        raise KaiError("multiple gold targets are not supported", where=where)
    if isinstance(target, str):
        if target not in choices:
            raise KaiError(f"answer {target!r} is not one of the choices {choices}", where=where)
        return choices.index(target)
    if not 0 <= target < len(choices):
        raise KaiError(f"answer index {target} out of range for {len(choices)} choices",
                       where=where)
    return target


def answer_text(target: int | str | list[Any], choices: list[str] | None) -> str:
    """The few-shot answer text lm-eval writes after the target delimiter."""
    if isinstance(target, list):
        return str(target[0])
    if isinstance(target, int) and choices:
        return str(choices[target])
    return str(target)
