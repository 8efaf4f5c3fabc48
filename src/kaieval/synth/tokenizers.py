"""Tokenizers of synthetic models: a byte-level BPE trained on the generated corpus.

Byte-level, so there are no unknown tokens and any text can be scored. Its
``tokenizer_config.json`` carries a plain-text chat template (:data:`CHAT_TEMPLATE`),
so chat-style benchmarks (IFEval) can be measured on a synthetic model; the
template is tokenizer metadata and does not touch the weights. A model that
shares another's tokenizer gets that model's tokenizer files copied.
tokenizers and transformers are imported only when a tokenizer is trained.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from kaieval.synth.corpus import train_text
from kaieval.synth.recipes import Recipe

SPECIALS = ("<s>", "</s>", "<pad>")
# Plain text: the byte-level BPE spells "<|user|>" out of ordinary tokens.
CHAT_TEMPLATE = ("{% for message in messages %}<|{{ message['role'] }}|>\n"
                 "{{ message['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
Progress = Callable[[str], None]


def build_tokenizer(r: Recipe, out: Path, cache_dir: Path, say: Progress) -> None:
    """Write ``r``'s tokenizer files to ``out`` (trained, or copied from ``cache_dir/<shared>``)."""
    if r.tokenizer.shared is not None:
        for f in (cache_dir / r.tokenizer.shared).glob("*token*.json"):
            shutil.copyfile(f, out / f.name)
        return
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    say(f"{r.name}: tokenizer (BPE, {r.tokenizer.vocab_size} tokens)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=r.tokenizer.vocab_size or 0, special_tokens=list(SPECIALS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = train_text(r.tokenizer.train_chars, r.tokenizer.seed or 0)
    tok.train_from_iterator(text.split("\n"), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIALS[0],
                                   eos_token=SPECIALS[1], pad_token=SPECIALS[2])
    fast.save_pretrained(out)
    add_chat_template(out / "tokenizer_config.json")


def add_chat_template(config_path: Path) -> None:
    """Put :data:`CHAT_TEMPLATE` into a ``tokenizer_config.json`` (where ``_has_chat_template``
    and every Hugging Face loader look for it; no separate ``chat_template.jinja``)."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                           encoding="utf-8")
