"""Names people read: no hidden or direction-changing characters, one normal form, and no
two teams whose names read alike (issue 11, item 7)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from kaieval.errors import KaiError, KaiErrors
from kaieval.spec.load import load_dossier, load_dossiers


def _dossier(folder: Path, tid: str, name: str) -> Path:
    p = folder / f"{tid}.yaml"
    p.write_text(f'schema: kaieval/dossier/v1\nteam:\n  id: {tid}\n  name: "{name}"\n'
                 f"  lead: Org\nsubmissions:\n  s1:\n    approach: x\n", "utf-8")
    return p


@pytest.mark.parametrize(("char", "kind"), [
    ("\u202e", "bidirectional control"),  # right-to-left override
    ("\u2067", "bidirectional control"),  # right-to-left isolate
    ("\u200b", "invisible character"),  # zero-width space
    ("\ufeff", "invisible character"),
    ("\\x07", "control or format character"),  # a YAML escape: the file itself is clean
])
def test_hidden_characters_in_a_team_name_are_refused_with_file_and_line(
        tmp_path: Path, char: str, kind: str) -> None:
    p = _dossier(tmp_path, "a", f"Team{char}A")
    with pytest.raises(KaiErrors) as err:
        load_dossier(p, check_files=False)
    line = str(err.value.errors[0])
    code = 0x07 if char == "\\x07" else ord(char)
    assert f"{p}:4" in line and kind in line and f"U+{code:04X}" in line
    assert "\n" not in line


def test_names_are_stored_composed(tmp_path: Path) -> None:
    decomposed = unicodedata.normalize("NFD", "카카오")
    assert decomposed != "카카오"
    ld = load_dossier(_dossier(tmp_path, "a", decomposed), check_files=False)
    assert ld.dossier.team.name == "카카오"


def test_two_teams_whose_names_read_alike_are_an_error(tmp_path: Path) -> None:
    a = _dossier(tmp_path, "a", "네이버")
    b = _dossier(tmp_path, "b", unicodedata.normalize("NFD", "네이버"))
    with pytest.raises(KaiErrors) as err:
        load_dossiers([a, b], check_files=False)
    assert any("reads the same as the name of team 'a'" in str(e) and f"{b}:4" in str(e)
               for e in err.value.errors)
    assert isinstance(err.value, KaiError)
