"""Read and write Model Openness Tool (MOT) YAML records, and convert to/from releases.

Why: the MOT (lfai/model_openness_tool) publishes one YAML file per model in a
fixed schema, and its scores are what the wider community quotes. Keeping a
team's openness record in the same schema means a record written here can be
submitted to the MOT, and a MOT record (e.g. ``models/Exaone.yml``) can be
assessed here with the same rules as a dossier.

Schema (MOT ``schema/mof_schema.json`` and the model files)::

    framework: {name: Model Openness Framework, version, date}
    release:
      name, version, date, type, architecture, treatment, origin, producer, contact,
      license: {distribution|code|data|document: {name, path}}     # global licences
      components: [{name, description, license, license_path, component_path}]

Older MOT files spell the component fields ``license_name`` / ``location``; both
are read, the current names are written. Unknown release keys (``repository``,
``huggingface``, ...) are kept. Component names must be the 17 MOF names.

Public API::

    read_mot(path: Path) -> MotRecord          # malformed -> KaiError "file:line: ..."
    write_mot(record: MotRecord, path: Path) -> None   # atomic
    mot_to_releases(record: MotRecord) -> list[ReleasedComponent]
    releases_to_mot(releases, *, name: str, producer: str = "", ...) -> MotRecord
    submission_mot(dossier: Dossier, stage_id: str) -> MotRecord   # `kai audit --mot`
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kaieval.audit.licence_registry import UNKNOWN, lookup
from kaieval.audit.openness import BY_NAME, ReleasedComponent, _as_released, mof_component
from kaieval.io import atomic_write_text
from kaieval.spec.dossier import Dossier, Release
from kaieval.spec.yamlload import load_yaml, parse_model

FRAMEWORK_NAME: Literal["Model Openness Framework"] = "Model Openness Framework"
FRAMEWORK_VERSION = "1.0"
FRAMEWORK_DATE = "2024-12-15"
# Licence values MOT uses for "no licence"; they never count as open.
NOT_LICENSED = frozenset({"", "unlicensed", "license not specified", "component not included",
                          "undisclosed", "pending evaluation", "none"})


def _date(value: object) -> object:
    """YAML reads an unquoted 2024-06-13 as a date; MOT stores dates as text."""
    return value.isoformat() if isinstance(value, dt.date) else value


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class MotFramework(_Strict):
    name: Literal["Model Openness Framework"] = FRAMEWORK_NAME
    version: str = FRAMEWORK_VERSION
    date: str = FRAMEWORK_DATE

    @field_validator("date", "version", mode="before")
    @classmethod
    def _text(cls, v: object) -> object:
        v = _date(v)
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


class MotLicenceRef(_Strict):
    name: str = ""
    path: str = ""


class MotLicences(_Strict):
    distribution: MotLicenceRef | None = None
    code: MotLicenceRef | None = None
    data: MotLicenceRef | None = None
    document: MotLicenceRef | None = None


class MotComponent(_Strict):
    name: str
    description: str = ""
    license: str = ""
    license_path: str = ""
    component_path: str = ""

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        """Accept both MOT spellings: current (license, component_path) and older ones."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in (("license_name", "license"), ("location", "component_path")):
            if old in data:
                if new in data:
                    raise ValueError(f"give '{new}' or the older '{old}', not both")
                data[new] = data.pop(old)
        for key in ("license", "license_path", "component_path", "description"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

    @field_validator("name")
    @classmethod
    def _mof_name(cls, v: str) -> str:
        if v not in BY_NAME:
            close = difflib.get_close_matches(v, list(BY_NAME), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"'{v}' is not one of the 17 MOF component names{hint}")
        return v


class MotRelease(BaseModel):
    """The ``release`` block; keys MOT adds over time (repository, huggingface...) are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str = Field(min_length=1)
    version: str = ""
    date: str = ""
    type: str = ""
    architecture: str = ""
    treatment: str | None = None
    origin: str = ""
    producer: str = ""
    contact: str = ""
    license: MotLicences = MotLicences()
    components: tuple[MotComponent, ...] = ()

    @field_validator("date", "version", "name", mode="before")
    @classmethod
    def _text(cls, v: object) -> object:
        v = _date(v)
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("license", mode="before")
    @classmethod
    def _empty_licence(cls, v: object) -> object:
        return {} if v is None or v == [] else v

    @model_validator(mode="after")
    def _unique(self) -> MotRelease:
        names = [c.name for c in self.components]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"component listed more than once: {', '.join(dup)}")
        return self


class MotRecord(_Strict):
    framework: MotFramework = MotFramework()
    release: MotRelease


def read_mot(path: Path) -> MotRecord:
    """A MOT model file; malformed YAML or schema problems -> ``KaiError`` with file:line."""
    return parse_model(MotRecord, load_yaml(path))


def dump_mot(record: MotRecord) -> str:
    """The record as MOT YAML text (current field names, MOT's key order)."""
    data = record.model_dump(mode="json", exclude_none=True)
    rel = data["release"]
    rel["license"] = {k: v for k, v in rel.get("license", {}).items() if v}
    ordered = {k: rel[k] for k in ("name", "version", "date", "type", "architecture",
                                   "treatment", "origin", "producer", "contact") if k in rel}
    extras = {k: v for k, v in rel.items() if k not in ordered and k not in
              ("license", "components")}
    ordered.update(extras)
    ordered["license"] = rel["license"]
    ordered["components"] = rel["components"]
    out = {"framework": data["framework"], "release": ordered}
    return yaml.safe_dump(out, sort_keys=False, allow_unicode=True, width=100)


def write_mot(record: MotRecord, path: Path) -> None:
    """Write the record atomically (:func:`kaieval.io.atomic_write_text`)."""
    text = dump_mot(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def _resolve(record: MotRecord, comp: MotComponent) -> str:
    """MOT's order: the component's own licence, its type's global one, the distribution's."""
    if comp.license.strip().lower() not in NOT_LICENSED:
        return comp.license
    kind = BY_NAME[comp.name].content_type
    glob = {"code": "code", "data": "data", "weights": "data", "document": "document"}[kind]
    lic = record.release.license
    for ref in (getattr(lic, glob), lic.distribution):
        if ref is not None and ref.name.strip().lower() not in NOT_LICENSED:
            return ref.name
    return UNKNOWN if comp.license.strip().lower() in ("", "none") else comp.license


def mot_to_releases(record: MotRecord) -> list[ReleasedComponent]:
    """One release per listed component, with MOT's licence resolution applied."""
    out = []
    for comp in record.release.components:
        lic = _resolve(record, comp)
        unlicensed = lic.strip().lower() in NOT_LICENSED or lic == UNKNOWN
        info = lookup(lic)
        out.append(ReleasedComponent(
            name=comp.name, licence=info.id if info else lic,
            location=comp.component_path, open=not unlicensed))
    return out


def releases_to_mot(releases: Sequence[Release | ReleasedComponent], *, name: str,
                    producer: str = "", version: str = "", date: str = "", origin: str = "",
                    contact: str = "", model_type: str = "language",
                    architecture: str = "transformer decoder") -> MotRecord:
    """A MOT record from declared releases; releases that are no MOF component are left out.

    Several releases mapping to one MOF component keep the first open one (MOT
    lists each component once); closed releases are written ``unlicensed``.
    """
    picked: dict[str, ReleasedComponent] = {}
    for r in map(_as_released, releases):
        target = mof_component(r.name)
        if target is None:
            continue
        if target not in picked or (r.open and not picked[target].open):
            picked[target] = r
    comps = []
    for comp_name, comp in BY_NAME.items():  # MOT's component order
        chosen = picked.get(comp_name)
        if chosen is None:
            continue
        info = lookup(chosen.licence)
        comps.append(MotComponent(
            name=comp_name, description=comp.description,
            license=(info.id if info else chosen.licence) if chosen.open else "unlicensed",
            component_path=chosen.location))
    return MotRecord(release=MotRelease(
        name=name, version=version, date=date, type=model_type, architecture=architecture,
        origin=origin, producer=producer, contact=contact, components=tuple(comps)))


def submission_mot(dossier: Dossier, stage_id: str) -> MotRecord:
    """The MOT record of a team's submission to a stage: its releases, named after the
    submitted model (or the team), produced by the team's lead, origin Korea."""
    sub = dossier.submissions[stage_id]
    model = sub.model.model_name if sub.model and sub.model.model_name else None
    return releases_to_mot(sub.releases, name=model or dossier.team.name,
                           producer=dossier.team.lead, origin="KR")
