"""``audit_dossier``: everything measurable about one team's submission for one stage.

Reads the dossier (declared facts, each with its file:line), the files it names
(LICENSE texts, the model's weights and tokenizer) and, when given, the
provenance engine's verdict; produces figures, flags and, for the stage's audit
components, ``AuditItem`` records scored by the programme's rules. Bad input
never crashes the audit and never passes silently: a missing file, a licence
the files contradict or a tokenizer that cannot be read becomes a flag in the
report, and a figure that cannot be measured stays "not measured".
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from kaieval.audit.ecosystem import ecosystem_figures, pledge_flags
from kaieval.audit.licence_releases import check_releases, inherited_figure
from kaieval.audit.measures import MEASURES, AuditContext, Figure, Flag
from kaieval.audit.rubric import NotScored, score_stage
from kaieval.audit.sovereignty import contradiction_flags, sovereignty_figures
from kaieval.errors import KaiError
from kaieval.io import DATA_MAX_BYTES, parse_json, read_bounded_bytes
from kaieval.records import AuditItem, IndependenceVerdict
from kaieval.spec.load import LoadedDossier, _path_problem
from kaieval.spec.messages import fmt_loc
from kaieval.spec.program import Program

AUDIT_FORMAT = "kaieval/audit/v1"


class FigureOut(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    measure: str
    value: float | bool | None
    shown: str
    source: Literal["declared", "measured"]
    where: str
    detail: str


class FlagOut(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: str
    message: str
    where: str


class NotScoredOut(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    component_id: str
    item_id: str
    measure: str
    reason: str


class AuditReport(BaseModel):
    """The audit of one submission: what ``kai audit --json`` writes."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format: str = AUDIT_FORMAT
    team_id: str
    team_name: str
    stage_id: str
    program_id: str
    dossier: str
    dossier_sha256: str
    figures: tuple[FigureOut, ...]
    flags: tuple[FlagOut, ...]
    items: tuple[AuditItem, ...]
    not_scored: tuple[NotScoredOut, ...]

    def figure(self, measure: str) -> FigureOut | None:
        return next((f for f in self.figures if f.measure == measure), None)


def pick_stage(loaded: LoadedDossier, program: Program, stage_id: str | None) -> str:
    """The stage to audit: the one asked for, else the latest stage the dossier submits to."""
    subs = loaded.dossier.submissions
    known = [s.id for s in program.stages]
    if stage_id is not None:
        if stage_id not in known:
            raise KaiError(f"programme '{program.id}' has no stage '{stage_id}' (stages: "
                           f"{', '.join(known)})")
        if stage_id not in subs:
            raise KaiError(f"the dossier has no submission for stage '{stage_id}' (it has: "
                           f"{', '.join(subs)})", where=str(loaded.path))
        return stage_id
    mine = [s for s in known if s in subs]
    if not mine:
        raise KaiError(f"none of the dossier's submissions ({', '.join(subs)}) is a stage of "
                       f"programme '{program.id}'", where=str(loaded.path))
    return mine[-1]


def file_flags(ctx: AuditContext) -> list[Flag]:
    """Every path of this stage's submission that is missing, outside the folder or wrong."""
    root = ctx.loaded.folder.resolve()
    out: list[Flag] = []
    for loc, rel in ctx.loaded.dossier.local_paths():
        if loc[1] != ctx.stage_id:
            continue
        problem = _path_problem(root, rel, loc[-1])
        if problem:
            out.append(Flag("missing_file", f"{fmt_loc(loc)}: {problem}",
                            f"{ctx.loaded.path.name}:{ctx.loaded.doc.line_of(loc)}"))
    return out


def _reference_result(path: Path) -> Any:
    """The reference tokenizer's figures, measured once per file version (the demo audits
    seven teams against the same reference)."""
    path = path.resolve()
    st = path.stat() if path.exists() else None
    return _reference_cached(path, st.st_mtime_ns if st else 0, st.st_size if st else 0)


@functools.lru_cache(maxsize=8)
def _reference_cached(path: Path, mtime_ns: int, size: int) -> Any:
    from kaieval.audit.tokenizer_efficiency import load_corpus, load_tokenizer, measure_loaded

    del mtime_ns, size  # part of the cache key only
    return measure_loaded(load_tokenizer(path), load_corpus(None))


