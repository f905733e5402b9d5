"""Leads from calls: the listener's step makes exactly one enquiry per finished inbound call, and
none for anonymous calls, calls astertrack placed, calls without a site or still ringing."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from ami_listener.leads_step import LeadsFromCalls, pending_calls
from astertrack.db.models import Call, Enquiry, Lead, Manager
from astertrack.samples.factories import add_site, add_static_source
from tests.ami.fake_ami import Session as Script
from tests.ami.fake_ami import capture_body
from tests.ami.ground_truth import ALL
from tests.ami.harness import NODE, run_listener
from tests.conftest import RECORDED_ASTERISK


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_step_records_each_finished_inbound_call_once(session_factory):
    now = dt.datetime.now(dt.UTC)
    with session_factory() as db:
        site = add_site(db)
        ads = add_static_source(db, site, "Ads")

        def call(minutes_ago, **fields):
            values = {"site_id": site.id, "caller_number": "+79161234567", "state": "finished", "outcome": "answered",
                      "started_at": now - dt.timedelta(minutes=minutes_ago), "source_id": ads.id}
            values.update(fields)
            db.add(Call(**values))

        call(30)
        call(20, outcome="missed")  # a missed call is an enquiry too, of the same lead
        call(10, caller_number="+79035550000", utm_campaign="spring")
        call(9, caller_number=None, caller_raw="anonymous")  # anonymous: no lead
        call(8, lead_channel="callback")  # astertrack's own callback: its request is the enquiry
        call(7, site_id=None)  # the AGI never saw it
        call(1, state="ringing", outcome=None)  # not finished yet
        call(60 * 24 * 5)  # older than the look-back
        db.commit()

    step = LeadsFromCalls(session_factory)
    assert step.run_once(now=now) == 3
    assert step.run_once(now=now) == 0  # idempotent
    with session_factory() as db:
        assert _count(db, Enquiry) == 3 and _count(db, Lead) == 2
        first, second = db.scalars(select(Lead).order_by(Lead.created_at)).all()
        assert (first.phone, first.enquiries_count, first.first_channel, first.source_id) == (
            "+79161234567", 2, "call", ads.id)
        assert db.scalar(select(Enquiry.utm_campaign).where(Enquiry.lead_id == second.id)) == "spring"
        # the ringing call ends: the next pass records it, once
        db.execute(Call.__table__.update().where(Call.state == "ringing").values(state="finished",
                                                                                  outcome="answered"))
        db.commit()
        assert pending_calls(db, now - dt.timedelta(hours=1)) != []
    assert step.run_once(now=now) == 1
    assert step.run_once(now=now) == 0
    with session_factory() as db:
        assert _count(db, Enquiry) == 4
        assert db.scalar(select(Lead.enquiries_count).where(Lead.phone == "+79161234567")) == 3


def test_listener_replay_makes_exactly_one_enquiry_per_call(session_factory, db_url):
    """The real listener against a recorded Asterisk call (fake AMI server, real TCP): the AGI's row
    with its site becomes one enquiry on the listener's tick, and stays one."""
    expected = ALL["pjsip_a_answered_101"]
    with session_factory() as db:
        site = add_site(db)
        db.add(Manager(name="Manager 101", endpoint="PJSIP/101", extension="101"))
        db.add(Call(call_uid=expected.call_uid, node=NODE, state="ringing", site_id=site.id,
                    started_at=dt.datetime.now(dt.UTC), utm_source="agi-wrote-this"))
        db.commit()
    body = capture_body(RECORDED_ASTERISK / "ami" / f"{expected.capture}.ami.txt")

    def look_back_to_the_recording(listener, _server):  # the recorded call started weeks ago
        listener.leads.recent = listener.leads.lookback = dt.timedelta(days=3650)

    run = run_listener(db_url, [Script(stream=body)], lambda db: _count(db, Enquiry) >= 1, timeout=30,
                       during=look_back_to_the_recording)
    run.listener.leads.wait()
    assert run.listener.leads.run_once() == 0  # a later pass finds nothing left to record
    with session_factory() as db:
        [call] = db.scalars(select(Call)).all()
        [enquiry] = db.scalars(select(Enquiry)).all()
        [lead] = db.scalars(select(Lead)).all()
        assert call.state == "finished" and enquiry.call_id == call.id
        assert (enquiry.channel, enquiry.phone, enquiry.utm_source) == ("call", "+" + expected.caller, "agi-wrote-this")
        assert enquiry.manager_id == call.manager_id is not None
        assert (lead.first_channel, lead.call_id, lead.enquiries_count, lead.site_id) == ("call", call.id, 1, site.id)
