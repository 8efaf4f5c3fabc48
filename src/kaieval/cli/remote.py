"""``kai remote``: every role's work against a running ``kai serve``, through its JSON API.

The commands are thin: :mod:`kaieval.client.api` makes the request and checks the
answer's shape; here the options become a client, files are read with the project's
bounded reads, and the answer is printed for people (or as JSON with ``--json``). Every
failure is one line on stderr and exit 2 (the CLI's contract), never a traceback.

The token comes from a file (``--token-file`` or ``$KAI_TOKEN_FILE``), never from the
command line, so it stays out of shell history, ``ps`` and logs.
"""

from __future__ import annotations

import json
import math
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kaieval.cli._common import err_console, user_errors
from kaieval.client import DEFAULT_SERVER, DEFAULT_TIMEOUT
from kaieval.errors import KaiError

if TYPE_CHECKING:
    from kaieval.client.http import ApiClient, Upload

app = typer.Typer(no_args_is_help=True, help=(
    "Work with a running 'kai serve' through its API: results, sheets, uploads, "
    "ratings, votes, objections. Accounts use an API token file ('kai users add NAME "
    "--role ROLE --token-out FILE')."))
sheet_app = typer.Typer(no_args_is_help=True, help="Expert: save or submit a committee sheet.")
dossier_app = typer.Typer(no_args_is_help=True, help="Team: upload the team's dossier.")
files_app = typer.Typer(no_args_is_help=True, help="Team: upload files the committee reads.")
rating_app = typer.Typer(no_args_is_help=True, help="User evaluator: rating mode.")
app.add_typer(sheet_app, name="sheet", rich_help_panel="Expert")
app.add_typer(dossier_app, name="dossier", rich_help_panel="Team")
app.add_typer(files_app, name="files", rich_help_panel="Team")
app.add_typer(rating_app, name="rating", rich_help_panel="User evaluator")

ServerOpt = Annotated[str, typer.Option(
    "--server", envvar="KAI_SERVER", help="The server's URL.")]
TokenOpt = Annotated[Path | None, typer.Option(
    "--token-file", envvar="KAI_TOKEN_FILE",
    help="File holding the account's API token ('kai users add --token-out').")]
InsecureOpt = Annotated[bool, typer.Option(
    "--insecure-http", help="Allow sending the token over plain http to another machine "
                            "(anyone on the network can read it).")]
TimeoutOpt = Annotated[float, typer.Option(
    "--timeout", help="Seconds to wait for each step of a request.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the server's answer as JSON.")]
Stage = Annotated[str, typer.Argument(help="Stage id (as in the programme).")]
Component = Annotated[str, typer.Argument(help="Component id of the stage.")]
Team = Annotated[str, typer.Argument(help="Team id.")]
ScoreOpt = Annotated[list[str] | None, typer.Option(
    "--score", help="ITEM=VALUE, once per item.")]



class AddRemove(StrEnum):
    ADD = "add"
    REMOVE = "remove"


class OnOff(StrEnum):
    ON = "on"
    OFF = "off"


TEXT_MAX_BYTES = 1 << 20
"""A comment, objection or answer file: the server takes 20 000 characters at most."""
_UNSAFE_JSON = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


# -- plumbing ----------------------------------------------------------------------------

def _client(server: str, token_file: Path | None, *, insecure_http: bool = False,
            timeout: float = DEFAULT_TIMEOUT, need_token: bool = True) -> ApiClient:
    """A client for ``server``; with ``need_token``, carrying the token read from the file."""
    from kaieval.client.http import ApiClient, read_token, server_url

    server_url(server, sending_token=need_token, insecure_http=insecure_http)  # before the file
    token = None
    if need_token:
        if token_file is None:
            raise KaiError("this command needs an API token: pass --token-file FILE or set "
                           "KAI_TOKEN_FILE ('kai users add NAME --role ROLE --token-out FILE' "
                           "makes one)")
        token = read_token(token_file, warn=lambda m: err_console.print(f"warning: {m}",
                                                                        markup=False))
    return ApiClient(server, token, insecure_http=insecure_http, timeout=timeout)


def _t(value: Any, limit: int = 200) -> str:
    """A server value for one terminal line (control and bidi characters neutralised)."""
    from kaieval.client.http import clean

    return clean("" if value is None else str(value), limit)


