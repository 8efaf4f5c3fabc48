"""kaieval.artifacts: the one model-folder check and the one model content hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaieval.artifacts import check_model_dir, model_hash
from kaieval.errors import KaiError


def folder(root: Path) -> Path:
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}), "utf-8")
    (root / "model.safetensors").write_bytes(b"weights")
    (root / "tokenizer.json").write_text("{}", "utf-8")
    return root


def test_a_safetensors_folder_passes_and_lists_its_weights(tmp_path: Path) -> None:
    model = folder(tmp_path / "m")
    assert check_model_dir(model) == [model / "model.safetensors"]


@pytest.mark.parametrize(("breakage", "message"), [
    ("missing", "model directory not found"),
    ("pickle-only", r"pickle checkpoint pytorch_model\.bin refused \(never unpickled\)"),
    ("pickle-beside", r"pickle checkpoint pytorch_model\.bin refused"),
    ("pickle-in-sub", r"pickle checkpoint vision/w\.ckpt refused"),
    ("no-config", "no config.json"),
    ("no-tokenizer", "no tokenizer"),
])
def test_refusals_are_one_line_errors(tmp_path: Path, breakage: str, message: str) -> None:
    model = tmp_path / "m" if breakage == "missing" else folder(tmp_path / "m")
    if breakage == "pickle-only":
        (model / "model.safetensors").unlink()
        (model / "pytorch_model.bin").write_bytes(b"\x80\x04never opened")
    elif breakage == "pickle-beside":
        (model / "pytorch_model.bin").write_bytes(b"\x80\x04never opened")
    elif breakage == "pickle-in-sub":
        (model / "vision").mkdir()
        (model / "vision" / "w.ckpt").write_bytes(b"x")
    elif breakage == "no-config":
        (model / "config.json").unlink()
    elif breakage == "no-tokenizer":
        (model / "tokenizer.json").unlink()
    with pytest.raises(KaiError, match=message) as err:
        check_model_dir(model)
    assert "\n" not in str(err.value) and str(model) in str(err.value)


def test_pickles_beside_loaded_safetensors_can_be_tolerated(tmp_path: Path) -> None:
    model = folder(tmp_path / "m")
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04never opened")
    assert check_model_dir(model, pickles_beside_safetensors=True) == [model / "model.safetensors"]
    (model / "model.safetensors").unlink()
    with pytest.raises(KaiError, match=r"pickle checkpoint pytorch_model\.bin refused"):
        check_model_dir(model, pickles_beside_safetensors=True)


def test_model_hash_follows_every_file_but_not_hidden_stamps(tmp_path: Path) -> None:
    model = folder(tmp_path / "m")
    base = model_hash(model)
    (model / ".kaieval-build.json").write_text('{"build_seconds": 1}', "utf-8")
    assert model_hash(model) == base
    (model / "vision_encoder").mkdir()
    (model / "vision_encoder" / "model.safetensors").write_bytes(b"encoder")
    with_encoder = model_hash(model)
    assert with_encoder != base
    (model / "chat_template.jinja").write_text("{{ messages }}", "utf-8")
    assert model_hash(model) != with_encoder
    (model / "chat_template.jinja").unlink()
    (model / "vision_encoder" / "model.safetensors").write_bytes(b"changed")
    assert model_hash(model) not in (base, with_encoder)
