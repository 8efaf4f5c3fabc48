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

from kaieval.tokenizer.model import byte_alphabet

FFFD = "\ufffd"
_SPECIAL = re.compile(r"^(<\|[^<>|]*\|>|<[/a-zA-Z_][^<>\s]{0,30}>|\[[A-Z_]{2,12}\])$")
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
WINDOW = 8  # characters a decoded piece may be found past where it was expected


def past_shared(full: str, prefix: str) -> str:
    """``full`` past the characters it shares with ``prefix``: how vLLM names a token
    (the decoded text with it, less the decoded text before it)."""
    common = 0
    for a, b in zip(prefix, full, strict=False):
        if a != b:
            break
        common += 1
    return full[common:]


_FROM_BYTE_LEVEL = byte_alphabet()[1]  # byte-level BPE character -> its byte


def looks_special(piece: str) -> bool:
    """``<s>``, ``</s>``, ``<|endoftext|>``, ``[CLS]``: a marker that is not in the text."""
    return bool(_SPECIAL.match(piece))


def _as_byte_level(piece: str) -> bytes | None:
    try:
        return bytes(_FROM_BYTE_LEVEL[c] for c in piece)
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


def _lossy(raw: bytes) -> str:
    """Bytes decoded as a tokenizer decodes one token's bytes: every maximal invalid
    part (a lone continuation byte; a character cut short at the end) one U+FFFD."""
    return raw.decode("utf-8", errors="replace")


MAX_TOKEN_BYTES = 32  # longest byte span a token whose string is "" may hold
_CONTEXT = 4  # earlier prompt tokens vLLM decodes a token with when it ends in U+FFFD
State = tuple[int, tuple[int, ...]]  # (byte where the token starts, starts of the last 4)


def _vllm_string(raw: bytes, i: int, pos: int, end: int, hist: tuple[int, ...]) -> str:
    """The string vLLM 0.32 reports for prompt token ``i`` holding ``raw[pos:end]``
    (``vllm/v1/engine/logprobs.py``, ``_correct_decoded_token``): decoded alone, unless
    that ends in U+FFFD; then decoded with the fewest of the last 4 earlier tokens (never
    the first of the prompt) that finish the character, less the text of those before the
    ones that end in U+FFFD; ``""`` when none do. ``hist``: their start bytes."""
    alone = _lossy(raw[pos:end])
    if not alone.endswith(FFFD) or i == 0:
        return alone
    ctx = [*hist, pos]  # where each context token starts, then where this one does
    for n in range(1, len(ctx)):
        q = ctx[-1 - n]
        full = _lossy(raw[q:end])
        if full.endswith(FFFD):
            continue
        clean = len(ctx) - 1  # first of the trailing tokens that end in U+FFFD
        while clean > len(ctx) - 1 - n and _lossy(raw[ctx[clean - 1]:ctx[clean]]).endswith(FFFD):
            clean -= 1
        prefix = _lossy(raw[q:ctx[clean]]) if clean > len(ctx) - 1 - n else ""
        return past_shared(full, prefix)
    return ""


def _spans(raw: bytes, i: int, piece: str, state: State) -> list[int]:
    """Byte lengths token ``i`` (string ``piece``) may have, starting in ``state``: its
    bytes decoded alone give ``piece`` (most servers), or vLLM's corrected string does
    (:func:`_vllm_string`); a marker (BOS) may hold none; at the start, a dummy-prefix
    space may precede the text."""
    pos, hist = state
    if looks_special(piece):  # a marker, or the same characters in the text
        return [0, len(piece)] if raw.startswith(piece.encode("utf-8"), pos) else [0]
    top = min(MAX_TOKEN_BYTES, len(raw) - pos)
    fffd = piece.count(FFFD)
    plain = len(piece.encode("utf-8")) - 3 * fffd
    out = [n for n in range(max(1, plain + fffd), min(plain + 3 * fffd, top) + 1)
           if _lossy(raw[pos:pos + n]) == piece]
    if pos == 0 and piece.startswith(" ") and not raw.startswith(b" ") and raw.startswith(
            piece[1:].encode("utf-8")):
        out.append(len(piece.encode("utf-8")) - 1)  # the dummy prefix, decoded
    if piece.endswith(FFFD):  # vLLM's corrected strings never do
        return out
    for n in range(1, top + 1):  # vLLM: a token whose bytes decode to a U+FFFD at the end
        if n not in out and _lossy(raw[pos:pos + n]).endswith(FFFD) and _vllm_string(
                raw, i, pos, pos + n, hist) == piece:
            out.append(n)
    return out


