"""Talking to a ``kai serve`` server: the URL check, the token file, bounded requests.

Everything the server says is treated as untrusted input, as a team's file is: the
answer is read with a size limit and a time limit, must be JSON with the declared media
type (and no compression that was not asked for), and is parsed with the project's
depth-checked parser (:func:`kaieval.io.parse_json`). Every failure -- an unreachable
server, a timeout, a redirect, an HTML page or garbage where JSON was expected, a refusal
-- is one :class:`RemoteError` line naming the request and what went wrong, with the
server's own ``detail`` (cleaned of control characters, so a hostile server cannot drive
the terminal) when it gave one.

The API token is read from a file (never an argument, so it is not in shell history or
``ps``), sent only in the ``Authorization`` header to the one server named, never
through an environment-configured proxy (``trust_env=False`` also keeps ``.netrc``
out), never after a redirect (none is followed), and never over plain ``http://`` to
a host other than this machine unless the caller says ``insecure_http``.
"""

from __future__ import annotations

import ipaddress
import json as jsonlib
import os
import re
import ssl
import stat
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from kaieval.client import DEFAULT_TIMEOUT
from kaieval.errors import KaiError, KaiErrors
from kaieval.io import MiB, parse_json, read_bounded_bytes

MAX_ANSWER_BYTES = 16 * MiB
"""The largest answer read: the API's biggest (an arena or committee overview) are KBs."""
MAX_TOKEN_BYTES = 4096
"""A token file holds one ``kai_`` token of about 47 characters and a line break."""
TOKEN_SHAPE = re.compile(r"kai_[A-Za-z0-9_-]{16,96}")
"""What ``kaieval.web.accounts.create_account`` makes (``kai_`` + URL-safe base64)."""
MAX_DETAIL = 2000
"""Characters of a server's ``detail`` shown (a refusal is one line, not a page)."""

Upload = tuple[str, bytes]
"""A file part: its name as sent and its bytes."""


class RemoteError(KaiError):
    """The server could not be asked, or refused, or answered something unusable.

    ``status`` is the HTTP status of a refusal (None when no usable answer came back).
    """

    def __init__(self, message: str, *, where: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, where=where)
        self.status = status


class RemoteRefusals(KaiErrors):
    """A refusal with one line per problem (a dossier's ``kai validate`` lines)."""

    def __init__(self, lines: Sequence[str], status: int) -> None:
        super().__init__([KaiError(line) for line in lines])
        self.status = status


_UNSEEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def clean(text: str, limit: int = MAX_DETAIL) -> str:
    """Server text made safe for one terminal line: control, C1 and bidi characters shown
    as their code point (an escape sequence in a ``detail`` must not reach the terminal),
    whitespace runs collapsed, cut at ``limit`` characters."""
    shown = _UNSEEN.sub(lambda m: f"[U+{ord(m.group()):04X}]" if m.group() not in "\t\n\r"
                        else " ", text)
    shown = " ".join(shown.split())
    return shown if len(shown) <= limit else shown[:limit] + "..."


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1): traffic stays on this machine."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_url(raw: str, *, sending_token: bool, insecure_http: bool = False) -> str:
    """The server's base URL, checked: ``http``/``https`` with a host, no user or password,
    query or fragment (an optional path prefix, as behind a reverse proxy, is kept).

    Plain ``http`` to a host other than this machine is refused when a token would be sent:
    anyone on the network path could read the bearer token and act as its account.
    """
    where = f"--server {clean(raw, 200)}"
    try:
        parts = urlsplit(raw.strip())
        host = parts.hostname or ""
        _ = parts.port  # a malformed port raises here
    except ValueError as err:
        raise RemoteError(f"not a valid URL ({err})", where=where) from None
    if parts.scheme not in ("http", "https") or not host:
        raise RemoteError("expected http://HOST[:PORT] or https://HOST[:PORT]", where=where)
    if parts.username is not None or parts.password is not None:
        raise RemoteError("a URL must not carry a user or password (the token file "
                          "identifies you)", where=where)
    if parts.query or parts.fragment:
        raise RemoteError("a server URL has no query or fragment", where=where)
    if parts.scheme == "http" and sending_token and not insecure_http and not is_loopback(host):
        raise RemoteError(f"refusing to send the API token over plain http to {host}, which "
                          "is not this machine: anyone on the network could read it; use "
                          "https://, or --insecure-http if the network is trusted",
                          where=where)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def read_token(path: Path, warn: Callable[[str], None] | None = None) -> str:
    """The API token in ``path``, read as every untrusted file is read (a regular file
    only, symlinks resolved and the opened file checked, at most 4 KB: a FIFO cannot hang
    the command). The file's text is never echoed: an error says only what is wrong.
    ``warn`` is told when others may read the file (``kai users add`` writes it 0600)."""
    raw = read_bounded_bytes(path, MAX_TOKEN_BYTES, "token files")
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if TOKEN_SHAPE.fullmatch(token) is None:
        raise KaiError("does not hold a kai API token (one line starting 'kai_', as "
                       "'kai users add NAME --token-out FILE' writes it)", where=str(path))
    if warn is not None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = 0
        if stat.S_IMODE(mode) & 0o077:
            warn(f"{path}: others may read this token file (chmod 600 {path})")
    return token


