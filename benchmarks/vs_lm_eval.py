"""kaieval's benchmark engine vs lm-evaluation-harness: same model, same tasks, one run, CPU.

Builds a small Llama-architecture model locally (random weights, seeded; a
byte-level BPE tokenizer trained on the generated Korean corpus), writes
lm-eval-format task YAMLs with local JSONL data -- multiple choice with
full-sentence answers (KoBEST / HAE-RAE style) and with one-letter answers
(KMMLU style), each 5-shot with the same shots for every item (``first_n``),
5-shot with shots drawn per item (lm-eval's default sampler, ``_peritem``) and
0-shot (``_0shot``) -- plus a 3-shot GSM8K-style ``generate_until`` task
(greedy, stop strings, exact_match), and runs each task with lm-eval's HF
backend and with kaieval's engine on the *same YAML*.

Each tool is measured twice per task, back to back:

* **in-process** (``in-proc s``): a worker subprocess imports torch and
  transformers and builds lm-eval's task index (35-40 s here) before its clock
  starts; it also returns per-choice log-likelihoods / generations to compare;
* **whole process** (``whole s``): the tool's own command line (``lm-eval run``,
  ``kai eval``) timed from start to exit, as a user times it; its peak RSS comes
  from ``wait4``. The headline ratio is this one.

Then kaieval's batch-size invariance (1, 8, 32) is checked: log-likelihoods,
predictions and generations.

    .venv/bin/python benchmarks/vs_lm_eval.py            # everything (15-25 minutes)
    .venv/bin/python benchmarks/vs_lm_eval.py --quick    # tiny, for a smoke run
    .venv/bin/python benchmarks/vs_lm_eval.py --only mc --tasks-only ko_letter_mc_0shot

The builders are importable: tests/bench/test_bench_parity_lm_eval.py uses them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # child_usage, when imported as a module
from child_usage import peak_rss_self_mb, run_child

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
TASKS = ("ko_fulltext_mc_peritem", "ko_letter_mc_0shot", "ko_fulltext_mc",
         "ko_fulltext_mc_0shot", "ko_letter_mc_peritem", "ko_letter_mc")
SHOTS = {"": "5-shot, same shots for all", "_peritem": "5-shot, shots per item",
         "_0shot": "0-shot"}
GEN_TASK = "ko_gen_until"
GEN_STOPS = ("\n\n", "질문:", ".")


def _sentences(n_chars: int, seed: int) -> list[str]:
    from kaieval.synth.corpus import corpus_text

    text = corpus_text("train", n_chars, seed=seed)
    out = [s.strip() for s in text.replace("\n", " ").split(". ")]
    return [s + "." for s in out if 12 <= len(s) <= 90]


def write_tasks(root: Path, *, n_docs: int, seed: int = 7, num_fewshot: int = 5,
                n_train: int = 40) -> Path:
    """Write every multiple-choice task YAML and its JSONL data under ``root``; return the
    YAML folder. Per kind (full-sentence, one-letter): ``NAME`` (shots: the first
    ``num_fewshot`` training docs for every item), ``NAME_peritem`` (lm-eval's default
    sampler: shots drawn per item from ``n_train`` docs) and ``NAME_0shot``."""
    rng = random.Random(seed)
    sents = _sentences(400_000, seed)
    rng.shuffle(sents)
    data, tasks = root / "data", root / "tasks"
    data.mkdir(parents=True, exist_ok=True)
    tasks.mkdir(parents=True, exist_ok=True)
    pool = iter(sents)

    def fulltext_doc() -> dict[str, Any]:  # HellaSwag / HAE-RAE style: passage + endings
        passage = " ".join(next(pool) for _ in range(2))
        whole = [next(pool) for _ in range(4)]
        cut = [max(4, len(s) // 2) for s in whole]
        label = rng.randrange(4)
        stem = whole[label][:cut[label]]
        return {"question": f"지문: {passage}\n문장: {stem}",
                "choices": [s[c:] for s, c in zip(whole, cut, strict=True)], "label": label}

    def letter_doc() -> dict[str, Any]:
        opts = [next(pool)[:30] for _ in range(4)]
        return {"question": f"다음 중 가장 알맞은 것은? {next(pool)[:60]}", "A": opts[0],
                "B": opts[1], "C": opts[2], "D": opts[3], "answer": rng.randrange(4)}

    for name, make in (("ko_fulltext_mc", fulltext_doc), ("ko_letter_mc", letter_doc)):
        for split, n in (("train", max(n_train, num_fewshot)), ("test", n_docs)):
            with (data / f"{name}_{split}.jsonl").open("w", encoding="utf-8") as fh:
                for _ in range(n):
                    fh.write(json.dumps(make(), ensure_ascii=False) + "\n")
    common = ("dataset_path: json\ndataset_kwargs:\n  data_files:\n"
              "    train: {train}\n    test: {test}\ntest_split: test\nfewshot_split: train\n"
              "output_type: multiple_choice\nmetric_list:\n"
              "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
              "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n")
    variants = {"": f"num_fewshot: {num_fewshot}\nfewshot_config:\n  sampler: first_n\n",
                "_peritem": f"num_fewshot: {num_fewshot}\n", "_0shot": "num_fewshot: 0\n"}
    bodies = {
        "ko_fulltext_mc": 'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\n'
                          "doc_to_target: label\n",
        "ko_letter_mc": 'doc_to_text: "{{question}}\\nA. {{A}}\\nB. {{B}}\\nC. {{C}}\\n'
                        'D. {{D}}\\n정답:"\ndoc_to_choice: ["A", "B", "C", "D"]\n'
                        "doc_to_target: answer\n",
    }
    for name, body in bodies.items():
        files = {s: str((data / f"{name}_{s}.jsonl").resolve()) for s in ("train", "test")}
        for suffix, shots in variants.items():
            (tasks / f"{name}{suffix}.yaml").write_text(
                f"task: {name}{suffix}\n" + common.format(**files) + shots + body,
                encoding="utf-8")
    return tasks


def build_model(out: Path, *, hidden: int, layers: int, vocab: int, seed: int = 0,
                extra_text: str = "") -> Path:
    """A random-weight Llama with a byte-level BPE trained on the Korean corpus (BOS added)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from kaieval.synth.corpus import corpus_text

    if (out / "model.safetensors").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = corpus_text("train", 300_000, seed=seed) + extra_text
    tok.train_from_iterator(text.split("\n"), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 0)])
    make_fast: Any = PreTrainedTokenizerFast
    fast = make_fast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(str(out))
    torch.manual_seed(seed)
    heads = max(1, hidden // 64)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden,
                         intermediate_size=hidden * 8 // 3, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=2048, bos_token_id=0, eos_token_id=1,
                         pad_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger-than-default init so the distributions are not flat
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.06)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def reference_generations(model: Path, prompts: list[str], *, max_new: int) -> list[str]:
    """transformers' own ``generate`` (greedy, batch 1), raw (not yet cut at stops).

    A third implementation, independent of both tools: it decides which targets
    a correct greedy decoder must hit, so exact_match is not trivially 0.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model))
    lm: Any = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.float32)
    lm.eval()
    out = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tok(prompt, return_tensors="pt")
            gen = lm.generate(**ids, do_sample=False, max_new_tokens=max_new,
                              pad_token_id=tok.pad_token_id)
            out.append(str(tok.decode(gen[0, ids["input_ids"].shape[1]:].tolist(),
                                      skip_special_tokens=True)))
    return out


def cut_at_stops(text: str, stops: tuple[str, ...] = GEN_STOPS) -> str:
    """lm-eval's post-processing: cut at the first occurrence of each stop, in order."""
    for stop in stops:
        text = text.split(stop)[0]
    return text


