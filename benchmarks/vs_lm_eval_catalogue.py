"""The catalogue vs lm-evaluation-harness on one real model: log-likelihoods, generations, scores.

For every catalogue benchmark with an lm-eval counterpart (up to ``--subsets``
subsets each), the same locally written documents (tests/bench/reference_docs.py,
the hubs' column layouts) are run through lm-eval's own task object
(``simple_evaluate`` with lm-eval's HF backend; the task built from lm-eval's
installed YAML with only ``download`` replaced) and through kaieval's catalogue
task (``evaluate`` with the hf backend). Prints, per benchmark: documents, the
largest per-choice |log-likelihood difference| (multiple choice), the number of
documents whose generation differs (generation), and each tool's score.
Parity, not speed: both run in this process, one after the other.

    .venv/bin/python benchmarks/vs_lm_eval_catalogue.py            # all benchmarks
    .venv/bin/python benchmarks/vs_lm_eval_catalogue.py --only kmmlu,gsm8k
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> Any:
    spec = util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _lm_eval(lm: Any, manager: Any, task: Any, limit: int | None,
             chat: bool = False) -> dict[str, Any]:
    import lm_eval

    if task.config.task == "ifeval":  # lm-eval leaves langdetect unseeded; kaieval seeds 0
        from langdetect import DetectorFactory

        DetectorFactory.seed = 0
    out = lm_eval.simple_evaluate(model=lm, tasks=[task], log_samples=True, limit=limit,
                                  random_seed=0, fewshot_random_seed=1234,
                                  task_manager=manager, apply_chat_template=chat)
    assert out is not None
    name = task.config.task
    res = {k: v for k, v in out["results"][name].items() if "stderr" not in k
           and isinstance(v, float)}
    # one logged sample per document and filter (GSM8K has two filters): keep one per doc
    by_doc = {s["doc_id"]: s for s in reversed(out["samples"][name])}
    samples = [by_doc[d] for d in sorted(by_doc)]
    gen = bool(samples) and isinstance(samples[0]["resps"][0][0], str)
    lls = [] if gen else [[float(r[0][0]) for r in s["resps"]] for s in samples]
    gens = [str(s["resps"][0][0]) for s in samples] if gen else []
    return {"metrics": res, "lls": lls, "gens": gens}


def _kaieval(model: Path, task: Any, limit: int | None, log: Path) -> dict[str, Any]:
    from kaieval.bench.run import evaluate

    run = evaluate(str(model), [task], batch_size=8, limit=limit, log_samples=log,
                   progress=False)
    rows = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    gen = run.tasks[0].output_type == "generate_until"
    return {"metrics": {k: m.value for k, m in run.tasks[0].metrics.items()},
            "lls": [] if gen else [r["loglikelihoods"] for r in rows],
            "gens": [r["generation"] for r in rows] if gen else []}


# IFEval is a chat message in kaieval's catalogue (lm-eval: --apply_chat_template), so
# the tiny model gets a minimal chat template; the other tasks never use it.
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def _add_chat_template(model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    if getattr(tok, "chat_template", None) != CHAT_TEMPLATE:
        tok.chat_template = CHAT_TEMPLATE
        tok.save_pretrained(str(model))


_KEYS = {"acc": "acc,none", "acc_norm": "acc_norm,none", "f1": "f1,none",
         "math_equiv": "exact_match,none"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/kaieval-vs-lm-eval-catalogue")
    ap.add_argument("--only", default="", help="comma-separated catalogue names")
    ap.add_argument("--subsets", type=int, default=2, help="subsets per benchmark")
    ap.add_argument("--gen-limit", type=int, default=3,
                    help="documents per subset of generation benchmarks")
    args = ap.parse_args()
    bench = _load("vs_lm_eval", ROOT / "benchmarks" / "vs_lm_eval.py")
    for k, v in bench.OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    ref = _load("test_bench_reference", ROOT / "tests" / "bench" / "test_bench_reference.py")
    from kaieval.bench.tasks import list_catalog

    work = Path(args.workdir)
    letters = "".join(f" A B C D 정답: {c}\n" for c in "ABCD" * 100)
    model = bench.build_model(work / "model", hidden=64, layers=2, vocab=1500,
                              extra_text=letters)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    if config["max_position_embeddings"] < 4096:  # room for 2,048 new tokens after a prompt
        config["max_position_embeddings"] = 4096
        (model / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    _add_chat_template(model)
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    start = time.perf_counter()
    manager = TaskManager()  # lm-eval indexes its bundled tasks once (tens of seconds)
    lm = HFLM(pretrained=str(model), dtype="float32", device="cpu", batch_size=8)
    print(f"lm-eval set-up (task index, model): {time.perf_counter() - start:.1f} s")
    names = [e.name for e in list_catalog()]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    print(f"model: tiny Llama (hidden 64, 2 layers, fp32), load average "
          f"{os.getloadavg()[0]:.1f}")
    head = (f"{'benchmark':28} {'docs':>5} {'max |dLL|':>10} {'gen diff':>8} "
            f"{'metric':28} {'lm-eval':>8} {'kaieval':>8}")
    print(head)
    print("-" * len(head))
    worst = 0.0
    for name in names:
        for case_ref, yaml_path, splits in ref._cases(name)[: args.subsets]:
            start = time.perf_counter()
            files = ref._write(work / "data" / case_ref.replace(":", "_"), splits)
            ours_task = ref.kai_task(case_ref, files)
            gen = ours_task.output_type == "generate_until"
            limit = args.gen_limit if gen else None
            theirs = _lm_eval(lm, manager, ref.lm_task(yaml_path, splits), limit,
                              chat=bool(ours_task.cfg.chat))
            ours = _kaieval(model, ours_task, limit, work / f"{case_ref}.samples.jsonl")
            dll = max((abs(a - b) for x, y in zip(ours["lls"], theirs["lls"], strict=True)
                       for a, b in zip(x, y, strict=True)), default=0.0) if not gen else 0.0
            worst = max(worst, dll)
            if len(ours["gens"]) != len(theirs["gens"]):
                raise SystemExit(f"{case_ref}: {len(ours['gens'])} generations vs "
                                 f"{len(theirs['gens'])} ({ours['gens'][:2]} / "
                                 f"{theirs['gens'][:2]})")
            gdiff = sum(1 for a, b in zip(ours["gens"], theirs["gens"], strict=True)
                        if a != b) if gen else 0
            for key, value in ours["metrics"].items():
                lm_key = _KEYS.get(key, key if "," in key else f"{key},none")
                lm_value = theirs["metrics"].get(lm_key, float("nan"))
                print(f"{case_ref:28} {len(ours['lls'] or ours['gens']):5d} {dll:10.2e} "
                      f"{gdiff:8d} {key:28} {lm_value:8.4f} {value:8.4f}")
            print(f"{'':28} ({time.perf_counter() - start:.1f} s)")
    print(f"largest per-choice |dLL| over all multiple-choice benchmarks: {worst:.2e}")


if __name__ == "__main__":
    main()
