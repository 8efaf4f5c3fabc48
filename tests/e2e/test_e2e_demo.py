"""`kai demo` as a user runs it: the command, its outcome, and its report in a real browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    out = root / "out"
    env = {**os.environ, "KAI_CACHE_DIR": str(root / "cache")}
    env.pop("KAI_DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "kaieval.cli", "demo", "--out", str(out),
                           "--replicates", "300"], env=env, capture_output=True, text=True,
                          timeout=1500)  # cold: stand-ins built (~2 min quiet, far more loaded)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "Loading weights" not in proc.stderr + proc.stdout  # transformers kept quiet
    (root / "demo-stdout.txt").write_text(proc.stdout, encoding="utf-8")
    return out


def _decisions(out: Path, stage: str) -> dict[str, str]:
    data = json.loads((out / f"{stage}.json").read_text())
    assert data["schema"] == "kaieval/stage-result/v1"
    return {t["team_id"]: t["decision"] for t in data["teams"]}


def test_demo_reproduces_the_public_record_from_its_measurements(demo_out: Path) -> None:
    sel = _decisions(demo_out, "selection")
    assert sel["kakao"] == "gated"  # fine-tuned from the foreign base: derived
    assert sel["kt"] == "cut"
    assert {t for t, d in sel.items() if d == "advance"} == {"lg", "naver", "upstage", "skt",
                                                             "nc"}
    s1 = _decisions(demo_out, "stage1")
    assert s1["naver"] == "gated"  # reused encoder weights: partial
    assert s1["nc"] in ("cut", "repechage")
    assert {t for t, d in s1.items() if d == "advance"} == {"lg", "upstage", "skt"}
    data = json.loads((demo_out / "stage1.json").read_text())
    assert "motif" in data["repechage"]["winners"] or data["repechage"]["winners"] == []
    assert "simulated" in data["banner"].lower() or "stand-in" in data["banner"]
    assert data["simulated_sources"]
    lg = next(t for t in data["teams"] if t["team_id"] == "lg")
    bench = next(c for c in lg["components"] if c["component_id"] == "benchmarks")
    assert bench["points"] is not None and "measured" in bench["sources"]


def test_demo_projects_the_planned_stage_2_and_says_so(demo_out: Path) -> None:
    s1 = json.loads((demo_out / "stage1.json").read_text())
    s2 = _decisions(demo_out, "stage2")
    expected = {t["team_id"] for t in s1["teams"] if t["decision"] == "advance"}
    expected |= set(s1["repechage"]["winners"])
    assert set(s2) == expected and len(s2) == 4
    assert sum(d == "cut" for d in s2.values()) == 1  # 4 -> 3
    data = json.loads((demo_out / "stage2.json").read_text())
    assert "PLANNED STAGE" in data["banner"] and "not public" in data["banner"]


def test_demo_measured_through_the_stage_pipeline(demo_out: Path) -> None:
    """The stand-ins' results carry the same engine runs kai stage measure stores."""
    from kaieval.records import EngineRun
    from kaieval.store import Store

    store = Store(f"sqlite:///{demo_out / 'kaieval.sqlite'}")
    runs = [r for r in store.records(kind="engine_run") if isinstance(r, EngineRun)]
    assert {r.stage_id for r in runs} == {"selection", "stage1", "stage2"}
    target = [r for r in runs if r.stage_id == "stage1" and r.team_id == "*"]
    assert len(target) == 1 and len(target[0].teams) == 5  # one shared target, measured once
    assert all(r.status == "measured" for r in runs)
    # an unchanged model against the same registry is not tested again at the next stage
    reused = [r for r in runs if r.stage_id == "stage2" and r.engine == "provenance"]
    assert reused and all(any("reused from stage " in n for n in r.notes) for r in reused)


def test_demo_report_in_a_browser_shows_decisions_evidence_and_robustness(
        demo_out: Path, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto((demo_out / "report.html").resolve().as_uri())
    banner = page.locator(".banner").first
    assert banner.is_visible()
    assert "stand-in" in banner.inner_text()
    for stage in ("selection", "stage1"):
        section = page.locator(f"#stage-{stage}")
        assert section.is_visible()
        assert section.locator("svg.chart-totals").count() >= 1
    gated = page.locator('#stage-stage1 [data-team="naver"][data-decision="gated"]')
    assert gated.count() >= 1
    text = page.locator("#stage-stage1").inner_text()
    # benchmarks are measured on the bundled samples; IFEval (1,280 new tokens) and
    # MMLU-Pro (2,048, lm-eval's chain of thought) are not: a stand-in's context holds 512
    # tokens (kai stage measure says so)
    assert "5 of 7 benchmarks measured" in text
    assert "partial" in text.lower()
    assert "surviv" in text.lower()
    page.screenshot(path=str(demo_out / "report.png"), full_page=False)
    page.close()


def test_serve_after_demo_shows_it_simulated_and_the_printed_accounts_log_in(
        demo_out: Path) -> None:
    from fastapi.testclient import TestClient

    from kaieval.store import Store
    from kaieval.web.app import create_app
    from kaieval.web.context import WebContext
    from kaieval.web.stored import load_stored

    printed = (demo_out.parent / "demo-stdout.txt").read_text(encoding="utf-8")
    assert "Demo web-app accounts (SIMULATED" in printed
    lines = {ln.split()[0]: ln.split() for ln in printed.splitlines()
             if ln.strip().startswith("demo-")}
    assert {"demo-office", "demo-expert1", "demo-user1"} <= set(lines)
    store = Store(f"sqlite:///{demo_out / 'kaieval.sqlite'}")
    stored = load_stored(store)  # what `kai serve --db ...` (no --program) serves
    assert stored is not None
    program, phash, dossiers = stored
    assert {n for n in lines if n.startswith("demo-team-")} == {
        f"demo-team-{d.team.id}" for d in dossiers}
    app = create_app(WebContext(store=store, program=program, program_hash=phash,
                                dossiers=dossiers, secret="s" * 40))
    client = TestClient(app, base_url="http://127.0.0.1")
    stages = client.get("/api/v1/public/stages").json()
    assert stages and all(s["run"] == "demo" and s["simulated"] for s in stages)
    page = client.get("/").text
    assert program.name in page and page.count('class="banner"') >= len(stages)
    page = client.get("/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    res = client.post("/login", data={"name": "demo-office", "password": lines["demo-office"][-1],
                                      "csrf": csrf}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/account"
    store.close()


def test_second_run_uses_cached_stand_ins_and_changes_nothing(demo_out: Path) -> None:
    root = demo_out.parent
    env = {**os.environ, "KAI_CACHE_DIR": str(root / "cache")}
    from kaieval.store import Store

    before = json.loads((demo_out / "stage1.json").read_text())
    head = Store(f"sqlite:///{demo_out / 'kaieval.sqlite'}").audit_head()
    proc = subprocess.run([sys.executable, "-m", "kaieval.cli", "demo", "--out", str(demo_out),
                           "--replicates", "300"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = json.loads((demo_out / "stage1.json").read_text())
    assert Store(f"sqlite:///{demo_out / 'kaieval.sqlite'}").audit_head() == head  # no writes
    # the rerun scores stage 1 from a log that already holds the first run's stage 2
    assert after["audit_checkpoint"]["size"] == head[0]
    for k in ("created_at", "code_version", "audit_checkpoint"):
        before.pop(k), after.pop(k)
    assert before == after
    verify = subprocess.run([sys.executable, "-m", "kaieval.cli", "audit-log", "verify", "--db",
                             f"sqlite:///{demo_out / 'kaieval.sqlite'}"], capture_output=True,
                            text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
