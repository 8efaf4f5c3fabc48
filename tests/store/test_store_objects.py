"""Application documents (accounts, drafts, assignments): audited like results."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from kaieval.errors import KaiError
from kaieval.store import Store


def test_put_get_list_delete_are_audited(store: Store) -> None:
    assert store.put_objects({"user/kim": {"role": "expert"}, "user/lee": {"role": "team"}},
                             actor="office") == 2
    assert store.put_objects({"user/kim": {"role": "expert"}}, actor="office") == 0
    assert store.get_object("user/kim") == {"role": "expert"}
    assert store.get_object("user/nobody") is None
    assert set(store.objects("user/")) == {"user/kim", "user/lee"}
    assert store.put_objects({"user/lee": None}, actor="office", reason="left") == 1
    assert set(store.objects("user/")) == {"user/kim"}
    actions = [(e.action, e.entity_key) for e in store.audit_entries()]
    assert actions == [("insert", "user/kim"), ("insert", "user/lee"), ("delete", "user/lee")]
    assert store.audit_verify() == []


def test_create_only_refuses_an_existing_key_and_writes_nothing(store: Store) -> None:
    store.put_objects({"user/kim": {"role": "expert"}}, actor="office")
    head = store.audit_head()
    with pytest.raises(KaiError, match="already exists"):
        store.put_objects({"user/kim": {"role": "admin"}, "user/new": {"role": "team"}},
                          actor="office", create_only=["user/kim", "user/new"])
    assert store.audit_head() == head and store.get_object("user/new") is None


def test_an_object_edited_outside_the_api_is_caught(store: Store, raw: Engine) -> None:
    store.put_objects({"user/kim": {"role": "expert"}}, actor="office")
    with raw.begin() as conn:
        conn.execute(text("UPDATE objects SET payload = '{\"role\":\"admin\"}'"))
    assert any("objects 'user/kim'" in p and "altered" in p for p in store.audit_verify())


def test_bad_keys_are_refused(store: Store) -> None:
    with pytest.raises(KaiError, match="kind/name"):
        store.put_objects({"nokind": {}}, actor="office")


def test_records_and_objects_in_one_transaction(store: Store) -> None:
    from kaieval.records import CommitteeSheet
    from kaieval.store import Superseding

    def sheet(score: float) -> CommitteeSheet:
        return CommitteeSheet(stage_id="s1", team_id="alpha", source="committee",
                              component_id="experts", evaluator_id="kim", affiliation="X",
                              scores={"report": score})

    store.put_objects({"draft/s1/experts/alpha/kim": {"scores": {"report": 3}}}, actor="kim")
    store.put([sheet(3)], actor="kim", replace=False,
              objects={"draft/s1/experts/alpha/kim": None})
    assert store.get_object("draft/s1/experts/alpha/kim") is None
    head = store.audit_head()
    with pytest.raises(Superseding):  # refused record: the object is not written either
        store.put([sheet(9)], actor="kim", replace=False, objects={"note/x": {"a": 1}})
    assert store.audit_head() == head and store.get_object("note/x") is None
    assert store.audit_verify() == []


def test_prefix_reads_are_exact_and_the_stamp_follows_every_change(store: Store) -> None:
    store.put_objects({"battle/s1/kim/1": {"a": 1}, "battle/s1/Kim/2": {"a": 2},
                       "battle/s1/kimberly/3": {"a": 3}, "battle/s10/kim/4": {"a": 4},
                       "battle/s1/k_m/5": {"a": 5}, "response/s1/p/t": {"text": "x"}},
                      actor="t")
    assert list(store.objects("battle/s1/kim/")) == ["battle/s1/kim/1"]  # case, _ and s10
    assert list(store.objects("battle/s1/k_m/")) == ["battle/s1/k_m/5"]
    assert store.get_objects(["battle/s1/kim/1", "nope/x"]) == {"battle/s1/kim/1": {"a": 1}}
    stamps = [store.objects_stamp("battle/s1/kim/", "response/s1/")]
    assert stamps[0][0] == 2
    store.put_objects({"battle/s1/Kim/2": {"a": 9}}, actor="t")  # not under the prefixes
    assert store.objects_stamp("battle/s1/kim/", "response/s1/") == stamps[0]
    for change in ({"response/s1/p/t": {"text": "y"}}, {"battle/s1/kim/6": {"a": 6}},
                   {"battle/s1/kim/1": None}):
        store.put_objects(change, actor="t")
        stamps.append(store.objects_stamp("battle/s1/kim/", "response/s1/"))
        assert stamps[-1] != stamps[-2]
