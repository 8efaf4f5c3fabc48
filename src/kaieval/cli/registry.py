"""``kai registry``: the reference models an independence gate checks candidates against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import user_errors

app = typer.Typer(no_args_is_help=True,
                  help="Reference models the independence gate checks against.")

RegistryOpt = Annotated[Path | None, typer.Option(
    "--registry", help="Registry folder (default: $KAI_REGISTRY or ./registry).")]


@app.command("add")
@user_errors
def registry_add(
    source: Annotated[Path, typer.Argument(help="A model folder or a fingerprint file.")],
    name: Annotated[str, typer.Option(help="Name of the reference (unique).")],
    origin: Annotated[str, typer.Option(help="Country of origin, ISO code (e.g. US, CN, KR), "
                                        "or 'unknown'.")],
    licence: Annotated[str, typer.Option(help="Licence of the weights.")] = "unknown",
    family: Annotated[str, typer.Option(help="Model family (e.g. llama, qwen).")] = "",
    released: Annotated[str, typer.Option(help="Release date (YYYY-MM[-DD]).")] = "",
    link: Annotated[bool, typer.Option(help="Keep a link to the model folder instead of "
                                       "writing a fingerprint (full power, slower).")] = False,
    replace: Annotated[bool, typer.Option(help="Supersede a reference of the same "
                                          "name.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Add a reference model (as a fingerprint, or a folder link) to the registry."""
    from kaieval.registry import add_reference, default_registry_dir

    folder = registry or default_registry_dir()
    e = add_reference(folder, source, name=name, origin=origin, licence=licence, family=family,
                      released=released, link=link, replace=replace)
    typer.echo(f"added {e.name} ({e.kind}, {e.sha256[:19]}…) to {folder}")


@app.command("list")
@user_errors
def registry_list(
    registry: RegistryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, one object per "
                                          "reference.")] = False,
) -> None:
    """List the registry's references and their metadata."""
    from rich.console import Console
    from rich.table import Table

    from kaieval.registry import default_registry_dir, load_registry

    reg = load_registry(registry or default_registry_dir())
    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in reg.entries],
                              ensure_ascii=False, indent=2))
        return
    if not reg.entries:
        typer.echo(f"no references in {reg.folder}")
        return
    table = Table(title=f"registry {reg.folder}", title_justify="left")
    for col in ("name", "family", "origin", "licence", "released", "kind", "sha256"):
        table.add_column(col)
    for e in reg.entries:
        table.add_row(e.name, e.family, e.origin, e.licence, e.released, e.kind,
                      e.sha256[:19] + "…")
    Console().print(table)
