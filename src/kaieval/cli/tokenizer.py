"""``kai tokenizer-efficiency``: Korean tokenizer efficiency of one or more tokenizers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import user_errors
from kaieval.errors import KaiError

app = typer.Typer()


@app.command("tokenizer-efficiency")
@user_errors
def tokenizer_efficiency(
    tokenizers: Annotated[list[Path], typer.Argument(
        metavar="TOKENIZER",
        help="A tokenizer file (tokenizer.json, SentencePiece or tiktoken .model, "
             "*.tiktoken, vocab.txt, vocab.json beside merges.txt) or a model folder.")],
    corpus: Annotated[Path | None, typer.Option(help="Folder of *.txt files, one genre each "
                                                "(default: the bundled Korean corpus).")] = None,
    reference: Annotated[Path | None, typer.Option(help="Tokenizer to normalise every figure "
                                                   "against (ratio = this / reference).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write all figures as JSON "
                                                  "(atomically).")] = None,
    pattern: Annotated[str | None, typer.Option(
        help="Pre-tokenisation regex for tiktoken files and vocab.json + merges.txt folders "
             "(overrides the registry of known encodings).")] = None,
    per_genre: Annotated[bool, typer.Option("--per-genre", help="One table per tokenizer "
                                            "with a row per genre.")] = False,
) -> None:
    """Korean tokenizer efficiency: characters, bytes and eojeols per token, round-trip, unk.

    Each corpus document is encoded whole (newlines count); no BOS/EOS. A tokenizer
    with more than 1 % unknown tokens or round-trip failures is flagged not comparable.
    """
    from rich.console import Console

    from kaieval.audit.tokenizer_efficiency import measure_many, print_report
    from kaieval.io import atomic_write_text

    if json_out is not None and not json_out.resolve().parent.is_dir():
        raise KaiError("folder for the JSON file does not exist", where=str(json_out))
    report = measure_many(tokenizers, corpus=corpus, reference=reference, pattern=pattern)
    print_report(report, Console(highlight=False), per_genre=per_genre)
    if json_out is not None:
        atomic_write_text(json_out, report.model_dump_json(indent=2) + "\n")