def _mid_stop(raw: list[str]) -> str | None:
    """A character the model emits after its first one in the most generations.

    A random-weight model rarely writes '\n\n'; adding such a character to the stop
    list makes sure the truncation path is exercised by the comparison.
    """
    counts: dict[str, int] = {}
    for text in raw:
        for ch in set(text[1:]) - set(text[:1]) - {"\ufffd"}:
            if ch.isprintable() and not ch.isspace():
                counts[ch] = counts.get(ch, 0) + 1
    return max(sorted(counts), key=lambda c: counts[c]) if counts else None


def write_gen_task(root: Path, model: Path, *, n_docs: int, seed: int = 11,
                   num_fewshot: int = 3, max_gen_toks: int = 24) -> Path:
    """A GSM8K-style ``generate_until`` lm-eval YAML (greedy, stop strings, exact_match).

    Even docs' targets are the reference greedy continuation (``reference_generations``),
    odd docs' a text no decoder produces; so both tools should score exactly 0.5 per
    pair of docs, and a decoder that differs from transformers' loses the even ones.
    """
    rng = random.Random(seed)
    sents = _sentences(200_000, seed)
    rng.shuffle(sents)
    data, tasks = root / "data", root / "tasks"
    data.mkdir(parents=True, exist_ok=True)
    tasks.mkdir(parents=True, exist_ok=True)
    train = [{"question": s[:50], "answer": str(rng.randrange(100))}
             for s in sents[:num_fewshot]]
    questions = [s[:60] for s in sents[num_fewshot:num_fewshot + n_docs]]
    prefix = "".join(f"질문: {d['question']}\n답: {d['answer']}\n\n" for d in train)
    prompts = [f"{prefix}질문: {q}\n답:" for q in questions]
    raw = reference_generations(model, prompts, max_new=max_gen_toks)
    extra = _mid_stop(raw)
    stops = GEN_STOPS + ((extra,) if extra else ())
    refs = [cut_at_stops(r, stops) for r in raw]
    (tasks / f"{GEN_TASK}.meta.json").write_text(json.dumps(
        {"docs": n_docs, "stops": stops, "empty": sum(c == "" for c in refs),
         "cut_by_a_stop": sum(r != c for r, c in zip(raw, refs, strict=True))},
        ensure_ascii=False), encoding="utf-8")
    test = [{"question": q, "answer": ref if i % 2 == 0 else "<아님>"}
            for i, (q, ref) in enumerate(zip(questions, refs, strict=True))]
    files = {}
    for split, rows in (("train", train), ("test", test)):
        files[split] = (data / f"{GEN_TASK}_{split}.jsonl").resolve()
        with files[split].open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    until = "[" + ", ".join(json.dumps(s, ensure_ascii=False) for s in stops) + "]"
    (tasks / f"{GEN_TASK}.yaml").write_text(
        f"task: {GEN_TASK}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    train: {files['train']}\n    test: {files['test']}\n"
        "test_split: test\nfewshot_split: train\noutput_type: generate_until\n"
        f"num_fewshot: {num_fewshot}\nfewshot_config:\n  sampler: first_n\n"
        'doc_to_text: "질문: {{question}}\\n답:"\ndoc_to_target: "{{answer}}"\n'
        f"generation_kwargs:\n  until: {until}\n  do_sample: false\n"
        f"  max_gen_toks: {max_gen_toks}\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n"
        "    higher_is_better: true\n", encoding="utf-8")
    return tasks


