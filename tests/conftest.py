"""Fixtures shared across test packages."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from kaieval.store import parse_url

PG_ENV = "KAI_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _key_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the signing-key folder at an empty temp folder: no test signs with, or writes
    checkpoints into, a real ``~/.config/kaieval/keys`` (tests that want a key create one)."""
    monkeypatch.setenv("KAI_KEY_DIR", str(tmp_path_factory.mktemp("keys") / "keys"))
    # remembered file digests (kaieval.filehash) go to a temp file, not ~/.cache
    monkeypatch.setenv("KAI_HASH_CACHE", str(tmp_path_factory.getbasetemp() / "file-hashes.json"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A URL to an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{os.path.join(tmp_path, 'store.sqlite')}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} not set (run .ci/postgres.sh and export "
                    f"{PG_ENV}=postgresql+psycopg://kai:kai@127.0.0.1:5432/kaitest)")
    schema = f"kt_{uuid.uuid4().hex[:16]}"
    admin = create_engine(parse_url(base))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = parse_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium (Playwright's own browser download does not work here)."""
    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        exe = None
    if exe is None:
        if os.environ.get("KAI_REQUIRE_BROWSER"):
            pytest.fail("KAI_REQUIRE_BROWSER is set but Chromium or Playwright is missing")
        pytest.skip("Chromium/Playwright not installed (CI installs them)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def vllm_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vLLM tests' tiny model, built once per session (``vllm_served.build_model``)."""
    from vllm_served import build_model

    return build_model(tmp_path_factory.mktemp("vllm-model"))


@pytest.fixture(scope="module")
def vllm_server(vllm_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[str]:
    """A real vLLM server on that model, one per test module (no state carried between
    modules: each starts with an empty prefix cache)."""
    from vllm_served import served

    with served(vllm_model_dir, tmp_path_factory.mktemp("vllm-log") / "server.log") as base:
        yield base