def tokenizer_figures(ctx: AuditContext) -> tuple[list[Figure], list[Flag]]:
    """Korean tokenizer efficiency of the submitted model's tokenizer (bundled corpus)."""
    names = ("chars_per_token", "tokens_per_eojeol", "efficiency_vs_reference")
    model = ctx.submission.model
    where = ctx.where("model", "path")

    def none(why: str) -> list[Figure]:
        return [Figure(f"tokenizer.{n}", None, where, why) for n in names]

    if model is None or model.path is None:
        return none("no local model folder submitted"), []
    folder = ctx.inside(model.path)
    if folder is None:
        return none(f"model path {model.path} leaves the dossier's folder; not read"), []
    if not folder.is_dir():
        return none(f"model folder {model.path} not found"), []
    if not any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer.model",
                                                  "vocab.json", "vocab.txt")) \
            and not any(folder.glob("*.tiktoken")):
        return none(f"no tokenizer file in {model.path}"), []
    from kaieval.audit.tokenizer_efficiency import (
        load_corpus,
        load_tokenizer,
        measure_loaded,
        normalise,
    )

    ref_note = ""
    # a bad reference is the caller's input error (one line, exit 2), not the team's flag
    ref = (_reference_result(ctx.reference_tokenizer) if ctx.reference_tokenizer is not None
           else None)
    try:
        res = measure_loaded(load_tokenizer(folder), load_corpus(None), label=model.path)
        if ref is not None:
            res = normalise(res, ref)
    except KaiError as e:
        return none(f"tokenizer could not be measured: {e}"), [
            Flag("malformed", f"tokenizer could not be measured: {e}", where)]
    o = res.overall
    detail = (f"{res.tokenizer_format} ({res.tokenizer_kind}), vocab {res.vocab_size}, "
              f"{o.characters} characters of the bundled Korean corpus; round-trip "
              f"{o.roundtrip_fidelity:.1%}, unk {o.unk_rate:.2%}"
              + ("" if res.comparable else "; NOT COMPARABLE: "
                 + "; ".join(res.not_comparable_because)))
    out = [Figure("tokenizer.chars_per_token", o.chars_per_token, where, detail, "measured"),
           Figure("tokenizer.tokens_per_eojeol", o.tokens_per_eojeol, where, detail,
                  "measured")]
    ratio = None
    if res.reference is not None:
        ratio = res.reference.ratios.get("overall", {}).get("chars_per_token")
        ref_note = f"relative to {ctx.reference_tokenizer}"
    out.append(Figure("tokenizer.efficiency_vs_reference", ratio, where,
                      ref_note or "no reference tokenizer given",
                      "measured" if ratio is not None else "declared"))
    return out, []


def audit_dossier(loaded: LoadedDossier, program: Program, stage_id: str | None = None, *,
                  verdict: IndependenceVerdict | None = None,
                  reference_tokenizer: Path | None = None, online: bool = False,
                  hub_endpoint: str | None = None) -> AuditReport:
    """Audit one dossier's submission for one stage (default: its latest)."""
    sid = pick_stage(loaded, program, stage_id)
    ctx = AuditContext(loaded=loaded, stage_id=sid, verdict=verdict,
                       reference_tokenizer=reference_tokenizer, online=online,
                       hub_endpoint=hub_endpoint)
    flags = file_flags(ctx)
    checks, lic_flags = check_releases(ctx)
    flags += lic_flags
    figures = sovereignty_figures(ctx, inherited_figure(ctx, checks))
    figures += ecosystem_figures(ctx, checks)
    tok_figs, tok_flags = tokenizer_figures(ctx)
    figures += tok_figs
    flags += tok_flags + contradiction_flags(ctx) + pledge_flags(ctx, checks)
    by_name = {f.measure: f for f in figures}
    missing = sorted(set(MEASURES) - set(by_name))
    if missing:  # a programming error: the catalogue and the engine must agree
        raise AssertionError(f"audit produced no figure for {', '.join(missing)}")
    items, skipped = score_stage(program.stage(sid), by_name, team_id=ctx.team_id,
                                 input_hashes={"dossier": loaded.sha256})
    return AuditReport(
        team_id=ctx.team_id, team_name=loaded.dossier.team.name, stage_id=sid,
        program_id=program.id, dossier=str(loaded.path), dossier_sha256=loaded.sha256,
        figures=tuple(_figure_out(f) for f in figures),
        flags=tuple(FlagOut(kind=f.kind, message=f.message, where=f.where) for f in flags),
        items=tuple(items), not_scored=tuple(_skipped_out(s) for s in skipped))