def run_lm_eval(model: Path, task_dir: Path, task: str, batch_size: int) -> dict[str, Any]:
    """lm-eval's HF backend; returns timing, accuracy and per-doc per-choice LLs."""
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    import lm_eval
    from lm_eval.tasks import TaskManager

    # lm-eval indexes its ~14k bundled task YAMLs when a TaskManager is built (35-40 s
    # on the shared dev box). That is a fixed start-up cost, like importing torch, not
    # evaluation, so it is kept out of the timed region and reported apart (index_s).
    start = time.perf_counter()
    manager = TaskManager(include_path=str(task_dir))
    index_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    out = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model},dtype=float32", tasks=[task],
        device="cpu", batch_size=batch_size, log_samples=True,
        task_manager=manager, random_seed=1234)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert out is not None
    res = out["results"][task]
    samples = out["samples"][task]
    if "exact_match,none" in res:  # generate_until: filtered generation, per-sample metric
        return {"wall_s": wall, "cpu_s": cpu, "index_s": index_s,
                "exact_match": res["exact_match,none"],
                "gens": {str(s["doc_id"]): str(s["filtered_resps"][0]) for s in samples},
                "em": {str(s["doc_id"]): float(s["exact_match"]) for s in samples}}
    lls = {str(s["doc_id"]): [float(r[0]) for r in s["filtered_resps"]] for s in samples}
    return {"wall_s": wall, "cpu_s": cpu, "index_s": index_s, "acc": res["acc,none"],
            "acc_norm": res["acc_norm,none"], "lls": lls}


