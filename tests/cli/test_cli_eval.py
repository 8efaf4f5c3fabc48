"""`kai eval` as a user runs it: a real tiny model, the run record, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kaieval.cli import app

runner = CliRunner()


def test_unknown_task_and_missing_model_are_one_line_errors(tmp_path: Path) -> None:
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "nope"), "--tasks",
                              "no_such_task"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    res = runner.invoke(app, ["eval", "--model", str(tmp_path), "--tasks", ""])
    assert res.exit_code == 2


def test_openai_backend_needs_a_model_name() -> None:
    res = runner.invoke(app, ["eval", "--model", "http://127.0.0.1:9/v1", "--backend", "openai",
                              "--tasks", "kobest_copa"])
    assert res.exit_code == 2
    assert "--model-name" in res.output


def test_backend_options_are_refused_for_other_backends(tmp_path: Path) -> None:
    """vLLM's tensor/data parallel sizes and the openai backend's batching: refused in
    one line for another backend or a bad value; the vllm backend without vLLM installed
    is one line too (the main venv has none)."""
    base = ["eval", "--model", str(tmp_path), "--tasks", "kobest_copa"]
    res = runner.invoke(app, [*base, "--tensor-parallel-size", "2"])
    assert res.exit_code == 2 and "--tensor-parallel-size: is for the vllm backend" in res.output
    res = runner.invoke(app, [*base, "--backend", "openai", "--model-name", "x",
                              "--data-parallel-size", "2"])
    assert res.exit_code == 2 and "--data-parallel-size" in res.output
    res = runner.invoke(app, [*base, "--prompts-per-request", "16"])
    assert res.exit_code == 2 and "--prompts-per-request: is for the openai" in res.output
    res = runner.invoke(app, ["eval", "--model", "http://127.0.0.1:9/v1", "--tasks",
                              "kobest_copa", "--backend", "openai", "--model-name", "x",
                              "--prompts-per-request", "0"])
    assert res.exit_code == 2 and "prompts_per_request must be >= 1" in res.output
    res = runner.invoke(app, ["eval", "--model", "http://127.0.0.1:9/v1", "--tasks",
                              "kobest_copa", "--backend", "openai", "--model-name", "x",
                              "--loglikelihood-via", "smoke"])
    assert res.exit_code == 2 and "--loglikelihood-via: must be one of" in res.output
    try:
        import vllm  # noqa: F401
    except ImportError:
        res = runner.invoke(app, [*base, "--backend", "vllm", "--tensor-parallel-size", "2"])
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert "vllm backend needs vLLM installed" in res.output


def test_tokenizer_options_are_checked_before_any_request(tmp_path: Path) -> None:
    """``--tokenizer`` (openai) is read by kaieval.tokenizer at once: a file in no known
    format is one line naming the formats tried, before the endpoint is asked anything."""
    junk = tmp_path / "tokenizer.model"
    junk.write_bytes(b"\x00\x01 not a tokenizer")
    base = ["eval", "--model", "http://127.0.0.1:9/v1", "--tasks", "kobest_copa"]
    res = runner.invoke(app, [*base, "--backend", "openai", "--model-name", "x",
                              "--tokenizer", str(junk)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "not a tokenizer file kaieval can read; tried" in res.output
    res = runner.invoke(app, [*base, "--tokenizer", str(junk)])
    assert res.exit_code == 2 and "--tokenizer is for the openai backend" in res.output
    res = runner.invoke(app, [*base, "--backend", "openai", "--model-name", "x",
                              "--tokenizer-pattern", "x"])
    assert res.exit_code == 2 and "--tokenizer-pattern" in res.output


@pytest.mark.slow
def test_eval_on_a_real_stand_in_writes_record_and_samples(tmp_path: Path) -> None:
    from kaieval.demo.standins import build_standins

    model = build_standins(tmp_path / "models", names=["nc"])["nc"]
    out, samples = tmp_path / "run.json", tmp_path / "samples.jsonl"
    args = ["eval", "--model", str(model), "--tasks", "kobest_copa,haerae", "--limit", "6",
            "--output", str(out), "--log-samples", str(samples), "--cache-dir",
            str(tmp_path / "cache")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    run = json.loads(out.read_text())
    assert run["schema_version"] == "kaieval/eval-run/v1"
    assert [t["name"] for t in run["tasks"]] == ["kobest_copa", "haerae"]
    assert all(t["n_docs"] == 6 for t in run["tasks"])
    lines = [json.loads(x) for x in samples.read_text().splitlines()]
    assert len(lines) == 12 and all("loglikelihoods" in x for x in lines)
    # each request as sent: one (context, continuation) per choice
    assert all(len(x["requests"]) == len(x["loglikelihoods"]) for x in lines)
    assert all(r["continuation"].startswith(" ") for x in lines for r in x["requests"])
    haerae = next(t for t in run["tasks"] if t["name"] == "haerae")
    assert "acc:general_knowledge" in haerae["metrics"]  # per subset beside the group
    assert haerae["protocol"] == {"harness": "lm-eval", "version": "0.4.13",
                                  "variant": "default", "shots": 0}
    # a rerun is served from the request cache and gives the same numbers
    res = runner.invoke(app, args)
    again = json.loads(out.read_text())
    assert [t["metrics"] for t in again["tasks"]] == [t["metrics"] for t in run["tasks"]]
    assert all(t["computed"] == 0 for t in again["tasks"])
