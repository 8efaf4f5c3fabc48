"""The demo's web-app accounts: an office, a few experts, users and one per team.

Simulated people, labelled so; made once per store. A rerun of ``kai demo`` writes
nothing (its promise), so existing accounts keep the passwords the first run printed.
"""

from __future__ import annotations

from collections.abc import Sequence

from kaieval.spec.dossier import Dossier
from kaieval.store import Store
from kaieval.web.accounts import Role, create_account, get_account

EXPERTS = (("demo-expert1", "Demo Institute of Technology"),
           ("demo-expert2", "Demo National University"),
           ("demo-expert3", "Demo Research Centre"))
USERS = ("demo-user1", "demo-user2")


def demo_people(dossiers: Sequence[Dossier]) -> list[tuple[str, Role, str | None, str]]:
    """``(name, role, team id, affiliation)`` of every demo account."""
    people: list[tuple[str, Role, str | None, str]] = [
        ("demo-office", Role.ADMIN, None, "Demo programme office")]
    people += [(n, Role.EXPERT, None, a) for n, a in EXPERTS]
    people += [(n, Role.USER, None, "") for n in USERS]
    people += [(f"demo-team-{d.team.id}", Role.TEAM, d.team.id, d.team.lead) for d in dossiers]
    return people


def make_demo_accounts(store: Store, dossiers: Sequence[Dossier],
                       ) -> list[tuple[str, str, str, str | None]]:
    """Create the missing demo accounts; ``(name, role, detail, one-time password or None
    for an account an earlier run made)`` for each."""
    out: list[tuple[str, str, str, str | None]] = []
    for name, role, team, affiliation in demo_people(dossiers):
        detail = team or affiliation
        if get_account(store, name) is not None:
            out.append((name, role.value, detail, None))
            continue
        _, password, _ = create_account(store, name, role, team_id=team,
                                        affiliation=affiliation, actor="kai demo")
        out.append((name, role.value, detail, password))
    return out
