"""Web load benchmark: a real ``kai serve`` process on 127.0.0.1, on SQLite and PostgreSQL.

Generates a programme in a temp folder (``--components`` committee components x
``--teams`` teams, so each evaluator has ``components x teams`` distinct sheets), stores
the accounts (``--evaluators`` experts) and assignments with the library, stores a decided
stage result so the leaderboard has a real table, starts ``kai serve`` as a user does,
then

1. ``--evaluators`` concurrent clients each submit ``--sheets`` sheets through the API
   (``POST /api/v1/committee/sheets/.../submit``), timing each submission;
2. ``--evaluators`` concurrent clients each fetch the leaderboard page ``/``
   ``--pages`` times;
3. votes: ``--voters`` users (token-only accounts) voting at once in the stage's blind
   arena: each fetches a battle and votes on it (responses are stored beforehand, as
   ``kai arena generate`` would; no model runs here).

Afterwards it counts the stored sheets and their audit entries (none lost, none
duplicated) and runs ``kai audit-log verify``. Prints a side-by-side table.

    .venv/bin/python benchmarks/web_load.py --backend sqlite --evaluators 5 --sheets 4  # quick
    KAI_TEST_POSTGRES_URL=postgresql+psycopg://kai:kai@127.0.0.1:5432/kaitest \\
        .venv/bin/python benchmarks/web_load.py                 # acceptance size, both

Exit status 1 if a sheet is lost or duplicated or the audit log does not verify.
Results are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))  # set-up and checks use this checkout's kaieval, as the server does
RUBRIC = [("quality", 10), ("evidence", 5)]
_TLS = ssl.create_default_context()
"""One TLS context for every client (the server is plain http): httpx builds a context per
client otherwise, about 46 ms of CPU each, in this process on the same cores as the
server -- 500 voters spent some 23 s of CPU building clients while others were timed."""


@dataclass
class Outcome:
    backend: str
    board_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    audit_missing: int = 0
    audit_duplicated: int = 0
    verify: str = "?"
    vote_ms: list[float] = field(default_factory=list)
    votes_expected: int = 0
    votes_lost: int = 0
    votes_duplicated: int = 0


def _programme(folder: Path, teams: int, components: int) -> tuple[Path, list[Path]]:
    comps = "\n".join(
        f"      - id: c{c}\n        points: {100 // components}\n        kind: committee\n"
        "        rubric: [" + ", ".join(f"{{id: {i}, title: {i.title()}, max: {m}}}"
                                        for i, m in RUBRIC) + "]"
        for c in range(components))
    program = folder / "program.yaml"
    comps += "\n      - id: users\n        points: 10\n        kind: users"  # the arena
    program.write_text(
        "schema: kaieval/program/v1\nid: web-load\nname: Web load programme\n"
        "axes: [{id: tech, name: Technology}]\nstages:\n  - id: s1\n    name: Stage one\n"
        f"    date: 2026-01-15\n    total: {100 // components * components + 10}\n    cut: 2\n"
        f"    composition:\n{comps}\n", encoding="utf-8")
    dossiers = []
    for t in range(teams):
        path = folder / f"team{t}.yaml"
        path.write_text(f"schema: kaieval/dossier/v1\nteam:\n  id: team{t}\n"
                        f"  name: Team {t}\n  lead: Team {t} AI\n"
                        f"submissions:\n  s1: {{technical_report: team{t}.md}}\n",
                        encoding="utf-8")
        dossiers.append(path)
    return program, dossiers


def _setup(db: str, program: Path, dossiers: list[Path], evaluators: int,
           sheets: int, voters: int) -> tuple[dict[str, str], dict[str, str]]:
    """Accounts, assignments, arena responses and a confirmed stage result; returns the
    evaluators' and the voters' name -> API token."""
    from kaieval.arena.responses import Prompt, put_responses, store_prompts
    from kaieval.pipeline.results import save_stage_result
    from kaieval.records import CommitteeSheet
    from kaieval.scoring.stage import Entrant, run_stage
    from kaieval.spec.load import load_dossiers, load_program
    from kaieval.store import Store
    from kaieval.web import committee as cm
    from kaieval.web.accounts import Role, create_account

    prog, _ = load_program(program)
    loaded = [d.dossier for d in load_dossiers(dossiers, prog, check_files=False)]
    store = Store(db)
    store.migrate()
    tokens = {}
    for e in range(evaluators):
        name = f"ev{e:03d}"
        _, _, tokens[name] = create_account(store, name, Role.EXPERT,
                                            affiliation=f"Evaluator Org {e}", actor="bench")
    stage = prog.stage("s1")
    slots = [(c.id, d.team.id) for c in cm.committee_components(stage) for d in loaded]
    if len(slots) < sheets:
        raise SystemExit(f"--sheets {sheets}: only {len(slots)} slots (components x teams)")
    store.put_objects({f"assignment/s1/{c}/{t}/{name}": {"by": "bench"}
                       for name in tokens for c, t in slots[:sheets]}, actor="bench")
    seed = [CommitteeSheet(stage_id="s1", team_id=t, source="committee", component_id=c,
                           evaluator_id=f"seed{k}", affiliation=f"Seed {k}",
                           scores={i: float((k + j) % m) for i, m in RUBRIC})
            for k in range(3) for c, t in slots for j in range(1)]
    store.put(seed, actor="bench")
    entrants = [Entrant(team_id=d.team.id, name=d.team.name, submission=d.submissions["s1"])
                for d in loaded]
    result = run_stage(prog, stage, entrants, store.records(stage_id="s1"), replicates=50)
    save_stage_result(store, result, "main", actor="bench")
    save_stage_result(store, result, "final", actor="bench")  # what the public leaderboard shows
    voter_tokens = {}
    for v in range(voters):
        name = f"voter{v:04d}"
        _, _, voter_tokens[name] = create_account(store, name, Role.USER, actor="bench",
                                                  password_login=False)
    prompts = [Prompt(f"p{k:02d}", f"질문 {k}: 한국의 수도는 어디인가요?") for k in range(20)]
    store_prompts(store, "s1", prompts, actor="bench")
    put_responses(store, "s1", {(p.id, d.team.id): f"answer {k} to {p.id}"
                                for p in prompts for k, d in enumerate(loaded)},
                  {}, actor="bench")
    store.close()
    return tokens, voter_tokens


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kai(*args: str) -> list[str]:
    return [sys.executable, "-c", "from kaieval.cli import app; app()", *args]


@contextmanager
def _server(db: str, program: Path, dossiers: list[Path], env: dict[str, str]
            ) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(_kai("serve", "--program", str(program), *map(str, dossiers),
                                 "--db", db, "--port", str(port)), env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/api/v1/public/stages", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"kai serve exited with {proc.returncode}")
            time.sleep(0.1)
        else:
            raise SystemExit("kai serve did not start in 30 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _timed(fn: Callable[[], httpx.Response], sink: list[float], errors: list[str],
           what: str) -> None:
    start = time.perf_counter()
    try:
        res = fn()
        if res.status_code != 200:
            errors.append(f"{what}: {res.status_code} {res.text[:120]}")
    except httpx.HTTPError as exc:
        errors.append(f"{what}: {type(exc).__name__} {exc}")
    sink.append((time.perf_counter() - start) * 1000)


def _submitter(base: str, name: str, token: str, slots: list[tuple[str, str]],
               out: Outcome) -> None:
    with httpx.Client(base_url=base, timeout=60, verify=_TLS,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        for comp, team in slots:
            body = {"scores": {"quality": 7, "evidence": 3}, "comment": f"{name} on {team}"}
            _timed(lambda comp=comp, team=team, body=body: c.post(
                f"/api/v1/committee/sheets/s1/{comp}/{team}/submit", json=body),
                out.submit_ms, out.errors, f"submit {name} {comp}/{team}")


def _reader(base: str, pages: int, out: Outcome) -> None:
    with httpx.Client(base_url=base, timeout=60, verify=_TLS) as c:
        for _ in range(pages):
            _timed(lambda: c.get("/"), out.board_ms, out.errors, "leaderboard")


def _voter(base: str, name: str, token: str, out: Outcome) -> None:
    """One user: fetch a battle, vote on it (the left answer), timed together."""
    with httpx.Client(base_url=base, timeout=120, verify=_TLS,
                      headers={"Authorization": f"Bearer {token}"}) as c:
        def battle_and_vote() -> httpx.Response:
            battle = c.get("/api/v1/arena/s1/battle")
            if battle.status_code != 200:
                return battle
            return c.post(f"/api/v1/arena/s1/battles/{battle.json()['battle_id']}/vote",
                          json={"choice": "left"})
        _timed(battle_and_vote, out.vote_ms, out.errors, f"vote {name}")


def _check(db: str, tokens: dict[str, str], slots: list[tuple[str, str]], out: Outcome,
           env: dict[str, str], voters: dict[str, str]) -> None:
    from kaieval.records import CommitteeSheet, UserVote
    from kaieval.store import Store

    expected = {f"sheet/s1/{c}/{t}/{n}" for n in tokens for c, t in slots}
    out.expected = len(expected)
    with Store(db) as store:
        keys = [r.natural_key() for r in store.records(stage_id="s1", kind="sheet")
                if isinstance(r, CommitteeSheet) and r.evaluator_id in tokens]
        audit = [e.entity_key for e in store.audit_entries()
                 if e.actor in tokens and e.entity_key.startswith("sheet/")]
        votes = [r.vote.voter_id for r in store.records(stage_id="s1", kind="vote")
                 if isinstance(r, UserVote)]
    out.votes_expected = len(voters)
    out.votes_lost = len(set(voters) - set(votes))
    out.votes_duplicated = len(votes) - len(set(votes))
    out.lost = len(expected - set(keys))
    out.duplicated = len(keys) - len(set(keys))
    out.audit_missing = len(expected - set(audit))
    out.audit_duplicated = len(audit) - len(set(audit))
    res = subprocess.run(_kai("audit-log", "verify", "--db", db), env=env,
                         capture_output=True, text=True)
    out.verify = "ok" if res.returncode == 0 else f"FAILED: {res.stdout[-200:]}{res.stderr[-200:]}"


def run(backend: str, db: str, args: argparse.Namespace, env: dict[str, str]) -> Outcome:
    out = Outcome(backend)
    with tempfile.TemporaryDirectory() as tmp:
        program, dossiers = _programme(Path(tmp), args.teams, args.components)
        tokens, voters = _setup(db, program, dossiers, args.evaluators, args.sheets,
                                args.voters)
        slots = [(f"c{c}", f"team{t}") for c in range(args.components)
                 for t in range(args.teams)][:args.sheets]
        with _server(db, program, dossiers, env) as base:
            with ThreadPoolExecutor(args.evaluators) as pool:
                for f in [pool.submit(_submitter, base, n, tok, slots, out)
                          for n, tok in tokens.items()]:
                    f.result()
            with ThreadPoolExecutor(args.evaluators) as pool:
                for f in [pool.submit(_reader, base, args.pages, out)
                          for _ in range(args.evaluators)]:
                    f.result()
            with ThreadPoolExecutor(len(voters) or 1) as pool:  # all at once
                for f in [pool.submit(_voter, base, n, tok, out) for n, tok in voters.items()]:
                    f.result()
        _check(db, tokens, slots, out, env, voters)
    return out


@contextmanager
def _postgres(base: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    from kaieval.store import parse_url

    schema = f"webload_{uuid.uuid4().hex[:12]}"
    admin = create_engine(parse_url(base))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = parse_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--pg-url", default=os.environ.get("KAI_TEST_POSTGRES_URL", ""))
    p.add_argument("--evaluators", type=int, default=50)
    p.add_argument("--sheets", type=int, default=20, help="sheets per evaluator")
    p.add_argument("--teams", type=int, default=5)
    p.add_argument("--components", type=int, default=4)
    p.add_argument("--pages", type=int, default=20, help="leaderboard fetches per client")
    p.add_argument("--voters", type=int, default=500)
    args = p.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not args.pg_url:
        raise SystemExit("postgres: set --pg-url or KAI_TEST_POSTGRES_URL")
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "KAI_KEY_DIR": str(Path(tmp) / "keys")}  # no checkpoints into the real folder
        os.environ["KAI_KEY_DIR"] = env["KAI_KEY_DIR"]
        for backend in backends:
            if backend == "sqlite":
                outcomes.append(run(backend, f"sqlite:///{Path(tmp) / 'web.sqlite'}", args,
                                    env))
            else:
                with _postgres(args.pg_url) as url:
                    outcomes.append(run(backend, url, args, env))
    print(f"\n{args.evaluators} evaluators x {args.sheets} sheets, {args.evaluators} clients x "
          f"{args.pages} leaderboard pages; {os.cpu_count()} CPUs\n")
    head = (f"{'backend':9} {'board p50':>10} {'board p95':>10} {'submit p50':>11} "
            f"{'submit p95':>11} {'lost':>5} {'dup':>5} {'audit miss/dup':>15} {'errors':>7}"
            f"  verify")
    print(head)
    print("-" * len(head))
    bad = False
    for o in outcomes:
        print(f"{o.backend:9} {_pct(o.board_ms, 50):8.0f}ms {_pct(o.board_ms, 95):8.0f}ms "
              f"{_pct(o.submit_ms, 50):9.0f}ms {_pct(o.submit_ms, 95):9.0f}ms {o.lost:5d} "
              f"{o.duplicated:5d} {o.audit_missing:>7d}/{o.audit_duplicated:<7d} "
              f"{len(o.errors):7d}  {o.verify}")
        bad |= bool(o.lost or o.duplicated or o.audit_missing or o.audit_duplicated
                    or o.errors or o.verify != "ok")
    print(f"\n{'backend':9} {'voters':>7} {'vote p50':>9} {'vote p95':>9} {'lost':>5} {'dup':>5}"
          "   (battle fetch + vote, all voters at once)")
    for o in outcomes:
        print(f"{o.backend:9} {o.votes_expected:7d} {_pct(o.vote_ms, 50):7.0f}ms "
              f"{_pct(o.vote_ms, 95):7.0f}ms {o.votes_lost:5d} {o.votes_duplicated:5d}")
        bad |= bool(o.votes_lost or o.votes_duplicated)
    for o in outcomes:
        for e in o.errors[:5]:
            print(f"{o.backend}: error: {e}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
