"""Where each token of a text starts, rebuilt from token strings, the same way on both sides.

Why: the black-box test compares two models' next-token distributions at the character
offsets where both start a token. An endpoint's own ``text_offset`` cannot be trusted for
that: vLLM counts the lengths of its *decoded* token strings, and a token that ends inside
a multi-byte character decodes to ``"\\ufffd"`` (one or several) or, after vLLM's
correction, to ``""`` or to the whole character, so on Korean text its offsets drift away
from the truth (84-91 % of token starts matched a local tokenizer's for the *same* model).
So both sides are rebuilt from what they have in common, the token strings:

* a local folder gives its raw pieces (``convert_ids_to_tokens``): byte-level BPE
  (``"Ġ"`` for a space, ``"ì"``-style characters for bytes) or SentencePiece (``"▁"``,
  byte fallback ``"<0xE3>"``). They spell the text's bytes exactly (:func:`exact_starts`);
* an endpoint gives decoded strings (``tokens`` of an ``echo`` answer). Where they spell
  the text exactly the same function applies; otherwise :func:`decoded_starts` aligns them
  to the text, reading ``"\\ufffd"`` as part of a character and ``""`` as "a character
  not finished yet" (vLLM), and gives up on a token (``-1``) rather than guess.

A start is the character offset where a token begins, and only where it begins on a
character boundary: a token that starts inside a character was predicted after part of
that character, which no other tokenizer sees. ``-1`` marks those, special tokens (BOS)
and tokens that could not be placed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

FFFD = "\ufffd"
_SPECIAL = re.compile(r"^(<\|[^<>|]*\|>|<[/a-zA-Z_][^<>\s]{0,30}>|\[[A-Z_]{2,12}\])$")
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
WINDOW = 8  # characters a decoded piece may be found past where it was expected


@lru_cache(maxsize=1)
def _byte_level() -> dict[str, int]:
    """GPT-2's byte-to-character table, inverted: the alphabet of byte-level BPE pieces."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def looks_special(piece: str) -> bool:
    """``<s>``, ``</s>``, ``<|endoftext|>``, ``[CLS]``: a marker that is not in the text."""
    return bool(_SPECIAL.match(piece))


def _as_byte_level(piece: str) -> bytes | None:
    table = _byte_level()
    try:
        return bytes(table[c] for c in piece)
    except KeyError:
        return None


def _as_sentencepiece(piece: str) -> bytes:
    out = bytearray()
    at = 0
    for m in _BYTE_PIECE.finditer(piece):
        out += piece[at:m.start()].replace("▁", " ").encode("utf-8")
        out.append(int(m.group(1), 16))
        at = m.end()
    out += piece[at:].replace("▁", " ").encode("utf-8")
    return bytes(out)


def _boundaries(raw: bytes) -> dict[int, int]:
    """Byte offset -> character offset, at every character boundary (and the end)."""
    out: dict[int, int] = {}
    chars = 0
    for i, b in enumerate(raw):
        if b & 0xC0 != 0x80:
            out[i] = chars
            chars += 1
    out[len(raw)] = chars
    return out


def exact_starts(text: str, pieces: Sequence[str],
                 special: Sequence[bool] | None = None) -> list[int] | None:
    """Starts of pieces that spell ``text``'s UTF-8 bytes exactly, read as byte-level BPE
    pieces, as SentencePiece pieces or as plain text (whichever spells it); None when
    none does. A dummy-prefix space before the first piece (SentencePiece, or byte-level
    with ``add_prefix_space``) is allowed; ``special`` marks pieces that are not text
    (else ``<s>``-like pieces that do not spell the text there are taken as markers)."""
    raw = text.encode("utf-8")
    bounds = _boundaries(raw)
    for reader in (_as_byte_level, _as_sentencepiece):
        starts: list[int] = []
        pos = 0
        for i, piece in enumerate(pieces):
            if special is not None and special[i]:
                starts.append(-1)
                continue
            got = reader(piece)
            if not piece or got is None:  # "" is no raw piece: an endpoint's decoded string
                break
            if pos == 0 and got.startswith(b" ") and not raw.startswith(b" "):
                got = got[1:]  # the dummy prefix, in no character of the text
            if raw.startswith(got, pos):
                starts.append(bounds.get(pos, -1))
                pos += len(got)
            elif special is None and looks_special(piece):
                starts.append(-1)
            else:
                break
        else:
            if pos == len(raw):
                return starts
    return None


def decoded_starts(text: str, pieces: Sequence[str],
                   special: Sequence[bool] | None = None) -> list[int]:
    """Starts of decoded token strings that need not spell ``text`` exactly.

    A piece is ``lead`` x ``"\\ufffd"`` + core + ``trail`` x ``"\\ufffd"``. Leading ones
    are the rest of a character begun by an earlier token (the piece starts inside it:
    -1); trailing ones the beginning of a character it does not finish. ``""`` is what
    vLLM reports for a token that ends inside a character: the character's text then
    comes with a later token, which may repeat the characters those ``""`` tokens hold
    (vLLM decodes the completing token with them as context). The core is looked up in
    the text from where it can begin, at most :data:`WINDOW` characters on; a piece not
    found there, or found elsewhere than expected, gets -1 (the next one re-synchronises).
    """
    starts: list[int] = []
    pos = 0  # a character boundary: where the next clean piece must begin
    pending: int | None = None  # a character begun but not finished, at this offset
    repeats = False  # the pending run holds "" pieces: the next core may start at `pending`
    for i, piece in enumerate(pieces):
        if (special is not None and special[i]) or (
                looks_special(piece) and not text.startswith(piece, pos)):
            starts.append(-1)
            continue
        core = piece.strip(FFFD)
        lead = len(piece) - len(piece.lstrip(FFFD))
        if not core:  # "" or only "\ufffd": the start of a character, or more of one
            if pending is None:
                starts.append(pos)
                pending = pos
            else:
                starts.append(-1)
            repeats = repeats or not piece
            continue
        if pending is None:  # leading "\ufffd" here: the piece begins past `pos`
            lo = pos + (1 if lead else 0)
        else:  # only a completion after "" pieces may begin where the character did
            lo = pending + (0 if repeats and not lead else 1)
        q = _find(text, core, lo)
        if q is None:
            starts.append(-1)
            continue
        if lead or (pending is None and q != pos) or (pending is not None and repeats
                                                      and q == pending):
            starts.append(-1)  # inside a character, not where expected, or a completion
        else:
            starts.append(q)
        end = q + len(core)
        if piece.endswith(FFFD):
            pending, repeats, pos = end, False, end
        else:
            pending, repeats, pos = None, False, end
    return starts


def _find(text: str, core: str, lo: int) -> int | None:
    """First offset >= ``lo`` (and at most :data:`WINDOW` past it) where ``core`` is
    (an inner ``"\\ufffd"`` matching any one character)."""
    if FFFD not in core:
        q = text.find(core, lo, lo + WINDOW + len(core))
        return None if q < 0 else q
    pattern = re.compile(".".join(re.escape(part) for part in core.split(FFFD)), re.DOTALL)
    m = pattern.search(text, lo, lo + WINDOW + len(core))
    return None if m is None else m.start()


def token_starts(text: str, pieces: Sequence[str],
                 special: Sequence[bool] | None = None) -> list[int]:
    """Where each piece starts in ``text`` (character offset; -1: not on a character
    boundary, a special token, or not placed): exactly where the pieces spell the text,
    else by alignment of decoded strings."""
    exact = exact_starts(text, pieces, special)
    return exact if exact is not None else decoded_starts(text, pieces, special)