def load_verdict(path: Path) -> IndependenceVerdict:
    """An independence verdict record from JSON (``kai provenance check --json``) or the
    first verdict in a JSON Lines file of records; a one-line ``KaiError`` otherwise."""
    from pydantic import ValidationError

    from kaieval.records import load_records_jsonl, record_from_json

    if not path.exists():
        raise KaiError("file not found", where=str(path))
    raw = read_bounded_bytes(path, DATA_MAX_BYTES, "record files")
    try:  # one JSON record; anything else is read as JSON Lines below
        data = parse_json(raw, str(path))
    except KaiError:
        data = None
    if isinstance(data, dict):
        try:
            rec = record_from_json(data)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            raise KaiError(f"not a record: {first['msg']}", where=str(path)) from None
        records = [rec]
    else:
        records = [r for _, r in load_records_jsonl(path)]
    for r in records:
        if isinstance(r, IndependenceVerdict):
            return r
    raise KaiError("holds no independence verdict record", where=str(path))


def _figure_out(f: Figure) -> FigureOut:
    return FigureOut(measure=f.measure, value=f.value, shown=f.shown(), source=f.source,
                     where=f.where, detail=f.detail)


def _skipped_out(s: NotScored) -> NotScoredOut:
    return NotScoredOut(component_id=s.component_id, item_id=s.item_id, measure=s.measure,
                        reason=s.reason)


def print_audit(report: AuditReport, console: Any) -> None:
    """The audit as rich tables: figures with their evidence, points with their rule, flags."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    def row(*cells: str) -> list[Text]:
        return [Text(c) for c in cells]

    console.print(f"[bold]Audit of {escape(report.team_name)}[/] ({report.team_id}), stage "
                  f"{report.stage_id} of {report.program_id} — {escape(report.dossier)}")
    figs = Table(title="Measures", show_lines=False, expand=False)
    for col in ("Measure", "Value", "Source", "Evidence"):
        figs.add_column(col, overflow="fold")
    for f in report.figures:
        style = "magenta italic" if f.value is None else ""
        figs.add_row(*row(f.measure, f.shown, f.source,
                          f.where + (f" — {f.detail}" if f.detail else "")), style=style)
    console.print(figs)
    if report.items or report.not_scored:
        pts = Table(title="Audit rubric points", show_lines=True, expand=False)
        for col in ("Component", "Item", "Points", "Evidence"):
            pts.add_column(col, overflow="fold")
        for it in report.items:
            pts.add_row(*row(it.component_id, it.item_id,
                             f"{it.points:g} / {it.max_points:g}", it.evidence))
        for s in report.not_scored:
            pts.add_row(*row(s.component_id, s.item_id, "not measured",
                             f"{s.measure}: {s.reason}"), style="magenta italic")
        console.print(pts)
        by_comp: dict[str, tuple[float, float]] = {}
        for it in report.items:
            got, top = by_comp.get(it.component_id, (0.0, 0.0))
            by_comp[it.component_id] = (got + it.points, top + it.max_points)
        for cid, (got, top) in by_comp.items():
            console.print(f"  {cid}: {got:g} of {top:g} rubric points")
    else:
        console.print(f"stage {report.stage_id} has no audit components; measures only")
    if report.flags:
        console.print(f"[bold red]{len(report.flags)} flag(s):")
        for fl in report.flags:
            console.print(f"  [red]{fl.kind}[/]: {escape(fl.message)} ({escape(fl.where)})",
                          highlight=False)
    else:
        console.print("[green]no flags")
