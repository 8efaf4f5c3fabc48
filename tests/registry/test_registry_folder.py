"""The reference registry folder: adding, listing, refusing bad metadata and changed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaieval.errors import KaiError
from kaieval.registry import REGISTRY_FILE, add_reference, load_registry


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny Llama checkpoint (safetensors + tokenizer.json)."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("ref")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=2,
                                 num_key_value_heads=1, max_position_embeddings=32)
                     ).save_pretrained(folder, safe_serialization=True)
    Tokenizer(WordLevel({f"t{i}": i for i in range(64)}, unk_token="t0")).save(
        str(folder / "tokenizer.json"))
    return folder


def test_add_writes_a_fingerprint_and_metadata(model: Path, tmp_path: Path) -> None:
    reg_dir = tmp_path / "reg"
    e = add_reference(reg_dir, model, name="Base-1.5B", origin="US", licence="apache-2.0",
                      family="llama", released="2025-01")
    assert e.kind == "fingerprint" and (reg_dir / e.file).is_file()
    reg = load_registry(reg_dir)
    assert [x.name for x in reg.entries] == ["Base-1.5B"]
    assert reg.find("base-1.5b") is not None  # names compare case-folded
    assert reg.verified_path(reg.entries[0]) == reg_dir / e.file


def test_a_fingerprint_file_is_copied_and_a_folder_can_be_linked(model: Path,
                                                                tmp_path: Path) -> None:
    first = add_reference(tmp_path / "one", model, name="a", origin="CN")
    fp = tmp_path / "one" / first.file
    e = add_reference(tmp_path / "two", fp, name="b", origin="CN")
    assert (tmp_path / "two" / e.file).read_bytes() == fp.read_bytes()
    linked = add_reference(tmp_path / "two", model, name="c", origin="KR", link=True)
    assert linked.kind == "folder" and Path(linked.file) == model.resolve()
    assert [x.name for x in load_registry(tmp_path / "two").entries] == ["b", "c"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "x", "origin": "usa"}, "origin"),
    ({"name": "../evil", "origin": "US"}, "name"),
    ({"name": "", "origin": "US"}, "name"),
])
def test_bad_metadata_is_one_line_and_writes_nothing(model: Path, tmp_path: Path,
                                                     kwargs: dict[str, str],
                                                     message: str) -> None:
    with pytest.raises(KaiError, match=message) as err:
        add_reference(tmp_path / "reg", model, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
    assert not (tmp_path / "reg" / REGISTRY_FILE).exists()


def test_duplicate_names_need_replace(model: Path, tmp_path: Path) -> None:
    add_reference(tmp_path, model, name="a", origin="US", link=True)
    with pytest.raises(KaiError, match="already registered"):
        add_reference(tmp_path, model, name="A", origin="US", link=True)
    add_reference(tmp_path, model, name="a", origin="FR", link=True, replace=True)
    assert [e.origin for e in load_registry(tmp_path).entries] == ["FR"]


def test_sources_that_are_not_models_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 16)
    with pytest.raises(KaiError, match="not a kaieval fingerprint"):
        add_reference(tmp_path / "reg", junk, name="j", origin="US")
    with pytest.raises(KaiError, match="not found"):
        add_reference(tmp_path / "reg", tmp_path / "nothing", name="j", origin="US")


def test_a_changed_reference_is_refused(model: Path, tmp_path: Path) -> None:
    e = add_reference(tmp_path, model, name="a", origin="US")
    fp = tmp_path / e.file
    fp.write_bytes(fp.read_bytes()[:-1] + b"\x01")
    reg = load_registry(tmp_path)
    with pytest.raises(KaiError, match="content changed"):
        reg.verified_path(reg.entries[0])


def test_a_malformed_registry_file_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / REGISTRY_FILE).write_text(
        "schema: kaieval/registry/v1\nreferences:\n  - {name: a, origin: US}\n", "utf-8")
    with pytest.raises(KaiError, match=rf"{REGISTRY_FILE}:3"):
        load_registry(tmp_path)
    assert load_registry(tmp_path / "absent").entries == ()
