"""The programme and dossiers a store serves, kept in the store itself.

``kai demo`` (or anyone) stores the programme's YAML text as ``programme/current`` and
each dossier's as ``dossier/<team id>``, each with its SHA-256; ``kai serve`` without
``--program`` then serves what the store holds. The texts are parsed with the same rules
as files (``kai validate``), and a text whose hash does not match is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kaieval.errors import KaiError
from kaieval.hashing import sha256_bytes
from kaieval.spec.dossier import Dossier
from kaieval.spec.program import Program
from kaieval.spec.yamlload import load_yaml_text, parse_model
from kaieval.store import Store

PROGRAMME_KEY = "programme/current"


def store_programme(store: Store, program_text: str, dossier_texts: Mapping[str, str],
                    actor: str) -> int:
    """Store the programme's and the dossiers' texts (unchanged ones write nothing)."""
    changes: dict[str, dict[str, str] | None] = {
        PROGRAMME_KEY: {"text": program_text, "sha256": sha256_bytes(program_text.encode())}}
    for team_id, text in dossier_texts.items():
        changes[f"dossier/{team_id}"] = {"text": text, "sha256": sha256_bytes(text.encode())}
    for key in store.objects("dossier/"):
        changes.setdefault(key, None)  # a team no longer in the programme's set
    return store.put_objects(changes, actor=actor)


def _text(key: str, doc: Mapping[str, object]) -> str:
    text = doc.get("text")
    if not isinstance(text, str) or sha256_bytes(text.encode()) != doc.get("sha256"):
        raise KaiError("stored text does not match its hash", where=f"object {key!r}")
    return text


def load_stored(store: Store) -> tuple[Program, str, list[Dossier]] | None:
    """The stored programme, its hash and dossiers; None when the store holds none."""
    doc = store.get_object(PROGRAMME_KEY)
    if doc is None:
        return None
    text = _text(PROGRAMME_KEY, doc)
    program = parse_model(Program, load_yaml_text(text, Path(f"<store {PROGRAMME_KEY}>")))
    dossiers = [parse_model(Dossier, load_yaml_text(_text(k, d), Path(f"<store {k}>")))
                for k, d in store.objects("dossier/").items()]
    return program, sha256_bytes(text.encode()), dossiers
