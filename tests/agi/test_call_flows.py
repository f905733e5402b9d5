"""Recorded AGI sessions replayed against the real FastAGI server, one test per call flow.

Each test seeds the database the flow needs, plays Asterisk's side of a recorded session
(shared/asterisk/agi) over TCP, and asserts every variable the route set, the UserEvent and
the rows written.  Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from astertrack import dialplan_vars as v
from astertrack.dbtypes import utcnow
from astertrack.models import Call, CallerProfile, Manager, Site
from astertrack.recording import recording_name
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
    """PENDING first, OK (or FAILED) last: a cut session never looks complete."""
    statuses = [name for name in result.set_order if name == v.STATUS]
    assert result.set_order[0] == v.STATUS
    assert result.set_order[-1] == v.STATUS
    assert len(statuses) == 2


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
