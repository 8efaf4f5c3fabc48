"""Real OpenAI-compatible servers on 127.0.0.1 for the openai backend's tests.

Two kinds:

* ``transformers serve`` (the real third-party server) as a subprocess on a free port.
  It answers completions and generation but ignores ``echo``/``logprobs``, so it is
  where the "no log-probs -> use multiple_choice_generate" error is checked.
* ``LocalOpenAIServer``: a small stdlib ``http.server`` that loads the same local
  model with transformers and implements ``/v1/completions`` with echo + log-probs by
  real forward passes (no canned numbers), ``/v1/chat/completions`` and ``/v1/models``,
  plus fault injection (HTTP statuses, malformed JSON, missing fields, delays) and an
  in-flight counter so tests can see the client's concurrency.

Not collected by pytest (no ``test_`` prefix); the test files import it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast


def free_port() -> int:
    """A port nothing listens on right now (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, deadline_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200, the process dies, or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before becoming ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {deadline_s} s")


@contextmanager
def transformers_serve(model_dir: Path, log: Path, deadline_s: float = 120.0
                       ) -> Iterator[str]:
    """``transformers serve MODEL_DIR`` offline on a free 127.0.0.1 port; yields base URL."""
    port = free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
             "--device", "cpu", "--dtype", "float32"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            try:
                wait_ready(f"http://127.0.0.1:{port}/health", deadline_s, proc)
            except (RuntimeError, TimeoutError) as exc:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"transformers serve did not start: {exc}\n{tail}") from exc
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@dataclass
class Faults:
    """What the local server does wrong, and what it saw. Reset between tests."""

    statuses: list[int] = field(default_factory=list)  # returned (in order) before real work
    malformed: int = 0  # this many POSTs get a 200 with a broken JSON body
    missing_choices: int = 0  # this many POSTs get a 200 with {"object": ...} and no choices
    echo: bool = True  # False: behave like a server that ignores echo/logprobs
    usage: bool = True  # report usage.prompt_tokens
    vllm_style: bool = False  # prepend BOS; text_offset = cumulative decoded-token lengths
    # echoed token strings and top-k keys as vLLM 0.32 names them (vllm/v1/engine/
    # logprobs.py): each token decoded alone; one ending inside a character re-decoded with
    # up to 4 earlier prompt tokens (never the first) as context, "" if still unfinished
    vllm_tokens: bool = False
    delay_s: float = 0.0  # sleep per POST (outside the model lock) to make overlap visible
    logprob_value: float | None = None  # a lying server: every echoed log-prob becomes this
    lie_first: int = 0  # with logprob_value: only the first N echoes lie (0: every one)
    drop_logprobs: int = 0  # this many echoes come back with "logprobs": null
    extra_tokens: int = 0  # every echo carries this many extra token log-probs (wrong count)
    usage_delta: int = 0  # usage.prompt_tokens reported this much above the truth
    tokenize: bool = False  # serve POST /tokenize as vLLM does (not counted in posts)
    tokenized: int = 0  # /tokenize requests answered
    context: int | None = None  # as vLLM's max_model_len: /tokenize reports it, and a
    # completion whose prompt + max_tokens exceeds it is refused with HTTP 400
    lies: int = 0  # echoes that lied or dropped their log-probs so far
    posts: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    prompts: list[Any] = field(default_factory=list)  # arrival order
    auth: list[str | None] = field(default_factory=list)  # Authorization headers seen
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalOpenAIServer:
    """Serves one local transformers model with honest echo log-probs (float32, CPU)."""

    def __init__(self, model_dir: Path, name: str = "local") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name
        self.tok: Any = AutoTokenizer.from_pretrained(model_dir)
        self.model: Any = cast(Any, AutoModelForCausalLM.from_pretrained(model_dir,
                                                                         dtype=torch.float32))
        self.model.eval()
        self.faults = Faults()
        self._model_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        self.faults = Faults()

    # --- model work -------------------------------------------------------------------

    def completion(self, body: dict[str, Any], f: Faults | None = None) -> dict[str, Any]:
        """``f``: the faults the request arrived under (a request still running when a
        test resets the server must not take the next test's injected faults)."""
        import torch

        f = self.faults if f is None else f
        with f.lock:  # which of the faults that hit only the first N echoes hit this one
            lie = f.logprob_value is not None and (f.lie_first == 0 or f.lies < f.lie_first)
            drop = not lie and f.drop_logprobs > 0
            f.drop_logprobs -= int(drop)
            f.lies += int(lie or drop)

        prompt = body.get("prompt", "")
        pieces: list[str] | None = None  # token strings; None: decode each token alone
        if isinstance(prompt, list):
            ids = [int(x) for x in prompt]
            text = self.tok.decode(ids)
            offsets = [len(self.tok.decode(ids[:i])) for i in range(len(ids))]
        elif f.vllm_style:
            # As vLLM: BOS first; offsets count the incrementally detokenized tokens
            # ("<s>" is 3 characters; a token ending inside a character adds nothing yet).
            ids = [self.tok.bos_token_id, *self.tok(prompt, add_special_tokens=False).input_ids]
            done = [str(self.tok.decode(ids[:j])).rstrip("\ufffd") for j in range(len(ids) + 1)]
            text, offsets = prompt, [len(d) for d in done[:-1]]
            pieces = [done[j + 1][len(done[j]):] for j in range(len(ids))]
        else:
            enc = self.tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
            ids, text = list(enc.input_ids), prompt
            offsets = [int(s) for s, _ in enc.offset_mapping]
        max_tokens = int(body.get("max_tokens", 16))
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        with self._model_lock, torch.no_grad():
            if body.get("echo") and body.get("logprobs") is not None and f.echo:
                out = self._echo(ids, text, offsets, max_tokens, pieces, lie,
                                 top_k=max(1, int(body["logprobs"])))
                if drop:
                    out["choices"][0]["logprobs"] = None
                return out
            temperature = float(body.get("temperature") or 0.0)
            new = (self._sample(ids, max_tokens, temperature, int(body.get("seed") or 0))
                   if temperature > 0 else self._greedy(ids, max_tokens))
        out = self.tok.decode(new, skip_special_tokens=True)
        cuts = [i for s in stop if (i := out.find(s)) >= 0]
        out = out[: min(cuts)] if cuts else out
        return {"object": "text_completion", "model": self.name,
                "choices": [{"index": 0, "text": out, "logprobs": None,
                             "finish_reason": "stop" if cuts else "length"}]}

    def too_long(self, body: dict[str, Any], f: Faults) -> bool:
        """Prompt + max_tokens over ``f.context`` (vLLM refuses such a request)."""
        if f.context is None:
            return False
        prompt = body.get("prompt", "")
        n = len(prompt) if isinstance(prompt, list) else len(self.tok(prompt).input_ids)
        return n + int(body.get("max_tokens", 16)) > f.context

    def _echo(self, ids: list[int], text: str, offsets: list[int], max_tokens: int,
              pieces: list[str] | None, lie: bool = False, top_k: int = 1) -> dict[str, Any]:
        import torch

        logits = self.model(torch.tensor([ids])).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)
        token_lps: list[float | None] = [None]
        top: list[dict[str, float] | None] = [None]

        vllm = self.faults.vllm_tokens

        def name(token: int, context: list[int]) -> str:
            return self._vllm_name(token, context) if vllm else str(self.tok.decode([token]))

        def alternatives(row: Any, context: list[int], own: int) -> dict[str, float]:
            values, idx = torch.topk(row, min(top_k, row.shape[-1]))  # as OpenAI's API and
            out = {name(own, context): float(row[own])}  # vLLM: the token itself, then the
            out.update((name(int(t), context), float(v))  # top-k, keyed by string (the
                       for t, v in zip(idx.tolist(), values.tolist(), strict=True))  # last
            return out  # of those named alike stays)

        for i in range(1, len(ids)):
            token_lps.append(float(lp[i - 1, ids[i]]))
            top.append(alternatives(lp[i - 1], ids[1:i][-4:], ids[i]))
        tokens = (pieces if pieces is not None else
                  [self.tok.decode([ids[0]]), *(name(t, ids[1:i][-4:])
                                                for i, t in enumerate(ids) if i)])
        offs = list(offsets)
        if vllm:  # vLLM's text_offset: the lengths of those strings, summed
            offs = [sum(len(t) for t in tokens[:i]) for i in range(len(ids))]
        if max_tokens > 0:  # the one generated token after the echoed prompt
            best = int(lp[-1].argmax())
            tokens.append(name(best, []))
            token_lps.append(float(lp[-1, best]))
            top.append(alternatives(lp[-1], [], best))
            offs.append(offs[-1] + len(tokens[len(ids) - 1])
                        if self.faults.vllm_style or vllm else len(text))
        if lie and self.faults.logprob_value is not None:
            token_lps = [None if v is None else self.faults.logprob_value for v in token_lps]
        for _ in range(self.faults.extra_tokens):  # a server that miscounts the prompt
            tokens.append(tokens[-1])
            token_lps.append(token_lps[-1])
            top.append(top[-1])
            offs.append(offs[-1])
        usage = {"prompt_tokens": len(ids) + self.faults.usage_delta,
                 "completion_tokens": len(tokens) - len(ids),
                 "total_tokens": len(tokens)} if self.faults.usage else None
        return {"object": "text_completion", "model": self.name, "usage": usage,
                "choices": [{"index": 0, "text": text + "".join(tokens[len(ids):]),
                             "finish_reason": "length",
                             "logprobs": {"tokens": tokens, "token_logprobs": token_lps,
                                          "top_logprobs": top, "text_offset": offs}}]}

    def _vllm_name(self, token: int, context: list[int]) -> str:
        """vLLM 0.32's ``LogprobsProcessor._correct_decoded_token``, for the tests."""
        text = str(self.tok.decode([token]))
        if not text.endswith("\ufffd"):
            return text
        for n in range(1, min(len(context), 4) + 1):
            ctx = context[-n:]
            full = str(self.tok.decode([*ctx, token]))
            if full.endswith("\ufffd"):
                continue
            clean = len(ctx)
            for j in range(len(ctx) - 1, -1, -1):
                if not str(self.tok.decode([ctx[j]])).endswith("\ufffd"):
                    break
                clean = j
            prefix = str(self.tok.decode(ctx[:clean])) if clean else ""
            # written out, not kaieval's blackbox_offsets.past_shared: this server stands
            # in for vLLM, so it must not share the code it is used to check
            if full.startswith(prefix):
                return full[len(prefix):]
            common = 0
            for a, b in zip(prefix, full, strict=False):
                if a != b:
                    break
                common += 1
            return full[common:]
        return ""

    def _greedy(self, ids: list[int], max_tokens: int) -> list[int]:
        import torch

        if max_tokens <= 0:
            return []
        out = self.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids),
                                  dtype=torch.long), max_new_tokens=max_tokens,
                                  do_sample=False, pad_token_id=self.tok.pad_token_id)
        return [int(t) for t in out[0, len(ids):]]

    def _sample(self, ids: list[int], max_tokens: int, temperature: float, seed: int
                ) -> list[int]:
        """Sampling at ``temperature``, seeded by the request's ``seed`` (as vLLM's)."""
        import torch

        gen = torch.Generator().manual_seed(seed)
        seq, new = list(ids), []
        for _ in range(max_tokens):
            logits = self.model(torch.tensor([seq])).logits[0, -1].float() / temperature
            nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
            seq.append(nxt)
            new.append(nxt)
        return new

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        import torch

        msgs = body.get("messages") or []
        prompt = "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant:"
        ids = list(self.tok(prompt, add_special_tokens=False).input_ids)
        with self._model_lock, torch.no_grad():
            new = self._greedy(ids, int(body.get("max_tokens", 16)))
        return {"object": "chat.completion", "model": self.name,
                "choices": [{"index": 0, "finish_reason": "length", "message": {
                    "role": "assistant", "content": self.tok.decode(new,
                                                                    skip_special_tokens=True)}}]}

    # --- HTTP -------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet tests

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    data = {"object": "list", "data": [{"id": server.name, "object": "model",
                                                        "root": "tests/local-model"}]}
                    self._send(200, json.dumps(data).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self) -> None:
                f = server.faults
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path == "/tokenize":  # vLLM's, beside /v1; off unless asked for
                    if not f.tokenize:
                        self._send(404, b'{"detail": "Not Found"}')
                        return
                    ids = server.tok(body["prompt"], add_special_tokens=bool(
                        body.get("add_special_tokens", True)))["input_ids"]
                    with f.lock:
                        f.tokenized += 1
                    self._send(200, json.dumps({"count": len(ids),
                                                "max_model_len": f.context or 512,
                                                "tokens": ids, "token_strs": None}).encode())
                    return
                with f.lock:
                    f.posts += 1
                    f.in_flight += 1
                    f.max_in_flight = max(f.max_in_flight, f.in_flight)
                    f.prompts.append(body.get("prompt", body.get("messages")))
                    f.auth.append(self.headers.get("Authorization"))
                    status = f.statuses.pop(0) if f.statuses else 200
                    malformed = f.malformed > 0
                    f.malformed -= int(malformed)
                    missing = not malformed and f.missing_choices > 0
                    f.missing_choices -= int(missing)
                try:
                    time.sleep(f.delay_s)
                    if status != 200:
                        reply = json.dumps({"error": f"injected {status}"}).encode()
                    elif malformed:
                        reply = b'{"choices": [ {"text": "trunc'
                    elif missing:
                        reply = b'{"object": "text_completion", "model": "x"}'
                    elif self.path == "/v1/completions" and server.too_long(body, f):
                        status, reply = 400, json.dumps({"error": {"message": (
                            f"This model's maximum context length is {f.context} tokens")}}
                            ).encode()
                    elif self.path == "/v1/completions":
                        reply = json.dumps(server.completion(body, f)).encode()
                    elif self.path == "/v1/chat/completions":
                        reply = json.dumps(server.chat(body)).encode()
                    else:
                        status, reply = 404, b'{"error": "not found"}'
                finally:  # before replying: the client may send its next request at once
                    with f.lock:
                        f.in_flight -= 1
                self._send(status, reply)

        return Handler


def build_tiny_model(out: Path, seed: int = 0) -> Path:
    """A tiny Llama with a byte-level BPE trained on the bundled Korean corpus (~2 s):
    real weights and tokenizer, small enough for every test run."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from kaieval.synth.corpus import corpus_text

    if (out / "model.safetensors").is_file():
        return out
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<pad>"],
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_text("train", 20000, seed=seed).split("\n"), trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(out)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, intermediate_size=96,
                         max_position_embeddings=512, bos_token_id=0, eos_token_id=1,
                         pad_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out)
    return out
