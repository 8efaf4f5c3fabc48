"""Plain-language, one-line messages for spec validation problems.

pydantic's own messages are written for programmers ("Input should be a valid
number, unable to parse string as a number", "String should match pattern
'^[a-z0-9]...'", union branches listed one per line). The people who write
programme and dossier YAML are programme officers, so every problem is turned
into one line that says which field, what was found and what is expected.

Checks that span several fields (points adding up, unknown references) raise
``spec_error`` with the path of the offending field *relative to the model that
checks it*, so the reported line is the field's line and not the model's first.
"""

from __future__ import annotations

import datetime as dt
import difflib
import types
import typing
from collections.abc import Callable
from typing import Any, Union

from pydantic import BaseModel
from pydantic_core import ErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]

ID_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
COUNTRY_PATTERN = r"^[A-Z]{2}$"
ORIGIN_PATTERN = r"^[A-Z]{2}$|^mixed$|^unknown$"

_PATTERN_HELP = {
    ID_PATTERN: "is not a valid id: use 1 to 64 lower-case letters, digits, '_' or '-', "
                "starting with a letter or digit (e.g. stage1, team-alpha)",
    COUNTRY_PATTERN: "is not a country code: use two capital letters (ISO 3166-1, e.g. KR, US)",
    ORIGIN_PATTERN: "is not a data origin: use a two-letter country code in capitals "
                    "(e.g. KR), 'mixed' or 'unknown'",
}
_YAML_BOOL_HINT = ("; YAML reads unquoted yes/no/on/off/true/false as true or false, "
                   "so put the value in quotes")


def spec_error(message: str, *at: str | int) -> PydanticCustomError:
    """A validation error for a cross-field check, located at ``at`` below the checking model.

    The message goes through the context rather than the template so that
    braces in user-written titles cannot break pydantic's formatting.
    """
    return PydanticCustomError("spec", "{msg}", {"msg": message, "at": tuple(at)})


