"""BERT-family WordPiece ``vocab.txt`` (one token per line, id = line number - 1).

Why the casing matters here: ``BertTokenizer`` lower-cases by default, and its
accent stripping decomposes text to NFD and drops combining marks -- which turns
every Hangul syllable into conjoining jamo. A Korean model with an uncased
WordPiece therefore measures jamo, not syllables. The settings are taken from
``tokenizer_config.json`` beside the file (``do_lower_case``, ``strip_accents``,
``tokenize_chinese_chars``), BERT's defaults when it is absent, and what they do
to Hangul is written into the result's notes: never silently.
"""

from __future__ import annotations

import re
from pathlib import Path

from kaieval.errors import KaiError
from kaieval.tokenizer.bpe_folder import read_config
from kaieval.tokenizer.hf_json import NotThisFormat
from kaieval.tokenizer.model import HfEncoder, TokenizerFile, canonical_map, learned_order

_RESERVED = re.compile(r"^\[(unused|UNUSED)\d+\]$|^<unused\d+>$")
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def sniff(raw: bytes) -> bool:
    """Text whose first lines look like BERT's: ``[PAD]`` / ``[UNK]`` / ``[CLS]`` near the top."""
    head = raw[:2000]
    return b"[PAD]" in head or b"[UNK]" in head or b"[CLS]" in head


def parse_vocab(raw: bytes, where: str) -> list[str]:
    """The tokens in id order; duplicates, blanks and tokens with whitespace refused."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NotThisFormat(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens: list[str] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, start=1):
        token = line.rstrip("\r")
        if not token or any(c.isspace() for c in token):
            raise NotThisFormat(f"line {n} is {'empty' if not token else 'not one token'}")
        if token in seen:
            raise KaiError(f"duplicate token {token!r} (first on line {seen[token]})",
                           where=f"{where}:{n}")
        seen[token] = n
        tokens.append(token)
    if len(tokens) < 2:
        raise NotThisFormat("fewer than two tokens")
    return tokens


def _setting(cfg: dict[str, object], key: str, default: bool | None) -> bool | None:
    value = cfg.get(key, default)
    return value if isinstance(value, bool) or value is None else default


def read(path: Path, raw: bytes, digest: str) -> TokenizerFile:
    """Read a ``vocab.txt``; ``NotThisFormat`` when it is not one token per line."""
    where = str(path)
    tokens = parse_vocab(raw, where)
    cfg_path = path.parent / "tokenizer_config.json"
    cfg = read_config(path.parent)
    lower = _setting(cfg, "do_lower_case", True)
    strip = _setting(cfg, "strip_accents", None)
    chinese = _setting(cfg, "tokenize_chinese_chars", True)
    names = {k: cfg.get(f"{k}_token") for k in ("unk", "cls", "sep", "pad", "mask")}
    declared = {v if isinstance(v, str) else v.get("content") for v in names.values()
                if isinstance(v, str | dict)}
    specials = {t: i for i, t in enumerate(tokens)
                if t in BERT_SPECIALS or t in declared or _RESERVED.match(t)}
    unk_name = names["unk"] if isinstance(names["unk"], str) else "[UNK]"
    unk_id = tokens.index(unk_name) if unk_name in tokens else None
    learned = canonical_map((t, i) for i, t in enumerate(tokens) if t not in specials)
    order = learned_order(t for t in tokens if t not in specials)
    source = "tokenizer_config.json" if cfg_path.is_file() else "BERT's defaults (no " \
        "tokenizer_config.json beside the file)"
    strips = bool(strip) or (strip is None and bool(lower))
    notes = [f"lower-casing {'on' if lower else 'off'}, accent stripping "
             f"{'on' if strips else 'off'} ({source})"]
    if strips:
        notes.append("accent stripping decomposes Hangul syllables into jamo (NFD): Korean is "
                     "measured as jamo and does not round-trip")

    def build() -> HfEncoder:
        from kaieval.tokenizer.load import import_or_explain

        tk = import_or_explain("tokenizers", where)
        unk = unk_name if unk_name in tokens else tokens[0]
        tok = tk.Tokenizer(tk.models.WordPiece({t: i for i, t in enumerate(tokens)},
                                               unk_token=unk))
        tok.normalizer = tk.normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=bool(chinese), strip_accents=strip,
            lowercase=bool(lower))
        tok.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
        tok.decoder = tk.decoders.WordPiece(prefix="##")
        tok.add_special_tokens([t for t in specials if not _RESERVED.match(t)])
        return HfEncoder(tok)

    return TokenizerFile(path, (path,), "WordPiece vocab.txt", "wordpiece", digest, len(tokens),
                         learned, {}, specials, order, unk_id, frozenset(), tuple(notes), build)