def run_kaieval(model: Path, task_dir: Path, task: str, batch_size: int,
                log: Path | None = None, limit: int | None = None,
                forward: str = "auto") -> dict[str, Any]:
    """kaieval's engine on the same YAML; returns timing, accuracy and per-doc LLs.
    ``forward``: the HF backend's model code (``auto`` is kaieval's own Llama here)."""
    from kaieval.bench.run import evaluate

    log = log or task_dir.parent / f"samples-{task}-{batch_size}-{os.getpid()}.jsonl"
    start, cpu = time.perf_counter(), time.process_time()
    run = evaluate(str(model), [str(task_dir / f"{task}.yaml")], batch_size=batch_size,
                   log_samples=log, progress=False, limit=limit, forward=forward)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    metrics = run.tasks[0].metrics
    if "exact_match" in metrics:
        return {"wall_s": wall, "cpu_s": cpu, "exact_match": metrics["exact_match"].value,
                "gens": {str(r["doc_id"]): r["prediction"] for r in rows},
                "em": {str(r["doc_id"]): r["metrics"]["exact_match"] for r in rows}}
    return {"wall_s": wall, "cpu_s": cpu, "acc": metrics["acc"].value,
            "acc_norm": metrics["acc_norm"].value,
            "lls": {str(r["doc_id"]): r["loglikelihoods"] for r in rows}}


def _align(ours: dict[str, list[float]], theirs: dict[str, list[float]]) -> float:
    """Largest per-choice |LL difference|; docs are matched by position in file order."""
    a, b = list(ours.values()), list(theirs.values())
    if len(a) != len(b):
        raise SystemExit(f"different doc counts: {len(a)} vs {len(b)}")
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True)
               for x, y in zip(ra, rb, strict=True))


