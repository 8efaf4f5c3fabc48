"""Team uploads: the dossier checked with kai validate's one-line errors, content-addressed
files with size limits and no special files, the deadline, and who may read what."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from teams_helpers import DATA, at, dossier_bytes, with_deadline  # type: ignore[import-not-found]
from web_helpers import Web, csrf_of, login  # type: ignore[import-not-found]

from kaieval.spec.load import validate_paths
from kaieval.web import committee as cm
from kaieval.web import submissions as sub


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


DOSSIER = "/api/v1/team/dossier/s1"
FILES = "/api/v1/team/files/s1"


def test_a_dossier_upload_is_kept_and_used(web: Web) -> None:
    raw = dossier_bytes(**{"name: Team Alpha": "name: Team Alpha Prime"})
    res = web.client("alpha-team").post(DOSSIER, files={"file": ("alpha.yaml", raw)})
    assert res.status_code == 200, res.text
    assert res.json()["sha256"] == _hex(raw) and "text" not in res.json()
    stored = web.ctx.store.get_object("dossier/alpha/s1")
    assert stored is not None and stored["text"] == raw.decode()
    assert web.ctx.dossier("alpha").team.name == "Team Alpha Prime"  # type: ignore[union-attr]
    # a fresh app over the same store prefers the uploaded dossier too
    from web_helpers import make_ctx  # type: ignore[import-not-found]

    again = make_ctx(web.ctx.store.url.replace("***", ""))
    assert again.dossier("alpha").team.name == "Team Alpha Prime"  # type: ignore[union-attr]
    assert [d.team.id for d in again.dossiers] == ["alpha", "beta", "gamma"]
    again.store.close()


def test_dossier_errors_are_kai_validates_lines(web: Web, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("alpha.md").write_text("report")  # kai validate looks for the named files too
    c = web.client("alpha-team")
    bads = {"stage.yaml": dossier_bytes(**{"  s2:": "  s9:"}),
            "syntax.yaml": dossier_bytes(**{"name: Team Alpha": "name: [Team Alpha"}),
            "type.yaml": dossier_bytes(**{"type: university": "type: castle"})}
    for name, raw in bads.items():
        Path(name).write_bytes(raw)
        _, want = validate_paths([DATA / "program.yaml", Path(name)])
        res = c.post(DOSSIER, files={"file": (name, raw)})
        assert res.status_code == 422, res.text
        assert res.json()["errors"] == [str(e) for e in want], name
        assert all(line.startswith(f"{name}:") and "\n" not in line
                   for line in res.json()["errors"])
    assert web.ctx.store.get_object("dossier/alpha/s1") is None
    res = c.post(DOSSIER, files={"file": ("bin.yaml", b"\xff\xfe\x00")})
    assert res.status_code == 422 and res.json()["errors"][0].startswith("bin.yaml:1: not UTF-8")


def test_a_team_uploads_only_for_itself(web: Web) -> None:
    c = web.client("alpha-team")
    res = c.post(DOSSIER, files={"file": ("beta.yaml", dossier_bytes("beta"))})
    assert res.status_code == 422
    assert "this dossier is for team 'beta'; your account speaks for team 'alpha'" \
        in res.json()["detail"]
    res = c.post("/api/v1/team/dossier/s2", files={"file": ("a.yaml", dossier_bytes(
        **{"  s2: {technical_report: alpha.md}\n": ""}))})
    assert res.status_code == 422 and "no submission for stage 's2'" in res.json()["detail"]
    for who in ("office", "kim", "user1"):
        assert web.client(who).post(DOSSIER, files={"file": ("a.yaml", dossier_bytes())}
                                    ).status_code == 403
    assert web.client().post(DOSSIER, files={"file": ("a.yaml", dossier_bytes())}
                             ).status_code == 401


def test_uploads_close_at_the_deadline(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    web.ctx.program = with_deadline(web.ctx.program, "s1", dt.date(2026, 1, 10))
    c = web.client("alpha-team")
    at(monkeypatch, dt.datetime(2026, 1, 10, 23, 59))
    assert c.post(FILES, files={"file": ("r.md", b"report")}).status_code == 200
    at(monkeypatch, dt.datetime(2026, 1, 11, 0, 0))
    for url, raw in ((FILES, b"later"), (DOSSIER, dossier_bytes())):
        res = c.post(url, files={"file": ("x.yaml", raw)})
        assert res.status_code == 409
        assert res.json()["detail"] == ("the submission deadline of stage 's1' (2026-01-11 "
                                        "00:00 KST) has passed: uploads are closed")
    page = c.get("/team").text
    assert 'id="closed-s1"' in page and 'class="dossier-form"' not in page.split(
        'data-stage="s2"')[0]


def test_files_are_content_addressed(web: Web) -> None:
    c = web.client("alpha-team")
    data = b"# Technical report\n"
    first = c.post(FILES, files={"file": ("../../etc/report.md", data)}).json()
    second = c.post(FILES, files={"file": ("copy.md", data)}).json()
    digest = _hex(data)
    assert first["sha256"] == second["sha256"] == digest and first["name"] == "report.md"
    root = Path(os.environ["KAI_UPLOAD_DIR"])
    assert [p.name for p in root.iterdir()] == [digest]
    assert (root / digest).read_bytes() == data
    meta = web.ctx.store.get_object(f"upload/s1/alpha/{digest}")
    assert meta is not None and meta["size"] == len(data) and meta["by"] == "alpha-team"
    res = c.get(f"/files/s1/alpha/{digest}")
    assert res.status_code == 200 and res.content == data
    assert res.headers["content-disposition"].startswith("attachment;")
    assert res.headers["content-type"] == "application/octet-stream"


def test_oversize_empty_and_special_files_are_refused(web: Web,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    c = web.client("alpha-team")
    monkeypatch.setattr(sub, "MAX_UPLOAD_BYTES", 10)
    res = c.post(FILES, files={"file": ("big.bin", b"x" * 11)})
    assert res.status_code == 413 and "exceeds the 10 bytes limit" in res.json()["detail"]
    assert c.post(FILES, files={"file": ("e.md", b"")}).status_code == 422
    monkeypatch.setattr(sub, "MAX_DOSSIER_BYTES", 10)
    assert c.post(DOSSIER, files={"file": ("a.yaml", dossier_bytes())}).status_code == 413
    # something that is not a regular file under a file's hash is refused, never opened
    root = Path(os.environ["KAI_UPLOAD_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    fifo, link = b"fifo", b"link"
    os.mkfifo(root / _hex(fifo))
    (root / _hex(link)).symlink_to("/etc/hostname")
    for data in (fifo, link):
        res = c.post(FILES, files={"file": ("x.md", data)})
        assert res.status_code == 422 and "other than a regular file" in res.json()["detail"]
    assert web.ctx.store.objects("upload/") == {}


def test_who_may_download_a_file(web: Web) -> None:
    digest = web.client("alpha-team").post(FILES, files={"file": ("r.md", b"r")}
                                           ).json()["sha256"]
    url = f"/files/s1/alpha/{digest}"
    assert web.client("office").get(url).status_code == 200
    assert web.client("kim").get(url).status_code == 404  # not assigned
    cm.auto_assign(web.ctx, "s1", per_team=3, actor="office")
    assert web.client("kim").get(url).status_code == 200
    assert web.client("park").get(url).status_code == 404  # conflicted: Alpha University
    assert web.client("user1").get(url).status_code == 403
    assert web.client("alpha-team").get(f"/files/s1/beta/{digest}").status_code == 404
    assert web.client("office").get("/files/s1/alpha/../../etc").status_code == 404
    assert web.client().get(url, follow_redirects=False).status_code == 303  # to /login


def test_hostile_names_are_shown_as_text(web: Web) -> None:
    c = web.client()
    login(c, "alpha-team", web.passwords["alpha-team"])
    page = c.get("/team")
    res = c.post("/api/v1/team/files/s1", data={"csrf": csrf_of(page.text)},
                 files={"file": ("<img src=x onerror=alert(1)>.md", b"x")})
    assert res.status_code == 200
    assert "<img src=x" not in res.text and "&lt;img src=x onerror=alert(1)&gt;.md" in res.text
    res = c.post("/api/v1/team/files/s1", files={"file": ("a.md", b"y")})
    assert res.status_code == 403  # no CSRF token


def test_uploads_on_each_backend(web_any: Web) -> None:
    c = web_any.client("alpha-team")
    assert c.post(DOSSIER, files={"file": ("alpha.yaml", dossier_bytes())}).status_code == 200
    assert c.post(FILES, files={"file": ("r.md", b"report")}).status_code == 200
    rows = c.get("/api/v1/team/stages").json()
    assert rows[0]["dossier"]["name"] == "alpha.yaml" and len(rows[0]["files"]) == 1
    assert web_any.ctx.store.audit_verify() == []


def test_a_dossier_uploaded_at_one_worker_is_used_by_the_others(web: Web) -> None:
    """``kai serve --workers``: another process took the upload; this one sees it on its
    next request."""
    from web_helpers import make_ctx  # type: ignore[import-not-found]

    from kaieval.web.app import create_app

    other_ctx = make_ctx(web.ctx.store._url.render_as_string(hide_password=False))
    other_ctx.shared = True
    other = TestClient(create_app(other_ctx), base_url="http://127.0.0.1")
    assert other.get("/api/v1/public/stages").status_code == 200
    raw = dossier_bytes(**{"name: Team Alpha": "name: Team Alpha Prime"})
    res = web.client("alpha-team").post(DOSSIER, files={"file": ("alpha.yaml", raw)})
    assert res.status_code == 200, res.text
    assert other_ctx.dossier("alpha").team.name == "Team Alpha"  # type: ignore[union-attr]
    assert other.get("/api/v1/public/stages").status_code == 200  # any request
    assert other_ctx.dossier("alpha").team.name == "Team Alpha Prime"  # type: ignore[union-attr]
    other_ctx.store.close()
