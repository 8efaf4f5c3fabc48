"""A tiny local HTTP server that answers every request the same wrong way (HTML, garbage,
a huge body, a redirect, a drip, silence...): what a misconfigured proxy or a hostile host
might send. Imported by module name (the test folder is on sys.path)."""

from __future__ import annotations

import gzip
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STOP = threading.Event()


def _send(h: BaseHTTPRequestHandler, code: int, ctype: str, body: bytes,
          headers: dict[str, str] | None = None, length: int | None = None) -> None:
    h.send_response(code)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body) if length is None else length))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)


def _stream(h: BaseHTTPRequestHandler) -> None:
    """17 MiB of JSON-ish bytes with no length given (read until the connection closes)."""
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Connection", "close")
    h.end_headers()
    chunk = b" " * (1 << 20)
    for _ in range(17):
        h.wfile.write(chunk)


def _drip(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "40")
    h.end_headers()
    for _ in range(40):
        if STOP.wait(0.2):
            return
        h.wfile.write(b" ")
        h.wfile.flush()


def _hang(h: BaseHTTPRequestHandler) -> None:
    STOP.wait(10)  # bounded: the test's client gives up long before


MODES: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {
    "html": lambda h: _send(h, 200, "text/html; charset=utf-8",
                            b"<html><body><h1>Welcome to nginx!</h1></body></html>"),
    "garbage": lambda h: _send(h, 200, "application/json", b"\x89PNG\r\n\x1a\n\x00\xffgarbage"),
    "deep": lambda h: _send(h, 200, "application/json", b"[" * 5000 + b"]" * 5000),
    "shape": lambda h: _send(h, 200, "application/json", b'["not", "an", "object"]'),
    "huge_declared": lambda h: _send(h, 200, "application/json", b"{", length=1 << 30),
    "huge_stream": _stream,
    "redirect": lambda h: _send(h, 302, "text/html", b"", {
        "Location": "http://attacker.example/steal"}),
    "error_html": lambda h: _send(h, 502, "text/html", b"<html><h1>502 Bad Gateway</h1></html>"),
    "escape": lambda h: _send(h, 403, "application/json", json.dumps(
        {"detail": "\x1b[2J\x1b]0;pwned\x07 go away \u202eevil"}).encode()),
    "gzip": lambda h: _send(h, 200, "application/json", gzip.compress(b"{}" * 1000),
                            {"Content-Encoding": "gzip"}),
    "drip": _drip,
    "hang": _hang,
    "me": lambda h: _send(h, 200, "application/json", b'{"name": "kim", "role": "expert"}'),
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _any(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 1 << 20))
            MODES[self.server.mode](self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, as it should

    do_GET = do_POST = do_PUT = _any

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mode = "html"


@contextmanager
def lying(mode: str, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """A server on a free loopback port answering in ``mode``; yields its base URL.
    With ``tls`` (certificate and key files) it speaks https."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.mode = mode
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    STOP.clear()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        STOP.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, and its key (PEM files in ``folder``)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def closed_port() -> str:
    """The URL of a loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    return f"http://127.0.0.1:{port}"
