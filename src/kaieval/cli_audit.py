"""``kai audit`` and ``kai tokenizer-efficiency`` (registered on ``kai``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli import app, user_errors

# --- kai audit ------------------------------------------------------------------------------


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
        from kaieval.audit.mot import releases_to_mot, write_mot

        sub = loaded.dossier.submissions[report.stage_id]
        model = sub.model.model_name if sub.model and sub.model.model_name else None
        write_mot(releases_to_mot(sub.releases, name=model or loaded.dossier.team.name,
                                  producer=loaded.dossier.team.lead, origin="KR"), mot_out)
    if strict and report.flags:
        raise typer.Exit(1)


# --- kai tokenizer-efficiency ---------------------------------------------------------------


@app.command("tokenizer-efficiency")
@user_errors
def tokenizer_efficiency(
    tokenizers: Annotated[list[Path], typer.Argument(
        metavar="TOKENIZER",
        help="tokenizer.json, SentencePiece .model, or a model folder holding one.")],
    corpus: Annotated[Path | None, typer.Option(help="Folder of *.txt files, one genre each "
                                                "(default: the bundled Korean corpus).")] = None,
    reference: Annotated[Path | None, typer.Option(help="Tokenizer to normalise every figure "
                                                   "against (ratio = this / reference).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write all figures as JSON "
                                                  "(atomically).")] = None,
    per_genre: Annotated[bool, typer.Option("--per-genre", help="One table per tokenizer "
                                            "with a row per genre.")] = False,
) -> None:
    """Korean tokenizer efficiency: characters, bytes and eojeols per token, round-trip, unk."""
    from rich.console import Console

    from kaieval.audit.tokenizer_efficiency import measure_many, print_report
    from kaieval.errors import KaiError
    from kaieval.io import atomic_write_text

    if json_out is not None and not json_out.resolve().parent.is_dir():
        raise KaiError("folder for the JSON file does not exist", where=str(json_out))
    report = measure_many(tokenizers, corpus=corpus, reference=reference)
    print_report(report, Console(highlight=False), per_genre=per_genre)
    if json_out is not None:
        atomic_write_text(json_out, report.model_dump_json(indent=2) + "\n")
