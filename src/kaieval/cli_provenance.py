"""``kai provenance``: independence checks and reference fingerprints (registered on ``kai``).

Two forms must both work as a user types them::

    kai provenance CANDIDATE --ref REF [--ref ...]     # the check (the usual case)
    kai provenance fingerprint MODEL -o FILE           # a compact reference file

So ``provenance`` is a group with a *default* command: a first word that is not
a sub-command name (a path, a URL, an option) is handed to ``check``. A model
folder literally named ``fingerprint`` is reached with ``kai provenance check
fingerprint ...``.

The verdict is a measurement, so the exit code is 0 whatever it says; only bad
input (missing folder, pickle checkpoint, corrupt header, ...) exits 2 with one
line. Engines are imported inside the commands: ``kai --help`` loads no numpy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from kaieval.cli import app, err_console, user_errors
from kaieval.errors import KaiError

if TYPE_CHECKING:
    from kaieval.records import ComponentEvidence, IndependenceVerdict

DEFAULT_COMMAND = "check"
_VERDICT_STYLE = {"derived": "bold red", "partial": "bold yellow", "no_evidence": "green",
                  "inconclusive": "dim"}
_FISHER = re.compile(r"Fisher chi2=([0-9.eE+-]+) df=(\d+)(?: log10 p=(-?[0-9.]+))?")
_LOG10_P = re.compile(r"component log10 p=(-?[0-9.]+)")
_COPIES = re.compile(r"(\d+) tensor\(s\) byte-identical")


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


provenance_app = typer.Typer(
    cls=DefaultCommandGroup, no_args_is_help=True,
    subcommand_metavar="CANDIDATE --ref REF [OPTIONS] | COMMAND [ARGS]...",
    help="Independence tests of a model's weights against references; reference fingerprints. "
         "`kai provenance CANDIDATE --ref REF` runs the check.")
app.add_typer(provenance_app, name="provenance")


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _optional(module: str, what: str) -> Any:
    """Import an engine module written separately; its absence is a one-line error, not a crash."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise KaiError(f"{what} is not available in this build (module {module} is missing)")
    return importlib.import_module(module)


def _reference_of(ev: ComponentEvidence, refs: tuple[str, ...]) -> str:
    """The reference an evidence line is about; the engine writes it as ``vs NAME:`` first."""
    hits = [r for r in refs if ev.detail.startswith(f"vs {r}:")]
    return max(hits, key=len) if hits else (refs[0] if len(refs) == 1 else "?")


def _fmt_p(p: float | None, detail: str = "") -> str:
    """p-values below float range underflow to 0; the engine's detail keeps their log10."""
    if p is None:
        return "-"
    if p == 0.0:
        m = _LOG10_P.search(detail)  # the component's own p when it combines several tests
        if m:
            return f"1e{float(m.group(1)):.0f}"
        m = _FISHER.search(detail)
        return f"1e{float(m.group(3)):.0f}" if m and m.group(3) else "<1e-300"
    return f"{p:.2g}"


def _statistic(ev: ComponentEvidence) -> str:
    """Fisher's chi-square (and df) of the component, or the count of identical tensors."""
    parts: list[str] = []
    m = _COPIES.search(ev.detail)
    if m:
        parts.append(f"{m.group(1)} identical")
    m = _FISHER.search(ev.detail)
    if m:
        parts.append(f"chi2={float(m.group(1)):.1f} df={m.group(2)}")
    return "; ".join(parts) if parts else "-"


def _effect(ev: ComponentEvidence) -> str:
    """Mean centred correlation (the engine's statistic); exact copies alone have none."""
    if ev.statistic is None or ev.test in ("none", "exact_reuse"):
        return "-"
    return f"{ev.statistic:+.3f}"


