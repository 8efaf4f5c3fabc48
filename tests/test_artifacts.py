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


def test_links_may_stay_inside_the_folder_but_not_leave_it(tmp_path: Path) -> None:
    model = folder(tmp_path / "m")
    (model / "docs").mkdir()
    (model / "docs" / "tokenizer.json").write_text("{}", "utf-8")
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.json").symlink_to(model / "docs" / "tokenizer.json")
    check_model_dir(model)  # inside the folder: fine
    (tmp_path / "other-team").mkdir()
    (tmp_path / "other-team" / "tokenizer.json").write_text("{}", "utf-8")
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.json").symlink_to(tmp_path / "other-team" / "tokenizer.json")
    with pytest.raises(KaiError, match=r"tokenizer\.json: is a symbolic link to .*other-team"
                                       r".*, outside .*: refused"):
        check_model_dir(model)
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.json").write_text("{}", "utf-8")
    (model / "linked").symlink_to(model / "docs")  # a link to a folder could loop
    with pytest.raises(KaiError, match="symbolic link to a folder"):
        check_model_dir(model)


def test_a_hugging_face_cache_snapshot_may_link_into_its_blobs(tmp_path: Path) -> None:
    """HF cache: snapshots/REV/file -> ../../blobs/SHA. Accepted inside the models--*
    folder; a link out of it (another repo's blobs) is refused."""
    repo = tmp_path / "hub" / "models--org--name"
    blobs, snap = repo / "blobs", repo / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for name, data in (("config.json", b'{"model_type": "llama"}'),
                       ("model.safetensors", b"weights"), ("tokenizer.json", b"{}")):
        (blobs / name.replace(".", "_")).write_bytes(data)
        (snap / name).symlink_to(Path("../../blobs") / name.replace(".", "_"))
    assert check_model_dir(snap) == [snap / "model.safetensors"]
    other = tmp_path / "hub" / "models--org--other" / "blobs"
    other.mkdir(parents=True)
    (other / "tok").write_bytes(b"{}")
    (snap / "tokenizer.json").unlink()
    (snap / "tokenizer.json").symlink_to(other / "tok")
    with pytest.raises(KaiError, match=r"outside .*models--org--name: refused"):
        check_model_dir(snap)


def test_a_dossier_folder_widens_the_root(tmp_path: Path) -> None:
    from kaieval.artifacts import dossier_root

    dossier = tmp_path / "team"
    (dossier / "shared").mkdir(parents=True)
    (dossier / "models").mkdir()
    model = folder(dossier / "models" / "cand")
    (dossier / "shared" / "tokenizer.json").write_text("{}", "utf-8")
    (model / "tokenizer.json").unlink()
    (model / "tokenizer.json").symlink_to(dossier / "shared" / "tokenizer.json")
    with pytest.raises(KaiError, match="outside"):
        check_model_dir(model)  # given alone: the model folder is the root
    with dossier_root(dossier):
        check_model_dir(model)  # named by the dossier: its folder is the root


def test_special_files_and_oversized_configs_are_refused(tmp_path: Path) -> None:
    import os

    from kaieval.io import CONFIG_MAX_BYTES

    model = folder(tmp_path / "m")
    os.mkfifo(model / "generation_config.json")
    with pytest.raises(KaiError, match=r"generation_config\.json: is a FIFO"):
        check_model_dir(model)
    (model / "generation_config.json").unlink()
    with (model / "config.json").open("r+b") as f:
        f.truncate(CONFIG_MAX_BYTES + 1)
    with pytest.raises(KaiError, match=r"config\.json: 16\.0 MB exceeds the 16 MB limit for "
                                       "config files"):
        check_model_dir(model)
