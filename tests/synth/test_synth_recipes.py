"""Synthetic model recipes: a bad recipe file gives a one-line error with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaieval.errors import KaiError
from kaieval.synth.recipes import load_recipes


@pytest.mark.parametrize(("edit", "message"), [
    ("    init: {mode: finetune, source: foreign-base}", "fine-tune must share the tokenizer"),
    ("    tokenizer: {shared: nobody}", "unknown stand-in 'nobody'"),
    ("    tokenizer: {shared: a, vocab_size: 500, seed: 1}", "not both"),
    ("    init: {mode: sideways, seed: 1}", "init"),
    ("    train: {steps: -1, lr: 0.1, batch_size: 1, seq_len: 16}", "steps"),
])
def test_bad_recipes_give_one_line_errors_with_file_and_line(
        tmp_path: Path, edit: str, message: str) -> None:
    good = ("standins:\n"
            "  - name: a\n    role: r\n    tokenizer: {vocab_size: 500, seed: 1}\n"
            "    architecture: {hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}\n"
            "    init: {mode: scratch, seed: 1}\n"
            "    train: {steps: 1, lr: 0.1, batch_size: 1, seq_len: 16}\n"
            "  - name: b\n    role: r\n    tokenizer: {vocab_size: 600, seed: 2}\n"
            "    architecture: {hidden_size: 32, layers: 1, heads: 2, intermediate_size: 64}\n"
            "    init: {mode: scratch, seed: 2}\n"
            "    train: {steps: 1, lr: 0.1, batch_size: 1, seq_len: 16}\n")
    path = tmp_path / "r.yaml"
    path.write_text(good)
    assert [r.name for r in load_recipes(path)] == ["a", "b"]
    key = edit.split(":")[0]
    lines = good.splitlines()
    last_b = max(i for i, line in enumerate(lines) if line.startswith(key + ":"))
    lines[last_b] = edit.replace("foreign-base", "a")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(KaiError) as err:
        load_recipes(path)
    text = str(err.value)
    assert message in text and f"{path}:" in text and "\n" not in text
