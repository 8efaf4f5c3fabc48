"""Known tiktoken encodings and pre-tokenisation patterns: a small, cited registry.

Why a registry: a tiktoken rank file holds only ``base64-token rank`` lines.
The regular expression that splits text before the ranks apply is not in the
file; it lives in the code that ships with the model. Encoding without it (or
with the wrong one) gives wrong counts, so the pattern comes from here, from
``--pattern``, or the file cannot be encoded -- and every result says which.

Identification, most certain first:

1. the SHA-256 of the file's bytes, where the publisher's hash is known
   (OpenAI's encodings: the ``expected_hash`` that ``tiktoken_ext/openai_public.py``
   checks every download against);
2. the number of ranks (``cl100k_base`` has 100,256; ``o200k_base`` 199,998;
   Llama 3's ``tokenizer.model`` 128,000): a guess, and said to be one;
3. ``--pattern``, which overrides both.

The patterns are public: tiktoken's source (r50k / cl100k / o200k) and Meta's
Llama 3 ``tokenizer.py``. Special tokens are not in a rank file either; their
count (and names, where published) come from the same sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GPT2_PATTERN = (r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|"""
                r"""\s+(?!\S)|\s""")
CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}"""
                  r"""\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
LLAMA3_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?"""
                  r"""[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?"""
                 r"""[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


@dataclass(frozen=True)
class KnownEncoding:
    """One published encoding: its pattern, rank count, file hash and special tokens."""

    name: str
    pattern: str
    ranks: int
    source: str
    sha256: str | None = None  # of the published rank file, where the publisher gives it
    special_tokens: dict[str, int] = field(default_factory=dict)
    special_count: int = 0  # may exceed the named ones (reserved tokens)


_LLAMA3_SPECIALS = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001,
                    "<|start_header_id|>": 128006, "<|end_header_id|>": 128007,
                    "<|eot_id|>": 128009}

KNOWN_ENCODINGS: tuple[KnownEncoding, ...] = (
    KnownEncoding("r50k_base", GPT2_PATTERN, 50256, "tiktoken_ext/openai_public.py",
                  "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
                  {"<|endoftext|>": 50256}, 1),
    KnownEncoding("p50k_base", GPT2_PATTERN, 50280, "tiktoken_ext/openai_public.py",
                  "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
                  {"<|endoftext|>": 50256}, 1),
    KnownEncoding("cl100k_base", CL100K_PATTERN, 100256, "tiktoken_ext/openai_public.py",
                  "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
                  {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                   "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}, 5),
    KnownEncoding("o200k_base", O200K_PATTERN, 199998, "tiktoken_ext/openai_public.py",
                  "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
                  {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}, 2),
    KnownEncoding("llama3", LLAMA3_PATTERN, 128000,
                  "Meta Llama 3 tokenizer.py (256 special tokens from id 128000)", None,
                  _LLAMA3_SPECIALS, 256),
)

#: Pre-tokenisation of byte-level BPE folders (vocab.json + merges.txt) by
#: ``tokenizer_class`` in ``tokenizer_config.json``; GPT-2's is the default.
FOLDER_PATTERNS: dict[str, str] = {
    "Qwen2Tokenizer": QWEN2_PATTERN,
    "Qwen2TokenizerFast": QWEN2_PATTERN,
}


@dataclass(frozen=True)
class Identified:
    """Which pattern a tiktoken file gets, and how that was decided (said in every result)."""

    pattern: str | None
    how: str
    encoding: KnownEncoding | None


def identify(sha256: str, ranks: int, pattern: str | None) -> Identified:
    """The pattern for a rank file: ``--pattern`` first, then by file hash, then by size."""
    by_hash = next((e for e in KNOWN_ENCODINGS
                    if e.sha256 is not None and sha256.endswith(e.sha256)), None)
    by_size = [e for e in KNOWN_ENCODINGS if e.ranks == ranks]
    known = by_hash or (by_size[0] if len(by_size) == 1 else None)
    if pattern is not None:
        return Identified(pattern, "pattern given with --pattern", known)
    if by_hash is not None:
        return Identified(by_hash.pattern, f"identified as {by_hash.name} by its SHA-256",
                          by_hash)
    if known is not None:
        return Identified(known.pattern, f"assumed {known.name} from its {ranks} ranks (file "
                          "hash not registered; --pattern overrides)", known)
    return Identified(None, f"unknown encoding ({ranks} ranks, hash not registered): give its "
                      "pre-tokenisation pattern with --pattern", None)
