"""Benchmark: the bundled corpus through a 200k tiktoken file and a 150k vocab.json +
merges.txt folder, and tokenizer lineage on two 200k vocabularies (issue 13).

Targets: efficiency under 2 s each (load + encode + decode + figures), lineage under
5 s (both files read + every statistic). The tokenizers are built here, nothing is
downloaded: a 150k byte-level BPE is *trained* (``tokenizer_efficiency.build_tokenizer``,
cached under --work) and written as a GPT-2-style folder; the 200k rank file is that
BPE's ranks plus 50k synthesised Korean tokens (tiktoken needs no merge table, so extra
ranks are valid); the second 200k vocabulary is the first with 3 control tokens in
front (every rank shifted). Peers, timed in the same run: ``tiktoken.Encoding`` and
``tokenizers`` called directly on the same files.

Run: ``.venv/bin/python benchmarks/tokenizer_formats.py``. Exit 1 on a missed target
or a disagreement with a peer.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokenizer_efficiency import build_tokenizer

from kaieval.audit.tokenizer_efficiency import load_corpus, measure
from kaieval.provenance.tokenizer_lineage import compare_tokenizers
from kaieval.tokenizer.encodings import GPT2_PATTERN
from kaieval.tokenizer.model import byte_alphabet


def write_files(bpe: Path, work: Path, ranks: int) -> tuple[Path, Path, Path]:
    """The BPE as a folder, as a ``ranks``-entry tiktoken file, and that file shifted by 3."""
    data = json.loads(bpe.read_text(encoding="utf-8"))
    folder = work / "bpe-folder"
    folder.mkdir(exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(data["model"]["vocab"], ensure_ascii=False),
                                       encoding="utf-8")
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n",
                                       encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer"}), encoding="utf-8")
    table = byte_alphabet()[1]
    toks = [bytes(table[c] for c in t) for t, _ in
            sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1])]
    seen = set(toks)
    rng = random.Random(7)
    syllables = [chr(c) for c in range(0xAC00, 0xD7A4)]
    while len(toks) < ranks:
        t = (" " + "".join(rng.choices(syllables, k=rng.randint(2, 4)))).encode()
        if t not in seen:
            seen.add(t)
            toks.append(t)
    lines = [f"{base64.b64encode(t).decode()} {i}" for i, t in enumerate(toks)]
    tt = work / f"synthetic-{ranks}.tiktoken"
    tt.write_text("\n".join(lines) + "\n", encoding="ascii")
    shifted = work / f"synthetic-{ranks}-shifted.tiktoken"
    shifted.write_text("\n".join(f"{base64.b64encode(t).decode()} {i + 3}"
                                 for i, t in enumerate(toks)) + "\n", encoding="ascii")
    return folder, tt, shifted


def best(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(".cache/bench/tokenizer-formats"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    bpe = args.work / "bpe150k.json"
    if not bpe.is_file():
        print("training a 150,000-entry byte-level BPE (once) ...", flush=True)
        build_tokenizer(bpe, 150_000, 20261127, 3_000_000)
    folder, tt, shifted = write_files(bpe, args.work, 200_000)
    docs = [d for g in load_corpus().genres for d in g.documents]

    def peer_tiktoken() -> tuple[int, int]:
        import tiktoken

        ranks = {base64.b64decode(a): int(b) for a, b in
                 (ln.split() for ln in tt.read_text().splitlines())}
        enc = tiktoken.Encoding("peer", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                special_tokens={})
        ids = enc.encode_ordinary_batch(docs)
        dec = enc.decode_batch(ids)
        return sum(map(len, ids)), sum(a == b for a, b in zip(docs, dec, strict=True))

    def peer_folder() -> tuple[int, int]:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        tok = Tokenizer(models.BPE.from_file(str(folder / "vocab.json"),
                                             str(folder / "merges.txt")))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        ids = [e.ids for e in tok.encode_batch(docs, add_special_tokens=False)]
        dec = tok.decode_batch(ids)
        return sum(map(len, ids)), sum(a == b for a, b in zip(docs, dec, strict=True))

    measure(tt, pattern=GPT2_PATTERN)  # warm-up: imports, git revision lookup, page cache
    rows = []
    ok = True
    for label, path, peer in (("200k tiktoken file", tt, peer_tiktoken),
                              ("150k vocab.json + merges.txt", folder, peer_folder)):
        s, r = best(lambda p=path: measure(p, pattern=GPT2_PATTERN), args.repeat)
        ps, (ptok, pok) = best(peer, args.repeat)  # type: ignore[misc]
        o = r.overall  # type: ignore[attr-defined]
        agree = (ptok, pok) == (o.tokens, o.roundtrip_ok)
        ok &= agree and s < 2.0
        rows.append(f"| {label} | kaieval `measure` | {s:.3f} | {o.tokens:,} | "
                    f"{o.roundtrip_ok}/{o.documents} | {'PASS' if s < 2 else 'FAIL'} |")
        rows.append(f"| {label} | peer, library called directly | {ps:.3f} | {ptok:,} | "
                    f"{pok}/{o.documents} | {'agree' if agree else 'DISAGREE'} |")
    s, res = best(lambda: compare_tokenizers(shifted, tt), args.repeat)
    ok &= s < 5.0 and res.verdict == "extended, shifted"  # type: ignore[attr-defined]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()} cores={os.cpu_count()} load1={load:.2f}; "
          f"python {platform.python_version()}")
    print("| tokenizer | implementation | best wall s | tokens | round trip | result |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    print("\n".join(rows))
    print(f"| lineage: 200k vs 200k shifted by 3 | `compare_tokenizers` | {s:.3f} | | | "
          f"{res.verdict} (p {res.p_value:.3g}), {'PASS' if s < 5 else 'FAIL'} |")  # type: ignore[attr-defined]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
