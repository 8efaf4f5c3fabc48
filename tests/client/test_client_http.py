"""The API client alone: the server URL check, the token file, and every way a server can
fail or lie (each a one-line RemoteError naming the request), against real local sockets."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from lying_server import closed_port, lying, self_signed  # type: ignore[import-not-found]

from kaieval.client import api
from kaieval.client.http import ApiClient, RemoteError, clean, read_token, segment, server_url
from kaieval.errors import KaiError

TOKEN = "kai_" + "A" * 43


def _fails(url: str, mode_path: str = "/api/v1/me", **kw: object) -> RemoteError:
    with ApiClient(url, TOKEN, **kw) as c, pytest.raises(RemoteError) as err:  # type: ignore[arg-type]
        c.call("GET", mode_path)
    msg = str(err.value)
    assert "\n" not in msg and TOKEN not in msg
    assert msg.startswith(f"GET {url}/api/v1/me: "), msg
    return err.value


@pytest.mark.parametrize(("mode", "words"), [
    ("html", "the answer is text/html, not JSON (is http://127.0.0.1:"),
    ("garbage", "the answer is not valid JSON (not UTF-8"),
    ("deep", "the answer is not valid JSON (nested deeper than 64 levels)"),
    ("huge_declared", "the answer would be 1073741824 bytes, over the 16777216-byte limit"),
    ("huge_stream", "the answer is over the 16777216-byte limit; stopped reading"),
    ("redirect", "the server redirects (302 Found) to http://attacker.example/steal; not "
                 "followed"),
    ("error_html", "server error 502 Bad Gateway: the answer is text/html, not JSON"),
    ("gzip", "the answer is compressed (gzip) although none was asked for"),
])
def test_a_lying_server_is_one_line(mode: str, words: str) -> None:
    with lying(mode) as url:
        err = _fails(url)
    assert words in str(err), str(err)


def test_wrong_shape_is_caught_before_use() -> None:
    with lying("shape") as url, ApiClient(url, TOKEN) as c:
        with pytest.raises(RemoteError, match=r"/api/v1/me: expected a JSON object, got a "
                                              r"list: not this API's answer$"):
            api.me(c)
        with pytest.raises(RemoteError, match=r"\[0\]: expected a JSON object, got a string"):
            api.assignments(c)


def test_a_hostile_detail_cannot_drive_the_terminal() -> None:
    with lying("escape") as url:
        msg = str(_fails(url))
    assert "\x1b" not in msg and "\x07" not in msg and "\u202e" not in msg
    assert "refused 403 Forbidden: [U+001B][2J[U+001B]]0;pwned[U+0007] go away [U+202E]evil" \
        in msg


def test_timeouts_are_bounded() -> None:
    with lying("hang") as url:
        start = time.monotonic()
        err = _fails(url, timeout=0.5)
        assert "no answer within 0.5 s (--timeout)" in str(err)
        assert time.monotonic() - start < 5
    with lying("drip") as url:  # every byte within the read timeout, the whole far over it
        start = time.monotonic()
        err = _fails(url, timeout=1.0)
        assert "the answer took over 1 s to arrive" in str(err)
        assert time.monotonic() - start < 5


def test_https_checks_the_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    cert, key = self_signed(tmp_path)
    with lying("me", tls=(cert, key)) as url:
        err = _fails(url)
        assert "the server's certificate is not trusted (self-signed certificate); for a " \
               "private certificate authority, set SSL_CERT_FILE to its bundle" in str(err)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the programme's own authority
        with ApiClient(url, TOKEN) as c:
            assert api.me(c) == {"name": "kim", "role": "expert"}
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(KaiError, match=r"missing\.pem: cannot load the certificate authorities"):
        ApiClient("https://127.0.0.1:1", TOKEN)


def test_an_unreachable_server_is_one_line() -> None:
    url = closed_port()
    err = _fails(url)
    assert f"cannot reach the server: connection refused (is 'kai serve' running at {url}?)" \
        in str(err)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:9/", "http://[::1]:80",
                                 "https://kai.example.org", "https://kai.example.org/prefix/"])
def test_good_server_urls(url: str) -> None:
    assert server_url(url, sending_token=True) == url.rstrip("/")


@pytest.mark.parametrize(("url", "words"), [
    ("http://10.0.0.5:8000", "refusing to send the API token over plain http to 10.0.0.5"),
    ("http://kai.example.org", "refusing to send the API token over plain http"),
    ("ftp://127.0.0.1", "expected http://HOST[:PORT] or https://HOST[:PORT]"),
    ("127.0.0.1:8000", "expected http://HOST"),
    ("https://me:pw@kai.example.org", "must not carry a user or password"),
    ("https://kai.example.org/?x=1", "no query or fragment"),
    ("http://127.0.0.1:99999", "not a valid URL"),
])
def test_bad_server_urls(url: str, words: str) -> None:
    with pytest.raises(RemoteError, match=r"^--server ") as err:
        server_url(url, sending_token=True)
    assert words in str(err.value)


def test_plain_http_elsewhere_only_when_asked_or_without_a_token() -> None:
    assert server_url("http://10.0.0.5:8000", sending_token=True, insecure_http=True)
    assert server_url("http://10.0.0.5:8000", sending_token=False)  # public data, no token


def test_the_token_file_is_read_like_untrusted_input(tmp_path: Path) -> None:
    good = tmp_path / "t"
    good.write_text(TOKEN + "\n")
    good.chmod(0o600)
    warned: list[str] = []
    assert read_token(good, warned.append) == TOKEN and warned == []
    good.chmod(0o644)
    assert read_token(good, warned.append) == TOKEN
    assert warned == [f"{good}: others may read this token file (chmod 600 {good})"]
    link = tmp_path / "link"
    link.symlink_to(good)
    assert read_token(link) == TOKEN  # followed, and the opened file is what is checked
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(KaiError, match="is a FIFO, not a regular file: refused"):
        read_token(fifo)  # returns at once: a FIFO with no writer does not hang it
    dev = tmp_path / "zero"
    dev.symlink_to("/dev/zero")
    with pytest.raises(KaiError, match="is a device, not a regular file"):
        read_token(dev)
    big = tmp_path / "big"
    big.write_bytes(b"kai_" + b"A" * 5000)
    with pytest.raises(KaiError, match="exceeds the 4096 bytes limit for token files"):
        read_token(big)
    secret = tmp_path / "password"
    secret.write_text("hunter2-not-a-token\n")
    with pytest.raises(KaiError) as err:
        read_token(secret)
    assert "hunter2" not in str(err.value) and "does not hold a kai API token" in str(err.value)
    with pytest.raises(KaiError, match="cannot read: No such file"):
        read_token(tmp_path / "missing")


def test_ids_cannot_escape_their_path_segment() -> None:
    assert segment("s1", "stage") == "s1"
    assert segment("a/b c", "team") == "a%2Fb%20c"
    for bad in ("", ".", ".."):
        with pytest.raises(KaiError, match="not a valid id"):
            segment(bad, "stage")


def test_clean_keeps_one_line() -> None:
    assert clean("a\nb\r\n\tc") == "a b c"
    assert clean("x" * 10, limit=4) == "xxxx..."
    assert clean("\x9b31m") == "[U+009B]31m"


def test_client_limits_match_the_servers() -> None:
    from kaieval.web import submissions

    assert api.MAX_DOSSIER_BYTES == submissions.MAX_DOSSIER_BYTES
    assert api.MAX_UPLOAD_BYTES == submissions.MAX_UPLOAD_BYTES


def test_a_bad_timeout_is_refused() -> None:
    with pytest.raises(KaiError, match="--timeout 0: must be more than 0 seconds"):
        ApiClient("http://127.0.0.1:1", timeout=0)
