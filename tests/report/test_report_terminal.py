"""The rich terminal summary."""

from __future__ import annotations

from report_factories import BANNER, make_selection, make_stage1
from rich.console import Console

from kaieval.report import print_summary
from kaieval.scoring.results import GateOutcome


def _row_block(text: str, team_name: str) -> str:
    """All lines of one table row (rows are separated by ├…┤ rules), joined."""
    blocks = text.split("├")
    return next(b for b in blocks if team_name in b)


def _text(result: object) -> str:
    console = Console(record=True, width=200)
    print_summary(result, console)  # type: ignore[arg-type]
    return console.export_text()


def test_summary_shows_banner_first_decisions_and_outcomes() -> None:
    text = _text(make_stage1())
    assert text.index("Synthetic stand-in models") < text.index("First-stage evaluation")
    assert BANNER[:40] in text
    lines = text.splitlines()
    for team_id, decision in (("알파 컨소시엄", "advance"), ("델타 Foundation", "cut"),
                              ("엡실론 Cloud", "gated")):
        row = next(line for line in lines if team_id in line)
        assert f"│ {decision} " in row
    for name in ("알파 컨소시엄 (Alpha)", "델타 Foundation", "엡실론 Cloud"):
        assert name in text
    assert "not measured" in text
    assert "(simulated)" in text
    gated = _row_block(text, "엡실론 Cloud").split("└")[0]
    assert "independence:" in gated and "fail" in gated
    assert "5. 엡실론 Cloud: gated — failed gate 'independence'" in text
    assert "4. 델타 Foundation: cut — lowest total among teams that passed the gates" in text
    assert "81.5–86.0" in text
    assert "23 %" in text  # delta's survival probability
    assert "Robustness: The cut is fragile" in text
    assert "Repechage:" in text and "outcome: motif" in text
    assert "Not measured: 델타 Foundation: users" in text


def test_summary_without_banner_repechage_or_robustness() -> None:
    result = make_selection().model_copy(update={"banner": None, "robustness": None})
    text = _text(result)
    assert "NOTE" not in text
    assert "No repechage in this stage." in text
    assert "Robustness was not computed" in text
    assert "제타 AI" in text


def test_independence_sentences_follow_the_decisions() -> None:
    base = make_stage1()
    team = base.teams[0]
    gate = GateOutcome(gate_id="independence", rule="r", status="fail", reason="short",
                       sentence="Compared 2 of 2 weight components with parent. Partial: "
                                "copied: MLP of block 0. The gate fails by policy line "
                                '"copied: fail".', decided_by="copied: fail")
    teams = tuple(t.model_copy(update={"gates": (gate,)}) if t.team_id == team.team_id else t
                  for t in base.teams)
    text = _text(base.model_copy(update={"teams": teams}))
    assert text.index("Decisions:") < text.index("Independence:")
    assert f"{team.team_name} (independence, fail): Compared 2 of 2 weight components" in text
    assert text.count("Compared ") == 1  # only gates that carry a sentence
