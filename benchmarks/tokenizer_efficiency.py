"""Benchmark: Korean tokenizer efficiency on the bundled corpus with a ~150k-vocab tokenizer.

Acceptance (issue 5, part 5): the whole bundled corpus (>= 50,000 characters)
through a 150k-vocabulary tokenizer in under 2 seconds. This script

1. builds a ~150k-vocabulary byte-level BPE tokenizer locally by *training*
   it with the Rust ``tokenizers`` trainer on the bundled corpus plus generated
   text (random eojeols drawn from the corpus's character and word-length
   frequencies, fixed seed, so the trainer has enough distinct pairs to reach
   150k merges). The result is cached in --work. Its figures (chars/token...)
   describe this synthetic tokenizer, not any real model: it is a speed test.
2. times ``kaieval.audit.tokenizer_efficiency.measure`` (load + batch encode
   + batch decode + figures) on the full corpus, best of --repeat runs;
3. times the obvious peer: ``transformers.AutoTokenizer`` on the same
   tokenizer.json and a per-line Python loop of ``encode`` / ``decode``;
4. checks both give the same token count and round-trip count, and prints a
   side-by-side table with PASS/FAIL against the 2-second target.

Run: ``.venv/bin/python benchmarks/tokenizer_efficiency.py [--vocab 150000]``.
Exit status 1 if the fast path misses the target or the two paths disagree.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

from kaieval.audit.tokenizer_efficiency import DEFAULT_CORPUS, load_corpus, measure


def generated_text(lines: list[str], n_chars: int, seed: int) -> list[str]:
    """``n_chars`` of generated lines: characters drawn from the corpus's character
    frequencies, grouped into eojeols whose lengths follow the corpus's eojeol lengths.

    Why this and not more corpus: 50k characters hold too few distinct pairs for
    a trainer to reach 150k merges; random words built from real Korean
    character statistics do, in seconds, reproducibly (fixed seed).
    """
    rng = random.Random(seed)
    chars = Counter(ch for s in lines for ch in s if not ch.isspace())
    lengths = Counter(len(w) for s in lines for w in s.split())
    alphabet, weights = list(chars), list(chars.values())
    flat = rng.choices(alphabet, weights, k=n_chars)
    word_lengths = rng.choices(list(lengths), list(lengths.values()), k=n_chars // 2)
    out: list[str] = []
    line: list[str] = []
    pos = 0
    for n in word_lengths:
        if pos >= n_chars:
            break
        line.append("".join(flat[pos:pos + n]))
        pos += n
        if len(line) == 12:
            out.append(" ".join(line))
            line = []
    if line:
        out.append(" ".join(line))
    return out


def build_tokenizer(path: Path, vocab: int, seed: int, gen_chars: int) -> float:
    """Train a byte-level BPE with ``vocab`` entries; returns the training seconds."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = [s for g in load_corpus().genres for s in g.documents]
    text = corpus + generated_text(corpus, gen_chars, seed)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t0 = time.perf_counter()
    tok.train_from_iterator(text, trainer)
    seconds = time.perf_counter() - t0
    tok.save(str(path))
    return seconds


def peer(path: Path) -> tuple[float, float, float, int, int]:
    """The obvious implementation: AutoTokenizer + a per-line Python loop of encode/decode."""
    from transformers import AutoTokenizer

    lines = [s for g in load_corpus().genres for s in g.documents]
    t0, c0 = time.perf_counter(), time.process_time()
    tok = AutoTokenizer.from_pretrained(str(path.parent))
    loaded = time.perf_counter() - t0
    tokens = ok = 0
    for s in lines:
        ids = tok.encode(s, add_special_tokens=False)
        tokens += len(ids)
        ok += tok.decode(ids, clean_up_tokenization_spaces=False) == s
    return time.perf_counter() - t0, time.process_time() - c0, loaded, tokens, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=150_000)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--gen-chars", type=int, default=3_000_000,
                    help="characters of generated text added to the corpus for training")
    ap.add_argument("--work", type=Path, default=Path(".cache/bench/tokenizer-efficiency"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--target", type=float, default=2.0)
    args = ap.parse_args()

    corpus_tag = load_corpus().sha256.removeprefix("sha256:")[:12]  # retrain if corpus changes
    folder = args.work / f"bbpe-{args.vocab}-{args.seed}-{args.gen_chars}-{corpus_tag}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tokenizer.json"
    if not path.is_file():
        print(f"training byte-level BPE (vocab {args.vocab:,}) ...", flush=True)
        print(f"  trained in {build_tokenizer(path, args.vocab, args.seed, args.gen_chars):.1f} s")

    fast_times: list[tuple[float, float, float]] = []
    result = None
    measure(path)  # warm-up: imports, git revision lookup, page cache
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = measure(path)
        fast_times.append((time.perf_counter() - t0, time.process_time() - c0,
                           result.encode_decode_seconds))
    assert result is not None
    peer(path)  # warm-up, as for kaieval
    peer_s, peer_cpu, peer_load, peer_tokens, peer_ok = peer(path)
    o = result.overall
    fast, fast_cpu, enc = min(fast_times)
    agree = peer_tokens == o.tokens and peer_ok == o.roundtrip_ok
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nmachine: {platform.machine()} {platform.processor() or ''} cores={os.cpu_count()} "
          f"load1={load:.2f}; python {platform.python_version()}; "
          + ", ".join(f"{k} {v}" for k, v in result.versions.items()))
    print(f"corpus: {DEFAULT_CORPUS} ({o.characters:,} characters, {o.documents} documents, "
          f"{result.corpus_sha256[:19]})")
    print(f"tokenizer: {path} (vocab {result.vocab_size:,})\n")
    print("| implementation | what is timed | wall s | CPU s | tokens | round-trip ok | vs 2 s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    print(f"| kaieval `measure` (best of {args.repeat}) | load + encode_batch + decode_batch "
          f"+ figures | {fast:.3f} | {fast_cpu:.3f} | {o.tokens:,} | {o.roundtrip_ok} | "
          f"{'PASS' if fast < args.target else 'FAIL'} |")
    print(f"| of which encode+decode | encode_batch + decode_batch | {enc:.3f} | | | | |")
    print(f"| AutoTokenizer per-line loop | load + encode/decode per line | {peer_s:.3f} | "
          f"{peer_cpu:.3f} | {peer_tokens:,} | {peer_ok} | "
          f"{'PASS' if peer_s < args.target else 'FAIL'} |")
    print(f"| of which the loop | encode/decode per line | {peer_s - peer_load:.3f} | | | | |")
    print(f"\nwall ratio peer/kaieval {peer_s / fast:.1f}x; all runs (wall, CPU, encode+decode): "
          + ", ".join(f"{w:.3f}/{c:.3f}/{e:.3f}" for w, c, e in fast_times) + " s; "
          f"figures agree: {'yes' if agree else 'NO'}; chars/token {o.chars_per_token:.3f}, "
          f"tokens/eojeol {o.tokens_per_eojeol:.3f}")
    return 0 if fast < args.target and agree else 1


if __name__ == "__main__":
    sys.exit(main())
