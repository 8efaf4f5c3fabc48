"""The HTML stage report: one self-contained page for one or more stages of a programme run.

Self-contained means the page carries its own CSS and charts (inline SVG made
in ``charts``), loads nothing from the network and still reads when printed.
Jinja autoescaping is on for every template, so no input text (team names,
reasons, evidence) can inject markup; the charts escape their own text.
The output depends only on the results given, never on the clock, so the same
results always render the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from kaieval.errors import KaiError
from kaieval.report import charts, wording
from kaieval.report.independence import KIND_LABELS, fmt_p
from kaieval.scoring.results import StageResult


@cache
def _environment() -> Environment:
    """The template environment; built once because loading templates is not free."""
    env = Environment(
        loader=PackageLoader("kaieval.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(
        fmt_points=wording.fmt_points,
        fmt_max=wording.fmt_max,
        fmt_interval=wording.fmt_interval,
        fmt_prob=wording.fmt_prob,
        humanize_id=wording.humanize_id,
        is_simulated=wording.is_simulated,
        repechage_simulated=wording.repechage_simulated,
        component_columns=wording.component_columns,
        find_component=wording.find_component,
        axis_ids=wording.axis_ids,
        axis_scales=wording.axis_scales,
        robustness_sentence=wording.robustness_sentence,
        audit_sentence=wording.audit_sentence,
        repechage_sentence=wording.repechage_sentence,
        decision_labels=wording.DECISION_LABELS,
        gate_labels=wording.GATE_LABELS,
        kind_labels=KIND_LABELS,
        fmt_p=fmt_p,
        gate_list=wording.gate_list,
        radar_svg=charts.radar_svg,
        totals_svg=charts.totals_svg,
        NOT_MEASURED=wording.NOT_MEASURED,
        RANK_MEANING=wording.RANK_MEANING,
    )
    return env


def check_results(results: Sequence[StageResult]) -> None:
    """Refuse inputs a report cannot represent faithfully, with a one-line reason.

    A report covers the stages of one programme run: at least one stage, each
    stage once, all from the same programme.
    """
    if not results:
        raise KaiError("no stage results to report on", where="report")
    seen: set[str] = set()
    for res in results:
        if res.stage_id in seen:
            raise KaiError(f"stage '{res.stage_id}' appears twice", where="report")
        seen.add(res.stage_id)
    programs = sorted({r.program_id for r in results})
    if len(programs) > 1:
        raise KaiError(f"stages come from different programmes ({', '.join(programs)}); "
                       "a report covers one programme run", where="report")


def _banners(results: Sequence[StageResult], banner: str | None) -> list[str]:
    """Banners for the page top: the one given, else every distinct stage banner."""
    if banner:
        return [banner]
    out: list[str] = []
    for res in results:
        if res.banner and res.banner not in out:
            out.append(res.banner)
    return out


def _stage_banners(result: StageResult, banner: str | None) -> list[str]:
    """Banners repeated in a stage header: the page banner and the stage's own, if different."""
    return [b for i, b in enumerate([banner, result.banner])
            if b and b not in [banner, result.banner][:i]]


def render_html(results: Sequence[StageResult], *, title: str, banner: str | None) -> str:
    """The complete report page for ``results`` (in the order given) as a UTF-8 string."""
    check_results(results)
    styles = charts.team_styles(results)
    names = wording.team_names(results)
    template = _environment().get_template("report.html.j2")
    return template.render(
        title=title,
        banners=_banners(results, banner),
        stage_banners={r.stage_id: _stage_banners(r, banner) for r in results},
        results=list(results),
        program_id=results[0].program_id,
        names=names,
        styles=styles,
        history=charts.history_svg(results, styles),
    )
