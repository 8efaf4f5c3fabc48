#!/usr/bin/env bash
# One short check for a lent GPU machine (not run in CI):
#   1. HF backend on CUDA: shared-prefix log-likelihoods equal the full-sequence reference
#      and the CPU numbers (fp32, within 1e-4), and batch sizes 1/8/32 agree within 1e-5;
#   2. vLLM backend (only if vllm is installed; benchmarks/vllm_model.py's head_dim-64
#      model): the same token ids as the HF backend, log-likelihoods within 5e-2 of HF
#      on CUDA (different kernels, TF32 may be on), greedy generations counted.
# Usage: bash benchmarks/gpu_check.sh   (from the repository root, venv in .venv or python3)
set -euo pipefail
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORK=${WORK:-$(mktemp -d)}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$WORK" <<'EOF'
import sys, time
from pathlib import Path
import torch
from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest
from kaieval.bench.backends.hf import HFBackend
from kaieval.synth.corpus import corpus_text
from kaieval.demo.standins import build_standins

assert torch.cuda.is_available(), "no CUDA device"
model = build_standins(Path(sys.argv[1]) / "standins", names=["nc"])["nc"]
text = corpus_text("train", 20000)
reqs = [LoglikelihoodRequest(text[i * 400: i * 400 + 300] + " 정답:", " " + text[9000 + 13 * k: 9000 + 13 * k + 3 + 5 * k])
        for i in range(24) for k in range(4)]
cpu = HFBackend(model, device="cpu").loglikelihood(reqs)
t = time.perf_counter()
gpu = HFBackend(model, device="cuda", batch_size=8).loglikelihood(reqs)
print(f"hf cuda: {len(reqs)} requests in {time.perf_counter() - t:.2f}s")
ref = HFBackend(model, device="cuda", shared_prefix=False).loglikelihood(reqs)
d_cpu = max(abs(a.logprob - b.logprob) for a, b in zip(cpu, gpu))
d_ref = max(abs(a.logprob - b.logprob) for a, b in zip(ref, gpu))
d_bs = max(abs(a.logprob - b.logprob) for bs in (1, 32)
           for a, b in zip(HFBackend(model, device="cuda", batch_size=bs).loglikelihood(reqs), gpu))
print(f"hf cuda vs cpu {d_cpu:.2e}; vs full-sequence {d_ref:.2e}; batch 1/32 vs 8 {d_bs:.2e}")
ok = d_cpu < 1e-4 and d_ref < 1e-4 and d_bs < 1e-5
try:
    import vllm  # noqa: F401
except ImportError:
    print("vllm not installed: vLLM check skipped")
else:
    # vLLM's attention kernels want head_dim 64 (the stand-in has 24): its own tiny model
    sys.path.insert(0, "benchmarks")
    from vllm_model import build_model
    from kaieval.bench.backends.vllm import VLLMBackend
    vmodel = build_model(Path(sys.argv[1]) / "vllm-model")
    vb = VLLMBackend(vmodel, dtype="float32", gpu_memory_utilization=0.3)
    hb = HFBackend(vmodel, device="cuda", max_length=vb.max_length)
    want = hb.loglikelihood(reqs)
    t = time.perf_counter()
    got = vb.loglikelihood(reqs)
    d_v = max(abs(a.logprob - b.logprob) for a, b in zip(got, want))
    same_tokens = all(vb.tokens(r) == hb.tokens(r) for r in reqs)
    gens = [GenerationRequest(text[i * 300: i * 300 + 80], stop=("\n", "."), max_tokens=24)
            for i in range(8)]
    same_gen = sum(a.text == b.text for a, b in zip(vb.generate(gens), hb.generate(gens)))
    print(f"vllm: {len(reqs)} requests in {time.perf_counter() - t:.2f}s, same token ids "
          f"{same_tokens}, max |dLL| vs hf {d_v:.2e}, identical generations {same_gen}/8")
    ok = ok and same_tokens and d_v < 5e-2
print("GPU CHECK", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
