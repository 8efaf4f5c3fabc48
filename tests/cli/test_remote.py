"""``kai remote`` against the real app served by uvicorn on a loopback port (no mocks):
each role's work from the command line, and every failure as one line and exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
from lying_server import closed_port, lying  # type: ignore[import-not-found]
from teams_helpers import (  # type: ignore[import-not-found]
    DATA,
    days_later,
    decide,
    dossier_bytes,
)
from web_helpers import make_ctx, populate, serving  # type: ignore[import-not-found]
from web_users_helpers import seed_responses  # type: ignore[import-not-found]

from kaieval.cli import app
from kaieval.records import CommitteeSheet
from kaieval.store import Store
from kaieval.web import committee as cm
from kaieval.web.context import WebContext

runner = CliRunner()


@dataclass
class Live:
    """A served app, its context, and a token file per account."""

    url: str
    ctx: WebContext
    tokens: dict[str, Path]

    def kai(self, who: str | None, *args: str) -> Result:
        """``kai remote ARGS`` against the server, as ``who`` (None: no token)."""
        extra = ["--server", self.url]
        if who is not None:
            extra += ["--token-file", str(self.tokens[who])]
        return runner.invoke(app, ["remote", *args, *extra])


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("remote") / "template.sqlite"
    store = Store(f"sqlite:///{path}")
    _, tokens = populate(store)
    store.close()
    return path, tokens


@pytest.fixture
def live(_template: tuple[Path, dict[str, str]], tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    for name in ("KAI_SERVER", "KAI_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAI_UPLOAD_DIR", str(tmp_path / "uploads"))
    path, tokens = _template
    db = tmp_path / "store.sqlite"
    shutil.copy(path, db)
    ctx = make_ctx(f"sqlite:///{db}")
    files = {}
    for who, token in tokens.items():
        files[who] = tmp_path / f"{who}.token"
        files[who].write_text(token + "\n")
        files[who].chmod(0o600)
    with serving(ctx) as url:
        yield Live(url, ctx, files)
    ctx.store.close()


def _token_file(folder: Path, token: str) -> Path:
    path = folder / "some.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def _one_error(res: Result) -> str:
    """The single ``error:`` line of a failed command (exit 2, no traceback)."""
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


def test_the_office_assigns_and_the_expert_reads_the_sheet(live: Live) -> None:
    res = live.kai("office", "assign", "s1", "--per-team", "2")
    assert res.exit_code == 0, res.output
    assert "assignment(s) added" in res.stdout
    got = json.loads(live.kai("office", "assign", "s1", "--per-team", "2", "--json").stdout)
    assert got["added"] == 0 and got["assignments"]  # balanced already: nothing more
    # park is affiliated with team alpha: refused, in one line
    line = _one_error(live.kai("office", "assignment", "s1", "add", "experts", "alpha",
                               "park"))
    assert line == (f"error: POST {live.url}/api/v1/office/committee/s1/assignments: refused "
                    "422 Unprocessable Entity: park is affiliated with team alpha: conflict "
                    "of interest")
    res = live.kai("office", "assignment", "s1", "add", "experts", "beta", "kim")
    assert res.exit_code == 0 and "kim assigned to s1/experts/beta" in res.stdout
    assert live.kai("office", "blind", "s1", "on").stdout.strip() == "blind mode of stage s1: on"
    res = live.kai("kim", "sheet", "show", "s1", "experts", "beta")
    assert res.exit_code == 0, res.output
    assert "Team Beta" not in res.stdout  # blind: a code, not the team's name
    assert "  report: " in res.stdout and "  logs: " in res.stdout
    assert live.kai("office", "blind", "s1", "off").exit_code == 0
    shown = json.loads(live.kai("kim", "sheet", "show", "s1", "experts", "beta",
                                "--json").stdout)
    assert shown["label"] == "Team Beta" and shown["status"] == "draft"
    assert [it["id"] for it in shown["rubric"]] == ["report", "logs"]
    # an expert cannot use the office's commands
    assert "refused 403" in _one_error(live.kai("kim", "blind", "s1", "on"))


def test_an_expert_submits_a_sheet_once(live: Live, tmp_path: Path) -> None:
    assert cm.auto_assign(live.ctx, "s1", per_team=3, actor="office") > 0
    res = live.kai("kim", "assignments")
    assert res.exit_code == 0, res.output
    assert "s1 experts beta  Team Beta  not_started" in res.stdout
    res = live.kai("kim", "sheet", "save", "s1", "experts", "beta", "--score", "report=6")
    assert res.exit_code == 0 and "draft saved s1/experts/beta: 1 item(s)" in res.stdout
    assert "in_draft" in live.kai("kim", "assignments").stdout
    comment = tmp_path / "comment.txt"
    comment.write_text("solid logs; 한국어 평가")
    res = live.kai("kim", "sheet", "submit", "s1", "experts", "beta", "--score", "report=7",
                   "--score", "logs=4.5", "--comment-file", str(comment))
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("submitted s1/experts/beta: locked")
    sheets = [r for r in live.ctx.store.records() if isinstance(r, CommitteeSheet)]
    assert [(s.evaluator_id, s.team_id, s.scores, s.comment) for s in sheets] == [
        ("kim", "beta", {"report": 7.0, "logs": 4.5}, "solid logs; 한국어 평가")]
    again = live.kai("kim", "sheet", "submit", "s1", "experts", "beta", "--score", "report=1",
                     "--score", "logs=1")
    line = _one_error(again)
    assert line == (f"error: POST {live.url}/api/v1/committee/sheets/s1/experts/beta/submit: "
                    "refused 409 Conflict: already submitted: the sheet is locked")
    assert len([r for r in live.ctx.store.records() if isinstance(r, CommitteeSheet)]) == 1


def test_a_sheet_from_a_json_file_and_the_servers_checks(live: Live, tmp_path: Path) -> None:
    cm.auto_assign(live.ctx, "s1", per_team=3, actor="office")
    sheet = tmp_path / "sheet.json"
    sheet.write_text(json.dumps({"scores": {"report": 8, "logs": 2}, "comment": "from file"}))
    res = live.kai("lee", "sheet", "submit", "s1", "experts", "gamma", "--sheet-file",
                   str(sheet), "--score", "logs=3", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["status"] == "submitted"
    stored = next(r for r in live.ctx.store.records() if isinstance(r, CommitteeSheet))
    assert stored.scores == {"report": 8.0, "logs": 3.0} and stored.comment == "from file"
    line = _one_error(live.kai("lee", "sheet", "submit", "s1", "experts", "beta", "--score",
                               "report=11", "--score", "logs=1"))
    assert "refused 422 Unprocessable Entity: report:" in line
    line = _one_error(live.kai("park", "sheet", "save", "s1", "experts", "alpha", "--score",
                               "report=1"))  # park is alpha-affiliated: never assigned to it
    assert "refused 403 Forbidden:" in line
    line = _one_error(live.kai("lee", "sheet", "save", "s1", "experts", "beta", "--score",
                               "report"))
    assert line == "error: --score 'report': expected ITEM=VALUE"


def test_a_bad_dossier_gets_kai_validates_lines(live: Live, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("alpha.md").write_text("report")  # kai validate looks for the named files too
    Path("stage.yaml").write_bytes(dossier_bytes(**{"type: university": "type: castle",
                                                    "  s2:": "  s9:"}))
    want = runner.invoke(app, ["validate", str(DATA / "program.yaml"), "stage.yaml"])
    assert want.exit_code == 2 and want.stderr.startswith("error: stage.yaml:8: "), want.output
    res = live.kai("alpha-team", "dossier", "upload", "s1", "stage.yaml")
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr == want.stderr
    assert live.ctx.store.get_object("dossier/alpha/s1") is None
    Path("good.yaml").write_bytes(dossier_bytes(**{"name: Team Alpha": "name: Team Alpha 2"}))
    res = live.kai("alpha-team", "dossier", "upload", "s1", "good.yaml")
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("dossier accepted for stage s1: good.yaml (sha256 ")
    assert live.ctx.store.get_object("dossier/alpha/s1") is not None
    Path("report.pdf").write_bytes(b"%PDF-1.7 evidence")
    res = live.kai("alpha-team", "files", "upload", "s1", "report.pdf", "alpha.md")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].startswith("uploaded report.pdf (17 bytes, sha256 ")
    res = live.kai("alpha-team", "stages")
    assert res.exit_code == 0 and "dossier good.yaml" in res.stdout and "2 file(s)" in res.stdout
    line = _one_error(live.kai("alpha-team", "files", "upload", "s1", "missing.txt"))
    assert line == "error: missing.txt: cannot read: No such file or directory"


def test_objections_answers_and_confirmation(live: Live, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    decide(live.ctx)  # main run: decided, open for objections
    text = tmp_path / "objection.txt"
    text.write_text("the committee misread our logs")
    evidence = tmp_path / "evidence.txt"
    evidence.write_text("log line")
    res = live.kai("alpha-team", "objection", "s1", "--text-file", str(text), "--file",
                   str(evidence))
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "objection #1 of team alpha filed for stage s1 (1 file(s))"
    line = _one_error(live.kai("office", "confirm", "s1"))
    assert "refused 409 Conflict: the objection window of stage 's1' is open until" in line
    res = live.kai("office", "objections", "s1")
    assert res.exit_code == 0 and "alpha #1: the committee misread our logs" in res.stdout
    assert "(not answered)" in res.stdout and "file evidence.txt" in res.stdout
    days_later(monkeypatch, 11)
    reply = tmp_path / "answer.txt"
    reply.write_text("we re-read them; the score stands")
    res = live.kai("office", "answer", "s1", "alpha", "1", "--text-file", str(reply))
    assert res.exit_code == 0, res.output
    line = _one_error(live.kai("office", "answer", "s1", "alpha", "9", "--text-file", str(reply)))
    assert "refused 404 Not Found: no objection 9 of team 'alpha'" in line
    res = live.kai("office", "confirm", "s1")
    assert res.exit_code == 0 and res.stdout.startswith("stage s1 confirmed as final at ")
    # public: no token needed
    res = live.kai(None, "leaderboard")
    assert res.exit_code == 0 and res.stdout.startswith("s1  Stage one  2026-01-15  final result")
    res = live.kai(None, "leaderboard", "s1")
    assert res.exit_code == 0, res.output
    assert "  1  Team Alpha (alpha)" in res.stdout
    res = live.kai(None, "team", "alpha", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["stages"][0]["rank"] == 1
    line = _one_error(live.kai(None, "team", "nobody"))
    assert line.endswith("refused 404 Not Found: no public result for team 'nobody'")


def test_public_commands_need_no_token(live: Live) -> None:
    res = live.kai(None, "leaderboard")
    assert res.exit_code == 0 and res.stdout.strip() == "no public results yet"
    res = live.kai(None, "leaderboard", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout) == []
    line = _one_error(live.kai(None, "me"))
    assert line.startswith("error: this command needs an API token: pass --token-file FILE")


def test_users_rate_and_the_office_sees_committee_and_arena(live: Live) -> None:
    res = live.kai("user1", "rating", "list")
    assert res.exit_code == 0 and "s2 panel  Expert users: criteria useful, korean" in res.stdout
    res = live.kai("user1", "rating", "submit", "s2", "panel", "alpha", "--score", "useful=4",
                   "--score", "korean=5")
    assert res.exit_code == 0 and res.stdout.startswith("rated s2/panel/alpha"), res.output
    line = _one_error(live.kai("user1", "rating", "submit", "s2", "panel", "alpha", "--score",
                               "useful=1", "--score", "korean=1"))
    assert "refused 409 Conflict:" in line
    line = _one_error(live.kai("user1", "rating", "submit", "s2", "panel", "beta", "--score",
                               "useful=4.5"))
    assert line == "error: --score useful=4.5: expected a whole number"
    rated = live.kai("user1", "rating", "list").stdout
    assert "alpha  Team Alpha  rated korean=5, useful=4" in rated
    line = _one_error(live.kai("user1", "battle", "s1"))
    assert line.endswith("refused 404 Not Found: no battle to show: no responses yet")
    line = _one_error(live.kai("user1", "vote", "s1", "nope", "left"))
    assert line.endswith("refused 404 Not Found: no such battle of yours")
    assert _one_error(live.kai("user1", "vote", "s1", "x", "maybe")).startswith(
        "error: choice 'maybe': expected one of left, right, tie, both_bad")
    res = live.kai("office", "cap", "s1", "7")
    assert res.exit_code == 0 and "7 votes per user" in res.stdout
    res = live.kai("office", "arena", "s1")
    assert res.exit_code == 0 and "0 votes by 0 users (cap 7 each)" in res.stdout
    cm.auto_assign(live.ctx, "s1", per_team=3, actor="office")
    res = live.kai("office", "committee", "s1")
    assert res.exit_code == 0 and "beta: 0/3 submitted" in res.stdout
    line = _one_error(live.kai("user1", "committee", "s1"))
    assert line.endswith("refused 403 Forbidden: not allowed for your role")
    res = live.kai("office", "me")
    assert res.exit_code == 0 and res.stdout.strip() == "office (admin), Programme office"
    res = live.kai("alpha-team", "me", "--json")
    assert json.loads(res.stdout)["team_id"] == "alpha"
    assert "token" not in res.stdout and "hash" not in res.stdout


def test_a_user_votes_in_the_arena(live: Live) -> None:
    seed_responses(live.ctx.store, {("p1", "alpha"): "line one\n\x1b[31mline two"})
    res = live.kai("user1", "battle", "s1", "--json")
    assert res.exit_code == 0, res.output
    b = json.loads(res.stdout)
    assert {"battle_id", "prompt", "left", "right"} <= set(b) and b["votes"] == 0
    res = live.kai("user1", "battle", "s1")  # the same open battle, for people
    assert res.exit_code == 0 and f"battle {b['battle_id']} (stage s1; 0 of " in res.stdout
    assert "\x1b" not in res.stdout  # a response's escape sequence is shown, not obeyed
    assert f"vote: kai remote vote s1 {b['battle_id']} left|right|tie|both_bad" in res.stdout
    res = live.kai("user1", "vote", "s1", b["battle_id"], "a")
    assert res.exit_code == 0 and res.stdout.startswith(f"voted left on battle {b['battle_id']}")
    line = _one_error(live.kai("user1", "vote", "s1", b["battle_id"], "tie"))
    assert line.endswith("refused 409 Conflict: already voted: one vote per battle")
    res = live.kai("office", "arena", "s1")
    assert res.exit_code == 0 and "1 votes by 1 users" in res.stdout


def test_a_bad_token_is_one_401_line(live: Live, tmp_path: Path) -> None:
    wrong = _token_file(tmp_path, "kai_" + "x" * 43)
    res = runner.invoke(app, ["remote", "me", "--server", live.url, "--token-file", str(wrong)])
    line = _one_error(res)
    assert line == (f"error: GET {live.url}/api/v1/me: refused 401 Unauthorized: log in first "
                    "(the token is not accepted: wrong, or its account disabled; --token-file)")
    assert "x" * 43 not in res.output


def test_the_token_file_comes_from_the_environment(live: Live,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAI_SERVER", live.url)
    monkeypatch.setenv("KAI_TOKEN_FILE", str(live.tokens["kim"]))
    res = runner.invoke(app, ["remote", "me"])
    assert res.exit_code == 0 and res.stdout.strip() == "kim (expert), Seoul Institute"


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    url = closed_port()
    res = runner.invoke(app, ["remote", "leaderboard", "--server", url])
    assert _one_error(res) == (f"error: GET {url}/api/v1/public/stages: cannot reach the server: "
                               f"connection refused (is 'kai serve' running at {url}?)")


def test_the_real_entry_point_prints_one_line_and_no_traceback() -> None:
    url = closed_port()
    proc = subprocess.run([sys.executable, "-m", "kaieval.cli", "remote", "leaderboard",
                           "--server", url], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: GET {url}/api/v1/public/stages: cannot reach the server: connection refused "
        f"(is 'kai serve' running at {url}?)"]


@pytest.mark.parametrize(("mode", "words"), [
    ("html", "the answer is text/html, not JSON"),
    ("garbage", "the answer is not valid JSON (not UTF-8"),
    ("shape", "expected a JSON object, got a list: not this API's answer"),
    ("huge_stream", "the answer is over the 16777216-byte limit; stopped reading"),
    ("redirect", "to http://attacker.example/steal; not followed"),
])
def test_a_lying_endpoint_is_one_line(mode: str, words: str, tmp_path: Path) -> None:
    token = _token_file(tmp_path, "kai_" + "A" * 43)
    with lying(mode) as url:
        res = runner.invoke(app, ["remote", "me", "--server", url, "--token-file", str(token)])
    line = _one_error(res)
    assert line.startswith(f"error: GET {url}/api/v1/me: ") and words in line, line


def test_plain_http_to_another_machine_is_refused(tmp_path: Path) -> None:
    token = _token_file(tmp_path, "kai_" + "A" * 43)
    res = runner.invoke(app, ["remote", "me", "--server", "http://192.0.2.7:8000",
                              "--token-file", str(token)])
    assert _one_error(res) == (
        "error: --server http://192.0.2.7:8000: refusing to send the API token over plain "
        "http to 192.0.2.7, which is not this machine: anyone on the network could read it; "
        "use https://, or --insecure-http if the network is trusted")