def _print_json(answer: Any) -> None:
    """The raw answer, indented; characters a terminal would obey are escaped (still JSON)."""
    text = json.dumps(answer, indent=2, ensure_ascii=False)
    typer.echo(_UNSAFE_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def _out(as_json: bool, answer: Any, lines: list[str]) -> None:
    if as_json:
        _print_json(answer)
    else:
        for line in lines:
            typer.echo(line)


def _read_text(path: Path, what: str) -> str:
    """A text file (``-``: standard input), bounded, UTF-8."""
    from kaieval.io import read_bounded_bytes

    if str(path) == "-":
        raw = sys.stdin.buffer.read(TEXT_MAX_BYTES + 1)
        if len(raw) > TEXT_MAX_BYTES:
            raise KaiError(f"{what}: standard input is over {TEXT_MAX_BYTES} bytes")
    else:
        raw = read_bounded_bytes(path, TEXT_MAX_BYTES, what)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise KaiError(f"not UTF-8 ({err.reason} at byte {err.start})", where=str(path)) \
            from None


def _upload(path: Path, limit: int, what: str) -> Upload:
    from kaieval.io import read_bounded_bytes

    return path.name, read_bounded_bytes(path, limit, what)


def _scores(pairs: list[str] | None, *, whole: bool) -> dict[str, Any]:
    """``--score ITEM=VALUE`` options as a dict (numbers; whole numbers with ``whole``)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        item, eq, value = pair.partition("=")
        item, value = item.strip(), value.strip()
        if not eq or not item or not value:
            raise KaiError(f"--score {pair!r}: expected ITEM=VALUE")
        if item in out:
            raise KaiError(f"--score {item}: given twice")
        try:
            number: float | int = int(value) if whole else float(value)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise KaiError(f"--score {item}={value}: expected {kind}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise KaiError(f"--score {item}={value}: expected a finite number")
        out[item] = number
    return out


def _sheet(scores: list[str] | None, comment_file: Path | None,
           sheet_file: Path | None) -> tuple[dict[str, float], str]:
    """The sheet from ``--sheet-file`` (``{"scores": {...}, "comment": "..."}``), then
    ``--score`` and ``--comment-file`` on top (they win where both give a value)."""
    from kaieval.io import load_json_file

    base: dict[str, float] = {}
    comment = ""
    if sheet_file is not None:
        doc = load_json_file(sheet_file, max_bytes=TEXT_MAX_BYTES, what="sheet files")
        where = str(sheet_file)
        if not isinstance(doc, dict) or set(doc) - {"scores", "comment"}:
            raise KaiError('expected {"scores": {ITEM: NUMBER, ...}, "comment": TEXT}',
                           where=where)
        raw = doc.get("scores", {})
        if not isinstance(raw, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in raw.values()):
            raise KaiError("scores: expected an object of item: number", where=where)
        base = {str(k): float(v) for k, v in raw.items()}
        if not isinstance(doc.get("comment", ""), str):
            raise KaiError("comment: expected text", where=where)
        comment = doc.get("comment", "")
    base.update(_scores(scores, whole=False))
    if comment_file is not None:
        comment = _read_text(comment_file, "comment files")
    return base, comment


# -- anyone ------------------------------------------------------------------------------

@app.command("me", rich_help_panel="Any account")
@user_errors
def me(server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
       insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
       as_json: JsonOpt = False) -> None:
    """Who the token speaks for: name, role, team, affiliation."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        a = api.me(c)
    extra = [f"team {_t(a['team_id'])}" if a.get("team_id") else "",
             _t(a.get("affiliation")) if a.get("affiliation") else "",
             "disabled" if a.get("disabled") else ""]
    _out(as_json, a, [f"{_t(a['name'])} ({_t(a['role'])})"
                      + "".join(f", {x}" for x in extra if x)])


@app.command("leaderboard", rich_help_panel="Public (no token)")
@user_errors
def leaderboard(stage: Annotated[str | None, typer.Argument(
                    help="A stage id: its ranking (default: the list of public stages).")]
                = None,
                server: ServerOpt = DEFAULT_SERVER, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
                as_json: JsonOpt = False) -> None:
    """The public results: stages with a confirmed (or demo) result, or one stage's ranking."""
    from kaieval.client import api

    with _client(server, None, timeout=timeout, need_token=False) as c:
        if stage is None:
            stages = api.public_stages(c)
            lines = [f"{_t(s['stage_id'])}  {_t(s['stage_name'])}  {_t(s.get('date'))}  "
                     f"{_t(s.get('run_words') or s['run'])}" for s in stages]
            _out(as_json, stages, lines or ["no public results yet"])
            return
        r = api.public_stage(c, stage)
    lines = [f"{_t(r['stage_name'])} ({_t(r['stage_id'])}), {_t(r.get('date'))}: "
             f"{_t(r.get('run_words') or r.get('run'))}"]
    if r.get("banner"):
        lines.append(_t(r["banner"]))
    for t in r["teams"]:
        reason = f" -- {_t(t['reason'])}" if t.get("reason") else ""
        lines.append(f"{_t(t['rank']):>3}  {_t(t.get('team_name') or t['team_id'])} "
                     f"({_t(t['team_id'])})  {_num(t['total'])} / {_t(r.get('total_points'))}"
                     f"  {_t(t['decision'])}{reason}")
    if r.get("robustness"):
        lines.append(f"robustness: {_t(r['robustness'])}")
    _out(as_json, r, lines)


def _num(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else _t(value)


@app.command("team", rich_help_panel="Public (no token)")
@user_errors
def team(team_id: Team, server: ServerOpt = DEFAULT_SERVER,
         timeout: TimeoutOpt = DEFAULT_TIMEOUT, as_json: JsonOpt = False) -> None:
    """A team's public results, stage by stage."""
    from kaieval.client import api

    with _client(server, None, timeout=timeout, need_token=False) as c:
        r = api.public_team(c, team_id)
    lines = [f"{_t(r['team_name'])} ({_t(r['team_id'])})"]
    for s in r["stages"]:
        lines.append(f"  {_t(s['stage_id'])}  {_t(s.get('stage_name'))}: rank {_t(s['rank'])} "
                     f"of {_t(s['of'])}, {_num(s['total'])} / {_t(s.get('total_points'))} "
                     f"points, {_t(s['decision'])} ({_t(s.get('run_words') or s.get('run'))})")
    _out(as_json, r, lines)


# -- expert ------------------------------------------------------------------------------

@app.command("assignments", rich_help_panel="Expert")
@user_errors
def assignments(server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
                insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
                as_json: JsonOpt = False) -> None:
    """The sheets assigned to you and the state of each (not_started, in_draft, submitted)."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        got = api.assignments(c)
    lines = [f"{_t(r['stage_id'])} {_t(r['component_id'])} {_t(r['team_id'])}  "
             f"{_t(r['label'])}  {_t(r['status'])}" for r in got]
    _out(as_json, got, lines or ["no assignments"])


SheetFileOpt = Annotated[Path | None, typer.Option(
    "--sheet-file", help='JSON {"scores": {ITEM: NUMBER}, "comment": TEXT}; --score and '
                         "--comment-file override it.")]
CommentOpt = Annotated[Path | None, typer.Option(
    "--comment-file", help="UTF-8 file with the comment ('-': standard input).")]


def _sheet_cmd(submit: bool, stage: str, component: str, team_id: str,
               score: list[str] | None, comment_file: Path | None, sheet_file: Path | None,
               server: str, token_file: Path | None, insecure_http: bool, timeout: float,
               as_json: bool) -> None:
    from kaieval.client import api

    scores, comment = _sheet(score, comment_file, sheet_file)
    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        if submit:
            r = api.submit_sheet(c, stage, component, team_id, scores, comment)
            line = f"submitted {stage}/{component}/{team_id}: locked ({_t(r['key'])})"
        else:
            r = api.save_sheet(c, stage, component, team_id, scores, comment)
            line = f"draft saved {stage}/{component}/{team_id}: {len(scores)} item(s)"
    _out(as_json, r, [_t(line)])


@sheet_app.command("show")
@user_errors
def sheet_show(stage: Stage, component: Component, team_id: Team,
               server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
               insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
               as_json: JsonOpt = False) -> None:
    """A sheet: rubric, your draft or submitted scores, evidence files, and the others'
    sheets once yours is submitted (where the spec reveals them)."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.sheet(c, stage, component, team_id)
    scores = r["values"].get("scores") or {}
    lines = [f"{_t(r['label'])} ({_t(stage)}/{_t(component)}): {_t(r['status'])}"]
    lines += [f"  {_t(it['id'])}: {_num(scores.get(it['id']))} / {_num(it['max'])}"
              for it in r["rubric"]]
    if r["values"].get("comment"):
        lines.append(f"  comment: {_t(r['values']['comment'], 2000)}")
    lines += [f"  evidence: {_t(f.get('name'))} ({_t(f.get('sha256'))})"
              for f in r["evidence"] if isinstance(f, dict)]
    lines += [f"  other sheet by {_t(o.get('evaluator_id'))}: {_t(o.get('scores'), 300)}"
              for o in r["others"] if isinstance(o, dict)]
    _out(as_json, r, lines)


@sheet_app.command("save")
@user_errors
def sheet_save(stage: Stage, component: Component, team_id: Team, score: ScoreOpt = None,
               comment_file: CommentOpt = None, sheet_file: SheetFileOpt = None,
               server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
               insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
               as_json: JsonOpt = False) -> None:
    """Save a draft sheet (any subset of items); change it until you submit."""
    _sheet_cmd(False, stage, component, team_id, score, comment_file, sheet_file, server,
               token_file, insecure_http, timeout, as_json)


@sheet_app.command("submit")
@user_errors
def sheet_submit(stage: Stage, component: Component, team_id: Team, score: ScoreOpt = None,
                 comment_file: CommentOpt = None, sheet_file: SheetFileOpt = None,
                 server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
                 insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
                 as_json: JsonOpt = False) -> None:
    """Submit the sheet (every rubric item): stored as a committee record, then locked."""
    _sheet_cmd(True, stage, component, team_id, score, comment_file, sheet_file, server,
               token_file, insecure_http, timeout, as_json)


# -- team --------------------------------------------------------------------------------

@app.command("stages", rich_help_panel="Team")
@user_errors
def stages(server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
           insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
           as_json: JsonOpt = False) -> None:
    """Per stage: deadline, your dossier and files, where the result stands, objections."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        got = api.team_stages(c)
    lines = []
    for s in got:
        uploads = "open" if s["uploads_open"] else "closed"
        deadline = f", deadline {_t(s['deadline'])}" if s.get("deadline") else ""
        dossier = s.get("dossier")
        dossier_words = (f"{_t(dossier.get('name'))} (sha256 {_t(dossier.get('sha256'), 12)}"
                         "...)" if isinstance(dossier, dict) else "none uploaded")
        n_files = len(s["files"]) if isinstance(s["files"], list) else "?"
        n_obj = len(s["objections"]) if isinstance(s["objections"], list) else "?"
        lines.append(f"{_t(s['stage_id'])}  {_t(s['stage_name'])}: uploads {uploads}{deadline}"
                     f"; dossier {dossier_words}; {n_files} file(s); result: "
                     f"{_t(s.get('words') or s['state'])}; {n_obj} objection(s)")
        mine = s.get("mine")
        if isinstance(mine, dict):
            lines.append(f"    your result: rank {_t(mine.get('rank'))}, "
                         f"{_num(mine.get('total'))} / {_t(mine.get('total_points'))} points, "
                         f"{_t(mine.get('decision'))}")
    _out(as_json, got, lines)


@dossier_app.command("upload")
@user_errors
def dossier_upload(stage: Stage, file: Annotated[Path, typer.Argument(
                       help="The team's dossier YAML.")],
                   server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
                   insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
                   as_json: JsonOpt = False) -> None:
    """Upload the dossier for a stage; a refusal lists 'kai validate''s lines."""
    from kaieval.client import api

    upload = _upload(file, api.MAX_DOSSIER_BYTES, "dossiers")
    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.upload_dossier(c, stage, upload)
    _out(as_json, r, [f"dossier accepted for stage {_t(stage)}: {_t(r['name'])} "
                      f"(sha256 {_t(r['sha256'], 64)})"])


@files_app.command("upload")
@user_errors
def files_upload(stage: Stage, files: Annotated[list[Path], typer.Argument(
                     help="Files to upload (one request each, in order).")],
                 server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
                 insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
                 as_json: JsonOpt = False) -> None:
    """Upload files the committee reads; each is checked locally first (size, regular file)."""
    from kaieval.client import api

    uploads = [_upload(f, api.MAX_UPLOAD_BYTES, "uploads") for f in files]
    done = []
    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        for up in uploads:
            r = api.upload_file(c, stage, up)
            done.append(r)
            if not as_json:
                typer.echo(f"uploaded {_t(r['name'])} ({_t(r['size'])} bytes, sha256 "
                           f"{_t(r['sha256'], 64)})")
    if as_json:
        _print_json(done)


@app.command("objection", rich_help_panel="Team")
@user_errors
def objection(stage: Stage, text_file: Annotated[Path, typer.Option(
                  "--text-file", help="UTF-8 file with the objection ('-': standard input).")],
              file: Annotated[list[Path] | None, typer.Option(
                  "--file", help="A supporting file (repeat for several).")] = None,
              server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
              insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
              as_json: JsonOpt = False) -> None:
    """File an objection to a stage's decided result while its window is open."""
    from kaieval.client import api

    text = _read_text(text_file, "objection files")
    uploads = [_upload(f, api.MAX_UPLOAD_BYTES, "uploads") for f in file or []]
    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.file_objection(c, stage, text, uploads)
    _out(as_json, r, [f"objection #{_t(r['n'])} of team {_t(r['team_id'])} filed for stage "
                      f"{_t(stage)} ({len(uploads)} file(s))"])


# -- user evaluator ----------------------------------------------------------------------

@rating_app.command("list")
@user_errors
def rating_list(server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
                insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
                as_json: JsonOpt = False) -> None:
    """The rating components, their criteria, the teams, and your ratings so far."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        forms = api.rating_forms(c)
    lines = []
    for f in forms:
        crit = f["criteria"] if isinstance(f["criteria"], list) else []
        names = ", ".join(_t(x.get("id")) for x in crit if isinstance(x, dict))
        lines.append(f"{_t(f['stage_id'])} {_t(f['component_id'])}  {_t(f.get('title'))}: "
                     f"criteria {names} (1-5 each)")
        for t in f["teams"] if isinstance(f["teams"], list) else []:
            if not isinstance(t, dict):
                continue
            done = t.get("scores")
            state = ("rated " + ", ".join(f"{_t(k)}={v:g}" if isinstance(v, int | float)
                                          else f"{_t(k)}={_t(v)}" for k, v in done.items())
                     if isinstance(done, dict) else "not rated")
            lines.append(f"    {_t(t.get('team_id'))}  {_t(t.get('label'))}  {state}")
    _out(as_json, forms, lines or ["nothing to rate"])


@rating_app.command("submit")
@user_errors
def rating_submit(stage: Stage, component: Component, team_id: Team,
                  score: Annotated[list[str], typer.Option(
                      "--score", help="CRITERION=N (1-5), once per criterion.")],
                  server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
                  insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
                  as_json: JsonOpt = False) -> None:
    """Rate one team (every criterion, 1-5); a rating cannot be changed afterwards."""
    from kaieval.client import api

    scores = _scores(score, whole=True)
    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.rate(c, stage, component, team_id, scores)
    _out(as_json, r, [_t(f"rated {stage}/{component}/{team_id} ({r['key']})")])


@app.command("battle", rich_help_panel="User evaluator")
@user_errors
def battle(stage: Stage, server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
           insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
           as_json: JsonOpt = False) -> None:
    """Your open arena battle, else a new one: a prompt and two anonymous responses."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        b = api.battle(c, stage)
    bid = _t(b["battle_id"])
    lines = [f"battle {bid} (stage {_t(stage)}; {_t(b.get('votes'))} of {_t(b.get('cap'))} "
             "votes used)", "", "PROMPT", *_block(b["prompt"]), "", "LEFT",
             *_block(b["left"]), "", "RIGHT", *_block(b["right"]), "",
             f"vote: kai remote vote {_t(stage)} {bid} left|right|tie|both_bad"]
    _out(as_json, b, lines)


def _block(text: Any) -> list[str]:
    """Multi-line server text, each line cleaned and indented."""
    return ["  " + _t(line, 2000) for line in str(text).splitlines()] or ["  (empty)"]


@app.command("vote", rich_help_panel="User evaluator")
@user_errors
def vote(stage: Stage, battle_id: Annotated[str, typer.Argument(help="The battle's id.")],
         choice: Annotated[str, typer.Argument(
             help="left (or a), right (or b), tie, both_bad.")],
         server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
         insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
         as_json: JsonOpt = False) -> None:
    """Vote on your battle; one vote per battle."""
    from kaieval.client import api

    picked = {"a": "left", "b": "right"}.get(choice, choice)
    if picked not in api.CHOICES:
        raise KaiError(f"choice {choice!r}: expected one of left, right, tie, both_bad "
                       "(a = left, b = right)")
    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.vote(c, stage, battle_id, picked)
    _out(as_json, r, [f"voted {picked} on battle {_t(battle_id)} ({_t(r.get('votes'))} of "
                      f"{_t(r.get('cap'))} votes used)"])


# -- programme office --------------------------------------------------------------------

@app.command("committee", rich_help_panel="Office")
@user_errors
def committee(stage: Stage, server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
              insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
              as_json: JsonOpt = False) -> None:
    """Committee progress of a stage: sheets per team, points, α per item, outliers."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        comps = api.committee(c, stage)
    lines = []
    for comp in comps:
        lines.append(f"{_t(comp['component_id'])}  {_t(comp.get('title'))} "
                     f"(max {_t(comp.get('max_points'))} points)")
        for t in comp["teams"] if isinstance(comp["teams"], list) else []:
            if not isinstance(t, dict):
                continue
            assigned = t.get("assigned") or []
            submitted = t.get("submitted") or []
            lines.append(f"    {_t(t.get('team_id'))}: {len(submitted)}/{len(assigned)} "
                         f"submitted ({_t(', '.join(map(str, submitted)) or '-')}), points "
                         f"{_num(t.get('points'))}")
        alpha = comp["alpha"] if isinstance(comp["alpha"], dict) else {}
        lines.append("    alpha: " + (", ".join(f"{_t(k)} {_num(v)}" for k, v in alpha.items())
                                      or "-"))
        for o in comp["outliers"] if isinstance(comp["outliers"], list) else []:
            if isinstance(o, dict):
                lines.append(f"    outlier: {_t(o.get('evaluator'))} on {_t(o.get('team_id'))}"
                             f" {_t(o.get('item'))} = {_t(o.get('score'))} (others' median "
                             f"{_num(o.get('others_median'))})")
    _out(as_json, comps, lines or ["no committee component in this stage"])


@app.command("assign", rich_help_panel="Office")
@user_errors
def assign(stage: Stage, per_team: Annotated[int, typer.Option(
               "--per-team", min=1, max=100,
               help="Evaluators per team and committee component.")] = 5,
           server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
           insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
           as_json: JsonOpt = False) -> None:
    """Assign evaluators automatically (balanced, conflicts of interest excluded)."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.auto_assign(c, stage, per_team)
    lines = [f"stage {_t(stage)}: {_t(r['added'])} assignment(s) added, "
             f"{len(r['assignments'])} in all"]
    lines += [f"  {_t(a['component_id'])} {_t(a['team_id'])}: {_t(a['evaluator'])}"
              for a in r["assignments"]]
    _out(as_json, r, lines)


@app.command("assignment", rich_help_panel="Office")
@user_errors
def assignment(stage: Stage, action: Annotated[AddRemove, typer.Argument(
                   help="add or remove.")],
               component: Component, team_id: Team,
               evaluator: Annotated[str, typer.Argument(help="The expert's account name.")],
               server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
               insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
               as_json: JsonOpt = False) -> None:
    """Add or remove one evaluator's assignment to a team's sheet."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.set_assignment(c, stage, component, team_id, evaluator,
                               action is AddRemove.ADD)
    done = "assigned to" if action is AddRemove.ADD else "removed from"
    _out(as_json, r, [f"{_t(evaluator)} {done} {_t(stage)}/{_t(component)}/{_t(team_id)}"])


@app.command("blind", rich_help_panel="Office")
@user_errors
def blind(stage: Stage, mode: Annotated[OnOff, typer.Argument(
              help="on: evaluators see teams by code; off: by name.")],
          server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
          insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
          as_json: JsonOpt = False) -> None:
    """Blind mode of a stage's committee on or off."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.set_blind(c, stage, mode is OnOff.ON)
    _out(as_json, r, [f"blind mode of stage {_t(stage)}: {'on' if r['blind'] else 'off'}"])


@app.command("objections", rich_help_panel="Office")
@user_errors
def objections(stage: Stage, server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
               insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
               as_json: JsonOpt = False) -> None:
    """Where a stage's objection window stands, and every objection with its answer."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.objections(c, stage)
    lines = [f"stage {_t(r['stage_id'])}: {_t(r.get('words') or r['state'])}"]
    for o in r["objections"]:
        ans = o.get("answer")
        lines.append(f"  {_t(o['team_id'])} #{_t(o['n'])}: {_t(o['text'], 300)}")
        files = o.get("files") if isinstance(o.get("files"), list) else []
        for f in files or []:
            if isinstance(f, dict):
                lines.append(f"      file {_t(f.get('name'))} (sha256 {_t(f.get('sha256'))})")
        lines.append("      answer: " + (_t(ans.get("text"), 300) if isinstance(ans, dict)
                                         else "(not answered)"))
    _out(as_json, r, lines)


@app.command("answer", rich_help_panel="Office")
@user_errors
def answer(stage: Stage, team_id: Team,
           n: Annotated[int, typer.Argument(help="The objection's number (see 'objections').",
                                            min=1)],
           text_file: Annotated[Path, typer.Option(
               "--text-file", help="UTF-8 file with the answer ('-': standard input).")],
           server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
           insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
           as_json: JsonOpt = False) -> None:
    """Answer one objection (it can be rewritten until the stage is confirmed)."""
    from kaieval.client import api

    text = _read_text(text_file, "answer files")
    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.answer_objection(c, stage, team_id, n, text)
    _out(as_json, r, [f"answered objection #{n} of team {_t(team_id)} to stage {_t(stage)}"])


@app.command("confirm", rich_help_panel="Office")
@user_errors
def confirm(stage: Stage, server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
            insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
            as_json: JsonOpt = False) -> None:
    """Confirm the decided result as final (window closed, every objection answered)."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.confirm(c, stage)
    _out(as_json, r, [f"stage {_t(stage)} confirmed as final at {_t(r['at'])}"])


@app.command("arena", rich_help_panel="Office")
@user_errors
def arena(stage: Stage, server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
          insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
          as_json: JsonOpt = False) -> None:
    """A stage's arena: ratings with 95 % intervals, points, position bias, withheld."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.arena(c, stage)
    lines = [f"stage {_t(r['stage_id'])}: {_t(r['votes'])} votes by {_t(r['voters'])} users "
             f"(cap {_t(r['cap'])} each), {_t(r.get('prompts'))} prompts, "
             f"{_t(r.get('responses'))} responses"]
    if r.get("position_bias") is not None:
        lines.append(f"position bias: {_t(r['position_bias'], 300)}")
    for t in r["teams"]:
        interval = t.get("interval")
        shown = (f" [{_num(interval[0])}, {_num(interval[1])}]"
                 if isinstance(interval, list) and len(interval) == 2 else "")
        lines.append(f"  {_t(t['team_id'])}: rating {_num(t['rating'])}{shown}, "
                     f"{_t(t['battles'])} battles, points {_num(t.get('points'))}")
    for w in r.get("withheld") or []:
        if isinstance(w, dict):
            lines.append(f"  withheld: {_t(w.get('team_id'))} on prompt {_t(w.get('prompt_id'))}")
    _out(as_json, r, lines)


@app.command("cap", rich_help_panel="Office")
@user_errors
def cap(stage: Stage, votes: Annotated[int, typer.Argument(
            help="Votes each user may cast in the stage's arena.", min=1, max=100_000)],
        server: ServerOpt = DEFAULT_SERVER, token_file: TokenOpt = None,
        insecure_http: InsecureOpt = False, timeout: TimeoutOpt = DEFAULT_TIMEOUT,
        as_json: JsonOpt = False) -> None:
    """Set the per-user vote cap of a stage's arena."""
    from kaieval.client import api

    with _client(server, token_file, insecure_http=insecure_http, timeout=timeout) as c:
        r = api.set_cap(c, stage, votes)
    _out(as_json, r, [f"arena cap of stage {_t(stage)}: {_t(r['cap'])} votes per user"])
