"""The bundled catalogue: one ``kaieval/task/v1`` YAML per benchmark under ``bench/catalog``.

Each entry points at its public dataset (used online) and at a small sample written
by us (used offline, by tests and ``kai demo``); ``list_catalog`` reads the YAMLs
so the table in the docs and the CLI never drifts from the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kaieval.bench.api import OutputType
from kaieval.bench.tasks.data import read_local
from kaieval.errors import KaiError
from kaieval.spec.yamlload import load_yaml

CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    language: str
    output_type: OutputType
    n_items: int  # bundled sample size
    dataset: str  # Hugging Face id (and config) of the full public dataset
    path: Path
    reference: str = ""  # the definition the default variant reproduces
    subsets: tuple[str, ...] = ()  # selectable as name:subset; the name alone runs them all
    variants: tuple[str, ...] = ()  # selectable as name@variant


def catalog_names() -> list[str]:
    return sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))


def catalog_path(name: str) -> Path | None:
    path = CATALOG_DIR / f"{name}.yaml"
    return path if path.is_file() else None


def list_catalog() -> list[CatalogEntry]:
    """Every catalogue task with its bundled sample size, sorted by name."""
    out = []
    for name in catalog_names():
        path = CATALOG_DIR / f"{name}.yaml"
        data = load_yaml(path).data
        local = data.get("data", {}).get("path")
        hf = data.get("data", {}).get("hf") or {}
        n = len(read_local(path.parent / local)) if local else 0
        ds = hf.get("path", "") + (f" ({hf['name']})" if hf.get("name") else "")
        subsets = data.get("subsets") or {}
        items = subsets.get("items", []) if isinstance(subsets, dict) else []
        out.append(CatalogEntry(name=name, description=str(data.get("description", "")),
                                language=str(data.get("language", "")),
                                output_type=data.get("output_type", "multiple_choice"),
                                n_items=n, dataset=ds, path=path,
                                reference=str(data.get("reference", "")),
                                subsets=tuple(str(i.get("name")) for i in items
                                              if isinstance(i, dict)),
                                variants=tuple(sorted(data.get("variants") or {}))))
    return out


def unknown_task(ref: str) -> KaiError:
    return KaiError(f"unknown task {ref!r}: not a catalogue name ("
                    + ", ".join(catalog_names()) + ", optionally @variant and :subset) nor an "
                    "existing YAML file")
