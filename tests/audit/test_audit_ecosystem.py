"""Ecosystem figures and release licence checks against real LICENSE files."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kaieval.audit.ecosystem import (
    consortium_figures,
    diffusion_figures,
    downloads_figure,
    ecosystem_figures,
    hub_downloads,
    pledge_flags,
)
from kaieval.audit.licence_releases import check_releases
from kaieval.audit.measures import AuditContext, Figure
from kaieval.errors import KaiError
from kaieval.spec.load import load_dossier

DossierWriter = Callable[..., Path]


def ctx_of(path: Path, **kw: Any) -> AuditContext:
    return AuditContext(loaded=load_dossier(path, check_files=False), stage_id="selection", **kw)


def by_name(figs: list[Figure]) -> dict[str, Figure]:
    return {f.measure: f for f in figs}


def test_consortium_partners_by_type_and_country(write_team: DossierWriter) -> None:
    f = by_name(consortium_figures(ctx_of(write_team())))
    assert f["ecosystem.consortium_members"].value == 4
    assert f["ecosystem.domestic_partners"].value == 2  # lead and the US lab excluded
    assert f["ecosystem.partner_types"].value == 4
    assert f["ecosystem.startups_smes"].value == 1
    assert f["ecosystem.academia"].value == 2  # university + (foreign) research institute


def test_declared_consortium_size_wins(write_team: DossierWriter) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["team"]["consortium_size"] = 54

    f = by_name(consortium_figures(ctx_of(write_team(edit))))
    assert f["ecosystem.consortium_members"].value == 54
    assert "4 listed of 54" in f["ecosystem.consortium_members"].detail


def test_pilots_and_apis_counted_empty_is_zero(write_team: DossierWriter) -> None:
    f = by_name(diffusion_figures(ctx_of(write_team())))
    assert f["ecosystem.public_pilots"].value == 1
    assert f["ecosystem.apis"].value == 2

    def none(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["ecosystem"] = {}

    f = by_name(diffusion_figures(ctx_of(write_team(none))))
    assert f["ecosystem.public_pilots"].value == 0


def test_open_release_checked_in_files(write_team: DossierWriter) -> None:
    ctx = ctx_of(write_team())
    checks, flags = check_releases(ctx)
    assert flags == []
    assert [c.counts_open for c in checks] == [True, False]
    assert checks[0].found_id == "MIT"
    f = by_name(ecosystem_figures(ctx, checks))
    assert f["ecosystem.open_releases"].value == 1
    assert f["ecosystem.open_release_share"].value == pytest.approx(0.5)
    assert f["ecosystem.open_release_share"].source == "measured"
    assert f["ecosystem.licence_mismatches"].value == 0


def test_declares_apache_ships_non_commercial(write_team: DossierWriter,
                                             clauses: Callable[[str], str]) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["releases"][0]["licence"] = "Apache-2.0"

    ctx = ctx_of(write_team(edit, licences={"rel/weights": clauses("CC-BY-NC-4.0")}))
    checks, flags = check_releases(ctx)
    kinds = {f.kind for f in flags}
    assert "licence_mismatch" in kinds
    msg = next(f.message for f in flags if f.kind == "licence_mismatch")
    assert "Apache-2.0" in msg and "CC-BY-NC-4.0" in msg
    assert checks[0].counts_open is False  # the files' licence decides, not the declaration
    assert by_name(ecosystem_figures(ctx, checks))["ecosystem.licence_mismatches"].value == 1


def test_licence_text_matching_nothing_is_unknown_not_guessed(write_team: DossierWriter) -> None:
    ctx = ctx_of(write_team(licences={"rel/weights": "Use it as you like, mostly.\n"}))
    checks, flags = check_releases(ctx)
    assert checks[0].found_id == "unknown"
    assert any(f.kind == "licence_unknown" for f in flags)


def test_missing_artifact_not_counted_open(write_team: DossierWriter) -> None:
    ctx = ctx_of(write_team(licences={}))
    checks, _ = check_releases(ctx)
    assert checks[0].counts_open is False
    assert "files missing" in checks[0].summary


def test_declared_open_but_licence_not_open_is_flagged(write_team: DossierWriter,
                                                      clauses: Callable[[str], str]) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["releases"][0]["licence"] = "CC-BY-NC-4.0"

    ctx = ctx_of(write_team(edit, licences={"rel/weights": clauses("CC-BY-NC-4.0")}))
    checks, flags = check_releases(ctx)
    assert [f.kind for f in flags] == ["not_open"]
    assert pledge_flags(ctx, checks)[0].kind == "contradiction"  # pledged 50 %, 0 % open


def test_unregistered_declared_licence_flagged(write_team: DossierWriter) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["releases"][1]["licence"] = "our-own-terms"

    _, flags = check_releases(ctx_of(write_team(edit)))
    assert any(f.kind == "licence_unknown" and "our-own-terms" in f.message for f in flags)


def test_downloads_declared_offline(write_team: DossierWriter) -> None:
    fig = downloads_figure(ctx_of(write_team()))
    assert fig.value == 1200 and fig.source == "declared"


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_online_unreachable_hub_is_one_line_error(write_team: DossierWriter) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["ecosystem"]["hub_repos"] = ["alpha/model"]

    ctx = ctx_of(write_team(edit), online=True,
                 hub_endpoint=f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(KaiError) as e:
        downloads_figure(ctx)
    assert "cannot reach the Hugging Face Hub" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.fixture
def fake_hub() -> Iterator[str]:
    """A Hub-shaped JSON API on 127.0.0.1 (the only network tests may touch)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            port = self.server.server_address[1]
            if self.path == "/api/models/alpha/model":
                body = json.dumps({"id": "alpha/model", "downloads": 4321}).encode()
                self.send_response(200)
            elif self.path == "/api/models?filter=base_model%3Aalpha%2Fmodel&limit=1000":
                # first page of the model tree; the rest follows the Link header
                body = json.dumps([{"id": f"u{i}/ft"} for i in range(3)]).encode()
                self.send_response(200)
                self.send_header("Link", f'<http://127.0.0.1:{port}/api/models/page2>; '
                                 'rel="next"')
            elif self.path == "/api/models/page2":
                body = json.dumps([{"id": "v/ft"}, {"id": "w/quant"}]).encode()
                self.send_response(200)
            elif self.path.startswith("/api/models?filter=base_model%3Aloop"):
                body = b"[]"
                self.send_response(200)
                self.send_header("Link", f"<http://127.0.0.1:{port}{self.path}>; rel=\"next\"")
            else:
                body = b'{"error": "not found"}'
                self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_online_downloads_fetched(write_team: DossierWriter, fake_hub: str) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["ecosystem"]["hub_repos"] = ["alpha/model"]

    fig = downloads_figure(ctx_of(write_team(edit), online=True, hub_endpoint=fake_hub))
    assert fig.value == 4321 and fig.source == "measured"
    with pytest.raises(KaiError, match="answered 404"):
        hub_downloads("nobody/none", fake_hub)


