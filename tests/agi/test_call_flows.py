"""Recorded AGI sessions replayed against the real FastAGI server, one test per call flow.

Each test seeds the database the flow needs, plays Asterisk's side of a recorded session
(tests/fixtures/asterisk/agi) over TCP, and asserts every variable the route set, the UserEvent and
the rows written.  Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from astertrack.db.models import Call, CallerProfile, Manager
from astertrack.db.types import utcnow
from astertrack.routing import dialplan_vars as v
from astertrack.routing.recording import recording_name
from tests.agi.conftest import GLOBAL_FALLBACK, recording
from tests.agi.fake_asterisk import FakeAsterisk, run

ALL_VARS = {v.CALL_ID, v.SOURCE, v.CAMPAIGN, v.MANAGER, v.DIAL, v.TIMEOUT, v.QUEUE, v.RECORDING, v.ROUTED_BY,
            v.FALLBACK, v.ATTEMPT, v.STATUS}
UID = re.compile(r"^[0-9a-f]{32}$")


def inbound(fake: FakeAsterisk, name: str, overrides=None, args=None, **kwargs):
    rec = recording(name)
    env = FakeAsterisk.environment(rec, overrides=overrides, script="inbound", args=args)
    variables = {"CHANNEL(linkedid)": rec.env_dict.get("agi_uniqueid", "")}
    variables.update(kwargs.pop("variables", {}))
    return run(fake.session(env, variables=variables, **kwargs))


def next_after(fake: FakeAsterisk, name: str, status: str, channel_vars: dict[str, str], **kwargs):
    rec = recording(name)
    env = FakeAsterisk.environment(rec, script="next", args=[status])
    return run(fake.session(env, variables=channel_vars, **kwargs))


def the_call(session, call_uid: str) -> Call:
    session.expire_all()
    return session.execute(select(Call).where(Call.call_uid == call_uid)).scalar_one()


def assert_status_protocol(result):
    """CT_STATUS is set once, after every other variable: a cut session never looks complete
    (the dialplan cleared it before the AGI)."""
    statuses = [name for name in result.set_order if name == v.STATUS]
    assert result.set_order[-1] == v.STATUS
    assert len(statuses) == 1
    # one MSet carries the variables (callerid name and the UserEvent are their own commands)
    assert len(result.commands) <= 5, result.commands


@pytest.mark.parametrize(("source", "in_event"), [
    ("Direct [RU", "Direct  RU"), ("Direct (brand", "Direct  brand"), ("Direct (brand) [RU]", "Direct (brand) [RU]")])
def test_a_source_name_with_brackets_reaches_the_dialplan_and_the_ami_listener_intact(agi, seed, source, in_event):
    """Found on a real Asterisk: ``[`` or ``(`` left open in the UserEvent swallowed every header
    after ``source`` (Asterisk's argument split nests them), so the listener lost the manager."""
    seed.static_number("+74950000101", source)
    m101, = seed.managers("101")
    seed.rule("sales", seed.group("sales", [m101]))
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_1")

    assert result.variables[v.SOURCE] == source
    assert result.variables["CALLERID(name)"] == f"[{source}] Ivan Petrov"
    event = result.route_event()
    assert event["manager"] == "101" and event["routed_by"] == "sales" and event["attempt"] == "1"
    assert event["recording"] == result.variables[v.RECORDING]
    assert event["source"] == in_event  # an unclosed bracket is blanked, a closed one kept


def test_static_number_call_goes_to_its_source_and_a_free_manager(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    m101, m102 = seed.managers("101", "102")
    seed.rule("sales", seed.group("sales", [m101, m102]), strategy="round_robin", ring_timeout=20)
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_1")

    got = result.variables
    assert ALL_VARS <= set(got)
    assert UID.match(got[v.CALL_ID])
    call = the_call(session, got[v.CALL_ID])
    assert got[v.SOURCE] == "google-ads"
    assert got[v.CAMPAIGN] == ""
    assert got[v.MANAGER] == "PJSIP/101"
    assert got[v.DIAL] == "PJSIP/101"
    assert got[v.TIMEOUT] == "20"
    assert got[v.QUEUE] == ""
    assert got[v.RECORDING] == recording_name(call.call_uid, call.started_at)
    assert got[v.ROUTED_BY] == "sales"
    assert got[v.FALLBACK] == f"dial:{GLOBAL_FALLBACK}"
    assert got[v.ATTEMPT] == "1"
    assert got[v.STATUS] == "OK"
    assert got["CALLERID(name)"] == "[google-ads] Ivan Petrov"
    assert_status_protocol(result)
    assert result.device_queries[:1] == ["PJSIP/101"]  # asked in candidate order
    assert result.route_event() == {
        "call_id": call.call_uid, "source": "google-ads", "manager": "101",
        "recording": got[v.RECORDING], "routed_by": "sales", "attempt": "1",
    }
    assert result.closed_by_server
    # the call row, as the AMI listener and the reports will find it
    assert call.state == "ringing"
    assert call.node == "pbx-test"
    assert call.uniqueid == "1795439737.0" and call.linkedid == "1795439737.0"
    assert call.did == "+74950000101" and call.caller_number == "+79161234567"
    assert call.caller_name == "Ivan Petrov"
    assert call.attribution_kind == "static" and call.attribution_confidence == 1.0
    assert call.source.name == "google-ads"
    assert call.is_first_call is True
    assert call.routed_manager_id == m101.id and call.routed_by == "sales" and call.routing_attempts == 1
    profile = session.execute(select(CallerProfile).where(CallerProfile.number == "+79161234567")).scalar_one()
    assert profile.first_source_id == call.source_id and profile.calls_count == 1
    manager = session.get(Manager, m101.id)
    assert manager.reserved_call_uid == call.call_uid and manager.reserved_until > utcnow()



def test_linkedid_passed_by_the_dialplan_is_used_without_asking(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    seed.rule("sales", seed.group("sales", seed.managers("101")), strategy="round_robin")
    seed.commit()
    _, fake = agi

    # extensions_astertrack.conf: AGI(agi://.../inbound,${AT_DID},${CHANNEL(linkedid)})
    result = inbound(fake, "pjsip_fastagi_1", args=["74950000101", "1795439700.7"],
                     variables={"CHANNEL(linkedid)": "not asked"})

    assert not any(c.startswith("GET VARIABLE") for c in result.commands)
    call = the_call(session, result.variables[v.CALL_ID])
    assert call.linkedid == "1795439700.7" and call.uniqueid == "1795439737.0"

def test_pool_number_with_a_live_session_is_attributed_to_that_visit(agi, seed, session):
    _pool, (number, _other) = seed.pool("context", "yandex-direct-dynamic", ["+74950000501", "+74950000502"])
    ads = seed.source("yandex-cpc")
    visit = seed.visit(ads, utm_source="yandex", utm_medium="cpc", utm_campaign="winter-sale",
                       utm_term="buy boots", landing_page="https://shop.example/boots?utm_campaign=winter-sale")
    seed.assign(number, visit)
    (m101,) = seed.managers("101")
    seed.rule("all", seed.group("all", [m101]))
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_1", overrides={"agi_extension": "74950000501",
                                                          "agi_dnid": "74950000501"})

    got = result.variables
    assert got[v.SOURCE] == "yandex-cpc"
    assert got[v.CAMPAIGN] == "winter-sale"
    assert got[v.DIAL] == "PJSIP/101" and got[v.STATUS] == "OK"
    assert result.route_event()["campaign"] == "winter-sale"
    call = the_call(session, got[v.CALL_ID])
    assert call.session_id == visit.id
    assert call.attribution_kind == "dynamic" and call.attribution_confidence == 1.0
    assert (call.utm_source, call.utm_medium, call.utm_campaign, call.keyword) == (
        "yandex", "cpc", "winter-sale", "buy boots")


def test_pool_number_released_a_minute_ago_goes_to_that_visit_with_lower_confidence(agi, seed, session):
    _pool, (number,) = seed.pool("context", "pool-source", ["+74950000501"])
    ads = seed.source("google-cpc")
    older = seed.visit(ads, utm_campaign="older")
    recent = seed.visit(ads, utm_campaign="recent")
    seed.assign(number, older, released_ago=600)
    seed.assign(number, recent, released_ago=60)
    (m101,) = seed.managers("101", tech="SIP")
    seed.rule("all", seed.group("all", [m101]))
    seed.commit()
    _, fake = agi

    result = inbound(fake, "sip_fastagi_1", overrides={"agi_extension": "74950000501", "agi_dnid": "74950000501"})

    call = the_call(session, result.variables[v.CALL_ID])
    assert result.variables[v.SOURCE] == "google-cpc"
    assert result.variables[v.CAMPAIGN] == "recent"
    assert call.session_id == recent.id
    assert call.attribution_kind == "grace"
    # two visits released it inside the 900 s grace period: lower than a lone recent release
    assert 0.3 < call.attribution_confidence < 0.9 * 0.8
    assert result.variables[v.DIAL] == "SIP/101"  # no technology is assumed: the endpoint as stored


def test_pool_number_released_before_the_grace_period_falls_back_to_the_pool_source(agi, seed, session):
    _pool, (number,) = seed.pool("context", "pool-source", ["+74950000501"])
    visit = seed.visit(seed.source("google-cpc"))
    seed.assign(number, visit, released_ago=3600)
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_1", overrides={"agi_extension": "74950000501"})

    call = the_call(session, result.variables[v.CALL_ID])
    assert result.variables[v.SOURCE] == "pool-source"
    assert call.session_id is None and call.attribution_kind == "dynamic"
    assert call.attribution_confidence < 0.5


def test_unknown_did_is_unattributed_and_still_rings_someone(agi, seed, session):
    (m101,) = seed.managers("101")
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_7")  # DID 74950000104: no such tracking number

    got = result.variables
    assert got[v.SOURCE] == "" and got[v.STATUS] == "OK"
    assert got[v.DIAL] == "PJSIP/101"
    assert got[v.ROUTED_BY] == "default"  # no rule matched: every enabled manager, least recent first
    assert "CALLERID(name)" not in got  # no source, no prefix
    call = the_call(session, got[v.CALL_ID])
    assert call.attribution_kind == "unknown" and call.source_id is None and call.site_id is None
    assert call.did == "+74950000104"


def test_did_comes_from_agi_extension_on_local_channels_where_dnid_is_unknown(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    seed.managers("101")
    seed.commit()
    _, fake = agi
    rec = recording("local_fastagi_1")
    assert rec.env_dict["agi_dnid"] == "unknown"

    result = inbound(fake, "local_fastagi_1")

    assert result.variables[v.SOURCE] == "google-ads"
    assert the_call(session, result.variables[v.CALL_ID]).did == "+74950000101"


def test_did_passed_as_route_argument_wins_over_the_extension(agi, seed, session):
    seed.static_number("+74950000102", "yandex-direct")
    seed.managers("101")
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_1", overrides={"agi_extension": "s"}, args=["74950000102"])

    assert result.variables[v.SOURCE] == "yandex-direct"


def _two_numbers(seed):
    seed.static_number("+74950000101", "google-ads")
    seed.static_number("+74950000102", "yandex-direct")
    m101, m102 = seed.managers("101", "102")
    seed.rule("sales", seed.group("sales", [m101, m102]), sticky=False)
    seed.commit()


def test_repeat_caller_keeps_the_first_touch_source(agi, seed, session):
    _two_numbers(seed)
    _, fake = agi

    first = inbound(fake, "pjsip_fastagi_1")  # 79161234567 calls the google-ads number
    again = inbound(fake, "pjsip_fastagi_6")  # ... then the yandex-direct number

    assert first.variables[v.SOURCE] == "google-ads"
    assert again.variables[v.SOURCE] == "google-ads"
    call = the_call(session, again.variables[v.CALL_ID])
    assert call.attribution_kind == "repeat" and call.is_first_call is False
    assert call.source.name == "google-ads"
    profile = session.execute(select(CallerProfile).where(CallerProfile.number == "+79161234567")).scalar_one()
    assert profile.calls_count == 2 and profile.first_source_id == call.source_id


def test_repeat_caller_on_a_last_touch_site_takes_this_calls_source(agi, seed, session):
    _two_numbers(seed)
    seed.site.attribution_model = "last_touch"
    seed.commit()
    _, fake = agi

    inbound(fake, "pjsip_fastagi_1")
    again = inbound(fake, "pjsip_fastagi_6")

    assert again.variables[v.SOURCE] == "yandex-direct"
    call = the_call(session, again.variables[v.CALL_ID])
    assert call.attribution_kind == "static" and call.is_first_call is False


def test_caller_seen_before_the_attribution_window_is_a_first_call_again(agi, seed, session):
    _two_numbers(seed)
    _, fake = agi
    inbound(fake, "pjsip_fastagi_1")
    profile = session.execute(select(CallerProfile)).scalar_one()
    profile.last_call_at = utcnow() - dt.timedelta(days=45)
    session.commit()

    again = inbound(fake, "pjsip_fastagi_6")

    assert again.variables[v.SOURCE] == "yandex-direct"
    call = the_call(session, again.variables[v.CALL_ID])
    assert call.is_first_call is True
    session.expire_all()
    assert session.execute(select(CallerProfile)).scalar_one().first_source_id == call.source_id


def test_repeat_caller_goes_first_to_their_personal_manager(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    m101, m102, m103 = seed.managers("101", "102", "103")
    seed.rule("sales", seed.group("sales", [m101, m102]), strategy="round_robin", sticky=True, sticky_days=30)
    seed.commit()
    _, fake = agi
    first = inbound(fake, "pjsip_fastagi_1")
    call = the_call(session, first.variables[v.CALL_ID])
    # the AMI listener recorded that 103 answered it (a transfer, say); reservations ran out
    call.manager_id, call.answered_at = m103.id, utcnow()
    session.execute(Manager.__table__.update().values(reserved_until=None, reserved_call_uid=None))
    session.commit()

    again = inbound(fake, "pjsip_fastagi_1")

    assert again.variables[v.DIAL] == "PJSIP/103"
    assert again.variables[v.ROUTED_BY] == "sticky"
    assert again.route_event()["manager"] == "103"
    session.expire_all()
    profile = session.execute(select(CallerProfile)).scalar_one()
    assert profile.personal_manager_id == m103.id


def test_personal_manager_busy_gives_the_call_to_the_rule(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    m101, m102 = seed.managers("101", "102")
    seed.rule("sales", seed.group("sales", [m101, m102]), strategy="round_robin")
    seed.commit()
    _, fake = agi
    call = the_call(session, inbound(fake, "pjsip_fastagi_1").variables[v.CALL_ID])
    call.manager_id, call.answered_at = m102.id, utcnow()
    session.execute(Manager.__table__.update().values(reserved_until=None, reserved_call_uid=None))
    session.commit()

    again = inbound(fake, "pjsip_fastagi_1", device_states={"PJSIP/102": "INUSE"})

    assert again.variables[v.DIAL] == "PJSIP/101"
    assert again.variables[v.ROUTED_BY] == "sales"


def test_vip_caller_goes_to_the_vip_desk_before_the_general_rule(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    m101, m104 = seed.managers("101", "104")
    seed.rule("general", seed.group("sales", [m101]), priority=100)
    seed.rule("vip", seed.group("vip-desk", [m104]), priority=10,
              match={"caller_numbers": ["+74957654321"]}, ring_timeout=30)
    seed.commit()
    _, fake = agi

    vip = inbound(fake, "pjsip_fastagi_11")  # caller 74957654321
    normal = inbound(fake, "pjsip_fastagi_1")  # caller 79161234567

    assert (vip.variables[v.DIAL], vip.variables[v.ROUTED_BY], vip.variables[v.TIMEOUT]) == ("PJSIP/104", "vip", "30")
    assert (normal.variables[v.DIAL], normal.variables[v.ROUTED_BY]) == ("PJSIP/101", "general")


def test_caller_tag_and_campaign_rules_pick_their_groups(agi, seed, session):
    _pool, (number,) = seed.pool("context", "pool-source", ["+74950000501"])
    visit = seed.visit(seed.source("google-cpc"), utm_campaign="b2b", landing_page="https://shop.example/wholesale")
    seed.assign(number, visit)
    m101, m102 = seed.managers("101", "102")
    seed.rule("general", seed.group("sales", [m101]), priority=100)
    seed.rule("wholesale", seed.group("b2b", [m102]), priority=20,
              match={"utm_campaign": ["b2b"], "landing_contains": ["/wholesale"]})
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_1", overrides={"agi_extension": "74950000501"})

    assert result.variables[v.ROUTED_BY] == "wholesale" and result.variables[v.DIAL] == "PJSIP/102"


def test_after_hours_call_goes_to_the_rules_after_hours_destination(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    (m101,) = seed.managers("101")
    today = utcnow().astimezone(dt.timezone(dt.timedelta(hours=3))).date().isoformat()
    seed.rule("office", seed.group("sales", [m101]), schedule={"closed_dates": [today]},
              after_hours_destination="voicemail:100@default")
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_1")

    got = result.variables
    assert got[v.DIAL] == "" and got[v.QUEUE] == "" and got[v.MANAGER] == ""
    assert got[v.FALLBACK] == "voicemail:100@default"
    assert got[v.ROUTED_BY] == "after_hours" and got[v.ATTEMPT] == "0" and got[v.STATUS] == "OK"
    assert result.device_queries == []  # nobody to ask about
    assert result.route_event()["manager"] == ""
    session.expire_all()
    assert session.get(Manager, m101.id).reserved_until is None
    assert the_call(session, got[v.CALL_ID]).routed_by == "after_hours"


def test_all_managers_busy_sends_the_call_to_the_fallback(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    m101, m102, m103 = seed.managers("101", "102", "103")
    m103.paused = True
    seed.rule("sales", seed.group("sales", [m101, m102, m103]), fallback_destination="queue:sales")
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_1", device_states={"PJSIP/101": "INUSE", "PJSIP/102": "RINGING"})

    got = result.variables
    assert got[v.DIAL] == "" and got[v.MANAGER] == ""
    assert got[v.FALLBACK] == "queue:sales"
    assert got[v.ROUTED_BY] == "fallback" and got[v.STATUS] == "OK"
    assert sorted(result.device_queries) == ["PJSIP/101", "PJSIP/102"]  # paused 103 is not even asked
    call = the_call(session, got[v.CALL_ID])
    assert call.routed_manager_id is None and call.routing_attempts == 0


def test_ring_all_group_dials_every_free_member(agi, seed, session):
    seed.static_number("+74950000300", "billboard")
    members = seed.managers("101", "102", "103")
    seed.rule("billboard", seed.group("floor", members), strategy="ring_all")
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_8", device_states={"PJSIP/103": "UNAVAILABLE"})

    assert result.variables[v.DIAL] == "PJSIP/101&PJSIP/102"
    assert result.route_event()["manager"] == "101&102"  # the recorded shape
    session.expire_all()
    holders = {m.extension: m.reserved_call_uid for m in session.execute(select(Manager)).scalars()}
    assert holders["101"] == holders["102"] == result.variables[v.CALL_ID] and holders["103"] is None


def test_queue_rule_hands_the_call_to_the_asterisk_queue(agi, seed, session):
    seed.static_number("+74950000200", "2gis")
    members = seed.managers("101", "102")
    seed.rule("queue", seed.group("sales", members, queue_name="sales"), strategy="queue", ring_timeout=15)
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_9")

    got = result.variables
    assert (got[v.DIAL], got[v.QUEUE], got[v.TIMEOUT]) == ("", "sales", "15")
    assert result.route_event()["manager"] == "queue:sales"
    assert got[v.ROUTED_BY] == "queue"


def test_next_after_noanswer_offers_the_call_to_the_next_free_manager(agi, seed, session):
    seed.static_number("+74950000400", "radio")
    m101, m102, m103 = seed.managers("101", "102", "103")
    seed.rule("radio", seed.group("radio", [m101, m102, m103]), strategy="round_robin", max_attempts=2,
              fallback_destination="dial:PJSIP/200")
    seed.commit()
    _, fake = agi

    first = inbound(fake, "pjsip_fastagi_2")
    assert first.variables[v.DIAL] == "PJSIP/101"
    channel = dict(first.variables)
    second = next_after(fake, "pjsip_fastagi_3", "NOANSWER", channel)

    got = second.variables
    assert got[v.DIAL] == "PJSIP/102" and got[v.MANAGER] == "PJSIP/102"
    assert got[v.ATTEMPT] == "2" and got[v.ROUTED_BY] == "radio" and got[v.STATUS] == "OK"
    assert v.CALL_ID not in got  # the call keeps its id and recording
    assert second.commands[0] == f"GET VARIABLE {v.CALL_ID}"
    event = second.route_event()
    assert event["call_id"] == first.variables[v.CALL_ID] and event["manager"] == "102"
    assert event["source"] == "radio"
    session.expire_all()
    assert session.get(Manager, m101.id).reserved_until is None  # 101's hold released
    call = the_call(session, first.variables[v.CALL_ID])
    assert call.routing_attempts == 2 and call.routed_manager_id == m102.id and call.routing_tried == [m101.id, m102.id]

    channel.update(got)
    third = next_after(fake, "pjsip_fastagi_3", "NOANSWER", channel)  # attempt budget (2) spent

    assert third.variables[v.DIAL] == "" and third.variables[v.FALLBACK] == "dial:PJSIP/200"
    assert third.variables[v.ROUTED_BY] == "fallback"
    assert third.route_event() is None  # nothing new to announce to the listener


def test_next_after_busy_with_nobody_left_empties_the_dial_string(agi, seed, session):
    seed.static_number("+74950000103", "website")
    (m103,) = seed.managers("103")
    seed.rule("web", seed.group("web", [m103]))
    seed.commit()
    _, fake = agi
    first = inbound(fake, "pjsip_fastagi_4")

    after = next_after(fake, "pjsip_fastagi_5", "BUSY", dict(first.variables))

    assert after.variables[v.DIAL] == ""
    assert after.variables[v.FALLBACK] == f"dial:{GLOBAL_FALLBACK}"
    assert after.variables[v.STATUS] == "OK"


def test_next_after_answer_or_cancel_is_done_and_releases_the_manager(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    (m101,) = seed.managers("101")
    seed.commit()
    _, fake = agi
    first = inbound(fake, "pjsip_fastagi_1")

    after = next_after(fake, "pjsip_fastagi_3", "CANCEL", dict(first.variables))

    assert after.variables[v.DIAL] == "" and after.variables[v.FALLBACK] == ""
    assert after.variables[v.STATUS] == "OK"
    session.expire_all()
    assert session.get(Manager, m101.id).reserved_until is None


def test_device_state_from_the_database_when_configured(start_server, db_url, seed, session):
    seed.static_number("+74950000101", "google-ads")
    m101, m102 = seed.managers("101", "102")
    m101.device_state, m102.device_state = "INUSE", "NOT_INUSE"
    seed.rule("sales", seed.group("sales", [m101, m102]))
    seed.commit()
    _, fake = start_server(db_url, device_state_source="database")

    result = inbound(fake, "pjsip_fastagi_1")

    assert result.device_queries == []  # Asterisk is not asked
    assert result.variables[v.DIAL] == "PJSIP/102"


def test_callerid_prefix_can_be_turned_off(start_server, db_url, seed, session):
    seed.static_number("+74950000101", "google-ads")
    seed.managers("101")
    seed.commit()
    _, fake = start_server(db_url, callerid_prefix="no")

    result = inbound(fake, "pjsip_fastagi_1")

    assert "CALLERID(name)" not in result.variables and result.variables[v.SOURCE] == "google-ads"


def test_round_robin_moves_on_to_the_next_manager_for_the_next_call(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    members = seed.managers("101", "102", "103")
    seed.rule("sales", seed.group("sales", members), strategy="round_robin", sticky=False)
    seed.commit()
    _, fake = agi
    dialled = []
    for _ in range(4):
        dialled.append(inbound(fake, "pjsip_fastagi_1").variables[v.DIAL])
        session.execute(Manager.__table__.update().values(reserved_until=None, reserved_call_uid=None))
        session.commit()

    assert dialled == ["PJSIP/101", "PJSIP/102", "PJSIP/103", "PJSIP/101"]


def test_fewest_calls_today_prefers_the_least_loaded_manager(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    m101, m102 = seed.managers("101", "102")
    seed.rule("sales", seed.group("sales", [m101, m102]), strategy="fewest_today", sticky=False)
    for _ in range(2):
        session.add(Call(routed_manager_id=m101.id, started_at=utcnow()))
    session.add(Call(routed_manager_id=m102.id, started_at=utcnow() - dt.timedelta(days=3)))
    seed.commit()
    _, fake = agi

    assert inbound(fake, "pjsip_fastagi_1").variables[v.DIAL] == "PJSIP/102"


def test_global_rule_hours_use_the_only_sites_time_zone_for_an_unknown_number(agi, seed, session):
    (m101,) = seed.managers("101")
    now = utcnow()
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[now.weekday()]
    utc_hour = {day: [[f"{now.hour:02d}:00", f"{now.hour + 1:02d}:00"]]}  # open now in UTC, not in Moscow
    seed.rule("global", seed.group("all", [m101]), site_id=None, schedule=utc_hour,
              after_hours_destination="voicemail:1@default")
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_7")  # 74950000104 is not a tracking number

    assert result.variables[v.ROUTED_BY] == "after_hours"
    assert result.variables[v.FALLBACK] == "voicemail:1@default"


def test_route_name_with_a_query_string(agi, seed, session):
    seed.managers("101")
    seed.commit()
    _, fake = agi
    rec = recording("pjsip_fastagi_1")
    env = FakeAsterisk.environment(rec, overrides={"agi_network_script": "inbound?debug=1"})

    result = run(fake.session(env))

    assert result.variables[v.STATUS] == "OK" and result.variables[v.DIAL] == "PJSIP/101"
