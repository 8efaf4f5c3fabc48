"""``kai audit``: sovereignty, ecosystem, licences and openness of a dossier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import user_errors

app = typer.Typer()


@app.command("audit")
@user_errors
def audit(
    dossier: Annotated[Path, typer.Argument(help="The team's dossier (YAML); relative paths in "
                                            "it are read from its folder.")],
    program: Annotated[str, typer.Option(help="Programme YAML or built-in template name.")] = (
        "k-ai-2025"),
    stage: Annotated[str | None, typer.Option(help="Stage to audit (default: the latest stage "
                                              "the dossier submits to).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full audit as "
                                                  "JSON (atomically).")] = None,
    records_out: Annotated[Path | None, typer.Option("--records", help="Write the audit "
                                                     "items as JSON Lines records for `kai "
                                                     "records import`.")] = None,
    verdict: Annotated[Path | None, typer.Option(help="The team's independence verdict (JSON "
                                                 "from `kai provenance check --json`).")] = None,
    reference_tokenizer: Annotated[Path | None, typer.Option(
        help="Tokenizer folder or file to normalise Korean tokenizer efficiency against.")] = None,
    online: Annotated[bool, typer.Option("--online", help="Fetch download counts of "
                                         "ecosystem.hub_repos from the Hugging Face Hub "
                                         "($HF_ENDPOINT).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 when the audit "
                                         "raises any flag.")] = False,
    mot_out: Annotated[Path | None, typer.Option("--mot", help="Also write the submission's "
                                                 "releases as a Model Openness Tool YAML "
                                                 "record.")] = None,
) -> None:
    """Audit a dossier: sovereignty, ecosystem, licences and openness, with evidence."""
    from rich.console import Console

    from kaieval.audit.engine import audit_dossier, load_verdict, print_audit
    from kaieval.io import atomic_write_text
    from kaieval.spec.load import load_dossier, load_program

    prog, _ = load_program(program)
    loaded = load_dossier(dossier, check_files=False)
    v = load_verdict(verdict) if verdict is not None else None
    report = audit_dossier(loaded, prog, stage, verdict=v, reference_tokenizer=reference_tokenizer,
                           online=online)
    print_audit(report, Console(highlight=False))
    if json_out is not None:
        atomic_write_text(json_out, report.model_dump_json(indent=2) + "\n")
    if records_out is not None:
        atomic_write_text(records_out, "".join(it.model_dump_json() + "\n"
                                               for it in report.items))
    if mot_out is not None:
        from kaieval.audit.mot import submission_mot, write_mot

        write_mot(submission_mot(loaded.dossier, report.stage_id), mot_out)
    if strict and report.flags:
        raise typer.Exit(1)
