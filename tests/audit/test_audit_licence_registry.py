"""Licence registry, detection on real-layout LICENSE files, declared-vs-found, inheritance."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kaieval.audit import licence_text as lm
from kaieval.audit.licence_registry import (
    UNKNOWN,
    check_declared,
    detect_licence,
    inherited_obligations,
    licence,
    licence_of_model,
    load_registry,
    lookup,
    registry,
)
from kaieval.errors import KaiError

DATA = Path(__file__).resolve().parents[1] / "data" / "audit" / "licences"
REG_FILE = Path(__file__).resolve().parents[2] / "src" / "kaieval" / "audit" / "data" / \
    "licences.yaml"


# --------------------------------------------------------------------------- registry

def test_registry_has_the_licences_teams_use() -> None:
    ids = {i.id for i in registry().licences}
    for needed in ("Apache-2.0", "MIT", "BSD-3-Clause", "CC-BY-4.0", "CC-BY-SA-4.0",
                   "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CreativeML-OpenRAIL-M", "OpenMDW-1.0",
                   "CDLA-Permissive-2.0", "ODC-By-1.0", "Llama-3", "Llama-3.1", "Qwen",
                   "Gemma", "EXAONE-1.1-NC", "EXAONE-1.2-NC", "HyperCLOVA-X-SEED",
                   "Upstage-Solar"):
        assert needed in ids, needed


def test_registry_facts() -> None:
    llama = licence("llama3.1")
    assert llama.id == "Llama-3.1"
    assert (llama.commercial, llama.user_cap, llama.aup_flowdown) == ("conditional",
                                                                     700_000_000, True)
    assert "Built with Llama" in (llama.naming or "")
    assert licence("Llama-3").anti_compete is True
    assert licence("Qwen").user_cap == 100_000_000
    assert licence("EXAONE-NC").commercial == "no"
    assert licence("EXAONE-1.2-NC").anti_compete is True
    assert licence("HyperCLOVA-X-SEED").user_cap == 10_000_000
    assert licence("Apache-2.0").osi_approved is True and licence("Apache-2.0").is_open
    assert not licence("CC-BY-NC-4.0").is_open
    assert licence("OpenMDW-1.0").is_open and licence("OpenMDW-1.0").osi_approved == UNKNOWN


def test_uncertain_facts_stay_unknown() -> None:
    seed = licence("hyperclovax-seed")
    assert seed.revocable == UNKNOWN  # a third-party summary is not the text
    assert "unknown" in " ".join(seed.restrictions())
    assert licence("proprietary").commercial == UNKNOWN


def test_demo_dossier_licence_names_resolve() -> None:
    # the spellings the demo dossiers use
    assert licence("EXAONE-NC").id == "EXAONE-NC"
    assert licence("Solar-Apache-2.0").id == "Upstage-Solar"
    assert licence("KOGL-1").id == "KOGL-Type1"
    assert licence("proprietary-owned").id == "proprietary"
    assert lookup("mixed-open") is None


def test_unknown_licence_is_a_one_line_error_with_suggestions() -> None:
    with pytest.raises(KaiError) as e:
        licence("Apache-2")  # alias exists -> fine
        licence("Apachee-2.0")
    assert "not in the licence registry" in str(e.value) and "\n" not in str(e.value)
    assert "apache-2.0" in str(e.value)


def test_every_reference_file_exists_and_has_clauses() -> None:
    for cs in registry().clause_sets():
        assert cs.clauses, cs.file


def test_registry_validation_reports_file_and_line(tmp_path: Path) -> None:
    text = REG_FILE.read_text("utf-8")
    bad = tmp_path / "licences.yaml"
    # an OSI licence that claims not to be open contradicts itself
    bad.write_text(text.replace("    mot_open: true\n    suitable_for: [code]\n",
                                "    mot_open: false\n    suitable_for: []\n", 1), "utf-8")
    with pytest.raises(KaiError) as e:
        load_registry(bad)
    msg = str(e.value)
    assert msg.startswith(f"{bad}:") and "mot_open" in msg
    dup = tmp_path / "dup.yaml"
    dup.write_text(text.replace("aliases: [mit license, expat]", "aliases: [mit license, apache]"),
                   "utf-8")
    with pytest.raises(KaiError, match=r"already a name of Apache-2\.0"):
        load_registry(dup)


# --------------------------------------------------------------------------- detection

@pytest.mark.parametrize(("name", "expected"), [
    ("apache-2.0.md", "Apache-2.0"),
    ("mit.txt", "MIT"),
    ("bsd-2.txt", "BSD-2-Clause"),
    ("bsd-3.txt", "BSD-3-Clause"),
    ("cc-by-4.0.md", "CC-BY-4.0"),
    ("cc-by-nc-4.0.md", "CC-BY-NC-4.0"),
    ("solar.md", "Upstage-Solar"),
    ("llama-3.1.txt", "Llama-3.1"),
])
def test_detects_licence_texts_in_real_layouts(name: str, expected: str) -> None:
    m = detect_licence(DATA / name)
    assert m.id == expected
    assert m.method == "text" and m.score >= lm.THRESHOLD
    assert m.file == str(DATA / name) and m.evidence


def test_near_variants_are_not_confused() -> None:
    """The Apache body inside the Solar licence and CC-BY inside CC-BY-NC stay below threshold."""
    solar = detect_licence(DATA / "solar.md")
    apache_alt = next(a for a in solar.alternatives if a.id == "Apache-2.0")
    assert apache_alt.score < lm.THRESHOLD
    nc = detect_licence(DATA / "cc-by-nc-4.0.md")
    assert all(a.score < lm.THRESHOLD for a in nc.alternatives if a.id == "CC-BY-4.0")


def test_text_that_matches_nothing_is_unknown_not_guessed() -> None:
    m = detect_licence(DATA / "unrelated.txt")
    assert m.id == UNKNOWN and not m.known and m.method == "none" and m.score == 0
    assert m.evidence  # says why


def test_partial_text_below_threshold_is_unknown() -> None:
    # the MIT warranty disclaimer alone is not enough to call a file MIT
    text = (DATA / "mit.txt").read_text("utf-8").split("THE SOFTWARE IS")[1]
    m = detect_licence("THE SOFTWARE IS" + text)
    assert m.id == UNKNOWN
    assert "MIT" in m.evidence[0]  # the best candidate and its score are reported


def test_model_card_front_matter_and_spdx_lines() -> None:
    card = detect_licence(DATA / "card-hyperclova.md")
    assert (card.id, card.method) == ("HyperCLOVA-X-SEED", "front-matter")
    spdx = detect_licence(DATA / "spdx-header.py")
    assert (spdx.id, spdx.method) == ("MIT", "spdx")
    unknown = detect_licence(DATA / "card-unknown-licence.md")
    assert unknown.id == UNKNOWN and "acme-model-licence-v7" in unknown.evidence[0]


def test_named_licence_that_contradicts_the_text_is_a_conflict() -> None:
    text = "SPDX-License-Identifier: MIT\n" + (DATA / "apache-2.0.md").read_text("utf-8")
    m = detect_licence(text)
    assert m.id == "Apache-2.0"
    assert m.conflicts and "MIT" in m.conflicts[0]


def test_folder_detection_prefers_license_file_and_reports_disagreement(tmp_path: Path) -> None:
    shutil.copy(DATA / "cc-by-nc-4.0.md", tmp_path / "LICENSE")
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\n---\n# model\n", "utf-8")
    m = detect_licence(tmp_path)
    assert m.id == "CC-BY-NC-4.0" and m.file == str(tmp_path / "LICENSE")
    assert any("README.md says Apache-2.0" in c for c in m.conflicts)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert detect_licence(empty).id == UNKNOWN


def test_missing_file_is_a_one_line_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "LICENSE"
    with pytest.raises(KaiError) as e:
        detect_licence(missing)
    assert str(e.value).startswith(str(missing)) and "not found" in str(e.value)


def test_normalisation_ignores_layout() -> None:
    a = lm.normalise("## 1. Grant of Licence\n* You  may — use “it”.\nCopyright (c) 2026 X\n")
    assert a == ["grant", "of", "license", "you", "may", "use", "it"]


# --------------------------------------------------------------------------- declared vs found

def test_check_declared_agreement_and_contradiction() -> None:
    apache = detect_licence(DATA / "apache-2.0.md")
    assert check_declared("apache-2.0", apache) is None
    nc = detect_licence(DATA / "cc-by-nc-4.0.md")
    mm = check_declared("Apache-2.0", nc)
    assert mm is not None and mm.kind == "contradiction"
    assert "commercial use" in mm.message and "open licence" in mm.message
    assert mm.evidence


def test_check_declared_other_kinds() -> None:
    llama = detect_licence(DATA / "llama-3.1.txt")
    weaker = check_declared("Llama-3.3", llama)
    assert weaker is not None and weaker.kind == "different"
    solar = detect_licence(DATA / "solar.md")
    mm = check_declared("Apache-2.0", solar)
    # Solar is Apache plus a branding duty and not OSI-listed: the files deny "open"
    assert mm is not None and mm.kind == "contradiction"
    cc = detect_licence(DATA / "cc-by-4.0.md")
    w = check_declared("CC-BY-4.0", detect_licence(DATA / "llama-3.1.txt"))
    assert w is not None and w.kind == "contradiction"
    assert check_declared("CC0-1.0", cc) is not None
    mit_from_bsd = check_declared("MIT", detect_licence(DATA / "bsd-3.txt"))
    assert mit_from_bsd is not None and mit_from_bsd.kind == "different"
    unknown = check_declared("MIT", detect_licence(DATA / "unrelated.txt"))
    assert unknown is not None and unknown.kind == "unverified"
    not_registered = check_declared("my-own-licence", cc)
    assert not_registered is not None and not_registered.kind == "unverified"


def test_weaker_when_files_add_duties() -> None:
    gemma_text = "Gemma Terms of Use\n" + \
        "Gemma is provided under and subject to the Gemma Terms of Use found at " \
        "ai.google.dev/gemma/terms\nGemma Prohibited Use Policy\n"
    found = detect_licence(gemma_text)
    assert found.id == "Gemma"
    mm = check_declared("CreativeML-OpenRAIL-M", found)
    assert mm is not None and mm.kind == "different"
    mm2 = check_declared("Upstage-Solar", detect_licence(DATA / "llama-3.1.txt"))
    assert mm2 is not None and mm2.kind == "weaker"
    assert "user cap 700000000" in mm2.message and "aup flowdown" in mm2.message


# --------------------------------------------------------------------------- inheritance

def test_inherited_obligations_from_model_names_and_ids() -> None:
    out = inherited_obligations(["meta-llama/Llama-3.1-8B-Instruct", "Qwen2.5-7B", "CC-BY-4.0",
                                 "foreign-base (stands in for the OpenAI-based model)"])
    llama, qwen, cc, foreign = out
    assert (llama.licence_id, llama.via) == ("Llama-3.1", "model-family")
    assert any("700,000,000" in d for d in llama.duties)
    assert any("Built with Llama" in d for d in llama.duties)
    assert llama.is_open is False
    assert (qwen.licence_id, qwen.duties, qwen.is_open) == ("Apache-2.0", (), True)
    assert (cc.licence_id, cc.via) == ("CC-BY-4.0", "licence")
    assert foreign.licence_id == UNKNOWN and foreign.is_open is None and foreign.duties


def test_model_family_patterns() -> None:
    assert licence_of_model("Qwen2.5-72B-Instruct") == "Qwen"
    assert licence_of_model("Qwen2.5-3B") == "Qwen-Research"
    assert licence_of_model("google/gemma-2-9b") == "Gemma"
    assert licence_of_model("gemma-4-12b") == "Apache-2.0"
    assert licence_of_model("LGAI-EXAONE/EXAONE-4.0-32B") == "EXAONE-1.2-NC"
    assert licence_of_model("Meta-Llama-3-8B") == "Llama-3"
    assert licence_of_model("totally-new-model") is None


def test_licence_link_out_of_the_folder_is_ignored(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(DATA / "mit.txt", outside / "LICENSE")
    model = tmp_path / "model"
    model.mkdir()
    (model / "LICENSE").symlink_to(outside / "LICENSE")
    m = detect_licence(model)
    assert m.id == UNKNOWN and "no LICENSE" in m.evidence[0]


def test_front_matter_with_a_list_of_licences() -> None:
    m = detect_licence("---\nlicense: [cc-by-4.0, apache-2.0]\n---\n# card\n")
    assert m.id == "CC-BY-4.0" and m.method == "front-matter"
    assert m.conflicts and "Apache-2.0" in m.conflicts[0]


def test_unversioned_declaration_agrees_with_a_versioned_text() -> None:
    found = detect_licence("EXAONE AI Model License Agreement 1.2 - NC\n...")
    assert found.id == "EXAONE-1.2-NC"
    assert check_declared("EXAONE-NC", found) is None
    other = check_declared("EXAONE-1.1-NC", found)
    assert other is not None and other.kind == "weaker"  # 1.2 adds the anti-compete clause
