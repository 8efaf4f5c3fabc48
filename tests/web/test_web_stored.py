"""`kai serve` without --program serves the programme the store holds (as `kai demo`
leaves it), and the demo's accounts are made once."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner
from web_helpers import DATA, Web  # type: ignore[import-not-found]

from kaieval.cli import app as cli
from kaieval.demo.accounts import demo_people, make_demo_accounts
from kaieval.store import Store
from kaieval.web.stored import load_stored, store_programme

TEAMS = ("alpha", "beta", "gamma")


def test_a_stored_programme_loads_as_from_files(web: Web) -> None:
    store = web.ctx.store
    assert load_stored(store) is None
    texts = {t: (DATA / f"{t}.yaml").read_text("utf-8") for t in TEAMS}
    assert store_programme(store, (DATA / "program.yaml").read_text("utf-8"), texts,
                           actor="test") == 4
    assert store_programme(store, (DATA / "program.yaml").read_text("utf-8"), texts,
                           actor="test") == 0  # unchanged: nothing written
    stored = load_stored(store)
    assert stored is not None
    program, phash, dossiers = stored
    assert program == web.ctx.program and phash == web.ctx.program_hash
    assert [d.team.id for d in dossiers] == list(TEAMS)
    assert store.audit_verify() == []


def test_serve_without_a_programme_says_what_to_do(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["serve", "--db", f"sqlite:///{tmp_path / 'e.sqlite'}"])
    assert res.exit_code == 2 and "run `kai demo`" in res.output, res.output
    res = CliRunner().invoke(cli, ["serve", str(DATA / "alpha.yaml"), "--db",
                                   f"sqlite:///{tmp_path / 'e.sqlite'}"])
    assert res.exit_code == 2 and "need --program" in res.output, res.output


def test_demo_accounts_are_made_once(web: Web) -> None:
    store: Store = web.ctx.store
    first = make_demo_accounts(store, web.ctx.dossiers)
    assert len(first) == len(demo_people(web.ctx.dossiers)) and all(p for *_, p in first)
    assert {r for _, r, _, _ in first} == {"admin", "expert", "user", "team"}
    head = store.audit_head()
    again = make_demo_accounts(store, web.ctx.dossiers)
    assert all(p is None for *_, p in again) and store.audit_head() == head
