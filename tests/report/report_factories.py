"""Hand-built stage results for the report tests (imported by name: unique module name).

``make_stage1`` is a five-team stage with everything a report must show: one
team removed by the independence gate, one cut on score, a component that was
not measured, simulated sources, bootstrap intervals, a flagged robustness
check and a repechage won by an outside applicant. ``make_selection`` is an
earlier stage so the history chart has two stages to connect.
"""

from __future__ import annotations

import datetime as dt

from kaieval.scoring.results import (
    ComponentScore,
    GateOutcome,
    RepechageOutcome,
    Robustness,
    StageResult,
    TeamResult,
)

BANNER = ("Synthetic stand-in models and simulated committee/user inputs — not a measurement "
          "of the real companies' models")

# team_id, name, benchmark points, expert items (report, training, data, openness), users
STAGE1_TEAMS: list[tuple[str, str, float, tuple[float, float, float, float], float | None]] = [
    ("alpha", "알파 컨소시엄 (Alpha)", 33.5, (8.5, 9.0, 8.0, 4.0), 21.0),
    ("beta", "베타 AI", 31.0, (8.0, 8.5, 7.5, 3.5), 19.5),
    ("gamma", "감마 Labs", 28.25, (7.0, 7.5, 7.0, 3.0), 18.0),
    ("delta", "델타 Foundation", 26.0, (6.5, 6.0, 6.5, 2.5), None),
    ("epsilon", "엡실론 Cloud", 34.0, (9.0, 5.0, 8.5, 4.5), 22.0),
]
DECISIONS = {"alpha": "advance", "beta": "advance", "gamma": "advance", "delta": "cut",
             "epsilon": "gated"}
SURVIVAL = {"alpha": 1.0, "beta": 0.97, "gamma": 0.8, "delta": 0.23, "epsilon": None}


def _benchmarks(points: float) -> ComponentScore:
    shares = (("nia", "NIA benchmark", 10.0), ("common", "Global common benchmarks", 20.0),
              ("individual", "Global individual benchmarks", 10.0))
    frac = points / 40.0
    children = tuple(
        ComponentScore(component_id=cid, title=title, points=round(mx * frac, 4), max_points=mx,
                       kind="benchmarks", sources=("measured",),
                       detail=f"relative performance {frac:.3f} of the declared target",
                       evidence=(f"{cid}: score/target = {frac:.3f} (sha256:abc{cid})",))
        for cid, title, mx in shares)
    return ComponentScore(component_id="benchmarks", title="Benchmarks", points=points,
                          max_points=40.0, axis="independent_technology", sources=("measured",),
                          detail="sum of the three benchmark groups", children=children)


def _experts(items: tuple[float, float, float, float]) -> ComponentScore:
    spec = (("report_quality", "Technical report", 10.0, "independent_technology"),
            ("training_evidence", "Training logs", 10.0, "independent_technology"),
            ("data_sovereignty", "Korean data", 10.0, "sovereign_ai"),
            ("openness_plan", "Openness plan", 5.0, "ecosystem"))
    children = tuple(
        ComponentScore(component_id=cid, title=title, points=p, max_points=mx, axis=axis,
                       kind="committee", sources=("committee", "simulated"),
                       evidence=(f"trimmed mean of 10 sheets for {cid}",))
        for (cid, title, mx, axis), p in zip(spec, items, strict=True))
    return ComponentScore(component_id="experts", title="Expert evaluation", points=sum(items),
                          max_points=35.0, kind="committee", sources=("committee", "simulated"),
                          detail="ten evaluators, highest and lowest sheet per item trimmed",
                          children=children)


def _users(points: float | None) -> ComponentScore:
    if points is None:
        return ComponentScore(component_id="users", title="User evaluation", points=None,
                              max_points=25.0, axis="ecosystem", kind="users",
                              sources=("users", "simulated"),
                              detail="no votes recorded for this team's model")
    return ComponentScore(component_id="users", title="User evaluation", points=points,
                          max_points=25.0, axis="ecosystem", kind="users",
                          sources=("users", "simulated"),
                          detail="Bradley–Terry strength from 49 users' pairwise votes",
                          evidence=(f"strength share {points / 25:.3f}",))


def _gate(team_id: str) -> GateOutcome:
    rule = "Weights initialised and then trained on the team's own data"
    if team_id == "epsilon":
        return GateOutcome(gate_id="independence", rule=rule, status="fail",
                           reason="vision encoder weights match a published reference model",
                           evidence=("hidden-unit matching: 0.998 mean cosine vs reference-vit",
                                     "p < 1e-6 (permutation test, 1000 permutations)"))
    return GateOutcome(gate_id="independence", rule=rule, status="pass",
                       reason="no evidence of derivation from any reference",
                       evidence=("max layer cosine 0.04 (references: 3)",))