def path_starts(text: str, pieces: Sequence[str],
                special: Sequence[bool] | None = None) -> list[int] | None:
    """Starts of decoded token strings found by byte spans: each token gets a span of the
    text's bytes whose string (:func:`_spans`) is the token's, the spans following each
    other from the first byte to the last. Where every such segmentation puts a token at
    one byte, and that byte begins a character, that is its start; where the strings
    allow several (a character split over tokens that decode alike), -1. None when no
    segmentation spells the text (a server that normalizes it)."""
    raw = text.encode("utf-8")
    bounds = _boundaries(raw)
    edges: list[dict[State, list[State]]] = []
    front: set[State] = {(0, ())}
    for i, piece in enumerate(pieces):
        step: dict[State, list[State]] = {}
        for state in front:
            pos, hist = state
            lengths = [0] if special is not None and special[i] else _spans(raw, i, piece, state)
            keep = (*hist, pos)[-_CONTEXT:] if i else ()  # vLLM's context skips token 0
            if lengths:
                step[state] = [(pos + n, keep) for n in lengths]
        if not step:
            return None
        edges.append(step)
        front = {nxt for nxts in step.values() for nxt in nxts}
        if len(front) > 256:  # hopelessly ambiguous
            return None
    alive = {st for st in front if st[0] == len(raw)}
    if not alive:
        return None
    starts = [-1] * len(pieces)
    for i in range(len(pieces) - 1, -1, -1):  # keep what reaches the end; read the starts
        alive = {st for st, nxts in edges[i].items() if any(n in alive for n in nxts)}
        at = {pos for pos, _ in alive}
        if len(at) == 1 and not (special is not None and special[i]):
            starts[i] = -1 if looks_special(pieces[i]) else bounds.get(at.pop(), -1)
    return starts


def decoded_starts(text: str, pieces: Sequence[str],
                   special: Sequence[bool] | None = None) -> list[int]:
    """Starts of decoded token strings that need not spell ``text`` exactly.

    A piece is ``lead`` x ``"\ufffd"`` + core + trailing ``"\ufffd"``. Leading ones are
    the rest of a character begun by an earlier token (the piece starts inside it: -1);
    trailing ones the beginning of a character it does not finish. ``""`` is how vLLM
    names a token that ends inside a character: the token after a run of them starts
    inside that character too (-1), and its string is the run's text finished (vLLM
    decodes it with them as context), so it is looked up from where the run began. (vLLM
    never uses the prompt's first token as context: after a first token that ends inside
    a character, a ``""`` run may hide starts; they get none.) The core is looked up at
    most :data:`WINDOW` characters past where it can begin; a piece not found there, or
    found elsewhere than expected, gets -1 (the next one re-synchronises).
    """
    starts: list[int] = []
    pos = 0  # a character boundary: where the next clean piece must begin
    pending: int | None = None  # a character begun but not finished, at this offset
    run = False  # the pending character's tokens were named "" (vLLM)
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
            run = run or not piece
            continue
        if pending is None:  # leading "\ufffd" here: the piece begins past `pos`
            lo = pos + (1 if lead else 0)
        else:  # a vLLM completion may begin where the character did
            lo = pending + (0 if run and not lead else 1)
        q = _find(text, core, lo)
        if q is None:
            starts.append(-1)
            continue
        if lead or run or (pending is None and q != pos):
            starts.append(-1)  # inside a character, after "" (vLLM), or not where expected
        else:
            starts.append(q)
        end = q + len(core)
        pending = end if piece.endswith(FFFD) else None
        run = False
        pos = end
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
    got = exact_starts(text, pieces, special)
    if got is None and "" not in pieces:  # vLLM's "" would make the byte paths explode
        got = path_starts(text, pieces, special)
    return got if got is not None else decoded_starts(text, pieces, special)