def segment(value: str, what: str) -> str:
    """One path segment from the caller (a stage, team or battle id), percent-encoded:
    ``/``, ``..`` or an empty id could otherwise point the request at another route."""
    if value in ("", ".", "..") or len(value) > 200:
        raise KaiError(f"{what} {clean(value, 60)!r}: not a valid id")
    return quote(value, safe="")


def _why(exc: BaseException) -> str:
    """The most specific reason in an exception chain (``connection refused``)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror and not isinstance(seen, ssl.SSLError):
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    text = clean(str(exc), 300)
    return text or type(exc).__name__


def _tls_problem(exc: BaseException) -> str | None:
    """The TLS failure in an exception chain, in words, or None when it is not one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            why = clean(str(seen.verify_message), 200)
            return (f"the server's certificate is not trusted ({why}); for a private "
                    "certificate authority, set SSL_CERT_FILE to its bundle")
        if isinstance(seen, ssl.SSLError):
            return f"TLS failed ({clean(str(seen.reason or seen), 200)})"
        seen = seen.__cause__ or seen.__context__
    return None


def tls_context() -> ssl.SSLContext | bool:
    """Certificate checks as usual (``True``: httpx's default bundle), with the CA bundle
    named by ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set (``trust_env=False`` would
    otherwise ignore them, and a programme's own server may use a private authority)."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        return True
    try:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    except (OSError, ssl.SSLError) as err:
        raise KaiError(f"cannot load the certificate authorities: {_why(err)}",
                       where=cafile or capath) from None


def _status_words(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class ApiClient:
    """One server and (optionally) one account's token; ``call`` makes one API request."""

    def __init__(self, server: str, token: str | None = None, *, insecure_http: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, max_bytes: int = MAX_ANSWER_BYTES) -> None:
        if timeout <= 0:
            raise KaiError(f"--timeout {timeout}: must be more than 0 seconds")
        self.base = server_url(server, sending_token=token is not None,
                               insecure_http=insecure_http)
        self.timeout = timeout
        self.max_bytes = max_bytes
        headers = {"Accept": "application/json", "Accept-Encoding": "identity",
                   "User-Agent": "kai-remote"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout),
                                  follow_redirects=False, trust_env=False,
                                  verify=tls_context())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, *, json: Any = None,
             data: dict[str, str] | None = None,
             files: Sequence[tuple[str, Upload]] | None = None,
             listing: bool = False) -> Any:
        """``method path`` (``path`` from ``/api/v1``, segments already encoded); the
        answer's JSON. Refusals and unusable answers raise :class:`RemoteError` naming the
        request, or :class:`RemoteRefusals` for a refusal listing several problems, or any
        refusal at all with ``listing`` (a dossier's lines, printed as ``kai validate``
        prints them)."""
        url = f"{self.base}{path}"
        where = f"{method} {url}"
        parts = None if files is None else [
            (field, (name, blob, "application/octet-stream")) for field, (name, blob) in files]
        try:
            with self._http.stream(method, url, json=json, data=data, files=parts) as res:
                raw = self._read(res, where)
        except httpx.TimeoutException:
            raise RemoteError(f"no answer within {self.timeout:g} s (--timeout)",
                              where=where) from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                httpx.WriteError, httpx.UnsupportedProtocol, httpx.ProxyError) as err:
            tls = _tls_problem(err)
            if tls is not None:
                raise RemoteError(tls, where=where) from None
            raise RemoteError(f"cannot reach the server: {_why(err)} (is 'kai serve' running "
                              f"at {self.base}?)", where=where) from None
        except httpx.HTTPError as err:
            raise RemoteError(f"request failed: {_why(err)}", where=where) from None
        return self._answer(res, raw, where, listing)

    def _read(self, res: httpx.Response, where: str) -> bytes:
        """The answer's bytes: refused over ``max_bytes`` (declared or counted), when
        compressed against our ``Accept-Encoding: identity``, or when slower than the
        timeout as a whole (a server dripping a byte a second never trips a read timeout)."""
        encoding = res.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise RemoteError(f"the answer is compressed ({clean(encoding, 40)}) although "
                              "none was asked for; refused", where=where)
        declared = res.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise RemoteError(f"the answer would be {int(declared)} bytes, over the "
                              f"{self.max_bytes}-byte limit; not read", where=where)
        deadline = time.monotonic() + self.timeout
        chunks, size = [], 0
        for chunk in res.iter_raw():
            size += len(chunk)
            if size > self.max_bytes:
                raise RemoteError(f"the answer is over the {self.max_bytes}-byte limit; "
                                  "stopped reading", where=where)
            if time.monotonic() > deadline:
                raise RemoteError(f"the answer took over {self.timeout:g} s to arrive "
                                  "(--timeout); stopped reading", where=where)
            chunks.append(chunk)
        return b"".join(chunks)

    def _answer(self, res: httpx.Response, raw: bytes, where: str, listing: bool) -> Any:
        code = res.status_code
        content_type = res.headers.get("content-type", "")
        if 300 <= code < 400:
            target = clean(res.headers.get("location", "nowhere"), 200)
            raise RemoteError(f"the server redirects ({_status_words(code)}) to {target}; not "
                              "followed (point --server at the address you mean)",
                              where=where, status=code)
        body: Any = None
        problem = ""
        if not _is_json(content_type):
            kind = clean(content_type.split(";")[0], 60) or "no content type"
            problem = f"the answer is {kind}, not JSON (is {self.base} a kai server?)"
        else:
            try:
                body = parse_json(raw, where)
            except KaiError as err:
                why = err.detail.removeprefix("not valid JSON: ")
                problem = f"the answer is not valid JSON ({clean(why, 200)})"
        if 200 <= code < 300:
            if problem:
                raise RemoteError(problem, where=where, status=code)
            return body
        raise self._refusal(code, body, problem, where, listing)

    def _refusal(self, code: int, body: Any, problem: str, where: str,
                 listing: bool) -> KaiError:
        """The error for a non-2xx answer: the server's ``detail`` (or ``errors``, one line
        each) when it sent the API's JSON, else what came instead."""
        if isinstance(body, dict):
            lines = body.get("errors")
            if (isinstance(lines, list) and (len(lines) > 1 or (listing and lines))
                    and all(isinstance(x, str) for x in lines)):
                return RemoteRefusals([clean(x) for x in lines], code)
            detail = _detail(body.get("detail"))
        else:
            detail = ""
        words = _status_words(code)
        if not detail:
            detail = problem or "no detail given"
        hint = {401: " (the token is not accepted: wrong, or its account disabled; "
                     "--token-file)"}.get(code, "")
        what = "server error" if code >= 500 else "refused"
        return RemoteError(f"{what} {words}: {detail}{hint}", where=where, status=code)


def _detail(value: Any) -> str:
    """FastAPI's ``detail``: a string here; a list of ``{loc, msg}`` from a stock app."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        msgs = []
        for item in value[:5]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p is not None)
                msgs.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg")))
        return clean("; ".join(msgs))
    if value is None:
        return ""
    return clean(jsonlib.dumps(value, ensure_ascii=False))
