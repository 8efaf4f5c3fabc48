"""The key that signs session cookies: ``$KAI_SECRET_KEY``, else a file made once.

The file lives in the key folder (``$KAI_KEY_DIR`` or ``~/.config/kaieval/keys``, next to
the audit-log signing key), mode 0600, so restarting ``kai serve`` keeps people logged in
and several workers share one key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from kaieval.errors import KaiError
from kaieval.store.checkpoint import resolve_key_dir

ENV = "KAI_SECRET_KEY"
FILE = "web-session.key"


def session_secret(key_dir: Path | None = None) -> str:
    """The session-signing secret (at least 32 characters)."""
    env = os.environ.get(ENV)
    if env:
        if len(env) < 32:
            raise KaiError(f"${ENV} must be at least 32 characters")
        return env
    folder = resolve_key_dir(key_dir)
    path = folder / FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = path.read_text(encoding="ascii").strip()
        if len(text) < 32:
            raise KaiError("session key file is too short; delete it to make a new one",
                           where=str(path)) from None
        return text
    except OSError as e:
        raise KaiError(f"cannot create the session key: {e.strerror or e}",
                       where=str(path)) from None
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value + "\n")
    return value
