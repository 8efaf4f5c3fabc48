"""Tokenizer files as models ship them, read by one loader (issue 13).

Why one package: tokenizer efficiency, tokenizer lineage and ``kai provenance``
all need the same thing from a tokenizer -- its vocabulary, its merge or rank
order, its special tokens and a way to encode and decode -- and each used to read
only ``tokenizer.json`` and SentencePiece in its own way. Here every format is
detected by content (not by file name), read bounded (``kaieval.io``), parsed as
data (no pickles, no repository code), and described by one
:class:`~kaieval.tokenizer.model.TokenizerFile`.

Modules: ``model`` (the description and the encoder adapters), ``load``
(detection, folders, the one-line error naming every format tried), one module
per format (``hf_json``, ``bpe_folder``, ``sentencepiece_model``,
``wordpiece_vocab``, ``tiktoken_file``) and ``encodings`` (the registry of known
tiktoken encodings and pre-tokenisation patterns).
"""

from kaieval.tokenizer.load import load_tokenizer
from kaieval.tokenizer.model import TokenizerFile

__all__ = ["TokenizerFile", "load_tokenizer"]
