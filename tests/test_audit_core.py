"""astertrack.audit: the log's diff and rows (pure), and what refers to a settings row (both backends)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from astertrack.audit import log, references
from astertrack.db.models import AdCost, Call, Manager, Source
from astertrack.samples.factories import add_group, add_managers, add_site, add_static_source


def test_an_update_keeps_only_the_changed_fields_both_ways():
    before = {"name": "Yandex", "priority": 10, "enabled": True, "match_rules": [{"op": "equals"}]}
    after = {"name": "Yandex Direct", "priority": 10, "enabled": False, "match_rules": [{"op": "equals"}],
             "channel": "cpc"}
    assert log.changed(before, after) == ({"name": "Yandex", "enabled": True, "channel": None},
                                          {"name": "Yandex Direct", "enabled": False, "channel": "cpc"})
    row = log.entry("update", "sources", 7, "Yandex Direct", before, after, user_id=1, user_login="admin")
    assert row.before == {"name": "Yandex", "enabled": True, "channel": None}
    assert row.after["name"] == "Yandex Direct" and "priority" not in row.after
    assert (row.user_login, row.entity_kind, row.entity_id, row.action) == ("admin", "sources", 7, "update")


def test_an_update_that_changed_nothing_writes_no_row_and_unknown_actions_are_refused():
    assert log.entry("update", "sources", 1, "x", {"a": 1}, {"a": 1}) is None
    with pytest.raises(ValueError, match="unknown audit action 'drop'"):
        log.entry("drop", "sources", 1, "x", None, None)
    created = log.entry("create", "sites", 1, "Shop", None, {"name": "Shop"})
    assert created.before is None and created.after == {"name": "Shop"}


def test_values_become_json_and_secrets_and_live_state_stay_out():
    when = dt.datetime(2026, 12, 6, 9, 30, tzinfo=dt.UTC)
    assert log.json_safe({"at": when, "money": Decimal("10.50"), "ids": {3, 1}, "day": when.date()}) == {
        "at": "2026-12-06T09:30:00+00:00", "money": "10.50", "ids": [1, 3], "day": "2026-12-06"}
    manager = Manager(id=4, name="Anna", endpoint="PJSIP/101", paused=True, enabled=True, device_state="INUSE",
                      reserved_call_uid="abc", schedule={"mon": [["09:00", "18:00"]]})
    fields = log.fields_of(manager, {"groups": [2, 1]})
    assert fields["name"] == "Anna" and fields["paused"] is True and fields["groups"] == [2, 1]
    assert fields["schedule"] == {"mon": [["09:00", "18:00"]]}
    assert not {"id", "device_state", "reserved_call_uid", "reserved_until", "archived_at"} & set(fields)
    assert log.label_of(manager) == "Anna" and log.label_of(Source(id=9)) == "#9"


def test_referrers_come_from_the_foreign_keys():
    assert references.referrers("sources")["caller_profiles"] == ("first_source_id", "last_source_id")
    assert {"calls", "leads", "ad_costs", "visitor_sessions", "tracking_numbers"} <= set(references.referrers("sources"))
    assert references.referrers("managers")["calls"] == ("manager_id", "routed_manager_id")
    assert "audit_log" not in references.referrers("users")


def test_references_are_counted_per_kind(session):
    site = add_site(session, "Shop")
    used = add_static_source(session, site, "Used", ["+74950000001"])
    unused = add_static_source(session, site, "Unused")
    anna, boris = add_managers(session, ["101", "102"])
    add_group(session, "sales", [anna])
    session.add_all([Call(site_id=site.id, source_id=used.id, manager_id=anna.id, routed_manager_id=anna.id),
                     Call(site_id=site.id, source_id=used.id, routed_manager_id=anna.id),
                     AdCost(source_id=used.id, day=dt.date(2026, 12, 1), amount=Decimal("5")),
                     AdCost(source_id=used.id, day=dt.date(2026, 12, 2), amount=Decimal("5"))])
    session.commit()
    assert references.count_references(session, "sources", used.id) == {
        "calls": 2, "ad_costs": 2, "tracking_numbers": 1}
    assert references.count_references(session, "sources", unused.id) == {}
    # a call naming the manager twice (answered and routed) counts once
    assert references.count_references(session, "managers", anna.id) == {"calls": 2, "manager_group_members": 1}
    assert references.deletable(references.count_references(session, "managers", boris.id))
    assert not references.deletable({"calls": 1})