def make_team(team_id: str, name: str, bench: float, items: tuple[float, float, float, float],
              users: float | None, rank: int) -> TeamResult:
    comps = (_benchmarks(bench), _experts(items), _users(users))
    total = sum(c.points for c in comps if c.points is not None)
    axes = {"independent_technology": bench + items[0] + items[1],
            "sovereign_ai": items[2],
            "ecosystem": items[3] + (users or 0.0)}
    decision = DECISIONS[team_id]
    reasons = {"advance": f"rank {rank} of 4 eligible; the bottom one is cut",
               "cut": "lowest total among teams that passed the gates",
               "gated": "failed gate 'independence'"}
    return TeamResult(
        team_id=team_id, team_name=name, total=total,
        max_measured=75.0 if users is None else 100.0, components=comps, axes=axes,
        gates=(_gate(team_id),), rank=rank, decision=decision,  # type: ignore[arg-type]
        decision_reason=reasons[decision], survival_probability=SURVIVAL[team_id],
        total_interval=(total - 2.5, total + 2.0),
        not_measured=("users",) if users is None else ())


def make_stage1(name_override: dict[str, str] | None = None) -> StageResult:
    """The five-team first stage; ``name_override`` replaces team names (escaping tests)."""
    names = name_override or {}
    teams = []
    ordered = sorted(STAGE1_TEAMS, key=lambda t: (DECISIONS[t[0]] == "gated",
                                                 -(t[2] + sum(t[3]) + (t[4] or 0))))
    for rank, (tid, name, bench, items, users) in enumerate(ordered, start=1):
        teams.append(make_team(tid, names.get(tid, name), bench, items, users, rank))
    return StageResult(
        program_id="k-ai-2025", stage_id="stage1", stage_name="First-stage evaluation",
        date=dt.date(2026, 1, 15), total_points=100.0,
        rule="Benchmarks 40 + experts 35 + users 25; the lowest-ranked team is cut",
        teams=tuple(teams),
        robustness=Robustness(replicates=1000, seed=20260115,
                              resampled=("benchmark items", "evaluators", "votes"),
                              flag_threshold=0.10, flagged=True,
                              note=("the cut is fragile: 델타 Foundation had a 23% chance of "
                                    "surviving; at risk on the winning side: 감마 Labs 80%")),
        repechage=RepechageOutcome(candidates=("delta", "motif"), votes={"delta": 4, "motif": 6},
                                   evaluators=10, majority=0.5, winners=("motif",),
                                   reason="motif received 6 of 10 votes, above the majority",
                                   source="simulated"),
        not_measured=("users",), simulated_sources=("experts", "repechage", "users"),
        banner=BANNER,
        input_hashes={"program": "sha256:" + "1" * 64, "votes": "sha256:" + "2" * 64},
        code_version="0.1.0+gdeadbeef0000",
        created_at=dt.datetime(2026, 1, 15, 9, 0, tzinfo=dt.UTC),
    )


def make_selection() -> StageResult:
    """An earlier stage with three axis components; 'zeta' was cut and never reached stage 1."""
    rows = [("alpha", "알파 컨소시엄 (Alpha)", 36.0, 25.0, 24.0),
            ("epsilon", "엡실론 Cloud", 35.0, 24.0, 25.0),
            ("beta", "베타 AI", 32.0, 24.0, 22.0),
            ("gamma", "감마 Labs", 30.0, 22.0, 23.0),
            ("delta", "델타 Foundation", 29.0, 21.0, 22.0),
            ("zeta", "제타 AI", 25.0, 18.0, 17.0)]
    teams = []
    for rank, (tid, name, ind, sov, eco) in enumerate(rows, start=1):
        comps = tuple(
            ComponentScore(component_id=cid, title=title, points=p, max_points=mx, axis=axis,
                           kind="committee", sources=("committee", "simulated"),
                           evidence=("trimmed mean of 7 sheets",))
            for cid, title, p, mx, axis in (
                ("sel_independent", "Independent technology", ind, 40.0,
                 "independent_technology"),
                ("sel_sovereign", "Sovereign-AI orientation", sov, 30.0, "sovereign_ai"),
                ("sel_ecosystem", "Ecosystem contribution", eco, 30.0, "ecosystem")))
        decision = "advance" if rank <= 5 else "cut"
        teams.append(TeamResult(
            team_id=tid, team_name=name, total=ind + sov + eco, max_measured=100.0,
            components=comps,
            axes={"independent_technology": ind, "sovereign_ai": sov, "ecosystem": eco},
            gates=(GateOutcome(gate_id="independence", rule="Built from design to pre-training",
                               status="not_measured", reason="no weights at selection",
                               evidence=()),),
            rank=rank, decision=decision,  # type: ignore[arg-type]
            decision_reason="top five advance" if decision == "advance" else "rank 6 of 6",
            survival_probability=1.0 if rank <= 4 else (0.96 if rank == 5 else 0.04)))
    return StageResult(
        program_id="k-ai-2025", stage_id="selection", stage_name="Selection of the consortia",
        date=dt.date(2025, 8, 4), total_points=100.0, rule="Top five of the applicants advance",
        teams=tuple(teams),
        robustness=Robustness(replicates=500, seed=7, resampled=("evaluators",),
                              flag_threshold=0.10, flagged=False, note=""),
        simulated_sources=("sel_ecosystem", "sel_independent", "sel_sovereign"), banner=BANNER,
        code_version="0.1.0+gdeadbeef0000",
        created_at=dt.datetime(2025, 8, 4, 9, 0, tzinfo=dt.UTC),
    )
