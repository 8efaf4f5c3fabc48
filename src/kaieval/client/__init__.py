"""A client of the web app's JSON API (``/api/v1``), used by ``kai remote``.

Two layers: :mod:`kaieval.client.http` talks to the server (the server URL check, the
token file, bounded and timed requests, every failure as a one-line ``KaiError``), and
:mod:`kaieval.client.api` has one typed function per API endpoint that checks the shape
of the answer before anyone reads it. Nothing here imports the web app: the client runs
where the server's dependencies (the store, the scoring engine) need not be installed.

This file imports nothing (httpx alone takes a quarter of a second to import), so the
CLI can read the defaults below while ``kai --help`` stays fast.
"""

from __future__ import annotations

DEFAULT_SERVER = "http://127.0.0.1:8000"
"""Where ``kai serve`` listens by default."""
DEFAULT_TIMEOUT = 30.0
"""Seconds for each step of a request (connect, send, wait) and for reading the answer."""
