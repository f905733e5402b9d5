"""Archived settings leave routing (issue #21 §1): the real FastAGI server no longer gives a call
to an archived source's static number, nor offers it to an archived manager, and a restore
brings both back.  Archiving is an UPDATE the configuration triggers see, so the running
server's snapshot is re-read without a restart."""

from __future__ import annotations

import time

from sqlalchemy import select

from agi.snapshot import load_snapshot
from astertrack.db.models import Call, Manager, ManagerGroup, RoutingRule, Source
from astertrack.db.types import utcnow
from astertrack.routing import dialplan_vars as v
from tests.agi.test_call_flows import inbound

CACHE_SECONDS = 0.2


def _call(session, call_uid: str) -> Call:
    session.expire_all()
    return session.execute(select(Call).where(Call.call_uid == call_uid)).scalar_one()


def _set_archived(session, model, row_id: int, archived: bool) -> None:
    session.get(model, row_id).archived_at = utcnow() if archived else None
    session.commit()
    time.sleep(CACHE_SECONDS * 2)  # the server checks the configuration counter every cache_seconds


def test_an_archived_source_no_longer_gets_its_static_numbers_calls_and_a_restore_brings_it_back(
        start_server, db_url, seed, session):
    number = seed.static_number("+74950000101", "google-ads")
    m101, m102 = seed.managers("101", "102")
    seed.rule("sales", seed.group("sales", [m101, m102]), strategy="least_recent")
    seed.commit()
    _, fake = start_server(db_url, cache_seconds=CACHE_SECONDS)

    # three new callers (a repeat caller keeps the first touch's source by design)
    first = inbound(fake, "pjsip_fastagi_1", overrides={"agi_callerid": "+79160000001"}).variables
    assert first[v.SOURCE] == "google-ads"

    _set_archived(session, Source, number.source_id, True)
    second = inbound(fake, "pjsip_fastagi_1", overrides={"agi_callerid": "+79160000002"}).variables
    assert second[v.SOURCE] == ""
    archived_call = _call(session, second[v.CALL_ID])
    assert archived_call.source_id is None and archived_call.site_id == seed.site.id
    # history stays: the first call still belongs to the archived source
    assert _call(session, first[v.CALL_ID]).source_id == number.source_id

    _set_archived(session, Source, number.source_id, False)
    third = inbound(fake, "pjsip_fastagi_1", overrides={"agi_callerid": "+79160000003"}).variables
    assert third[v.SOURCE] == "google-ads"
    assert _call(session, third[v.CALL_ID]).source_id == number.source_id


def test_an_archived_number_is_not_tracked(start_server, db_url, seed, session):
    number = seed.static_number("+74950000101", "google-ads")
    seed.rule("sales", seed.group("sales", seed.managers("101")))
    number.archived_at = utcnow()
    seed.commit()
    _, fake = start_server(db_url, cache_seconds=CACHE_SECONDS)

    call = _call(session, inbound(fake, "pjsip_fastagi_1").variables[v.CALL_ID])
    assert call.source_id is None and call.attribution_kind == "unknown"


def test_an_archived_manager_gets_no_calls(start_server, db_url, seed, session):
    m101, m102 = seed.managers("101", "102")
    seed.static_number("+74950000101", "google-ads")
    seed.rule("sales", seed.group("sales", [m101, m102]), strategy="round_robin")
    m101.archived_at = utcnow()
    seed.commit()
    _, fake = start_server(db_url, cache_seconds=CACHE_SECONDS)

    result = inbound(fake, "pjsip_fastagi_1")
    assert result.variables[v.MANAGER] == "PJSIP/102"
    assert "PJSIP/101" not in result.device_queries  # never even asked about
    assert _call(session, result.variables[v.CALL_ID]).routed_manager_id == m102.id


def test_the_snapshot_leaves_out_archived_rules_groups_and_managers(seed, session):
    m101, m102 = seed.managers("101", "102")
    kept = seed.rule("kept", seed.group("kept", [m101, m102], queue_name="q-kept"))
    gone_group = seed.group("gone", [m101], queue_name="q-gone")
    seed.rule("orphaned", gone_group)
    archived_rule = seed.rule("archived", seed.group("other", [m102]))
    seed.commit()
    before = load_snapshot(session)
    assert {rule.name for rule in before.rules} == {"kept", "orphaned", "archived"}

    m101.archived_at = utcnow()
    session.get(ManagerGroup, gone_group.id).archived_at = utcnow()
    session.get(RoutingRule, archived_rule.id).archived_at = utcnow()
    session.commit()
    after = load_snapshot(session)
    rules = {rule.name: rule for rule in after.rules}
    assert set(rules) == {"kept", "orphaned"}
    assert rules["kept"].member_ids == (m102.id,) and rules["kept"].queue_name == "q-kept"
    assert rules["orphaned"].member_ids == () and rules["orphaned"].queue_name is None
    assert after.enabled_manager_ids == (m102.id,) and set(after.managers) == {m102.id}
    assert kept.id in {rule.id for rule in after.rules}
    # the rows themselves are all still there
    assert session.scalar(select(Manager).where(Manager.id == m101.id)).archived_at is not None
