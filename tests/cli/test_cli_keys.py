"""`kai keys init` / `show`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kaieval.cli import app

runner = CliRunner()


def test_init_writes_a_private_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    res = runner.invoke(app, ["keys", "init", "--key-dir", str(keys)])
    assert res.exit_code == 0, res.output
    fingerprint = res.output.split("fingerprint: ")[1].strip()
    assert stat.S_IMODE(os.stat(keys / "signing-key.pem").st_mode) == 0o600
    assert len(bytes.fromhex((keys / "signing-key.pub").read_text().strip())) == 32
    pem = (keys / "signing-key.pem").read_bytes()
    res = runner.invoke(app, ["keys", "init", "--key-dir", str(keys)])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "already exists" in res.output
    assert (keys / "signing-key.pem").read_bytes() == pem
    show = runner.invoke(app, ["keys", "show", "--key-dir", str(keys)])
    assert show.exit_code == 0 and f"fingerprint {fingerprint}" in show.output


def test_init_force_retires_the_old_public_key(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    monkeypatch.setenv("KAI_KEY_DIR", str(keys))
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    res = runner.invoke(app, ["keys", "init", "--force"])
    assert res.exit_code == 0, res.output
    assert len(list((keys / "retired").glob("*.pub"))) == 1
    show = runner.invoke(app, ["keys", "show"])
    assert "signing:" in show.output and "retired:" in show.output


def test_show_without_a_key_is_one_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["keys", "show", "--key-dir", str(tmp_path / "none")])
    assert res.exit_code == 2 and "run `kai keys init`" in res.output
