"""``kai registry add`` -> ``kai stage measure`` -> ``kai stage run`` on real tiny models.

The flow a programme office runs: every number the stage scores comes out of the
store as ``measured``; the derived team is gated, the independent ones are not; a
shared target is measured once; a rerun writes nothing; one team's broken input
leaves the others measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kaieval.cli import app
from kaieval.records import (
    AuditItem,
    BenchmarkResult,
    EngineRun,
    IndependenceVerdict,
    Measurement,
)
from kaieval.store import Store

pytestmark = pytest.mark.slow  # builds the demo's stand-in models (torch)

runner = CliRunner()


def _kai(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def _measure(p: Path, db: str, *extra: str) -> tuple[int, str]:
    return _kai("stage", "measure", "--program", str(p / "program.yaml"), "--stage", "s1",
                str(p / "a.yaml"), str(p / "b.yaml"), str(p / "c.yaml"), "--db", db,
                "--cache-dir", str(p / "requests"), "--reference-tokenizer",
                str(p / "models" / "foreign-base"), *extra)


def test_stage_flow_end_to_end(programme: Path, store_url: str) -> None:
    p, db_url = programme, store_url
    code, out = _kai("registry", "add", str(p / "models" / "foreign-base"), "--name",
                     "foreign-base", "--origin", "US", "--licence", "apache-2.0",
                     "--family", "llama", "--registry", str(p / "registry"))
    assert code == 0, out
    code, out = _kai("registry", "list", "--registry", str(p / "registry"), "--json")
    listed = json.loads(out)
    assert [e["name"] for e in listed] == ["foreign-base"] and listed[0]["origin"] == "US"
    assert listed[0]["kind"] == "fingerprint"

    code, out = _measure(p, db_url)
    assert code == 0, out
    store = Store(db_url)
    recs = store.records(stage_id="s1")
    bench = [r for r in recs if isinstance(r, BenchmarkResult)]
    assert {(r.team_id, r.role) for r in bench} == {
        (t, role) for t in "abc" for role in ("candidate", "target")}
    assert all(r.source == "measured" for r in bench)
    assert len(bench) == 12  # 3 teams x 2 roles x 2 benchmarks
    # the shared target was measured once: one engine run, and every team's copy agrees
    target_runs = [r for r in recs if isinstance(r, EngineRun) and r.team_id == "*"]
    assert len(target_runs) == 1 and target_runs[0].teams == ("a", "b", "c")
    tscores = {(r.team_id, r.benchmark_id): r.score for r in bench if r.role == "target"}
    assert tscores[("a", "copa")] == tscores[("b", "copa")] == tscores[("c", "copa")]
    verdicts = {r.team_id: r for r in recs if isinstance(r, IndependenceVerdict)}
    assert verdicts["b"].verdict == "derived"
    assert verdicts["a"].verdict == "no_evidence" and verdicts["c"].verdict == "no_evidence"
    assert verdicts["b"].references == ("foreign-base",)
    audits = [r for r in recs if isinstance(r, AuditItem)]
    assert {(r.team_id, r.item_id) for r in audits} == {(t, i) for t in "abc"
                                                       for i in ("owned", "tok")}
    owned = {r.team_id: r.points for r in audits if r.item_id == "owned"}
    assert owned["a"] == 10 and owned["c"] == 0
    toks = [r for r in recs if isinstance(r, Measurement)
            and r.name == "tokenizer_efficiency_vs_reference"]
    assert {r.team_id for r in toks} == {"a", "b", "c"}
    b_notes = next(r for r in recs if isinstance(r, EngineRun) and r.team_id == "b"
                   and r.engine == "provenance").notes
    assert "registry reference 'foreign-base'" in b_notes[0]

    # a rerun measures nothing and writes nothing
    before = len(store.audit_entries())
    code, out = _measure(p, db_url)
    assert code == 0, out
    assert "0 row(s) written" in out and "✓ stored" in out and "✓ measured" not in out
    assert len(store.audit_entries()) == before

    # scoring from the store: the derived team is gated, the others are not
    code, out = _kai("stage", "run", "--program", str(p / "program.yaml"), "--stage", "s1",
                     str(p / "a.yaml"), str(p / "b.yaml"), str(p / "c.yaml"), "--db", db_url,
                     "--out", str(p / "out"))
    assert code == 0, out
    result = json.loads((p / "out" / "s1.json").read_text("utf-8"))
    teams = {t["team_id"]: t for t in result["teams"]}
    assert teams["b"]["decision"] == "gated"
    assert teams["a"]["decision"] != "gated" and teams["c"]["decision"] != "gated"
    for t in "ac":
        assert "measured" in json.dumps(teams[t])


def test_one_team_failing_leaves_the_others_measured(programme: Path, tmp_path: Path) -> None:
    p = programme
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    _kai("registry", "add", str(p / "models" / "foreign-base"), "--name", "foreign-base",
         "--origin", "US", "--registry", str(p / "registry"))
    # team a's model folder is missing; team c submits an endpoint nobody serves
    (p / "a.yaml").write_text((p / "a.yaml").read_text("utf-8").replace("models/nc",
                                                                         "models/gone"))
    (p / "c.yaml").write_text((p / "c.yaml").read_text("utf-8").replace(
        "model: {path: models/skt}",
        "model: {endpoint: 'http://127.0.0.1:9/v1', model_name: skt}"))
    code, out = _measure(p, db, "--only", "bench,provenance", "--jobs", "2")
    assert code == 1, out
    lines = [ln for ln in out.splitlines() if ln.startswith("not measured:")]
    assert any(ln.startswith("not measured: a bench:") and "models/gone" in ln for ln in lines)
    assert any(ln.startswith("not measured: a provenance:") for ln in lines)
    assert any(ln.startswith("not measured: c bench:") for ln in lines)
    assert any(ln.startswith("not measured: c provenance:") and "endpoint" in ln
               for ln in lines)
    assert "Traceback" not in out
    recs = Store(db).records(stage_id="s1")
    runs = {(r.team_id, r.engine): r for r in recs if isinstance(r, EngineRun)}
    assert runs[("a", "bench")].status == "not_measured"
    assert runs[("b", "bench")].status == "measured"
    assert any(isinstance(r, IndependenceVerdict) and r.team_id == "b" for r in recs)
    # no decision on missing data: stage run names what is missing and stores nothing
    run = ["stage", "run", "--program", str(p / "program.yaml"), "--stage", "s1",
           str(p / "a.yaml"), str(p / "b.yaml"), str(p / "c.yaml"), "--db", db,
           "--out", str(p / "out")]
    code, out = _kai(*run)
    assert code == 1, out
    assert "a: component 'bench' not measured" in out and "models/gone" in out
    assert Store(db).stage_result("s1") is None and not (p / "out").exists()
    # a provisional result says so, and says why team a has no benchmark points
    code, out = _kai(*run, "--provisional")
    assert code == 0, out
    assert "PROVISIONAL" in out
    result = json.loads((p / "out" / "s1.json").read_text("utf-8"))
    assert result["provisional"] and result["banner"].startswith("PROVISIONAL")
    assert Store(db).stage_result("s1", "provisional") is not None
    team_a = next(t for t in result["teams"] if t["team_id"] == "a")
    assert team_a["decision_reason"].startswith("provisional: ")
    assert "bench: " in json.dumps(team_a) and "models/gone" in json.dumps(team_a)


def test_a_changed_reference_is_refused_by_name(programme: Path, tmp_path: Path) -> None:
    p = programme
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    _kai("registry", "add", str(p / "models" / "foreign-base"), "--name", "foreign-base",
         "--origin", "US", "--registry", str(p / "registry"))
    fp = p / "registry" / "foreign-base.fp.safetensors"
    data = bytearray(fp.read_bytes())
    data[-1] ^= 0xFF
    fp.write_bytes(bytes(data))
    code, out = _measure(p, db, "--only", "provenance", "--team", "a")
    assert code == 1
    assert "reference 'foreign-base'" in out and "content changed" in out


def test_kill_9_loses_only_the_job_in_flight(programme: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    p = programme
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    args = [sys.executable, "-m", "kaieval.cli", "stage", "measure", "--program",
            str(p / "program.yaml"), "--stage", "s1", str(p / "a.yaml"), str(p / "b.yaml"),
            str(p / "c.yaml"), "--db", db, "--cache-dir", str(tmp_path / "requests"),
            "--only", "bench"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done: list[EngineRun] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if (tmp_path / "store.sqlite").exists():
                try:
                    done = [r for r in Store(db).records(kind="engine_run")
                            if isinstance(r, EngineRun)]
                except Exception:  # the schema may not exist yet
                    continue
                if done:
                    break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert done, "no job finished before the deadline"
    store = Store(db)
    assert store.audit_verify() == []
    first = {r.natural_key() for r in store.records(kind="engine_run")}
    code, out = _kai("stage", "measure", "--program", str(p / "program.yaml"), "--stage", "s1",
                     str(p / "a.yaml"), str(p / "b.yaml"), str(p / "c.yaml"), "--db", db,
                     "--cache-dir", str(tmp_path / "requests"), "--only", "bench")
    assert code == 0, out
    assert "✓ stored" in out  # what finished before the kill is not measured again
    runs = [r for r in store.records(kind="engine_run") if isinstance(r, EngineRun)]
    assert first <= {r.natural_key() for r in runs} and len(runs) == 4  # 3 teams + target
    assert all(r.status == "measured" for r in runs)
    bench = [r for r in store.records(stage_id="s1") if isinstance(r, BenchmarkResult)]
    assert len(bench) == 12


def test_an_endpoint_candidate_is_measured_through_the_openai_backend(
        programme: Path, tmp_path: Path) -> None:
    """Team c serves its model on a real local OpenAI-compatible server (127.0.0.1)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from openai_server import LocalOpenAIServer  # type: ignore[import-not-found]

    p = programme
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    srv = LocalOpenAIServer(p / "models" / "skt", name="skt-served")
    srv.faults.tokenize = True  # as vLLM: the prompts are split by its /tokenize
    try:
        (p / "c.yaml").write_text((p / "c.yaml").read_text("utf-8").replace(
            "model: {path: models/skt}",
            f"model: {{endpoint: '{srv.base_url}', model_name: skt-served}}"))
        code, out = _measure(p, db, "--only", "bench", "--team", "c")
    finally:
        srv.close()
    assert code == 0, out
    recs = Store(db).records(stage_id="s1")
    cand = [r for r in recs if isinstance(r, BenchmarkResult) and r.role == "candidate"]
    assert {r.team_id for r in cand} == {"c"} and len(cand) == 2
    assert all(r.source == "measured" and r.settings["backend"] == "openai"
               and "approximate" not in r.settings for r in cand)
    run = next(r for r in recs if isinstance(r, EngineRun) and r.team_id == "c")
    assert run.status == "measured"


