"""The stage result as a rich table in the terminal: what ``kai score`` prints.

It says the same things as the HTML report in the same words (see ``wording``),
in less space: no evidence lines, one row per team.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kaieval.report.wording import (
    GATE_LABELS,
    NOT_MEASURED,
    RANK_MEANING,
    audit_sentence,
    axis_ids,
    component_columns,
    find_component,
    fmt_interval,
    fmt_max,
    fmt_points,
    fmt_prob,
    humanize_id,
    is_simulated,
    repechage_sentence,
    robustness_sentence,
)
from kaieval.scoring.results import StageResult

DECISION_STYLES = {"advance": "bold green", "repechage": "bold blue", "cut": "bold red",
                   "gated": "bold bright_black"}
GATE_STYLES = {"pass": "green", "fail": "bold red", "not_measured": "magenta italic"}


def _banner(text: str) -> Panel:
    return Panel(Text(text, style="bold"), title="NOTE", border_style="bold yellow",
                 style="yellow", expand=True)


def _table(result: StageResult, wide: bool = True) -> Table:
    """The ranked table; on a narrow terminal, short headers and no axis columns."""
    columns = component_columns(result)
    axes = axis_ids(result) if wide else []
    table = Table(title=f"{result.stage_name} ({result.stage_id}, {result.date.isoformat()})",
                  caption=f"Rule: {result.rule}\nRank: {RANK_MEANING}", show_lines=True,
                  expand=False)
    table.add_column("Rank", justify="right")
    table.add_column("Team", overflow="fold")
    table.add_column(f"Total /{fmt_max(result.total_points)}", justify="right")
    for col in columns:
        head = col.title if wide else col.component_id
        table.add_column(f"{head} /{fmt_max(col.max_points)}", justify="right",
                         max_width=22)
    for axis in axes:
        table.add_column(f"Axis: {humanize_id(axis)}", justify="right", max_width=16)
    table.add_column("Gates", overflow="fold")
    table.add_column("Decision")
    table.add_column("P(survive)", justify="right")
    for team in sorted(result.teams, key=lambda t: t.rank):
        total = Text(fmt_points(team.total), style="bold")
        if team.total_interval is not None:
            total.append(f"\n[{fmt_interval(team.total_interval)}]", style="dim")
        row: list[Text] = [Text(str(team.rank)), Text(team.team_name), total]
        for col in columns:
            comp = find_component(team, col.component_id)
            if comp is None or comp.points is None:
                row.append(Text(NOT_MEASURED if wide else "n/m", style="magenta italic"))
                continue
            cell = Text(fmt_points(comp.points))
            if is_simulated(comp, result):
                cell.append(" (simulated)" if wide else " sim", style="yellow")
            row.append(cell)
        for axis in axes:
            value = team.axes.get(axis)
            row.append(Text(fmt_points(value), style="magenta italic" if value is None else ""))
        gates = Text()
        for i, gate in enumerate(team.gates):
            if i:
                gates.append("\n")
            label = GATE_LABELS.get(gate.status, gate.status)
            gates.append(f"{gate.gate_id}: {label}" if wide else label,
                         style=GATE_STYLES.get(gate.status, ""))
        row.append(gates if team.gates else Text("none", style="dim"))
        # the bare decision word keeps the table narrow; reasons follow the table
        row.append(Text(team.decision, style=DECISION_STYLES.get(team.decision, "")))
        row.append(Text(fmt_prob(team.survival_probability)))
        table.add_row(*row)
    return table


def print_summary(result: StageResult, console: Console) -> None:
    """Print the banner (if any), the ranked table, each decision with its reason, the
    robustness line, the repechage outcome, and what was not measured or simulated."""
    if result.banner:
        console.print(_banner(result.banner))
    wide = console.width >= 150
    console.print(_table(result, wide=wide))
    if not wide:
        console.print("n/m = not measured; sim = built on simulated inputs", style="dim")
    rob_style = "bold yellow" if result.robustness and result.robustness.flagged else "green"
    reasons = Text()
    for i, team in enumerate(sorted(result.teams, key=lambda t: t.rank)):
        reasons.append(("\n" if i else "") + f"  {team.rank}. {team.team_name}: ")
        reasons.append(team.decision, style=DECISION_STYLES.get(team.decision, ""))
        if team.decision_reason:
            reasons.append(f" — {team.decision_reason}")
    lines = [Text("Decisions:", style="bold"), reasons,
             Text.assemble(("Robustness: ", "bold"), (robustness_sentence(result), rob_style)),
             Text.assemble(("Repechage: ", "bold"), repechage_sentence(result))]
    found = [(t, g) for t in sorted(result.teams, key=lambda t: t.rank) for g in t.gates
             if g.sentence]
    if found:  # independence gates: the plain sentence, policy line included
        lines.append(Text("Independence:", style="bold"))
        for team, gate in found:
            lines.append(Text.assemble(f"  {team.team_name} ({gate.gate_id}, ",
                                       (GATE_LABELS.get(gate.status, gate.status),
                                        GATE_STYLES.get(gate.status, "")),
                                       f"): {gate.sentence}"))
    missing = [f"{t.team_name}: {', '.join(t.not_measured)}" for t in result.teams
               if t.not_measured]
    if missing:
        lines.append(Text.assemble((f"{NOT_MEASURED.capitalize()}: ", "bold magenta"),
                                   "; ".join(missing)))
    if result.simulated_sources:
        lines.append(Text.assemble(("Built on simulated inputs: ", "bold yellow"),
                                   ", ".join(result.simulated_sources)))
    if result.audit_checkpoint is not None:
        lines.append(Text(audit_sentence(result), style="dim"))
    console.print(Group(*lines))