def show(value: Any) -> str:
    """A short, single-line rendering of a YAML value for a message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return "a mapping (key: value lines)"
    if isinstance(value, list | tuple):
        return "a list"
    text = str(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return "'" + text.encode("unicode_escape").decode("ascii").replace("\\\\", "\\") + "'"


def _number(kind: str) -> Callable[[ErrorDetails], str]:
    def fmt(e: ErrorDetails) -> str:
        got = e["input"]
        hint = ""
        if isinstance(got, bool):
            hint = ("; YAML reads unquoted yes/no/on/off/true/false as true or false, "
                    "not as numbers")
        elif isinstance(got, str):
            hint = "; write a number without quotes or units (e.g. 10 or 0.5)"
        return f"expected {kind}, got {show(got)}{hint}"
    return fmt


def _text(e: ErrorDetails) -> str:
    got = e["input"]
    return f"expected text, got {show(got)}" + (_YAML_BOOL_HINT if isinstance(got, bool) else "")


def _pattern(e: ErrorDetails) -> str:
    pattern = str((e.get("ctx") or {}).get("pattern", ""))
    help_ = _PATTERN_HELP.get(pattern, f"does not match the pattern {pattern}")
    return f"{show(e['input'])} {help_}"


def _choice(e: ErrorDetails) -> str:
    expected = str((e.get("ctx") or {}).get("expected", ""))
    return f"{show(e['input'])} is not allowed; expected {expected}"


def _bound(word: str) -> Callable[[ErrorDetails], str]:
    def fmt(e: ErrorDetails) -> str:
        ctx = e.get("ctx") or {}
        limit = next(iter(ctx.values()), "?")
        if isinstance(limit, float):
            limit = f"{limit:g}"
        return f"must be {word} {limit}, got {show(e['input'])}"
    return fmt


def _too_short(e: ErrorDetails) -> str:
    ctx = e.get("ctx") or {}
    if isinstance(e["input"], str):
        return "must not be empty"
    n = ctx.get("min_length", 1)
    entries = "entry" if n == 1 else "entries"
    return f"needs at least {n} {entries}, got {ctx.get('actual_length', 0)}"


def _url(e: ErrorDetails) -> str:
    return (f"{show(e['input'])} is not a valid URL; write it in full, "
            "e.g. https://api.example.kr/v1")


def _date(e: ErrorDetails) -> str:
    return f"{show(e['input'])} is not a valid date; write it as YYYY-MM-DD (e.g. 2026-01-15)"


def _value(e: ErrorDetails) -> str:
    msg = e["msg"]
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


_FORMATS: dict[str, Callable[[ErrorDetails], str]] = {
    "missing": lambda e: "missing required field",
    "float_type": _number("a number"),
    "float_parsing": _number("a number"),
    "int_type": _number("a whole number"),
    "int_parsing": _number("a whole number"),
    "int_from_float": _number("a whole number"),
    "bool_type": lambda e: f"expected true or false, got {show(e['input'])}",
    "bool_parsing": lambda e: f"expected true or false, got {show(e['input'])}",
    "string_type": _text,
    "string_too_short": _too_short,
    "too_short": _too_short,
    "string_pattern_mismatch": _pattern,
    "enum": _choice,
    "literal_error": _choice,
    "greater_than": _bound("greater than"),
    "greater_than_equal": _bound("at least"),
    "less_than": _bound("less than"),
    "less_than_equal": _bound("at most"),
    "finite_number": lambda e: f"expected a finite number, got {show(e['input'])}",
    "url_parsing": _url,
    "url_scheme": _url,
    "url_type": _url,
    "url_syntax_violation": _url,
    "date_type": _date,
    "date_parsing": _date,
    "date_from_datetime_parsing": _date,
    "date_from_datetime_inexact": lambda e: "expected a date without a time of day (YYYY-MM-DD)",
    "tuple_type": lambda e: f"expected a list, got {show(e['input'])}",
    "list_type": lambda e: f"expected a list, got {show(e['input'])}",
    "dict_type": lambda e: f"expected a mapping (key: value lines), got {show(e['input'])}",
    "model_type": lambda e: f"expected a mapping (key: value lines), got {show(e['input'])}",
    "model_attributes_type": lambda e: f"expected a mapping (key: value lines), "
                                       f"got {show(e['input'])}",
    "value_error": _value,
    "assertion_error": _value,
    "spec": lambda e: str((e.get("ctx") or {}).get("msg", e["msg"])),
}


def clean_loc(e: ErrorDetails, known: Callable[[Loc], bool]) -> Loc:
    """The error's path in the document, without pydantic's internal segments.

    pydantic inserts union branch tags ('constrained-str', "literal['total']")
    and '[key]' markers into locations. A segment is kept when the document has
    that path (``known``), or when it is the missing field itself; a ``spec``
    error's relative ``at`` path is appended.
    """
    raw = tuple(e["loc"])
    out: list[str | int] = []
    for i, part in enumerate(raw):
        cand = (*out, part)
        last = i == len(raw) - 1
        if known(cand) or (last and e["type"] in ("missing", "extra_forbidden")):
            out.append(part)
    if e["type"] == "spec":
        out.extend((e.get("ctx") or {}).get("at", ()))
    return tuple(out)


def describe(e: ErrorDetails, root: type[BaseModel] | None = None, loc: Loc = ()) -> str:
    """One line for one pydantic error (without file and field)."""
    if e["type"] == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        return f"unknown field '{name}'" + _suggest(root, loc)
    fmt = _FORMATS.get(e["type"])
    text = fmt(e) if fmt else e["msg"]
    return " ".join(text.split())  # never more than one line


def fmt_loc(loc: Loc) -> str:
    """Dotted field path: ``stages.1.composition.0.points``."""
    return ".".join(str(p) for p in loc) if loc else "(top level)"


def _suggest(root: type[BaseModel] | None, loc: Loc) -> str:
    model = model_at(root, loc[:-1]) if root is not None else None
    if model is None:
        return ""
    names = sorted(f.alias or n for n, f in model.model_fields.items())
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (allowed here: {', '.join(names)})"


def model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping found at ``loc`` below ``root``."""
    current: Any = root
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return None
    model = _as_model(current)
    return model


def _unwrap(tp: Any, part: str | int) -> Any:
    model = _as_model(tp)
    if model is not None:
        if not isinstance(part, str):
            return None
        for name, f in model.model_fields.items():
            if part in (name, f.alias):
                return f.annotation
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        for arg in args:
            got = _unwrap(arg, part)
            if got is not None:
                return got
        return None
    if origin is typing.Annotated:
        return _unwrap(args[0], part)
    if origin in (tuple, list) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _as_model(tp: Any) -> type[BaseModel] | None:
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (Union, types.UnionType):
        models = [m for a in typing.get_args(tp) if (m := _as_model(a)) is not None]
        return models[0] if len(models) == 1 else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    return None


# Characters that change how text around them is shown without being seen: the
# bidirectional embeddings, overrides and isolates (Trojan Source, CVE-2021-42574), and
# zero-width or invisible characters. In a team's name they can make two different teams
# read alike, or a report read differently from what is stored.
_HIDDEN = {
    **{c: "bidirectional control" for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                             *range(0x2066, 0x206A))},
    **{c: "invisible character" for c in (0x00AD, 0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5,
                                          0x180E, *range(0x200B, 0x200E), 0x2060, 0x2061,
                                          0x2062, 0x2063, 0x2064, 0x3164, 0xFEFF, 0xFFA0)},
}


def display_name(value: str) -> str:
    """A name shown to people: NFC-normalised, with no hidden or direction-changing characters.

    Korean text typed on different systems arrives composed (NFC) or decomposed (NFD);
    both look the same, so names are stored composed, and compared that way.
    """
    import unicodedata

    for ch in value:
        kind = _HIDDEN.get(ord(ch))
        if kind is None and unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t":
            kind = "control or format character"
        if kind is not None:
            raise spec_error(f"contains a {kind} (U+{ord(ch):04X}); names must show what "
                             "they say")
    return unicodedata.normalize("NFC", value)
