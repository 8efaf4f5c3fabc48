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


@app.command("tokenizer-lineage")
@user_errors
def tokenizer_lineage(
    candidate: Annotated[Path, typer.Argument(
        metavar="TOKENIZER", help="The candidate's tokenizer: any tokenizer file or a model "
                                  "folder (no weights needed).")],
    refs: Annotated[list[Path], typer.Option(
        "--ref", help="A reference tokenizer (file or folder); repeat for several.")],
    alpha: Annotated[float, typer.Option(help="Significance level of every test.")] = 0.01,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every comparison as "
                                                  "JSON (atomically).")] = None,
) -> None:
    """Tokenizer lineage: identical, extended, extended (shifted), derived (reordered),
    independent or inconclusive, each with its evidence and p-value against the bundled
    null of independently trained tokenizers."""
    import json

    from rich.console import Console

    from kaieval.io import atomic_write_text
    from kaieval.provenance.tokenizer_lineage import compare_loaded
    from kaieval.tokenizer import load_tokenizer

    if json_out is not None and not json_out.resolve().parent.is_dir():
        raise KaiError("folder for the JSON file does not exist", where=str(json_out))
    cand = load_tokenizer(candidate)
    loaded = [load_tokenizer(r) for r in refs]  # every file read before any comparing
    results = [compare_loaded(cand, ref, alpha=alpha) for ref in loaded]
    console = Console(highlight=False)
    for res in results:
        console.print(f"{candidate} vs {res.reference.path}: {res.verdict.upper()} "
                      f"(p {res.p_value:.3g}): {res.reason}", markup=False)
        for t in res.tests:
            console.print(f"  {t.name:<17} {t.value:8.4f}   null median {t.null_median:.4f}, "
                          f"q99 {t.null_q99:.4f}, max {t.null_max:.4f}   p {t.p_value:.3g}",
                          markup=False)
        console.print(f"  {res.candidate.format} ({len(res.candidate.learned)} learned) vs "
                      f"{res.reference.format} ({len(res.reference.learned)} learned); "
                      f"{res.shared_tokens} tokens shared; most common id offset "
                      f"{res.id_offset:+d}", markup=False, style="dim")
    if json_out is not None:
        payload = {"format": "kaieval/tokenizer-lineage/v1", "candidate": str(candidate),
                   "comparisons": [r.to_dict() for r in results]}
        atomic_write_text(json_out, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
