"""vLLM on CPU, side by side: (a) the vllm backend vs the hf backend, (b) the openai backend
against a real vLLM server vs vLLM's own offline engine, on the same requests.

Run in the vLLM venv (``make vllm-env``), from the repository root:

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv-vllm/bin/python benchmarks/vllm_vs_hf.py
    ... benchmarks/vllm_vs_hf.py --quick            # 4 documents per task, a smoke run

The model is ``benchmarks/vllm_model.py``'s tiny Llama (head_dim 64, fp32). The
requests are the log-likelihood requests of five catalogue tasks (their bundled
samples, their default few-shot prompts) and the greedy generation requests of
GSM8K.

(a) **vllm vs hf backend** (no target on CPU: vLLM's CPU path is built for big
    models; this is the ratio a user sees on a tiny one):
    * whole process: ``python -m kaieval.cli eval --backend hf|vllm`` with a fresh
      request cache, timed from start to exit as a user times it (vLLM's start-up
      included), per-item log-likelihoods compared;
    * steady state: both backends loaded in this process, start-up timed
      separately, then the same requests answered back to back (twice each,
      alternating; the faster of the two kept).
(b) **openai backend -> vLLM server vs vLLM offline engine** (target: >= 90 % of the
    offline throughput): the server started once (start-up timed), then the same
    requests through ``OpenAIBackend`` (token ids from our tokenizer, concurrency 8
    and 64) and through ``VLLMBackend`` (one engine call), back to back.

Every figure is printed with the load average beside it: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LL_TASKS = ("kobest_copa", "haerae", "kmmlu", "kobest_hellaswag", "arc")
GEN_TASK = "gsm8k"
GEN_SHOTS = 0  # few-shot prompts exceed the 512-token model: a server refuses them
# (concurrency, via, prompts per HTTP request)
VARIANTS = ((8, "auto", 1), (64, "auto", 1), (64, "prompt_logprobs", 1), (8, "auto", 16),
            (8, "prompt_logprobs", 16))


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def collect(limit: int) -> tuple[list[Any], list[Any]]:
    """The log-likelihood requests of ``LL_TASKS`` and generation requests of ``GEN_TASK``
    (the first ``limit`` documents of each), as the engine builds them."""
    from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest
    from kaieval.bench.run import load_tasks

    ll: list[Any] = []
    gen: list[Any] = []
    for task in load_tasks([*LL_TASKS, GEN_TASK]):
        shots = GEN_SHOTS if task.name == GEN_TASK else None
        for doc in task.docs(limit):
            for dr in task.build(doc, shots):
                for r in dr.requests:
                    (ll if isinstance(r, LoglikelihoodRequest) else gen).append(r)
    assert all(isinstance(r, GenerationRequest) for r in gen)
    return ll, gen


def best_of(fn: Callable[[], Any], n: int = 2) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def whole_process(model: Path, work: Path, limit: int) -> dict[str, Any]:
    """``kai eval`` for each backend, fresh cache, timed start to exit."""
    out: dict[str, Any] = {}
    for backend in ("hf", "vllm"):
        samples = work / f"samples-{backend}.jsonl"
        cmd = [sys.executable, "-m", "kaieval.cli", "eval", "--model", str(model),
               "--backend", backend, "--tasks", ",".join(LL_TASKS), "--limit", str(limit),
               "--cache-dir", str(work / f"cache-{backend}"), "--log-samples", str(samples)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1",
                                   "VLLM_CPU_OMP_THREADS_BIND": "nobind"})
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"kai eval --backend {backend} failed:\n{proc.stderr[-2000:]}")
        rows = [json.loads(line) for line in samples.read_text("utf-8").splitlines()]
        out[backend] = {"wall_s": wall, "rows": rows, "load": load()}
    hf, vl = out["hf"]["rows"], out["vllm"]["rows"]
    out["max_dll"] = max(abs(a - b) for x, y in zip(hf, vl, strict=True)
                         for a, b in zip(x["loglikelihoods"], y["loglikelihoods"], strict=True))
    out["pred_diff"] = sum(x["prediction"] != y["prediction"] for x, y in zip(hf, vl,
                                                                               strict=True))
    out["docs"] = len(hf)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 documents per task")
    ap.add_argument("--skip-whole", action="store_true", help="skip the kai eval runs")
    ap.add_argument("--only-served", action="store_true", help="only part (b)")
    ap.add_argument("--size", choices=["tiny", "small"], default="tiny",
                    help="the model: tiny (hidden 128, 2 layers) or small (512, 8 layers)")
    args = ap.parse_args()
    os.environ.update({"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"})
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from vllm_model import build_model

    from kaieval.bench.backends.vllm import VLLMBackend

    limit = 4 if args.quick else 20
    work = Path(tempfile.mkdtemp(prefix="vllm-vs-hf-"))
    model = build_model(Path(os.environ.get("KAI_BENCH_MODELS", work / "models")), args.size)
    ll, gen = collect(limit)
    print(f"model {model.name}; {len(ll)} log-likelihood requests ({', '.join(LL_TASKS)}), "
          f"{len(gen)} generation requests ({GEN_TASK}); limit {limit}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; {load()}")

    if not (args.skip_whole or args.only_served):
        w = whole_process(model, work, limit)
        print("\n(a) whole process: kai eval, fresh cache, start to exit")
        print(f"  {'backend':8} {'wall s':>8}   load")
        for b in ("hf", "vllm"):
            print(f"  {b:8} {w[b]['wall_s']:8.1f}   {w[b]['load']}")
        print(f"  vllm / hf wall: {w['vllm']['wall_s'] / w['hf']['wall_s']:.2f}x; "
              f"{w['docs']} docs, predictions differing {w['pred_diff']}, "
              f"max |dLL| {w['max_dll']:.2e}")

    t = time.perf_counter()
    vl = VLLMBackend(model, enforce_eager=True, cpu_kv_cache_gib=1)
    vl_start = time.perf_counter() - t
    # a server refuses prompts that do not fit (the local backends cut them): keep those
    # that fit, so all three answer the same requests
    gen = [r for r in gen if len(vl.prompt_ids(r.context, r.chat, 0)) + r.max_tokens
           <= vl.max_length]
    print(f"{len(gen)} generation requests fit the model's 512 tokens")
    try:
        if not args.only_served:
            steady(model, vl, vl_start, ll, gen)
        served(model, work, vl, ll, gen)
    finally:
        vl.close()


def steady(model: Path, vl: Any, vl_start: float, ll: list[Any], gen: list[Any]) -> None:
    """(a), in process: start-up apart, then the same requests back to back."""
    from kaieval.bench.backends.hf import HFBackend

    t = time.perf_counter()
    hf = HFBackend(model, max_length=510)
    hf_start = time.perf_counter() - t
    n_tok = sum(len(p) + len(c) for p, c in (vl.tokens(r) for r in ll))
    hf.loglikelihood(ll[:4])
    vl.loglikelihood(ll[:4])  # warm-up
    rows = []
    hf_ll = vl_ll = None
    for _ in range(2):  # alternate: a burst of load hits both
        t_hf, hf_ll = best_of(lambda: hf.loglikelihood(ll), 1)
        t_vl, vl_ll = best_of(lambda: vl.loglikelihood(ll), 1)
        rows.append((t_hf, t_vl, load()))
    t_hf, t_vl = min(r[0] for r in rows), min(r[1] for r in rows)
    assert hf_ll is not None and vl_ll is not None
    dll = max(abs(a.logprob - b.logprob) for a, b in zip(hf_ll, vl_ll, strict=True))
    g_hf, hf_gen = best_of(lambda: hf.generate(gen), 1)
    g_vl, vl_gen = best_of(lambda: vl.generate(gen), 1)
    same_gen = sum(a.text == b.text for a, b in zip(hf_gen, vl_gen, strict=True))
    print("\n(a) steady state, in process (start-up timed separately)")
    print(f"  start-up: hf {hf_start:.1f} s, vllm {vl_start:.1f} s   {load()}")
    print(f"  {'':22} {'hf s':>8} {'vllm s':>8} {'vllm/hf speed':>14}")
    for i, (a, b, ld) in enumerate(rows):
        print(f"  loglikelihood run {i + 1}  {a:8.2f} {b:8.2f} {a / b:13.2f}x   {ld}")
    print(f"  loglikelihood best   {t_hf:8.2f} {t_vl:8.2f} {t_hf / t_vl:13.2f}x   "
          f"({len(ll)} requests, {n_tok} tokens; max |dLL| {dll:.2e})")
    print(f"  generation           {g_hf:8.2f} {g_vl:8.2f} {g_hf / g_vl:13.2f}x   "
          f"({len(gen)} prompts; identical texts {same_gen}/{len(gen)})   {load()}")


def served(model: Path, work: Path, vl: Any, ll: list[Any], gen: list[Any]) -> None:
    """(b): the openai backend against a real server vs the offline engine."""
    from vllm_model import start_server, stop_server

    from kaieval.bench.backends.openai import OpenAIBackend

    t = time.perf_counter()
    proc, base = start_server(model, work / "server.log")
    srv_start = time.perf_counter() - t
    try:
        print(f"\n(b) openai backend -> vLLM server vs offline vLLM engine "
              f"(server start-up {srv_start:.1f} s)")
        print(f"  {'':34} {'offline s':>9} {'server s':>9} {'server/offline':>15}")
        for c, via, k in VARIANTS:
            be = OpenAIBackend(base, "tiny", tokenizer_path=model, concurrency=c,
                               timeout=600, loglikelihood_via=via, prompts_per_request=k)
            be.loglikelihood(ll[:4])  # warm-up + echo detection
            pairs = []
            for _ in range(2):
                t_off, off = best_of(lambda: vl.loglikelihood(ll), 1)
                t_srv, srv = best_of(lambda be=be: be.loglikelihood(ll), 1)  # type: ignore[misc]
                pairs.append((t_off, t_srv))
            d = max(abs(a.logprob - b.logprob) for a, b in zip(off, srv, strict=True))
            t_off, t_srv = min(p[0] for p in pairs), min(p[1] for p in pairs)
            print(f"  loglikelihood, concurrency {c:3}, {k:2}/request {t_off:9.2f} {t_srv:9.2f} "
                  f"{t_off / t_srv:14.0%}   max |dLL| {d:.2e}; "
                  f"via {be.describe()['loglikelihood_via']}   {load()}")
            if k > 1 or via != "auto":
                continue  # generation sends one prompt per request, whatever k
            t_off, off_g = best_of(lambda: vl.generate(gen), 1)
            t_srv, srv_g = best_of(lambda be=be: be.generate(gen), 1)  # type: ignore[misc]
            same = sum(a.text == b.text for a, b in zip(off_g, srv_g, strict=True))
            print(f"  generation, concurrency {c:3}            {t_off:9.2f} {t_srv:9.2f} "
                  f"{t_off / t_srv:14.0%}   identical texts {same}/{len(gen)}   {load()}")
        print(f"  target: server >= 90% of offline throughput; median of the last run "
              f"pairs: {statistics.median([p[0] / p[1] for p in pairs]):.0%}")
    finally:
        stop_server(proc)


if __name__ == "__main__":  # vLLM spawns its engine process: build it only here
    main()
