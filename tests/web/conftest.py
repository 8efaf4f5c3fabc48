"""Fixtures of the web tests: an app over a real store (SQLite file, or PostgreSQL), the
records-check programme (tests/data/bad_records: stage s1 with an `experts` committee of
two items) and accounts for every role. Passwords are argon2-hashed for real, so the
accounts are made once per module on SQLite and the file is copied per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_helpers import Web, make_ctx, populate  # type: ignore[import-not-found]

from kaieval.store import Store
from kaieval.web.app import create_app


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str],
                                                                    dict[str, str]]:
    path = tmp_path_factory.mktemp("web") / "template.sqlite"
    store = Store(f"sqlite:///{path}")
    passwords, tokens = populate(store)
    store.close()
    return path, passwords, tokens


@pytest.fixture
def web(_template: tuple[Path, dict[str, str], dict[str, str]], tmp_path: Path) -> Iterator[Web]:
    """A fresh SQLite store holding the accounts (copied from a per-module template)."""
    path, passwords, tokens = _template
    db = tmp_path / "store.sqlite"
    shutil.copy(path, db)
    ctx = make_ctx(f"sqlite:///{db}")
    yield Web(create_app(ctx), ctx, passwords, tokens)
    ctx.store.close()


@pytest.fixture
def web_any(store_url: str) -> Iterator[Web]:
    """The same on each backend (SQLite and PostgreSQL), accounts made afresh."""
    ctx = make_ctx(store_url)
    passwords, tokens = populate(ctx.store)
    yield Web(create_app(ctx), ctx, passwords, tokens)
    ctx.store.close()



@pytest.fixture(autouse=True)
def _upload_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Uploads of every web test go to the test's own folder (never ./kai-uploads)."""
    monkeypatch.setenv("KAI_UPLOAD_DIR", str(tmp_path / "uploads"))
