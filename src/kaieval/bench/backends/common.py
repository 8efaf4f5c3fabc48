"""Pieces every local backend shares."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaieval.errors import KaiError

if TYPE_CHECKING:
    from kaieval.tokenizer import TokenizerFile

_NO_TOKENIZER = "no tokenizer in the folder"

#: ``tokenizer_config.json`` / ``special_tokens_map.json`` entries the tokenizer is built
#: with; everything else there (``tokenizer_class``, ``auto_map``) names code we do not run.
SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token",
                 "mask_token")
SETTINGS = ("add_bos_token", "add_eos_token", "model_max_length", "clean_up_tokenization_spaces",
            "padding_side", "truncation_side")


def chat_template_hash(tokenizer: Any, wanted: bool, where: Path) -> str | None:
    """Hash of the chat template when one is asked for (recorded: it changes every prompt);
    asking for a template the tokenizer does not have is an input error."""
    template = getattr(tokenizer, "chat_template", None)
    if wanted and not template:
        raise KaiError("--chat-template asked but the tokenizer has no chat template",
                       where=str(where))
    return hashlib.sha256(str(template).encode()).hexdigest() if wanted and template else None


def check_tokenizer(model_dir: Path, *, trust_remote_code: bool = False,
                    pattern: str | None = None) -> TokenizerFile | None:
    """Read a model folder's tokenizer with :mod:`kaieval.tokenizer`, before any model load.

    Why: the benchmark engine reads tokenizers with the loader tokenizer efficiency and
    lineage use, so a broken or unsupported tokenizer is one line naming the formats
    tried (and why each refused), not a transformers traceback after the weights loaded.
    Returns ``None`` -- and leaves the folder to transformers -- where the loader finds no
    tokenizer file it knows (a name such as ``spiece.model``) or, with
    ``trust_remote_code``, cannot read one (the repository's code may define it).
    """
    from kaieval.tokenizer import load_tokenizer

    try:
        return load_tokenizer(model_dir, pattern=pattern)
    except KaiError as e:
        if trust_remote_code or e.detail.startswith(_NO_TOKENIZER):
            return None
        raise


def _content(value: Any) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def tokenizer_settings(model_dir: Path) -> dict[str, Any]:
    """Special tokens, BOS/EOS settings and chat template of a model folder, read as data.

    From ``tokenizer_config.json`` first, then ``special_tokens_map.json`` for special
    tokens the config does not name, then ``chat_template.jinja`` / ``chat_template.json``
    for a template the config does not carry (where transformers looks for them).
    """
    from kaieval.io import CONFIG_MAX_BYTES, parse_json, read_bounded_bytes
    from kaieval.tokenizer.bpe_folder import read_config

    def read_json(name: str) -> dict[str, Any]:
        f = model_dir / name
        if not f.is_file():
            return {}
        data = parse_json(read_bounded_bytes(f, CONFIG_MAX_BYTES, "config files"), str(f))
        if not isinstance(data, dict):
            raise KaiError("not a JSON object", where=str(f))
        return data

    cfg = read_config(model_dir)
    special_map = read_json("special_tokens_map.json")
    out: dict[str, Any] = {}
    for name in SPECIAL_NAMES:
        token = _content(cfg.get(name)) or _content(special_map.get(name))
        if token is not None:
            out[name] = token
    for key in SETTINGS:
        if key in cfg and cfg[key] is not None:
            out[key] = cfg[key]
    extra = cfg.get("additional_special_tokens") or special_map.get("additional_special_tokens")
    if isinstance(extra, list):
        tokens = [t for t in (_content(v) for v in extra) if t is not None]
        if tokens:
            out["additional_special_tokens"] = tokens
    template = cfg.get("chat_template")
    if template is None and (model_dir / "chat_template.jinja").is_file():
        raw = read_bounded_bytes(model_dir / "chat_template.jinja", CONFIG_MAX_BYTES,
                                 "config files")
        template = raw.decode("utf-8", "replace")
    if template is None:
        template = read_json("chat_template.json").get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}]: named templates
        template = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
    if template:
        out["chat_template"] = template
    return out


def load_hf_tokenizer(model_dir: Path, *, trust_remote_code: bool = False,
                      pattern: str | None = None) -> Any:
    """The transformers tokenizer a local backend encodes with, built from what
    :mod:`kaieval.tokenizer` read.

    Why: one loader for every format models ship (issue 13). A folder whose tokenizer
    is a tiktoken ``tokenizer.model``, a ``vocab.json`` + ``merges.txt`` pair or a
    WordPiece ``vocab.txt`` runs a benchmark without the repository's tokenizer class;
    a ``tokenizer.json`` folder gets the same Rust tokenizer transformers would load
    from it. The wrapper is ``PreTrainedTokenizerFast`` with the special tokens, BOS/EOS
    settings and chat template of :func:`tokenizer_settings`.

    Left to ``AutoTokenizer`` (as before): ``trust_remote_code`` (the repository's code
    may define the tokenizer: the explicit-flag path), SentencePiece models (transformers
    converts them with its SentencePiece classes and ``protobuf``, as every harness
    built on transformers does, so the ids are the ones those harnesses send) and
    folders whose tokenizer file the loader does not know by name. Never remote code
    unless asked.
    """
    from kaieval.quiet import quiet_transformers

    loaded = check_tokenizer(model_dir, trust_remote_code=trust_remote_code, pattern=pattern)
    try:
        with quiet_transformers():
            if loaded is None or trust_remote_code or loaded.format == "SentencePiece":
                if loaded is not None and loaded.format == "SentencePiece":
                    # transformers converts a SentencePiece model to its fast tokenizer
                    # through protobuf; without it, it mistakes the file for a tiktoken
                    # one and fails with a parse error that names neither
                    from kaieval.tokenizer.load import import_or_explain

                    import_or_explain("google.protobuf", str(loaded.path), "protobuf")
                from transformers import AutoTokenizer

                return AutoTokenizer.from_pretrained(str(model_dir),
                                                     trust_remote_code=trust_remote_code)
            from transformers import PreTrainedTokenizerFast

            backend = loaded.hf_tokenizer()
            return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
                tokenizer_object=backend, name_or_path=str(model_dir),
                **tokenizer_settings(model_dir))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KaiError(f"cannot load tokenizer: {first}", where=str(model_dir)) from exc
