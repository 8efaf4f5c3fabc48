"""``kai keys``: the Ed25519 key that signs the audit log's checkpoints (docs/cmd-keys.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import user_errors

app = typer.Typer(no_args_is_help=True, help="Create and show the key that signs audit-log "
                  "checkpoints.")

KeyDirOpt = Annotated[Path | None, typer.Option(
    "--key-dir", help="Key folder (default: $KAI_KEY_DIR or ~/.config/kaieval/keys).")]


@app.command("init")
@user_errors
def keys_init(key_dir: KeyDirOpt = None,
              force: Annotated[bool, typer.Option(
                  "--force", help="Replace an existing key (its public key is kept under "
                  "retired/ so old checkpoints still verify).")] = False) -> None:
    """Create the signing key; from now on every store write appends a signed checkpoint."""
    from kaieval.store.checkpoint import init_keys, resolve_key_dir

    folder = resolve_key_dir(key_dir)
    signer = init_keys(folder, force=force)
    typer.echo(f"wrote {folder / 'signing-key.pem'} (private: keep it off the database host's "
               "backups)")
    typer.echo(f"wrote {folder / 'signing-key.pub'}")
    typer.echo(f"fingerprint: {signer.fingerprint}")


@app.command("show")
@user_errors
def keys_show(key_dir: KeyDirOpt = None) -> None:
    """Print the public key(s) and fingerprint(s) checkpoints are checked with."""
    from cryptography.hazmat.primitives import serialization

    from kaieval.errors import KaiError
    from kaieval.store.checkpoint import KeyFolder, resolve_key_dir

    folder = KeyFolder(resolve_key_dir(key_dir))
    signer = folder.signer()
    keys = folder.public_keys()
    if not keys:
        raise KaiError("no key here: run `kai keys init`", where=str(folder.path))
    for fp, key in keys.items():
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if signer is None:
            role = "public key only (this folder cannot sign)"
        else:
            role = "signing" if fp == signer.fingerprint else "retired"
        typer.echo(f"{role}: public key {raw.hex()}, fingerprint {fp}")
