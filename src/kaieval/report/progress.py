"""Terminal display of a stage measurement: one live grid of team × engine, then a summary.

Used by ``kai stage measure`` and by ``kai demo`` (the same pipeline), so both show
the same thing. The pipeline reports each job's state through a listener; nothing
here decides anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kaieval.pipeline import ENGINES, JobOutcome, Plan, StageMeasurement
from kaieval.pipeline.plan import SHARED

_STYLE = {"queued": ("·", "dim"), "running": ("running…", "yellow"),
          "measured": ("✓ measured", "green"), "cached": ("✓ stored", "cyan"),
          "not_measured": ("✗ not measured", "bold red")}


def _row_name(o: JobOutcome) -> str:
    return o.job.label


class ProgressGrid:
    """Collects job states from the pipeline's threads and renders them as a table."""

    def __init__(self, plan: Plan, title: str) -> None:
        self.title = title
        self.lock = threading.Lock()
        self.cells: dict[tuple[str, str], JobOutcome] = {}
        self.rows: list[str] = []
        self.skipped = {(t, e): why for t, e, why in plan.skipped}
        for j in plan.jobs:
            if j.label not in self.rows:
                self.rows.append(j.label)
        for t, _, _ in plan.skipped:
            if t not in self.rows:
                self.rows.append(t)
        self.engines = [e for e in ENGINES if any(j.engine == e for j in plan.jobs)
                        or any(s[1] == e for s in plan.skipped)]
        self.t0 = time.perf_counter()

    def update(self, outcome: JobOutcome) -> None:
        with self.lock:
            self.cells[(_row_name(outcome), outcome.job.engine)] = outcome

    def __rich__(self) -> Table:
        done = sum(o.status in ("measured", "cached", "not_measured")
                   for o in self.cells.values())
        table = Table(title=f"{self.title} — {done}/{len(self.cells)} jobs, "
                            f"{time.perf_counter() - self.t0:.0f} s", title_justify="left")
        table.add_column("team")
        for e in self.engines:
            table.add_column(e)
        with self.lock:
            for row in self.rows:
                cells: list[Text] = []
                for e in self.engines:
                    o = self.cells.get((row, e))
                    if o is not None:
                        label, style = _STYLE[o.status]
                        if o.status in ("measured", "cached", "not_measured"):
                            label += f" {o.seconds:.0f}s" if o.seconds >= 1 else ""
                        cells.append(Text(label, style=style))
                    elif (row, e) in self.skipped:
                        cells.append(Text("— skipped", style="dim"))
                    else:
                        cells.append(Text(""))
                table.add_row(row, *cells)
        return table


@contextmanager
def live_grid(plan: Plan, title: str, console: Console) -> Iterator[ProgressGrid]:
    """Show the grid while the block runs (refreshing on a terminal, once at the end in a
    log), and hand the block the grid's listener."""
    grid = ProgressGrid(plan, title)
    with Live(grid, console=console, refresh_per_second=4, transient=False):
        yield grid
    if not console.is_terminal:
        console.line()  # the final frame ends without a newline in a log


def print_measurement_summary(m: StageMeasurement, console: Console) -> None:
    """What was measured, what came from the store, and every failure on one line."""
    table = Table(title=f"stage {m.stage_id}: measurement summary ({m.seconds:.1f} s, "
                        f"{m.written} row(s) written)", title_justify="left")
    for col in ("team", "engine", "status", "records", "detail"):
        table.add_column(col, overflow="fold")
    for o in m.outcomes:
        label, style = _STYLE[o.status]
        detail = o.reason or "; ".join(o.notes[:3]) + (f" (+{len(o.notes) - 3} more)"
                                                     if len(o.notes) > 3 else "")
        if o.job.team_id == SHARED:
            detail = f"shared by {', '.join(o.job.teams)}" + (f"; {detail}" if detail else "")
        table.add_row(_row_name(o), o.job.engine, Text(label, style=style),
                      str(o.records) if o.status == "measured" else "", detail)
    for t, e, why in m.skipped:
        table.add_row(t, e, Text("— skipped", style="dim"), "", why)
    console.print(Group(table))
    for o in m.failures:
        console.print(f"not measured: {_row_name(o)} {o.job.engine}: {o.reason}",
                      markup=False, highlight=False, soft_wrap=True)
