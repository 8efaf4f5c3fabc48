"""`kai arena generate`: a real (tiny) model answers the prompt set through the bench
engine's hf backend and request cache; responses are stored with the model's fingerprint."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from openai_server import build_tiny_model

from kaieval.arena import responses as rs
from kaieval.cli import app
from kaieval.store import Store

DATA = Path(__file__).resolve().parents[1] / "data" / "bad_records"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("arena") / "tiny")


def _dossiers(tmp: Path, tiny: Path) -> list[str]:
    out = []
    if not (tmp / "model").exists():
        shutil.copytree(tiny, tmp / "model")
    for team in ("alpha", "beta"):
        shutil.copy(DATA / f"{team}.md", tmp / f"{team}.md")
        text = (DATA / f"{team}.yaml").read_text("utf-8").replace(
            f"s1: {{technical_report: {team}.md}}",
            f"s1: {{technical_report: {team}.md, model: {{path: model}}}}")
        (tmp / f"{team}.yaml").write_text(text, "utf-8")
        out.append(str(tmp / f"{team}.yaml"))
    return out


def test_generate_stores_cached_responses(tmp_path: Path, tiny: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": f"p{i}", "prompt": t}, ensure_ascii=False)
                                 for i, t in enumerate(["서울의 날씨는", "한국어 모델은"])) + "\n",
                       "utf-8")
    db = f"sqlite:///{tmp_path / 's.sqlite'}"
    args = ["arena", "generate", *_dossiers(tmp_path, tiny), "--program",
            str(DATA / "program.yaml"), "--stage", "s1", "--prompts", str(prompts),
            "--max-tokens", "5", "--no-chat", "--cache-dir", str(tmp_path / "cache"),
            "--db", db]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "stored 4 responses" in res.output
    store = Store(db)
    got = rs.responses(store, "s1")
    assert set(got) == {("p0", "alpha"), ("p0", "beta"), ("p1", "alpha"), ("p1", "beta")}
    first = {k: v["text"] for k, v in got.items()}
    assert all(v["model"] and v["settings"]["max_tokens"] == 5 for v in got.values())
    assert [p.id for p in rs.stored_prompts(store, "s1")] == ["p0", "p1"]
    # a rerun answers from the request cache: same texts, no new audit entries
    head = store.audit_head()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert {k: v["text"] for k, v in rs.responses(store, "s1").items()} == first
    assert store.audit_head() == head


def test_bad_prompt_file_and_stage_are_one_line_errors(tmp_path: Path, tiny: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "p 1", "prompt": "x"}\n{"id": "p2"}\n', "utf-8")
    base = ["arena", "generate", *_dossiers(tmp_path, tiny), "--program",
            str(DATA / "program.yaml"), "--db", f"sqlite:///{tmp_path / 's.sqlite'}"]
    res = CliRunner().invoke(app, [*base, "--stage", "s1", "--prompts", str(prompts)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{prompts}:1: id:" in res.output and f"{prompts}:2: prompt:" in res.output
    res = CliRunner().invoke(app, [*base, "--stage", "s2", "--prompts", str(prompts)])
    assert res.exit_code == 2 and "has no arena" in res.output


def test_identity_filter() -> None:
    words = ["team alpha", "alpha", "알파 ai", "exaone-4.0"]
    assert rs.identity_hits("I am ALPHA's model", words) == ["alpha"]
    assert rs.identity_hits("the alphabet", words) == []
    assert rs.identity_hits("저는 알파 AI의 모델입니다", words) == ["알파 ai"]
    assert rs.identity_hits("built on EXAONE-4.0.", words) == ["exaone-4.0"]
    # NFD input (decomposed Hangul) is normalised before matching
    import unicodedata
    assert rs.identity_hits(unicodedata.normalize("NFD", "알파 AI"), words) == ["알파 ai"]
