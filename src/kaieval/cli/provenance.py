"""``kai provenance``: independence checks and reference fingerprints.

Two forms must both work as a user types them::

    kai provenance CANDIDATE --ref REF [--ref ...]     # the check (the usual case)
    kai provenance fingerprint MODEL -o FILE           # a compact reference file

So ``provenance`` is a group with a *default* command: a first word that is not
a sub-command name (a path, a URL, an option) is handed to ``check``. A model
folder literally named ``fingerprint`` is reached with ``kai provenance check
fingerprint ...``.

The verdict is a measurement, so the exit code is 0 whatever it says; only bad
input (missing folder, pickle checkpoint, corrupt header, ...) exits 2 with one
line. Engines are imported inside the commands: ``kai --help`` loads no numpy. What is
printed (the evidence table, the verdict's scope) is :mod:`kaieval.report.independence`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from kaieval.cli._common import optional_module, progress_bar, user_errors, write_json_file
from kaieval.errors import KaiError

if TYPE_CHECKING:
    from kaieval.provenance.blackbox import BlackBoxResult
    from kaieval.records import IndependenceVerdict

DEFAULT_COMMAND = "check"


class DefaultCommandGroup(TyperGroup):
    """A group whose unknown first word runs :data:`DEFAULT_COMMAND` with all the arguments.

    Why: ``kai provenance CANDIDATE --ref R`` is the command users type, and
    ``kai provenance fingerprint`` must coexist with it. Click has no default
    sub-command, so the argument list is rewritten before Click dispatches it;
    ``--help`` alone still shows the group's help with both commands listed.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        help_names = set(ctx.help_option_names)
        if args and args[0] not in self.commands and args[0] not in help_names:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultCommandGroup, no_args_is_help=True,
    subcommand_metavar="CANDIDATE --ref REF [OPTIONS] | COMMAND [ARGS]...",
    help="Independence tests of a model's weights against references; reference fingerprints. "
         "`kai provenance CANDIDATE --ref REF` runs the check.")


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _run_check(candidate: Path, refs: list[Path], *, alpha: float, stage: str, team: str,
               trust_remote_code: bool, seed: int | None, permutations: int | None,
               ) -> IndependenceVerdict:
    from kaieval.filehash import hash_ahead
    from kaieval.io import interleaved_weight_files, readahead

    # the second core hashes every input byte for the record (kaieval.filehash) while the
    # engine's imports run, and the disk is asked for what the hashing will not read
    hashing = hash_ahead(interleaved_weight_files([candidate, *refs]))
    readahead([candidate, *refs], skip=hashing)
    from kaieval.provenance import check_independence

    kwargs: dict[str, Any] = {}
    if seed is not None:
        kwargs["seed"] = seed
    if permutations is not None:
        kwargs["permutations"] = permutations
    with progress_bar("comparing") as progress:
        if progress is not None:
            kwargs["progress"] = progress
        return check_independence(candidate, refs, alpha=alpha, stage_id=stage, team_id=team,
                                  trust_remote_code=trust_remote_code, **kwargs)


def _run_blackbox(candidate: str, refs: list[str], controls: list[str], *, alpha: float,
                  model_name: str | None, seed: int | None, prompts: Path | None,
                  top_k: int, console: Console) -> BlackBoxResult:
    """An endpoint-only candidate: next-token distributions and greedy outputs compared
    with references, against unrelated controls.

    References and controls may be model folders or ``URL#served-name`` endpoints.
    """
    bb = optional_module("kaieval.provenance.blackbox",
                         f"black-box test of an endpoint candidate ({candidate})")
    if len(controls) < bb.MIN_CONTROLS:
        raise KaiError(f"an endpoint candidate needs at least {bb.MIN_CONTROLS} --control "
                       "models (unrelated models: how alike they are to each other is the "
                       "baseline)")
    from kaieval.report.independence import print_blackbox

    cand = bb.parse_model_spec(candidate, served_model=model_name)
    result: BlackBoxResult = bb.blackbox_test(
        cand, [bb.parse_model_spec(r) for r in refs], [bb.parse_model_spec(c) for c in controls],
        prompts, alpha=alpha, seed=0 if seed is None else seed, top_k=top_k)
    print_blackbox(result, console)
    return result