def test_a_target_known_only_by_published_figures_is_stored_as_declared(
        programme: Path, tmp_path: Path) -> None:
    p = programme
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    (p / "a.yaml").write_text((p / "a.yaml").read_text("utf-8").replace(
        "target: {name: Foreign Base, path: models/foreign-base}",
        "target: {name: Frontier-1, published: {copa: 0.91, arc: 0.88}}"))
    code, out = _measure(p, db, "--only", "bench", "--team", "a")
    assert code == 0, out
    recs = Store(db).records(stage_id="s1")
    targets = {r.benchmark_id: r for r in recs
               if isinstance(r, BenchmarkResult) and r.role == "target"}
    assert {k: (r.score, r.source) for k, r in targets.items()} == {
        "copa": (0.91, "declared"), "arc": (0.88, "declared")}
    assert not any(isinstance(r, EngineRun) and r.team_id == "*" for r in recs)


def test_an_endpoint_is_split_by_the_dossiers_tokenizer_or_not_measured(
        programme: Path, tmp_path: Path) -> None:
    """A server without /tokenize: the dossier's ``model.tokenizer`` gives the ids; without
    it the bench engine is not measured, with the reason, instead of approximate numbers."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from openai_server import LocalOpenAIServer  # type: ignore[import-not-found]

    p = programme
    srv = LocalOpenAIServer(p / "models" / "skt", name="skt-served")
    served = f"model: {{endpoint: '{srv.base_url}', model_name: skt-served"
    original = (p / "c.yaml").read_text("utf-8")
    try:
        (p / "c.yaml").write_text(original.replace("model: {path: models/skt}",
                                                   served + ", tokenizer: models/skt}"))
        db = f"sqlite:///{tmp_path / 'with.sqlite'}"
        code, out = _measure(p, db, "--only", "bench", "--team", "c")
        assert code == 0, out
        cand = [r for r in Store(db).records(stage_id="s1")
                if isinstance(r, BenchmarkResult) and r.role == "candidate"]
        assert len(cand) == 2 and srv.faults.tokenized == 0
        (p / "c.yaml").write_text(original.replace("model: {path: models/skt}", served + "}"))
        db = f"sqlite:///{tmp_path / 'without.sqlite'}"
        code, out = _measure(p, db, "--only", "bench", "--team", "c")
    finally:
        srv.close()
    assert "model.tokenizer" in out and "--approximate-split" in out, out
    assert not [r for r in Store(db).records(stage_id="s1")
                if isinstance(r, BenchmarkResult) and r.role == "candidate"]


def test_jobs_2_in_a_fresh_process_measures_every_benchmark(programme: Path,
                                                            tmp_path: Path) -> None:
    """A new interpreter, where transformers is not imported yet: two benchmark jobs that
    first import it at the same moment must both be measured (its lazy module is not
    thread-safe; the executor resolves the names before starting threads)."""
    import subprocess
    import sys

    p = programme
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    proc = subprocess.run(
        [sys.executable, "-m", "kaieval.cli", "stage", "measure", "--program",
         str(p / "program.yaml"), "--stage", "s1", str(p / "a.yaml"), str(p / "b.yaml"),
         str(p / "c.yaml"), "--db", db, "--cache-dir", str(tmp_path / "requests"),
         "--only", "bench", "--jobs", "2"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [r for r in Store(db).records(kind="engine_run") if isinstance(r, EngineRun)]
    assert len(runs) == 4 and all(r.status == "measured" for r in runs)