def evidence_table(verdict: IndependenceVerdict) -> Table:
    """One row per (component, reference): test, statistic, effect size, p-value, verdict."""
    table = Table(title=f"Independence evidence: {verdict.team_id} (stage {verdict.stage_id})",
                  show_lines=False, header_style="bold")
    table.add_column("component", no_wrap=True)
    table.add_column("reference", overflow="fold")
    table.add_column("test", overflow="fold")
    table.add_column("statistic", justify="right")
    table.add_column("effect r", justify="right", no_wrap=True)
    table.add_column("p-value", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for ev in verdict.evidence:
        table.add_row(ev.component, _reference_of(ev, verdict.references),
                      ev.test.replace("+", " + "),
                      _statistic(ev), _effect(ev), _fmt_p(ev.p_value, ev.detail),
                      f"[{_VERDICT_STYLE[ev.verdict]}]{ev.verdict}[/]")
    return table


def print_verdict(verdict: IndependenceVerdict, console: Console, *, details: bool) -> None:
    """The evidence table, the overall verdict, alpha and the Holm note, and its scope."""
    console.print(evidence_table(verdict))
    if details:
        for ev in verdict.evidence:
            console.print(f"  {ev.component}: {ev.detail}", markup=False, highlight=False)
    tested = sum(1 for ev in verdict.evidence if ev.p_value is not None)
    style = _VERDICT_STYLE[verdict.verdict]
    console.print(f"Verdict: [{style}]{verdict.verdict}[/]")
    console.print(verdict.summary, markup=False, highlight=False)
    console.print(f"alpha = {verdict.alpha:g}, Holm-corrected across the {tested} tested "
                  "(component, reference) pairs; byte-identical tensors are decisive on their "
                  "own. Raw cosine of norm weights is never used as evidence (norms start at "
                  "1.0, so any two models look alike).", markup=False, highlight=False)
    console.print("This verdict is against the listed references only ("
                  + ", ".join(verdict.references) + "): 'no_evidence' means no dependence on "
                  "them was detected, not that the model was trained from scratch.",
                  markup=False, highlight=False)


def _run_check(candidate: Path, refs: list[Path], *, alpha: float, stage: str, team: str,
               trust_remote_code: bool, seed: int | None, permutations: int | None,
               ) -> IndependenceVerdict:
    from kaieval.provenance import check_independence

    kwargs: dict[str, Any] = {}
    if seed is not None:
        kwargs["seed"] = seed
    if permutations is not None:
        kwargs["permutations"] = permutations
    if not err_console.is_terminal:
        return check_independence(candidate, refs, alpha=alpha, stage_id=stage, team_id=team,
                                  trust_remote_code=trust_remote_code, **kwargs)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("comparing", total=None)

        def progress(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        return check_independence(candidate, refs, alpha=alpha, stage_id=stage, team_id=team,
                                  trust_remote_code=trust_remote_code, progress=progress,
                                  **kwargs)


def _run_blackbox(candidate: str, refs: list[str], controls: list[str], *, alpha: float,
                  model_name: str | None, seed: int | None, prompts: Path | None,
                  console: Console) -> Any:
    """An endpoint-only candidate: greedy-output agreement with references vs controls.

    References and controls may be model folders or ``URL#served-name`` endpoints.
    """
    bb = _optional("kaieval.provenance.blackbox",
                   f"black-box test of an endpoint candidate ({candidate})")
    if not controls:
        raise KaiError("an endpoint candidate needs at least one --control model (an unrelated "
                       "model whose agreement with the candidate is the baseline)")
    cand = bb.parse_model_spec(candidate, served_model=model_name)
    result = bb.blackbox_test(cand, [bb.parse_model_spec(r) for r in refs],
                              [bb.parse_model_spec(c) for c in controls], prompts,
                              alpha=alpha, seed=0 if seed is None else seed)
    print_blackbox(result, console)
    return result


def print_blackbox(result: Any, console: Console) -> None:
    """Per reference: agreement with it vs with the controls, effect, p-values, decision."""
    table = Table(title=f"Black-box evidence: {result.candidate.get('name', 'candidate')} "
                        f"({len(result.prompt_ids)} prompts, {len(result.controls)} control(s))",
                  header_style="bold")
    for col in ("reference", "agreement", "controls", "effect", "wins", "p-value", "p (Holm)",
                "verdict"):
        table.add_column(col, justify="left" if col in ("reference", "verdict") else "right")
    for r in result.references:
        verdict = "[bold red]dependent[/]" if r.significant else "[green]no_evidence[/]"
        table.add_row(r.reference, f"{r.mean_reference:.3f}", f"{r.mean_controls:.3f}",
                      f"{r.effect:+.3f}", f"{r.wins:.0%}", _fmt_p(r.p_value), _fmt_p(r.p_holm),
                      verdict)
    console.print(table)
    hit = result.significant
    console.print("Verdict: " + (f"[bold red]behavioural evidence of dependence on "
                                 f"{', '.join(hit)}[/]" if hit else "[green]no_evidence[/]"))
    console.print(f"alpha = {result.alpha:g}, Holm-corrected across {len(result.references)} "
                  f"reference(s); {result.n_permutations} label permutations, seed "
                  f"{result.seed}. Method: {result.method}. Agreement cannot tell weight reuse "
                  "from distillation on the reference's outputs; the verdict is against the "
                  "listed references only.", markup=False, highlight=False)


def _blackbox_json(result: Any) -> str:
    import dataclasses
    import json

    data = dataclasses.asdict(result)
    data["significant"] = list(result.significant)
    return json.dumps(data, ensure_ascii=False, indent=2)


@provenance_app.command(DEFAULT_COMMAND)
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
                                                      "(folder or URL).")] = None,
    model_name: Annotated[str | None, typer.Option(help="Endpoint candidates only: the served "
                                                   "model name (or write URL#NAME).")] = None,
    prompts: Annotated[Path | None, typer.Option(help="Endpoint candidates only: a JSONL "
                                                 "prompt set (default: the bundled one).")
                       ] = None,
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
                               console=console)
        if json_out is not None:
            _write_json(json_out, _blackbox_json(result))
        return
    if control or prompts or model_name:
        raise KaiError("--control, --prompts and --model-name are for endpoint (URL) "
                       "candidates; weight tests need none")
    path = Path(candidate)
    verdict = _run_check(path, [Path(r) for r in ref], alpha=alpha, stage=stage,
                         team=team or (path.stem if path.is_file() else path.resolve().name),
                         trust_remote_code=trust_remote_code, seed=seed,
                         permutations=permutations)
    print_verdict(verdict, console, details=details)
    if json_out is not None:
        _write_json(json_out, verdict)


def _write_json(path: Path, record: IndependenceVerdict | str) -> None:
    from kaieval.io import atomic_write_text

    text = record if isinstance(record, str) else record.model_dump_json(indent=2)
    try:
        atomic_write_text(path, text + "\n")
    except OSError as err:
        raise KaiError(f"cannot write: {err.strerror or err}", where=str(path)) from None
    err_console.print(f"wrote {path}", markup=False)


@provenance_app.command("fingerprint")
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
    fp = _optional("kaieval.provenance.fingerprint", "kai provenance fingerprint")
    from kaieval.hashing import sha256_file

    written = Path(fp.write_fingerprint(model, out, trust_remote_code=trust_remote_code))
    size = written.stat().st_size
    typer.echo(f"wrote {written} ({size / 2**20:.2f} MiB, {sha256_file(written)})")
