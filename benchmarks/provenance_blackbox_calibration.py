"""Calibrate the black-box provenance test: detection and false-positive rates, exact intervals.

The weight calibration suite's models (built deterministically by
``kaieval.provenance.calibration.build_suite``, cached) plus the issue's case, a fine-tune
of the parent on instruction-style Q&A and code (``blackbox_calibration``), each served
by a real OpenAI-compatible server on 127.0.0.1 (``tests/bench/openai_server.py``:
honest echoed top-k log-probs from real forward passes; ``--local`` reads the folders
directly instead). Every model is measured once (greedy continuations, top-k
distributions on every model's texts); then each pair is tested:

* derived controls vs the parent, with every other independent model as a control;
* every pair of independent models, with the rest as controls.

Target (issue 16): every fine-tune detected, no independent pair accused. Exits 1 when
either is missed. Writes the whole summary as JSON.

``--sampled`` calibrates the fallback instead: every server ignores ``echo``/``logprobs``
(as ``transformers serve`` does), so every model is compared on ``--samples`` sampled next
tokens per prompt (default JSON ``provenance_blackbox_sampled.json``).

    .venv/bin/python benchmarks/provenance_blackbox_calibration.py \
        [--cache .cache/provenance-blackbox] [--json FILE] [--alpha 0.01] [--local] \
        [--sampled [--samples 16]]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from kaieval.hashing import sha256_file, sha256_json
from kaieval.io import atomic_write_text
from kaieval.provenance import blackbox_models as bbm
from kaieval.provenance import blackbox_offsets as bbo
from kaieval.provenance import blackbox_stats as bbs
from kaieval.provenance.blackbox import (
    DECISIVE,
    SAMPLED_DECISIVE,
    ModelSpec,
    assess,
    load_prompts,
)
from kaieval.provenance.blackbox_calibration import (
    INSTRUCT,
    build_instruct_finetune,
    calibration_pairs,
    weight_cosine,
)
from kaieval.provenance.blackbox_models import Measured, measure
from kaieval.provenance.calibration import SuiteConfig, build_suite, clopper_pearson

HERE = Path(__file__).resolve().parent
DERIVED = ("finetune", "permuted-finetune", "residual-permuted", "vocab-extended",
           "continued-pretraining")
FINETUNES = ("finetune", INSTRUCT, "permuted-finetune")  # must be detected


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n)
    return {"k": k, "n": n, "rate": k / n, "ci95": [lo, hi]}


def _finite(x: float) -> float | None:
    """A number for JSON; None for NaN (the sampled fallback sees no token starts)."""
    return None if np.isnan(x) else float(x)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=HERE, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(".cache/provenance-blackbox"))
    ap.add_argument("--json", type=Path, default=None,
                    help="default: benchmarks/provenance_blackbox_calibration.json "
                         "(provenance_blackbox_sampled.json with --sampled)")
    ap.add_argument("--sampled", action="store_true",
                    help="calibrate the fallback: servers give no log-probs")
    ap.add_argument("--samples", type=int, default=16,
                    help="sampled next tokens per prompt and model (--sampled)")
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--local", action="store_true", help="read model folders, no server")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--permutations", type=int, default=9999)
    ap.add_argument("--heads", type=int, default=None,
                    help="attention heads of the suite's models (1: head_dim 64, as vLLM's "
                         "CPU build needs; use its own --cache)")
    ap.add_argument("--vllm", type=Path, default=None, metavar="PYTHON",
                    help="instead: serve the instruct-code fine-tune with vLLM (this python's "
                         "vllm.entrypoints.openai.api_server) and test it as an endpoint "
                         "against local parent and controls")
    args = ap.parse_args()
    if args.sampled and args.local:
        ap.error("--sampled goes through the servers (a folder always has log-probs)")
    if args.json is None:
        args.json = HERE / ("provenance_blackbox_sampled.json" if args.sampled
                            else "provenance_blackbox_calibration.json")
    args.cache.mkdir(parents=True, exist_ok=True)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    import torch

    torch.set_num_threads(1)  # tiny models: one core each, the box is shared
    t0 = time.perf_counter()
    config = SuiteConfig(kinds=() if args.vllm else tuple(k for k in DERIVED if k != INSTRUCT),
                         **({"heads": args.heads} if args.heads else {}))
    models = build_suite(args.cache, config, progress=say)
    models[INSTRUCT] = build_instruct_finetune(models["parent"], args.cache / INSTRUCT)
    independent = ["parent", *[f"seed-{i}" for i in range(1, config.independent_seeds + 1)],
                   *[f"tokenizer-{i}" for i in range(1, len(config.other_vocab_sizes) + 1)]]
    derived = [INSTRUCT] if args.vllm else [*DERIVED[:1], INSTRUCT, *DERIVED[1:]]
    names = [*independent, *derived]
    t_build = time.perf_counter()
    if args.vllm is not None:  # the end-to-end vLLM check alone (its own JSON)
        record = {"suite_config": asdict(config), "vllm": vllm_check(
            args.vllm, models, independent, args), "weight_cosine_with_parent": weight_cosine(
            models[INSTRUCT], models["parent"]), "git_commit": _git("rev-parse", "HEAD"),
            "load_average": list(os.getloadavg()), "build_seconds": round(t_build - t0, 1)}
        atomic_write_text(args.json, json.dumps(record, indent=2, sort_keys=True) + "\n")
        print(json.dumps(record, indent=2))
        return 0 if record["vllm"]["detected"] else 1
    servers: list[Any] = []
    if args.local:
        specs = [ModelSpec(name=n, path=models[n]) for n in names]
    else:
        sys.path.insert(0, str(HERE.parent / "tests" / "bench"))
        from openai_server import LocalOpenAIServer  # the repo's real test server

        servers = [LocalOpenAIServer(models[n], name=n) for n in names]
        for server in servers:
            server.faults.echo = not args.sampled  # --sampled: as transformers serve
            server.faults.vllm_tokens = True  # token strings as vLLM names them
        specs = [ModelSpec(name=n, url=s.base_url, served_model=n, max_retries=2,
                           timeout_s=120) for n, s in zip(names, servers, strict=True)]
    items, digest = load_prompts()
    key = sha256_json({"models": {n: sha256_file(models[n] / "model.safetensors")
                                  for n in names}, "prompts": digest, "local": args.local,
                       "top_k": args.top_k, "max_new_tokens": args.max_new_tokens,
                       "sampled": args.samples if args.sampled else 0,
                       "code": [sha256_file(Path(m.__file__ or "")) for m in (bbm, bbs, bbo)]})
    saved = args.cache / f"measured-{key.removeprefix('sha256:')[:16]}.json"
    cached = saved.is_file()
    if cached:  # the same models, settings and code: measured already
        say(f"measurements: {saved}")
        got = Measured(**{k: v for k, v in json.loads(saved.read_text()).items()})
        got.sims = {k: np.array(v, dtype=float) for k, v in got.sims.items()}
        got.shared = np.array(got.shared)
        got.tokenization = np.array(got.tokenization, dtype=float)
    else:
        try:
            got = measure(specs, [p.prompt for p in items], seed=0,
                          max_new_tokens=args.max_new_tokens, top_k=args.top_k,
                          n_samples=args.samples, compare_chars=48)
        finally:
            for s in servers:
                s.close()
        atomic_write_text(saved, json.dumps({
            "outputs": got.outputs, "sims": {k: np.where(np.isnan(v), None, v).tolist()
                                              for k, v in got.sims.items()},
            "shared": got.shared.tolist(), "mode": got.mode,
            "tokenization": np.where(np.isnan(got.tokenization), None,
                                     got.tokenization).tolist(), "no_logprobs": got.no_logprobs}))
    t_measure = time.perf_counter()
    index = {n: i for i, n in enumerate(names)}
    rows = []
    for pair in calibration_pairs(derived, independent):
        (res,) = assess(got.sims, index[pair.candidate], [index[pair.reference]],
                        [index[c] for c in pair.controls], [pair.reference], alpha=args.alpha,
                        seed=0, n_permutations=args.permutations,
                        tokenization=got.tokenization, decisive=SAMPLED_DECISIVE
                        if got.mode == "sampled" else DECISIVE)
        rows.append({**asdict(pair), "detected": res.significant, "decisive": res.decisive,
                     "unmatched_tokenization": res.unmatched_tokenization,
                     "tokenization": _finite(got.tokenization[index[pair.candidate],
                                                             index[pair.reference]]),
                     "p_value": res.p_value, "p_holm": res.p_holm, "statistics": [
                         {k: v for k, v in asdict(s).items() if not k.startswith("per_prompt")}
                         for s in res.statistics]})
        say(f"{pair.candidate} vs {pair.reference}: {'DETECTED' if res.significant else '-'}")
    pos = [r for r in rows if r["role"] == "derived"]
    neg = [r for r in rows if r["role"] == "independent"]
    ft = [r for r in pos if r["candidate"] in FINETUNES]
    summary = {
        "alpha": args.alpha, "served": "local folders" if args.local else
        "tests/bench/openai_server.py LocalOpenAIServer on 127.0.0.1 " + (
            "(echo/logprobs ignored: sampled fallback)" if args.sampled
            else "(echo + top-k logprobs, tokens named as vLLM 0.32 names them)"),
        "n_samples": args.samples if got.mode == "sampled" else 0,
        "prompts_sha256": digest, "n_prompts": len(items), "top_k": args.top_k,
        "max_new_tokens": args.max_new_tokens, "permutations": args.permutations,
        "mode": got.mode, "suite_config": asdict(config),
        "weight_cosine_with_parent": {d: weight_cosine(models[d], models["parent"])
                                      for d in derived},
        "detected_finetunes": _rate(sum(r["detected"] for r in ft), len(ft)),
        "detected_all_derived": _rate(sum(r["detected"] for r in pos), len(pos)),
        "false_positive": _rate(sum(r["detected"] for r in neg), len(neg)),
        "pairs": rows, "git_commit": _git("rev-parse", "HEAD"),
        "git_changes": _git("status", "--porcelain", "--", "src/kaieval/provenance").splitlines(),
        "cores": os.cpu_count(), "load_average": list(os.getloadavg()),
        "measurements": {"file": str(saved), "from_cache": cached},
        "seconds": {"build": round(t_build - t0, 1), "measure": round(t_measure - t_build, 1),
                    "total": round(time.perf_counter() - t0, 1)},
    }
    atomic_write_text(args.json, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print("| candidate | reference | kind | detected | decisive | top1 t | topk t | js t | "
          "greedy t | p (Holm) |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t = {s["statistic"]: s["t_pairs"] for s in r["statistics"]}
        print(f"| {r['candidate']} | {r['reference']} | {r['kind']} | "
              f"{'yes' if r['detected'] else 'no'} | {r['decisive']} | {t['top1']:.2f} | "
              f"{t['topk']:.2f} | {t['js']:.2f} | {t['greedy']:.2f} | {r['p_holm']:.2g} |")
    for key in ("detected_finetunes", "detected_all_derived", "false_positive"):
        v = summary[key]
        print(f"- {key}: {v['k']}/{v['n']} (95 % CI {v['ci95'][0]:.3f}-{v['ci95'][1]:.3f})")
    print(f"- weight cosine with parent: {summary['weight_cosine_with_parent']}")
    print(f"- {summary['seconds']} s, load {summary['load_average']}, json {args.json}")
    ok = summary["detected_finetunes"]["k"] == len(ft) and summary["false_positive"]["k"] == 0
    return 0 if ok else 1


def vllm_check(python: Path, models: dict[str, Path], independent: list[str],
               args: argparse.Namespace) -> dict[str, Any]:
    """The issue's scenario end to end: the fine-tune behind a real vLLM server (CPU build),
    the parent and the other independent models as local folders."""
    from kaieval.provenance.blackbox import blackbox_evidence, blackbox_test

    sys.path.insert(0, str(HERE.parent / "tests" / "bench"))
    from openai_server import free_port, wait_ready

    port = free_port()
    log = args.cache / "vllm.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model",
           str(models[INSTRUCT]), "--served-model-name", INSTRUCT, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "512",
           "--enforce-eager"]
    t0 = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", 600, proc)
            cand = ModelSpec(name=INSTRUCT, url=f"http://127.0.0.1:{port}/v1",
                             served_model=INSTRUCT, timeout_s=300)
            res = blackbox_test(cand, ModelSpec(name="parent", path=models["parent"]),
                                [ModelSpec(name=n, path=models[n]) for n in independent
                                 if n != "parent"], alpha=args.alpha,
                                max_new_tokens=args.max_new_tokens, top_k=args.top_k,
                                n_permutations=args.permutations)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    (ref,) = res.references
    return {"server": " ".join(cmd[1:4]) + " (VLLM_CPU_KVCACHE_SPACE=1)",
            "detected": ref.significant, "decisive": ref.decisive, "p_holm": ref.p_holm,
            "mode": res.mode, "tokenization": res.tokenization,
            "evidence": blackbox_evidence(res)[0].detail,
            "seconds": round(time.perf_counter() - t0, 1)}


if __name__ == "__main__":
    raise SystemExit(main())
