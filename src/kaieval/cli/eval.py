"""``kai eval``: benchmarks on a local model or an OpenAI-compatible endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kaieval.cli._common import user_errors
from kaieval.errors import KaiError

app = typer.Typer()


@app.command("eval")
@user_errors
def eval_(
    model: Annotated[str, typer.Option("--model", help="Local model folder or endpoint URL.")],
    tasks: Annotated[str, typer.Option(help="Comma-separated catalogue references "
                                       "(name[@variant][:subset], e.g. kmmlu, "
                                       "kmmlu:Korean-History) or task YAML paths (ours or "
                                       "lm-eval's).")],
    backend: Annotated[str, typer.Option(help="hf, openai or vllm.")] = "hf",
    model_name: Annotated[str | None, typer.Option(help="Served model name (openai).")] = None,
    num_fewshot: Annotated[int | None, typer.Option(help="Override the tasks' few-shot "
                                                    "count.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size (results do not depend on "
                                            "it).")] = 8,
    limit: Annotated[int | None, typer.Option(help="Only the first N documents per "
                                              "task (per subset of a whole benchmark).")] = None,
    log_samples: Annotated[Path | None, typer.Option(help="Write per-sample JSONL here.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the run record (JSON) here.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Request cache folder (default "
                                                   "~/.cache/kaieval/requests).")] = None,
    chat_template: Annotated[bool, typer.Option(help="Apply the model's chat template.")] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model repository's own "
                                                    "code to run (off by default).")] = False,
    tokenizer: Annotated[Path | None, typer.Option(
        help="The served model's tokenizer (openai backend): a folder or a file in any "
        "format kai tokenizer-efficiency reads; prompts are then sent as token ids split "
        "as lm-eval splits them.")] = None,
    tokenizer_pattern: Annotated[str | None, typer.Option(
        help="Pre-tokenisation pattern for a tiktoken tokenizer.model whose encoding is not "
        "in the registry.")] = None,
    approximate_split: Annotated[bool, typer.Option(
        "--approximate-split", help="openai backend without --tokenizer or a server "
        "/tokenize: split context and continuation by echoed text offsets (approximate; "
        "every number is marked so).")] = False,
    concurrency: Annotated[int | None, typer.Option(
        help="openai backend: requests in flight at once (default 8).")] = None,
    prompts_per_request: Annotated[int | None, typer.Option(
        help="openai backend: token-id log-likelihood prompts sent per completions request "
        "(default 1; 16 halved the time against a vLLM server here).")] = None,
    loglikelihood_via: Annotated[str | None, typer.Option(
        help="openai backend: auto (echo, else vLLM's prompt_logprobs), echo or "
        "prompt_logprobs.")] = None,
    tensor_parallel_size: Annotated[int | None, typer.Option(
        help="vllm backend: GPUs each model copy is split across (vLLM's "
        "tensor_parallel_size).")] = None,
    data_parallel_size: Annotated[int | None, typer.Option(
        help="vllm backend: model copies serving requests side by side (vLLM's "
        "data_parallel_size).")] = None,
    forward: Annotated[str | None, typer.Option(
        help="hf backend: auto (kaieval's own forward for a plain LlamaForCausalLM, "
        "transformers' for anything else), kaieval or transformers.")] = None,
) -> None:
    """Run benchmarks on a local model or an OpenAI-compatible endpoint."""
    from kaieval.bench.cache import default_request_cache
    from kaieval.bench.run import evaluate

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise KaiError("--tasks is empty")
    kwargs: dict[str, Any] = {}
    if backend == "openai":
        if not model_name:
            raise KaiError("--backend openai needs --model-name")
        kwargs["model_name"] = model_name
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    if tokenizer is not None:
        if backend != "openai":
            raise KaiError("--tokenizer is for the openai backend (a local model folder's "
                           "own tokenizer is used)", where="--tokenizer")
        kwargs["tokenizer_path"] = tokenizer
    if tokenizer_pattern is not None:
        if backend == "openai" and tokenizer is None:
            raise KaiError("--tokenizer-pattern is for the hf and vllm backends or with "
                           "--tokenizer",
                           where="--tokenizer-pattern")
        kwargs["tokenizer_pattern"] = tokenizer_pattern
    for flag, value, owner in (("tensor_parallel_size", tensor_parallel_size, "vllm"),
                               ("data_parallel_size", data_parallel_size, "vllm"),
                               ("concurrency", concurrency, "openai"),
                               ("prompts_per_request", prompts_per_request, "openai"),
                               ("loglikelihood_via", loglikelihood_via, "openai"),
                               ("forward", forward, "hf")):
        if value is not None:
            if backend != owner:
                raise KaiError(f"is for the {owner} backend",
                               where="--" + flag.replace("_", "-"))
            kwargs[flag] = value
    if approximate_split:
        if backend != "openai":
            raise KaiError("--approximate-split is for the openai backend",
                           where="--approximate-split")
        kwargs["approximate_split"] = True
    run = evaluate(model, names, backend=backend, num_fewshot=num_fewshot,
                   batch_size=batch_size, limit=limit,
                   cache_dir=cache_dir if cache_dir is not None else default_request_cache(),
                   log_samples=log_samples, chat_template=chat_template, **kwargs)
    if output is not None:
        from kaieval.io import atomic_write_text

        atomic_write_text(output, run.model_dump_json(indent=2) + "\n")
        typer.echo(f"wrote {output}")
    for line in run.summary_lines():
        typer.echo(line)