def test_online_derivatives_counted_across_pages(write_team: DossierWriter,
                                                 fake_hub: str) -> None:
    from kaieval.audit.ecosystem import derivatives_figure, hub_derivatives

    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["ecosystem"]["hub_repos"] = ["alpha/model"]

    fig = derivatives_figure(ctx_of(write_team(edit), online=True, hub_endpoint=fake_hub))
    assert fig.value == 5 and fig.source == "measured" and "alpha/model: 5" in fig.detail
    # a server whose "next" page never ends is stopped, with a one-line error
    with pytest.raises(KaiError, match="pages of derivatives"):
        hub_derivatives("loop/x", fake_hub)


def test_declared_derivatives_offline(write_team: DossierWriter) -> None:
    from kaieval.audit.ecosystem import derivatives_figure

    assert derivatives_figure(ctx_of(write_team())).value is None

    def edit(d: dict[str, Any]) -> None:
        d["submissions"]["selection"]["ecosystem"]["derivatives"] = 12

    fig = derivatives_figure(ctx_of(write_team(edit)))
    assert fig.value == 12 and fig.detail == "declared"


def test_mof_figures_from_openness_assessment(write_team: DossierWriter) -> None:
    from kaieval.audit.ecosystem import openness_figures

    f = by_name(openness_figures(ctx_of(write_team())))
    assert f["ecosystem.mof_level"].value == 0  # weights alone reach no MOF class
    progress = f["ecosystem.mof_class3_progress"]
    assert progress.value == pytest.approx(1 / 6, abs=1e-3) and "missing" in progress.detail