def compare_generations(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Docs whose (stop-truncated) generation or per-sample exact_match differ."""
    if sorted(ours["gens"]) != sorted(theirs["gens"]):
        raise SystemExit("the two tools generated for different doc ids")
    gen_diff = sorted(k for k in ours["gens"] if ours["gens"][k] != theirs["gens"][k])
    em_diff = sorted(k for k in ours["em"] if ours["em"][k] != theirs["em"][k])
    return {"gen_diff": gen_diff, "em_diff": em_diff}


def _worker(args: argparse.Namespace) -> None:
    # both tools get torch + transformers imported before their clock starts: the
    # comparison is of evaluation, not of import time (which both pay equally)
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    fn = run_lm_eval if args.worker == "lm_eval" else run_kaieval
    result = fn(Path(args.model), Path(args.tasks), args.task, args.batch_size)
    result["peak_rss_mb"] = peak_rss_self_mb()  # not ru_maxrss: see child_usage.py
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")


def _spawn(tool: str, model: Path, tasks: Path, task: str, bs: int, out: Path,
           threads: int) -> dict[str, Any]:
    """The in-process measurement: a worker subprocess that times the evaluation only."""
    cmd = [sys.executable, __file__, "--worker", tool, "--model", str(model), "--tasks",
           str(tasks), "--task", task, "--batch-size", str(bs), "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(threads), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{tool} on {task} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    result["process_s"] = time.perf_counter() - start
    return result


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads)}


def _script(name: str, module: str) -> list[str]:
    """The console script a user types (beside this Python), else ``python -m``."""
    exe = Path(sys.executable).parent / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", module]


def whole_process(tool: str, model: Path, tasks: Path, task: str, bs: int, out: Path,
                  threads: int) -> dict[str, Any]:
    """Each tool's own command line, timed as a user times it: start-up to exit.

    Returns wall seconds, the process's own peak RSS (``child_usage.run_child``) and the headline
    metric read back from the tool's output files.
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if tool == "lm_eval":
        cmd = [*_script("lm-eval", "lm_eval"), "run", "--model", "hf", "--model_args",
               f"pretrained={model},dtype=float32", "--tasks", task, "--include_path",
               str(tasks), "--device", "cpu", "--batch_size", str(bs), "--output_path",
               str(out), "--log_samples"]
    else:
        cmd = [*_script("kai", "kaieval.cli"), "eval", "--model", str(model), "--tasks",
               str(tasks / f"{task}.yaml"), "--batch-size", str(bs), "--output",
               str(out / "run.json"), "--log-samples", str(out / "samples.jsonl"),
               # an empty request cache: the default one (~/.cache/kaieval) would answer
               # from an earlier run of this script (same seeded model, same tasks), and
               # lm-eval's own cache is off unless asked for
               "--cache-dir", str(out / "request-cache")]
    usage = run_child(cmd, out / "stderr.txt", _env(threads))
    if usage.code != 0:
        err = (out / "stderr.txt").read_text(encoding="utf-8", errors="replace")
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return {"whole_s": usage.wall_s, "whole_rss_mb": usage.peak_rss_mb,
            "whole_metric": _read_metric(tool, out, task)}


def _read_metric(tool: str, out: Path, task: str) -> float:
    """acc (multiple choice) or exact_match (generation) from the tool's own output."""
    if tool == "lm_eval":
        res = json.loads(next(out.rglob("results_*.json")).read_text(encoding="utf-8"))
        row = res["results"][task]
        return float(row.get("acc,none", row.get("exact_match,none", float("nan"))))
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    metrics = run["tasks"][0]["metrics"]
    return float(metrics.get("acc", metrics.get("exact_match", {"value": float("nan")}))["value"])


def measure(tool: str, args: argparse.Namespace, model: Path, tasks: Path, task: str,
            work: Path) -> dict[str, Any]:
    """The in-process run and then the whole-process run of one tool on one task."""
    result = _spawn(tool, model, tasks, task, args.batch_size, work / f"{tool}.json",
                    args.threads)
    if "whole" in args.modes:
        result.update(whole_process(tool, model, tasks, task, args.batch_size,
                                    work / f"cli-{tool}", args.threads))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/kaieval-vs-lm-eval")
    ap.add_argument("--docs", type=int, default=120)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads per tool (the same for both)")
    ap.add_argument("--gen-docs", type=int, default=120,
                    help="documents of the generate_until task")
    ap.add_argument("--only", choices=["mc", "gen"], help="run only one kind of task")
    ap.add_argument("--tasks-only", default=",".join(TASKS),
                    help="comma-separated multiple-choice tasks to run (default: all six)")
    ap.add_argument("--modes", default="in,whole",
                    help="'in' (evaluation only, in-process clock) and/or 'whole' (each "
                         "tool's command line, start-up included)")
    ap.add_argument("--no-invariance", action="store_true",
                    help="skip the batch-size invariance check (1, 8, 32)")
    ap.add_argument("--quick", action="store_true", help="tiny model and 20 docs")
    ap.add_argument("--worker", choices=["lm_eval", "kaieval"], help=argparse.SUPPRESS)
    for hidden_opt in ("--model", "--tasks", "--task", "--out"):
        ap.add_argument(hidden_opt, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    if args.quick:
        args.docs, args.gen_docs, args.hidden, args.layers, args.vocab = 20, 10, 64, 2, 2000
    work = Path(args.workdir) / f"h{args.hidden}-l{args.layers}-v{args.vocab}-d{args.docs}-v3"
    tasks = write_tasks(work, n_docs=args.docs)
    letters = "".join(f" A B C D 정답: {c}\n" for c in "ABCD" * 200)
    model = build_model(work / "model", hidden=args.hidden, layers=args.layers,
                        vocab=args.vocab, extra_text=letters)
    print(f"model: Llama hidden={args.hidden} layers={args.layers} vocab={args.vocab} fp32, "
          f"{args.docs} docs/task, batch size {args.batch_size}, torch threads {args.threads}, "
          f"cpu count {os.cpu_count()}, load average {_load()}")
    if args.only != "gen":
        _mc_rows(args, work, model, tasks)
    if args.only != "mc":
        _gen_row(args, work, model)
    print(f"load average at the end: {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


HEAD = (f"{'task':22} {'tool':8} {'in-proc s':>9} {'cpu s':>7} {'whole s':>8} "
        f"{'peak RSS MB':>11} {'score':>7} {'check':>10} {'x in-proc':>9} {'x whole':>8}")


def _print_pair(task: str, theirs: dict[str, Any], ours: dict[str, Any], score: str,
                check: str) -> None:
    for tool, r in (("lm-eval", theirs), ("kaieval", ours)):
        whole = f"{r['whole_s']:8.2f}" if "whole_s" in r else f"{'-':>8}"
        rss = r.get("whole_rss_mb", r["peak_rss_mb"])
        line = (f"{task:22} {tool:8} {r['wall_s']:9.2f} {r['cpu_s']:7.2f} {whole} {rss:11.0f} "
                f"{r[score]:7.4f}")
        if tool == "kaieval":
            ratio = (f"{theirs['whole_s'] / ours['whole_s']:7.2f}x" if "whole_s" in r
                     else f"{'-':>8}")
            line += f" {check:>10} {theirs['wall_s'] / ours['wall_s']:8.2f}x {ratio}"
        print(line, flush=True)
        if "whole_metric" in r and abs(r["whole_metric"] - r[score]) > 1e-12:
            print(f"  !! {tool}'s command line scored {r['whole_metric']} (in-process "
                  f"{r[score]})", flush=True)


def _gen_row(args: argparse.Namespace, work: Path, model: Path) -> None:
    tasks = write_gen_task(work / f"gen-d{args.gen_docs}", model, n_docs=args.gen_docs)
    theirs = measure("lm_eval", args, model, tasks, GEN_TASK, work)
    ours = measure("kaieval", args, model, tasks, GEN_TASK, work)
    diff = compare_generations(ours, theirs)
    meta = json.loads((tasks / f"{GEN_TASK}.meta.json").read_text(encoding="utf-8"))
    print(HEAD.replace("check", "diff gens"))
    print("-" * len(HEAD))
    _print_pair(GEN_TASK, theirs, ours, "exact_match", f"{len(diff['gen_diff'])} of "
                f"{meta['docs']}")
    print(f"lm-eval task index (not in in-proc s, in whole s): {theirs['index_s']:.1f} s; "
          f"differing exact_match docs: {len(diff['em_diff'])}")
    print(f"{meta['docs']} docs, stops {meta['stops']}; reference generations cut by a stop: "
          f"{meta['cut_by_a_stop']}, empty after the cut: {meta['empty']}; differing doc "
          f"ids: {diff['gen_diff'][:10]}")
    if args.no_invariance:
        return
    runs = {bs: run_kaieval(model, tasks, GEN_TASK, bs,
                            work / f"inv-{GEN_TASK}-{bs}.jsonl")["gens"] for bs in (1, 8, 32)}
    same = all(runs[bs] == runs[1] for bs in (8, 32))
    print(f"batch-size invariance (generations at bs 1, 8, 32): "
          f"{'identical' if same else 'DIFFERENT'}")
    theirs_gens = run_kaieval(model, tasks, GEN_TASK, 8, work / f"fwd-{GEN_TASK}.jsonl",
                              forward="transformers")["gens"]
    print(f"forward (generations at bs 8, kaieval's Llama vs transformers'): "
          f"{'identical' if theirs_gens == runs[8] else 'DIFFERENT'}")


def _mc_rows(args: argparse.Namespace, work: Path, model: Path, tasks: Path) -> None:
    print(HEAD.replace("check", "max|dLL|"))
    print("-" * len(HEAD))
    names = [t.strip() for t in args.tasks_only.split(",") if t.strip()]
    index = []
    for task in names:
        theirs = measure("lm_eval", args, model, tasks, task, work)
        ours = measure("kaieval", args, model, tasks, task, work)
        _print_pair(task, theirs, ours, "acc", f"{_align(ours['lls'], theirs['lls']):.2e}")
        if ours["acc_norm"] != theirs["acc_norm"]:
            print(f"  !! acc_norm differs: {ours['acc_norm']} vs {theirs['acc_norm']}")
        index.append(f"{theirs['index_s']:.1f}")
    print(f"lm-eval task index (not in in-proc s, in whole s): {', '.join(index)} s")
    if args.no_invariance:
        return
    for task in names:
        runs = {bs: run_kaieval(model, tasks, task, bs, work / f"inv-{task}-{bs}.jsonl",
                                limit=40) for bs in (1, 8, 32)}
        worst = max(_align(runs[bs]["lls"], runs[1]["lls"]) for bs in (8, 32))
        preds = all(_argmax(runs[bs]["lls"]) == _argmax(runs[1]["lls"]) for bs in (8, 32))
        print(f"batch-size invariance, {task}, first 40 docs: max per-choice "
              f"|LL(bs) - LL(1)| over bs 8, 32 = {worst:.2e}; predictions "
              f"{'identical' if preds else 'DIFFERENT'}")
        theirs = run_kaieval(model, tasks, task, 8, work / f"fwd-{task}.jsonl", limit=40,
                             forward="transformers")
        print(f"forward, {task}, first 40 docs: max per-choice |LL(kaieval's Llama) - "
              f"LL(transformers' Llama)| = {_align(runs[8]['lls'], theirs['lls']):.2e}")


def _argmax(lls: dict[str, list[float]]) -> dict[str, int]:
    return {k: max(range(len(v)), key=v.__getitem__) for k, v in lls.items()}


if __name__ == "__main__":
    main()
