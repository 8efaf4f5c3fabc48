"""One route per action, two ways to answer: JSON to a program, a page to a browser.

Every state-changing action is one route under ``/api/v1``. The CLI (``kai remote``)
and other programs send JSON (or multipart for files) with a bearer token and get JSON;
the pages' forms post to the very same routes with the session cookie and its CSRF
token, and get a page back: a 303 redirect to the page they came from on success
(post/redirect/get, so a reload cannot post twice), or that page again with the
refusal's lines on it. There is no second, page-only handler that could drift from the
API's checks.

A request to ``/api/`` is answered as a page only when it is a form post (form-encoded or
multipart), without a token, from a client whose ``Accept`` header asks for HTML (a
browser posting a form does); paths outside ``/api/`` are pages anyway.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from kaieval.errors import KaiError, KaiErrors

M = TypeVar("M", bound=BaseModel)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_JSON_BYTES = 1_000_000
"""A JSON body larger than this is refused before parsing (the largest legitimate one,
a sheet with a 20,000-character comment, is far below)."""

Page = Callable[[list[str], int], Response]
"""Renders the page a form came from again, with the refusal's lines and status."""


class Refused(KaiError):
    """A request refused by the web layer (a body that is not the model), with its status."""

    def __init__(self, lines: list[str], status: int = 422) -> None:
        self.lines = lines
        self.http_status = status
        super().__init__("; ".join(lines))


def from_page(request: Request) -> bool:
    """True when the answer should be a page: any path outside ``/api/``, or a form post
    (form-encoded or multipart body) without a token from a client that asks for HTML."""
    if not request.url.path.startswith("/api/"):
        return True
    if getattr(request.state, "via_token", False) or request.method != "POST":
        return False
    return (request.headers.get("content-type", "").startswith(FORM_TYPES)
            and "text/html" in request.headers.get("accept", ""))


def status_of(exc: Exception) -> int:
    """The HTTP status a refusal means: the error class's ``http_status`` (409 locked or
    already done, 413 too large, 429 over a cap, ...), 404 for an unknown thing, else
    ``422``."""
    status = getattr(exc, "http_status", None)
    if isinstance(status, int):
        return status
    return 404 if isinstance(exc, LookupError) else 422


def lines_of(exc: Exception) -> list[str]:
    """The one-line messages of a refusal (several for ``KaiErrors``)."""
    if isinstance(exc, Refused):
        return exc.lines
    if isinstance(exc, KaiErrors):
        return [str(e) for e in exc.errors]
    if isinstance(exc, LookupError) and exc.args:
        return [str(exc.args[0])]
    return [str(exc)]


def refuse(request: Request, exc: Exception, page: Page) -> Response:
    """The refusal: ``{"detail", "errors"}`` with its status, or the page with its lines."""
    lines, status = lines_of(exc), status_of(exc)
    if from_page(request):
        return page(lines, status)
    return JSONResponse({"detail": "; ".join(lines), "errors": lines}, status_code=status)


def done(request: Request, answer: Any, then: str) -> Any:
    """Success: the JSON answer, or a 303 to ``then`` (a local path) for a page."""
    if from_page(request):
        return RedirectResponse(then, status_code=303)
    return answer


async def read_body(request: Request, model: type[M],
                    from_form: Callable[[FormData], Mapping[str, Any]]) -> M:
    """The body as ``model``: JSON from a program, or the page's form fields mapped by
    ``from_form``. A body that is not the model is :class:`Refused` (422) with one line
    per problem, naming the field."""
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith(FORM_TYPES):
            data: Any = dict(from_form(await request.form()))
        else:
            raw = await _bounded_body(request)
            data = json.loads(raw) if raw else {}
        return model.model_validate(data)
    except ValidationError as e:
        raise Refused([f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
                       for err in e.errors()]) from None
    except (ValueError, RecursionError) as e:
        raise Refused([f"body: not JSON ({' '.join(str(e).split())})"]) from None


def prefixed(form: FormData, prefix: str, convert: Callable[[str], Any]) -> dict[str, Any]:
    """The form's non-empty fields named ``<prefix><id>`` as ``{id: convert(text)}``; text
    ``convert`` cannot read is kept as text, so the model refuses it naming the field."""
    out: dict[str, Any] = {}
    for name, value in form.multi_items():
        text = str(value).strip()
        if name.startswith(prefix) and text:
            try:
                out[name[len(prefix):]] = convert(text)
            except ValueError:
                out[name[len(prefix):]] = text
    return out


async def _bounded_body(request: Request) -> bytes:
    """The body, read only up to ``MAX_JSON_BYTES`` (a larger one is refused, 413, without
    being held whole in memory)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BYTES:
            raise Refused([f"body: over {MAX_JSON_BYTES} bytes"], 413)
        chunks.append(chunk)
    return b"".join(chunks)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` describing a JSON request body of ``model`` (read by
    :func:`read_body`, so FastAPI does not parse it itself). The models are flat: a model
    with nested definitions is refused here, so the spec never has dangling refs."""
    schema = model.model_json_schema()
    if "$defs" in schema:
        raise ValueError(f"{model.__name__}: nested models are not described here")
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}
