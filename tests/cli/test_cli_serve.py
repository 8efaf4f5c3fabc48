"""``kai serve --workers N``: several processes over one store, started as a user starts them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from kaieval.store import Store
from kaieval.web.accounts import Role, create_account

DATA = Path(__file__).resolve().parents[1] / "data" / "bad_records"
SRC = Path(__file__).resolve().parents[2] / "src"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_workers_serve_one_store_with_one_login_limit(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.sqlite'}"
    with Store(db, key_dir=tmp_path / "keys") as store:
        create_account(store, "kim", Role.EXPERT, affiliation="Seoul Institute", actor="t")
    port = _port()
    env = {**os.environ, "KAI_KEY_DIR": str(tmp_path / "keys"),
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("KAI_SECRET_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from kaieval.cli import app; app()", "serve", "--program",
         str(DATA / "program.yaml"), *(str(DATA / f"{t}.yaml") for t in ("alpha", "beta")),
         "--db", db, "--port", str(port), "--workers", "2"], env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # bounded: 60 s for two processes to start
            try:
                if httpx.get(f"{base}/api/v1/public/stages", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "kai serve exited"
            time.sleep(0.1)
        codes = []
        for _ in range(12):  # new connections: the workers share them out
            with httpx.Client(base_url=base, timeout=10) as c:
                page = c.get("/login")
                csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
                codes.append(c.post("/login", data={"name": "kim", "password": "wrong",
                                                    "csrf": csrf}).status_code)
        # one limit of 10/minute for the name, whichever worker answered (and the session
        # secret is shared: each worker accepted the other's CSRF cookie)
        assert codes == [401] * 10 + [429] * 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
