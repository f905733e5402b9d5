"""Callback requests: when they are due, whom they ring, what an attempt's outcome makes of them."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from astertrack.callflow.outcomes import MissedReason, Outcome, classify_callback
from astertrack.db.models import Call, CallbackRequest, Enquiry, Lead
from astertrack.leads import callbacks as cb
from astertrack.samples.factories import add_group, add_managers, add_rule, add_site

WEEKDAYS = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
FRIDAY_EVENING = dt.datetime(2026, 12, 4, 19, 30, tzinfo=dt.UTC)  # a Friday, after hours (UTC site)
MONDAY_NINE = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
TUESDAY_NOON = dt.datetime(2026, 12, 8, 12, 0, tzinfo=dt.UTC)


def test_next_opening_is_now_when_open_else_the_next_range_start():
    assert cb.next_opening(WEEKDAYS, TUESDAY_NOON, "UTC") == TUESDAY_NOON
    assert cb.next_opening(WEEKDAYS, FRIDAY_EVENING, "UTC") == MONDAY_NINE
    assert cb.next_opening({}, FRIDAY_EVENING, "UTC") == FRIDAY_EVENING  # no schedule: always open
    # a closed Monday moves it to Tuesday; a Moscow schedule opens at 09:00 Moscow = 06:00 UTC
    closed = dict(WEEKDAYS, closed_dates=["2026-12-07"])
    assert cb.next_opening(closed, FRIDAY_EVENING, "UTC") == MONDAY_NINE + dt.timedelta(days=1)
    assert cb.next_opening(WEEKDAYS, FRIDAY_EVENING, "Europe/Moscow") == dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)
    assert cb.next_opening({"closed_dates": []} | {"mon": []}, FRIDAY_EVENING, "UTC", horizon_days=3) is None


def test_retries_back_off_then_fail_after_the_last_attempt():
    settings = cb.CallbackSettings(attempts=3, retry_minutes=(2.0, 5.0))
    first = cb.after_attempt(1, 3, "missed", MissedReason.MANAGER_BUSY, settings, TUESDAY_NOON)
    assert (first.state, first.next_attempt_at) == ("scheduled", TUESDAY_NOON + dt.timedelta(minutes=2))
    second = cb.after_attempt(2, 3, "missed", MissedReason.VISITOR_NO_ANSWER, settings, TUESDAY_NOON)
    assert second.next_attempt_at == TUESDAY_NOON + dt.timedelta(minutes=5)
    last = cb.after_attempt(3, 3, "missed", MissedReason.VISITOR_NO_ANSWER, settings, TUESDAY_NOON)
    assert (last.state, last.last_result) == ("failed", "visitor_no_answer")
    assert cb.after_attempt(1, 3, "answered", None, settings, TUESDAY_NOON).state == "connected"
    # the manager hung up on the visitor's ringing: not worth calling again automatically
    assert cb.after_attempt(1, 3, "missed", MissedReason.CALLER_HANGUP, settings, TUESDAY_NOON).state == "failed"


def test_callback_outcome_names_the_side_that_did_not_answer():
    def go(**kw):
        base = dict(manager_answered=False, originate_reason=None, manager_cause=None, visitor_statuses=[],
                    manager_hung_up=False)
        return classify_callback(**(base | kw))
    assert go(originate_reason="3") == (Outcome.MISSED, MissedReason.MANAGER_NO_ANSWER)
    assert go(originate_reason="5") == (Outcome.MISSED, MissedReason.MANAGER_BUSY)
    assert go(manager_cause=17) == (Outcome.MISSED, MissedReason.MANAGER_BUSY)  # no OriginateResponse seen
    assert go(originate_reason="8") == (Outcome.MISSED, MissedReason.FAILED)
    assert go(manager_answered=True, visitor_statuses=["NOANSWER"]) == (Outcome.MISSED, MissedReason.VISITOR_NO_ANSWER)
    assert go(manager_answered=True, visitor_statuses=["BUSY"]) == (Outcome.MISSED, MissedReason.VISITOR_BUSY)
    assert go(manager_answered=True, visitor_statuses=["CHANUNAVAIL"]) == (Outcome.MISSED, MissedReason.FAILED)


def _site_with_hours(session, schedule=WEEKDAYS):
    site = add_site(session, "Shop", timezone="UTC")
    managers = add_managers(session, ["101", "102"], device_state="NOT_INUSE")
    add_rule(session, "sales", add_group(session, "sales", managers), site=site, strategy="least_recent",
             schedule=schedule)
    session.commit()
    return site, managers


def test_out_of_hours_request_is_scheduled_for_the_next_opening_and_makes_an_enquiry(session):
    site, _ = _site_with_hours(session)
    request = cb.request_callback(session, site, "+7 916 123-45-67", now=FRIDAY_EVENING)
    session.commit()
    assert (request.state, request.next_attempt_at, request.phone) == ("scheduled", MONDAY_NINE, "+79161234567")
    assert request.max_attempts == 3 and request.kind == "callback"
    enquiry = session.get(Enquiry, request.enquiry_id)
    assert (enquiry.channel, enquiry.phone, enquiry.lead_id) == ("callback", "+79161234567", request.lead_id)
    assert session.get(Lead, request.lead_id).first_channel == "callback"
    # asking again while it is open gives the same request, not a second call
    again = cb.request_callback(session, site, "89161234567", now=FRIDAY_EVENING + dt.timedelta(minutes=1))
    assert again.id == request.id
    assert cb.request_callback(session, site, "+79161234567", now=TUESDAY_NOON).id == request.id


def test_in_hours_request_is_due_at_once_and_bad_input_is_refused(session):
    site, _ = _site_with_hours(session)
    assert cb.request_callback(session, site, "+79161234567", now=TUESDAY_NOON).next_attempt_at == TUESDAY_NOON
    with pytest.raises(cb.CallbackError):
        cb.request_callback(session, site, "not a phone", now=TUESDAY_NOON)
    with pytest.raises(cb.CallbackError):
        cb.request_callback(session, site, "+79161234567", "sms", now=TUESDAY_NOON)


def test_manager_chosen_by_the_routing_rules_free_and_held(session):
    site, (m101, m102) = _site_with_hours(session, schedule={})
    m101.last_routed_at = TUESDAY_NOON  # least_recent: 102 first
    session.commit()
    request = cb.request_callback(session, site, "+79161234567", now=TUESDAY_NOON)
    choice = cb.choose_manager(session, request, "uid-1", TUESDAY_NOON, 60)
    assert choice.manager.endpoint == "PJSIP/102" and choice.rule.name == "sales"
    session.commit()
    session.refresh(m102)  # reserved by an UPDATE statement
    assert m102.reserved_call_uid == "uid-1"
    # 102 is held for that call, 101 is on the phone: nobody is free for another callback
    m101.device_state = "INUSE"
    session.commit()
    assert cb.choose_manager(session, request, "uid-2", TUESDAY_NOON, 60) is None


def test_missed_call_is_called_back_once_by_its_manager(session):
    site, (m101, m102) = _site_with_hours(session, schedule={})
    site.missed_call_callback = True
    missed = Call(call_uid="missed-1", node="pbx1", site_id=site.id, caller_number="+79031112233",
                  started_at=TUESDAY_NOON, ended_at=TUESDAY_NOON, state="finished", outcome="missed",
                  missed_reason="no_answer", routed_manager_id=m101.id)
    session.add(missed)
    session.commit()
    assert [c.id for c in cb.missed_calls_to_call_back(session, "pbx1", TUESDAY_NOON - dt.timedelta(hours=1))] \
        == [missed.id]
    request = cb.request_callback(session, site, missed.caller_number, "missed_call_callback", missed_call=missed,
                                  now=TUESDAY_NOON)
    session.commit()
    assert (request.manager_id, request.missed_call_id) == (m101.id, missed.id)
    assert cb.missed_calls_to_call_back(session, "pbx1", TUESDAY_NOON - dt.timedelta(hours=1)) == []
    assert cb.request_callback(session, site, missed.caller_number, "missed_call_callback", missed_call=missed,
                               now=TUESDAY_NOON).id == request.id
    # 101 (the missed call's manager) comes first even though 102 was routed longer ago, and the
    # AGI's hold for the missed call (it outlives the call by the ring timeout) does not stop it
    m101.last_routed_at = TUESDAY_NOON
    m101.reserved_until, m101.reserved_call_uid = TUESDAY_NOON + dt.timedelta(seconds=30), "missed-1"
    session.commit()
    assert cb.choose_manager(session, request, "uid-3", TUESDAY_NOON, 60).manager.id == m101.id
    assert session.scalar(select(Enquiry.channel).where(Enquiry.id == request.enquiry_id)) == "missed_call_callback"


def test_a_due_request_is_claimed_by_one_node_only(session):
    site, _ = _site_with_hours(session, schedule={})
    request = cb.request_callback(session, site, "+79161234567", now=TUESDAY_NOON)
    session.commit()
    assert cb.due_ids(session, TUESDAY_NOON) == [request.id]
    lease = dt.timedelta(minutes=2)
    assert cb.claim(session, request.id, "pbx1", TUESDAY_NOON, lease) is True
    assert cb.claim(session, request.id, "pbx2", TUESDAY_NOON, lease) is False
    session.commit()
    row = session.scalar(select(CallbackRequest))
    session.refresh(row)  # the claim is one UPDATE statement: the loaded object does not know it
    assert (row.state, row.node) == ("dialing", "pbx1")
    assert cb.due_ids(session, TUESDAY_NOON) == []


def test_callback_settings_come_from_the_config_and_bad_spacing_is_refused():
    from astertrack.config import ConfigError, load_config
    values = load_config(environ={"ASTERTRACK_CALLBACKS_RETRY_MINUTES": "1, 10", "ASTERTRACK_CALLBACKS_ATTEMPTS": "4"})
    settings = cb.CallbackSettings.from_config(values.values)
    assert (settings.attempts, settings.retry_minutes) == (4, (1.0, 10.0))
    assert [settings.retry_delay(n) for n in (1, 2, 3)] == [dt.timedelta(minutes=m) for m in (1, 10, 10)]
    with pytest.raises(ConfigError, match=r"\[callbacks\] retry_minutes"):
        load_config(environ={"ASTERTRACK_CALLBACKS_RETRY_MINUTES": "soon"})
