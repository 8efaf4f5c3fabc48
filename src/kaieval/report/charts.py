"""Inline SVG charts, generated in Python so the report needs no JavaScript or network.

Each function returns a complete ``<svg>`` element as ``markupsafe.Markup``:
every piece of input text (team names, stage names, axis ids) is escaped here,
so the template can insert the chart without escaping it a second time.
Colours come from the Okabe-Ito palette (safe for colour-blind readers and in
greyscale print, helped by distinct dash patterns per team).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from kaieval.report.wording import (
    axis_ids,
    axis_scales,
    cut_threshold,
    fmt_interval,
    fmt_max,
    fmt_points,
    humanize_id,
)
from kaieval.scoring.results import StageResult

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000",
           "#999933")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
DECISION_COLOURS = {
    "advance": "#2b8a3e",
    "repechage": "#1971c2",
    "cut": "#c92a2a",
    "gated": "#868e96",
}
FONT = "font-family=\"system-ui, 'Noto Sans KR', 'Apple SD Gothic Neo', sans-serif\""


def _e(text: str) -> str:
    """Escape text for SVG element content and attribute values."""
    return escape(text, quote=True)


def _n(x: float) -> str:
    """A coordinate with two decimals at most (keeps the SVG small and diff-stable)."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def team_styles(results: Sequence[StageResult]) -> dict[str, tuple[str, str]]:
    """team_id -> (colour, dash) assigned in first-seen order, stable across all charts."""
    styles: dict[str, tuple[str, str]] = {}
    for result in results:
        for team in sorted(result.teams, key=lambda t: t.rank):
            if team.team_id not in styles:
                i = len(styles)
                styles[team.team_id] = (PALETTE[i % len(PALETTE)],
                                        DASHES[(i // len(PALETTE)) % len(DASHES)])
    return styles


def _svg(cls: str, width: float, height: float, label: str, body: list[str]) -> Markup:
    head = (f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'viewBox="0 0 {_n(width)} {_n(height)}" width="{_n(width)}" height="{_n(height)}" '
            f'aria-label="{_e(label)}" {FONT} font-size="12">')
    return Markup("\n".join([head, f"<title>{_e(label)}</title>", *body, "</svg>"]))


def _legend(items: list[tuple[str, str, str]], x: float, y: float) -> list[str]:
    """Vertical legend: (label, colour, dash) rows starting at (x, y)."""
    out: list[str] = []
    for i, (label, colour, dash) in enumerate(items):
        yy = y + i * 18
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line x1="{_n(x)}" y1="{_n(yy)}" x2="{_n(x + 22)}" y2="{_n(yy)}" '
                   f'stroke="{colour}" stroke-width="3"{dash_attr}/>')
        out.append(f'<text x="{_n(x + 28)}" y="{_n(yy + 4)}">{_e(_clip(label, 28))}</text>')
    return out


def radar_svg(result: StageResult, styles: dict[str, tuple[str, str]]) -> Markup:
    """Axis subtotals as a radar: one polygon per team, each axis scaled to its maximum.

    See ``wording.axis_scales`` for how an axis's maximum is chosen; an axis
    scaled to the highest team rather than the maximum possible is marked "*".
    """
    axes = axis_ids(result)
    label = f"Axis subtotals per team, {result.stage_name}"
    if not axes:
        return _svg("chart-radar", 420, 60, label,
                    ['<text x="10" y="30">No axis subtotals were recorded for this stage.</text>'])
    scales = axis_scales(result)
    cx, cy, r = 200.0, 185.0, 120.0
    width = 600.0
    lowest = cy  # lowest point drawn so far; the chart's height follows it
    body: list[str] = []
    n = len(axes)

    def point(i: int, frac: float) -> tuple[float, float]:
        ang = -math.pi / 2 + 2 * math.pi * i / n
        return cx + r * frac * math.cos(ang), cy + r * frac * math.sin(ang)

    for ring in (0.25, 0.5, 0.75, 1.0):
        ring_pts = " ".join(f"{_n(x)},{_n(y)}" for x, y in (point(i, ring) for i in range(n)))
        body.append(f'<polygon points="{ring_pts}" fill="none" stroke="#ced4da" stroke-width="1"/>')
        x, y = point(0, ring)
        body.append(f'<text x="{_n(x - 4)}" y="{_n(y + 10)}" text-anchor="end" fill="#868e96" '
                    f'font-size="9">{ring * 100:.0f} %</text>')
    for i, axis in enumerate(axes):
        x, y = point(i, 1.0)
        body.append(f'<line x1="{_n(cx)}" y1="{_n(cy)}" x2="{_n(x)}" y2="{_n(y)}" '
                    f'stroke="#adb5bd" stroke-width="1"/>')
        lx, ly = point(i, 1.08)
        anchor = "middle" if abs(lx - cx) < 20 else ("start" if lx > cx else "end")
        # labels above the centre grow upwards, below it downwards, so none covers the plot
        ly = ly - 16 if ly < cy - 1 else (ly + 12 if ly > cy + 1 else ly)
        sc = scales[axis]
        star = "*" if sc.basis != "max possible" else ""
        scale_text = (f"max {fmt_max(sc.maximum)}" if not star
                      else f"best team {fmt_points(sc.maximum)}")
        body.append(f'<text x="{_n(lx)}" y="{_n(ly)}" text-anchor="{anchor}" font-weight="600">'
                    f'{_e(_clip(humanize_id(axis), 30))}{star}</text>')
        body.append(f'<text x="{_n(lx)}" y="{_n(ly + 14)}" text-anchor="{anchor}" '
                    f'fill="#495057" font-size="10">{scale_text}</text>')
        lowest = max(lowest, ly + 14, point(i, 1.0)[1])
    legend: list[tuple[str, str, str]] = []
    for team in sorted(result.teams, key=lambda t: t.rank):
        colour, dash = styles.get(team.team_id, (PALETTE[0], ""))
        pts: list[tuple[float, float]] = []
        for i, axis in enumerate(axes):
            frac = team.axes.get(axis, 0.0) / scales[axis].maximum
            pts.append(point(i, max(0.0, min(frac, 1.05))))
        coords = " ".join(f"{_n(x)},{_n(y)}" for x, y in pts)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        tip = "; ".join(f"{humanize_id(a)} {fmt_points(team.axes.get(a))}" for a in axes)
        body.append(f'<polygon class="radar-team" data-team="{_e(team.team_id)}" '
                    f'points="{coords}" fill="{colour}" fill-opacity="0.08" stroke="{colour}" '
                    f'stroke-width="2"{dash_attr}><title>{_e(team.team_name)}: {_e(tip)}'
                    f'</title></polygon>')
        legend.append((team.team_name, colour, dash))
    body += _legend(legend, 400, 30)
    height = max(lowest + 16, 30 + 18 * len(legend)) + 20
    if any(s.basis != "max possible" for s in scales.values()):
        body.append(f'<text x="10" y="{_n(height - 8)}" fill="#495057" font-size="10">'
                    "* scaled to the highest team's subtotal (the record does not give this "
                    "axis's maximum possible points)</text>")
    return _svg("chart-radar", width, height, label, body)


def totals_svg(result: StageResult) -> Markup:
    """Stage totals as horizontal bars in rank order, interval whiskers, and the cut line."""
    teams = sorted(result.teams, key=lambda t: t.rank)
    label = f"Stage totals with bootstrap intervals, {result.stage_name}"
    left, right, top, row = 180.0, 60.0, 30.0, 30.0
    plot_w = 380.0
    width = left + plot_w + right
    height = top + row * max(len(teams), 1) + 60
    scale_max = max([result.total_points, *[t.total for t in teams],
                     *[t.total_interval[1] for t in teams if t.total_interval]]) or 1.0

    def x(v: float) -> float:
        return left + plot_w * max(0.0, v) / scale_max

    body: list[str] = []
    for tick in _ticks(scale_max):
        body.append(f'<line x1="{_n(x(tick))}" y1="{_n(top - 6)}" x2="{_n(x(tick))}" '
                    f'y2="{_n(top + row * len(teams))}" stroke="#e9ecef"/>')
        body.append(f'<text x="{_n(x(tick))}" y="{_n(top - 10)}" text-anchor="middle" '
                    f'fill="#868e96" font-size="10">{tick:g}</text>')
    for i, team in enumerate(teams):
        y0 = top + i * row
        colour = DECISION_COLOURS.get(team.decision, "#495057")
        body.append(f'<g class="bar" data-team="{_e(team.team_id)}" '
                    f'data-decision="{_e(team.decision)}">')
        body.append(f'<text x="{_n(left - 8)}" y="{_n(y0 + row / 2 + 4)}" text-anchor="end">'
                    f'{team.rank}. {_e(_clip(team.team_name, 24))}</text>')
        pattern = ' fill-opacity="0.45"' if team.decision == "gated" else ""
        body.append(f'<rect x="{_n(left)}" y="{_n(y0 + 6)}" width="{_n(x(team.total) - left)}" '
                    f'height="{_n(row - 12)}" fill="{colour}"{pattern}>'
                    f'<title>{_e(team.team_name)}: {fmt_points(team.total)} '
                    f'({_e(team.decision)})</title></rect>')
        end = team.total
        if team.total_interval is not None:
            lo, hi = team.total_interval
            ym = y0 + row / 2
            body.append(f'<path d="M{_n(x(lo))} {_n(ym - 6)}V{_n(ym + 6)}M{_n(x(lo))} {_n(ym)}'
                        f'H{_n(x(hi))}M{_n(x(hi))} {_n(ym - 6)}V{_n(ym + 6)}" stroke="#212529" '
                        f'stroke-width="1.5" fill="none"><title>interval '
                        f'{fmt_interval(team.total_interval)}</title></path>')
            end = max(end, hi)
        body.append(f'<text x="{_n(x(end) + 6)}" y="{_n(y0 + row / 2 + 4)}" '
                    f'font-weight="600">{fmt_points(team.total)}</text>')
        body.append("</g>")
    cut = cut_threshold(result)
    if cut is not None and any(t.decision != "advance" for t in teams):
        body.append(f'<line class="cut-line" x1="{_n(x(cut))}" y1="{_n(top - 4)}" '
                    f'x2="{_n(x(cut))}" y2="{_n(top + row * len(teams) + 4)}" stroke="#c92a2a" '
                    f'stroke-width="2" stroke-dasharray="5 3"/>')
        body.append(f'<text x="{_n(x(cut))}" y="{_n(top + row * len(teams) + 18)}" '
                    f'text-anchor="middle" fill="#c92a2a" font-size="11">cut line: lowest '
                    f'advancing total {fmt_points(cut)}</text>')
    ly = top + row * len(teams) + 38
    lx = left
    for decision, colour in DECISION_COLOURS.items():
        body.append(f'<rect x="{_n(lx)}" y="{_n(ly - 9)}" width="12" height="12" '
                    f'fill="{colour}"/>')
        body.append(f'<text x="{_n(lx + 16)}" y="{_n(ly + 1)}">{decision}</text>')
        lx += 100
    return _svg("chart-totals", width, height, label, body)


def _ticks(maximum: float) -> list[float]:
    """About five round tick values from 0 to ``maximum``."""
    raw = maximum / 5
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    count = int(maximum // step)
    return [i * step for i in range(count + 1)]


def history_svg(results: Sequence[StageResult], styles: dict[str, tuple[str, str]]) -> Markup:
    """Each team's total per stage as lines; a team absent from a stage has no point there.

    Lines join only consecutive stages where the team is present. A hollow marker
    means the team did not advance from that stage (cut or gated).
    """
    label = "Team totals across stages"
    left, top, plot_w, plot_h, pad = 50.0, 24.0, 460.0, 240.0, 80.0
    width, height = left + plot_w + 240, top + plot_h + 50
    y_max = max([1.0, *[r.total_points for r in results],
                 *[t.total for r in results for t in r.teams]])
    n = len(results)

    def px(i: int) -> float:
        inner = plot_w - 2 * pad
        return left + pad + (inner / 2 if n == 1 else inner * i / (n - 1))

    def py(v: float) -> float:
        return top + plot_h * (1 - max(0.0, v) / y_max)

    body: list[str] = []
    for tick in _ticks(y_max):
        body.append(f'<line x1="{_n(left)}" y1="{_n(py(tick))}" x2="{_n(left + plot_w)}" '
                    f'y2="{_n(py(tick))}" stroke="#e9ecef"/>')
        body.append(f'<text x="{_n(left - 6)}" y="{_n(py(tick) + 4)}" text-anchor="end" '
                    f'fill="#868e96" font-size="10">{tick:g}</text>')
    for i, res in enumerate(results):
        body.append(f'<text x="{_n(px(i))}" y="{_n(top + plot_h + 20)}" text-anchor="middle" '
                    f'font-weight="600">{_e(_clip(res.stage_name, 34))}</text>')
        body.append(f'<text x="{_n(px(i))}" y="{_n(top + plot_h + 34)}" text-anchor="middle" '
                    f'fill="#868e96" font-size="10">{_e(res.date.isoformat())}</text>')
    names: dict[str, str] = {}
    for team_id, (colour, dash) in styles.items():
        hist: list[tuple[int, float, str]] = []
        for i, res in enumerate(results):
            for t in res.teams:
                if t.team_id == team_id:
                    hist.append((i, t.total, t.decision))
                    names[team_id] = t.team_name
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        for (i0, v0, _), (i1, v1, _) in itertools.pairwise(hist):
            if i1 == i0 + 1:
                body.append(f'<line x1="{_n(px(i0))}" y1="{_n(py(v0))}" x2="{_n(px(i1))}" '
                            f'y2="{_n(py(v1))}" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for i, v, decision in hist:
            fill = colour if decision in ("advance", "repechage") else "#ffffff"
            body.append(f'<circle data-team="{_e(team_id)}" cx="{_n(px(i))}" cy="{_n(py(v))}" '
                        f'r="5" fill="{fill}" stroke="{colour}" stroke-width="2"><title>'
                        f'{_e(names[team_id])}, {_e(results[i].stage_name)}: {fmt_points(v)} '
                        f'({_e(decision)})</title></circle>')
    legend = [(names.get(tid, tid), c, d) for tid, (c, d) in styles.items() if tid in names]
    body += _legend(legend, left + plot_w + 30, top + 10)
    ly = top + 10 + 18 * len(legend) + 10
    body.append(f'<text x="{_n(left + plot_w + 30)}" y="{_n(ly)}" fill="#495057" '
                f'font-size="10">filled: advanced · hollow: cut or gated</text>')
    return _svg("chart-history", width, height, label, body)
