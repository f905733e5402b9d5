"""Rule matching, candidate order and destinations (pure functions)."""

from __future__ import annotations

import datetime as dt

import pytest

from astertrack.routing.rules import (
    CallContext,
    Destination,
    DestinationError,
    ManagerView,
    RuleView,
    after_hours_for,
    dial_string,
    fallback_for,
    is_available,
    is_free_state,
    manager_label,
    order_candidates,
    parse_destination,
    rule_matches,
    select_rule,
    should_retry,
    with_sticky_first,
)

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
CTX = CallContext(did="+74950000101", caller="+79161234567", site_id=1, source_id=7, source_name="Google Ads",
                  utm_campaign="winter", landing_page="https://shop.example/boots?x=1", caller_tags=("Wholesale",),
                  caller_is_vip=False)


def rule(rid, match=None, priority=100, site_id=1, **kw):
    return RuleView(id=rid, name=f"r{rid}", priority=priority, site_id=site_id, match=match or {}, **kw)


@pytest.mark.parametrize("match, expected", [
    ({}, True),
    ({"dids": ["+74950000101"]}, True), ({"dids": ["+74950000102"]}, False),
    ({"source_ids": [7, 8]}, True), ({"source_ids": ["7"]}, True), ({"source_ids": [8]}, False),
    ({"source_names": ["google ads"]}, True), ({"source_names": ["yandex"]}, False),
    ({"utm_campaign": ["winter"]}, True), ({"utm_campaign": ["summer"]}, False),
    ({"landing_contains": ["/BOOTS"]}, True), ({"landing_contains": ["/hats"]}, False),
    ({"caller_numbers": ["+79161234567"]}, True), ({"caller_numbers": ["+70000000000"]}, False),
    ({"caller_tags": ["wholesale", "vip"]}, True), ({"caller_tags": ["vip"]}, False),
    ({"vip": True}, False),
    ({"dids": ["+74950000101"], "utm_campaign": ["summer"]}, False),  # every key must hold
])
def test_rule_match_keys(match, expected):
    assert rule_matches(rule(1, match), CTX) is expected


def test_rules_of_another_site_never_match():
    assert not rule_matches(rule(1, site_id=2), CTX)
    assert rule_matches(rule(1, site_id=None), CTX)
    assert not rule_matches(rule(1, site_id=1), CallContext(did="+74950000999"))


def test_lowest_priority_number_wins_then_lowest_id():
    rules = [rule(3, priority=50), rule(2, {"dids": ["+74950000101"]}, priority=10), rule(1, priority=50)]
    assert select_rule(rules, CTX).id == 2
    assert select_rule(rules[::2], CTX).id == 1
    assert select_rule([rule(1, {"vip": True})], CTX) is None


def m(mid, **kw):
    return ManagerView(id=mid, endpoint=f"PJSIP/{100 + mid}", **kw)


def test_round_robin_starts_after_the_last_chosen():
    managers = [m(3), m(1), m(2)]
    assert [x.id for x in order_candidates("round_robin", managers, rr_cursor=0)] == [1, 2, 3]
    assert [x.id for x in order_candidates("round_robin", managers, rr_cursor=2)] == [3, 1, 2]
    assert [x.id for x in order_candidates("round_robin", managers, rr_cursor=3)] == [1, 2, 3]


def test_least_recent_and_fewest_today():
    t = NOW - dt.timedelta(hours=1)
    managers = [m(1, last_routed_at=t, calls_today=5), m(2, last_routed_at=None, calls_today=5),
                m(3, last_routed_at=t - dt.timedelta(hours=1), calls_today=1)]
    assert [x.id for x in order_candidates("least_recent", managers)] == [2, 3, 1]
    assert [x.id for x in order_candidates("fewest_today", managers)] == [3, 2, 1]
    assert [x.id for x in order_candidates("ring_all", managers)] == [1, 2, 3]


