"""Real files for audit tests: a dossier folder with LICENSE texts, weights and a tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

MIT_TEXT = """MIT License

Copyright (c) 2026 Example Team

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

KOREAN = ("대한민국의 인공지능 파운데이션 모델은 국내 기업과 대학이 함께 만든다. "
          "공공 데이터와 한국어 말뭉치로 학습하고 누구나 내려받을 수 있게 공개한다. ") * 4


def licence_clauses(lid: str) -> str:
    """The distinctive clauses the licence registry matches, as a LICENSE file would hold them."""
    text = (resources.files("kaieval.audit") / "data" / "licence_texts" / f"{lid}.txt").read_text(
        "utf-8")
    lines = [ln[2:] if ln.startswith("! ") else ln for ln in text.splitlines()
             if not ln.startswith("#")]
    return "\n".join(lines).strip() + "\n"


def write_tokenizer(folder: Path, vocab: int = 300) -> Path:
    """A tiny byte-level BPE tokenizer trained on Korean text (tokenizer.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([KOREAN], trainer=trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def write_weights(folder: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.zeros((4, 4), dtype=np.float32)}, str(folder / "model.safetensors"))


def base_dossier() -> dict[str, Any]:
    return {
        "schema": "kaieval/dossier/v1",
        "team": {
            "id": "alpha", "name": "Alpha AI", "lead": "Alpha",
            "consortium": [
                {"name": "Alpha", "type": "large_company"},
                {"name": "Beta Univ", "type": "university"},
                {"name": "Gamma", "type": "startup"},
                {"name": "Delta Labs", "type": "research_institute", "country": "US"},
            ],
        },
        "submissions": {"selection": {
            "model": {"path": "model"},
            "compute": {"accelerators": [
                {"vendor": "NVIDIA", "model": "H100", "count": 600, "ownership": "owned"},
                {"vendor": "NVIDIA", "model": "B200", "count": 200, "ownership": "rented"},
                {"vendor": "Rebellions", "model": "ATOM", "count": 200,
                 "ownership": "government_allocated", "domestic": True},
            ]},
            "data": {"datasets": [
                {"name": "kr web", "origin": "KR", "languages": {"ko": 0.8, "en": 0.2},
                 "tokens": 3.0e11, "licence": "licensed"},
                {"name": "open web", "origin": "unknown", "languages": {"en": 1.0},
                 "tokens": 1.0e11},
                {"name": "no count", "origin": "KR"},
            ]},
            "releases": [
                {"component": "weights", "licence": "MIT", "artifact": "rel/weights"},
                {"component": "platform", "licence": "proprietary", "open": False},
            ],
            "dependencies": {"partnerships": [
                {"name": "Delta Labs", "country": "US", "kind": "research"},
                {"name": "Korea Corp", "country": "KR"}]},
            "ecosystem": {"partners": ["Beta Univ", "Gamma"],
                          "public_pilots": ["city chatbot"], "apis": ["Alpha API", "SDK"],
                          "open_release_pledge": 0.5, "downloads": 1200},
        }},
    }


DossierWriter = Callable[..., Path]


@pytest.fixture
def mit_text() -> str:
    return MIT_TEXT


@pytest.fixture
def clauses() -> Callable[[str], str]:
    return licence_clauses


@pytest.fixture
def tokenizer_dir(tmp_path: Path) -> Path:
    return write_tokenizer(tmp_path / "reference-tokenizer", vocab=400)


@pytest.fixture
def write_team(tmp_path: Path) -> DossierWriter:
    """Write a dossier folder: YAML, LICENSE texts, weights, tokenizer. Returns the YAML path.

    ``edit`` receives the dossier dict to change before it is written;
    ``licences`` maps artifact folder -> LICENSE text.
    """

    def write(edit: Callable[[dict[str, Any]], None] | None = None, *,
              licences: dict[str, str] | None = None, tokenizer: bool = True,
              weights: bool = True) -> Path:
        data = base_dossier()
        if edit is not None:
            edit(data)
        folder = tmp_path / "team"
        folder.mkdir(exist_ok=True)
        for rel, text in (licences if licences is not None else {"rel/weights": MIT_TEXT}).items():
            (folder / rel).mkdir(parents=True, exist_ok=True)
            (folder / rel / "LICENSE").write_text(text, "utf-8")
        if weights:
            write_weights(folder / "model")
        if tokenizer:
            write_tokenizer(folder / "model")
        path = folder / "alpha.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
        return path

    return write