@app.command(DEFAULT_COMMAND)
@user_errors
def check(
    candidate: Annotated[str, typer.Argument(help="Candidate model folder or .safetensors file "
                                             "(or an http(s) endpoint URL: black-box test).",
                                             metavar="CANDIDATE", show_default=False)],
    ref: Annotated[list[str], typer.Option("--ref", help="Reference model folder or "
                                           "fingerprint file (repeat for several).",
                                           show_default=False)],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the verdict record "
                                                  "(JSON) here, atomically.")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level, Holm-corrected across "
                                         "references and components.")] = 0.01,
    trust_remote_code: Annotated[bool, typer.Option(help="Accept folders holding repository "
                                                    "code (it is never executed; only "
                                                    "weights are read).")] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of the permutation nulls (default: "
                                             "the engine's, recorded in the JSON).")] = None,
    permutations: Annotated[int | None, typer.Option(help="Permutations per null (default: "
                                                     "the engine's).")] = None,
    stage: Annotated[str, typer.Option(help="Stage id stored in the verdict record.")] = "adhoc",
    team: Annotated[str | None, typer.Option(help="Team id stored in the record (default: the "
                                             "candidate's name).")] = None,
    details: Annotated[bool, typer.Option("--details", help="Also print each line's full "
                                          "evidence (tensors, correlations, skips).")] = False,
    control: Annotated[list[str] | None, typer.Option("--control", help="Endpoint candidates "
                                                      "only: an unrelated control model "
                                                      "(folder or URL; at least four).")
                       ] = None,
    model_name: Annotated[str | None, typer.Option(help="Endpoint candidates only: the served "
                                                   "model name (or write URL#NAME).")] = None,
    prompts: Annotated[Path | None, typer.Option(help="Endpoint candidates only: a JSONL "
                                                 "prompt set (default: the bundled one).")
                       ] = None,
    top_k: Annotated[int, typer.Option(help="Endpoint candidates only: log-probs asked per "
                                       "token (vLLM allows 20 by default; some hosted APIs "
                                       "only 5).")] = 20,
) -> None:
    """Test whether CANDIDATE's weights derive from any reference; print the evidence."""
    if not 0.0 < alpha < 1.0:
        raise KaiError(f"--alpha must be between 0 and 1 (exclusive), got {alpha:g}")
    if permutations is not None and permutations < 1:
        raise KaiError(f"--permutations must be at least 1, got {permutations}")
    if json_out is not None and not json_out.parent.is_dir():
        # fail before minutes of streaming, not after
        raise KaiError("folder for --json does not exist", where=str(json_out))
    console = Console(highlight=False)
    if _is_url(candidate):
        result = _run_blackbox(candidate, ref, control or [], alpha=alpha,
                               model_name=model_name, seed=seed, prompts=prompts,
                               top_k=top_k, console=console)
        if json_out is not None:
            from kaieval.report.independence import blackbox_json

            write_json_file(json_out, blackbox_json(result))
        return
    if control or prompts or model_name or top_k != 20:
        raise KaiError("--control, --prompts, --model-name and --top-k are for endpoint (URL) "
                       "candidates; weight tests need none")
    path = Path(candidate)
    verdict = _run_check(path, [Path(r) for r in ref], alpha=alpha, stage=stage,
                         team=team or (path.stem if path.is_file() else path.resolve().name),
                         trust_remote_code=trust_remote_code, seed=seed,
                         permutations=permutations)
    from kaieval.report.independence import print_verdict

    print_verdict(verdict, console, details=details)
    if json_out is not None:
        write_json_file(json_out, verdict.model_dump_json(indent=2))


@app.command("fingerprint")
@user_errors
def fingerprint(
    model: Annotated[Path, typer.Argument(help="Reference model folder (safetensors).",
                                          metavar="MODEL", show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--out", help="Fingerprint file to write "
                                      "(*.safetensors).",
                                      show_default=False)],
    trust_remote_code: Annotated[bool, typer.Option(help="Accept a folder holding repository "
                                                    "code (it is never executed).")] = False,
) -> None:
    """Store a compact fingerprint of a reference model (what the tests need, not the weights)."""
    if out.suffix != ".safetensors":
        # the file is read back as a reference only under this suffix; say so before the work
        raise KaiError("a fingerprint is a safetensors file: give -o a name ending in "
                       ".safetensors", where=str(out))
    fp = optional_module("kaieval.provenance.fingerprint", "kai provenance fingerprint")
    from kaieval.hashing import sha256_file

    written = Path(fp.write_fingerprint(model, out, trust_remote_code=trust_remote_code))
    size = written.stat().st_size
    typer.echo(f"wrote {written} ({size / 2**20:.2f} MiB, {sha256_file(written)})")