def test_sticky_manager_goes_first_once():
    ordered = with_sticky_first([m(1), m(2), m(3)], m(3))
    assert [x.id for x in ordered] == [3, 1, 2]
    assert [x.id for x in with_sticky_first([m(1)], m(9))] == [9, 1]


def test_availability_paused_disabled_schedule_and_reservation():
    assert is_available(m(1), NOW, "UTC")
    assert not is_available(m(1, paused=True), NOW, "UTC")
    assert not is_available(m(1, enabled=False), NOW, "UTC")
    assert not is_available(m(1, schedule={"tue": [["09:00", "18:00"]]}), NOW, "UTC")  # Monday
    held = m(1, reserved_until=NOW + dt.timedelta(seconds=5), reserved_call_uid="other")
    assert not is_available(held, NOW, "UTC")
    assert is_available(held, NOW, "UTC", call_uid="other")  # its own call may re-offer it
    assert is_available(m(1, reserved_until=NOW - dt.timedelta(seconds=1), reserved_call_uid="x"), NOW, "UTC")


@pytest.mark.parametrize("state, free", [("NOT_INUSE", True), ("not_inuse ", True), ("INUSE", False),
                                         ("RINGING", False), ("UNAVAILABLE", False), ("UNKNOWN", False),
                                         ("", False), (None, False)])
def test_only_not_inuse_is_free(state, free):
    assert is_free_state(state) is free


def test_dial_string_and_recorded_manager_label():
    managers = [m(1, extension="101"), ManagerView(id=2, endpoint="PJSIP/102")]
    assert dial_string(managers) == "PJSIP/101&PJSIP/102"
    assert manager_label(managers) == "101&102"


@pytest.mark.parametrize("status, retry", [("NOANSWER", True), ("BUSY", True), ("CHANUNAVAIL", True),
                                           ("CONGESTION", True), ("ANSWER", False), ("CANCEL", False),
                                           ("", False), (None, False)])
def test_which_dial_statuses_try_the_next_candidate(status, retry):
    assert should_retry(status) is retry


def test_destinations_parse_and_refuse_dialplan_injection():
    assert parse_destination("queue:sales") == Destination("queue", "sales")
    assert parse_destination("PJSIP/200") == Destination("dial", "PJSIP/200")
    assert str(parse_destination("voicemail:100@default")) == "voicemail:100@default"
    assert parse_destination("") is None and parse_destination(None) is None
    for bad in ("dial:PJSIP/1,20,U(x)", "queue:sales)", "dial:${SHELL(rm)}", "dial:a b", 'queue:"x"'):
        with pytest.raises(DestinationError):
            parse_destination(bad)


def test_fallback_and_after_hours_precedence():
    r = rule(1, fallback_destination="queue:sales", after_hours_destination="voicemail:1@default")
    assert str(fallback_for(r, "PJSIP/200")) == "queue:sales"
    assert str(after_hours_for(r, "PJSIP/200")) == "voicemail:1@default"
    assert str(after_hours_for(rule(1, fallback_destination="queue:sales"), None)) == "queue:sales"
    assert str(fallback_for(rule(1, fallback_destination="bad,one"), "PJSIP/200")) == "dial:PJSIP/200"
    assert fallback_for(None, "") is None


def test_every_destination_kind_has_a_branch_in_the_shipped_dialplan():
    """The admin accepts exactly rules.DESTINATION_KINDS; each must be routed by [astertrack-fallback]
    (a kind without a branch would fall through to the default dial)."""
    from pathlib import Path

    from astertrack.routing import rules

    conf = (Path(__file__).resolve().parents[2] / "asterisk-conf" / "extensions_astertrack.conf").read_text()
    fallback = conf[conf.index("[astertrack-fallback]"):]
    for kind in rules.DESTINATION_KINDS:
        assert f'GotoIf($["${{AT_KIND}}" = "{kind}"]?{kind})' in fallback, kind
        assert f" same => n({kind})," in fallback, kind
    for unrouted in ("goto", "hangup"):
        assert rules.parse_destination(f"{unrouted}:x").kind == "dial"  # why the admin refuses them
