"""Callbacks end to end over TCP: the real listener (its tick, its one AMI connection, the state
machine, the writer) against the loopback fake AMI server, on a real database.

The fake answers each ``Originate`` as Asterisk 20 does and streams the call's events.  Their
shapes and order follow the real recordings: the originated manager channel of
``pjsip_z_device_states`` (Newchannel ``AppDial2``, a ``DialBegin``/``DialEnd`` with no caller
channel, ``OriginateResponse`` Success Reason 4 after the answer, Failure Reason 3 with
``Hangup`` cause 19 when it rings out) and, once its dialplan dials the visitor, the
``DialBegin``/``BridgeEnter`` legs of ``pjsip_a_answered_101``.  Our variables travel as
``ChanVariable`` headers (``channelvars`` in asterisk-conf/manager_general.conf.snippet).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

import ami_listener.listener as listener_module
from ami_listener.listener import AmiListener
from astertrack.config import load_config
from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import Call, CallbackRequest, Enquiry, Lead, Manager, RoutingRule
from astertrack.leads import callbacks as cb
from astertrack.samples.factories import add_group, add_managers, add_rule, add_site
from tests.ami.fake_ami import FakeAmiServer
from tests.ami.harness import NODE, SECRET

VISITOR = "+79161234567"
CHANNELVARS = ("CT_CALL_ID", "CT_SOURCE", "CT_MANAGER", "CT_RECORDING")


# ---------------------------------------------------------------- what Asterisk streams


def _block(lines: list[tuple[str, str]]) -> bytes:
    return ("\r\n".join(f"{k}: {v}" for k, v in lines) + "\r\n\r\n").encode()


class Flow:
    """Builds one originated call's events with the recorded header layout."""

    def __init__(self, action: dict[str, str], start: float):
        self.action = action
        self.t = start
        self.uid = action["ChannelId"]
        self.manager = f"{action['Channel']}-0000002a"
        self.trunk_uid = f"{self.uid}.trunk"
        self.trunk = "PJSIP/trunk-0000002b"
        self.vars = dict(v.split("=", 1) for v in action["Variable"].split("\n"))
        self.visitor = action["Exten"]
        self.out: list[bytes] = []
        self.state = ("0", "Down")
        self.trunk_state = ("0", "Down")

    def at(self, seconds: float) -> Flow:
        self.t += seconds
        return self

    def _head(self, event: str, privilege: str = "call,all") -> list[tuple[str, str]]:
        return [("Event", event), ("Privilege", privilege), ("Timestamp", f"{self.t:.6f}")]

    def _chan(self, trunk: bool = False, vars_set: bool = True) -> list[tuple[str, str]]:
        if trunk:
            return [("Channel", self.trunk), ("ChannelState", self.trunk_state[0]),
                    ("ChannelStateDesc", self.trunk_state[1]), ("CallerIDNum", self.visitor),
                    ("CallerIDName", "<unknown>"), ("ConnectedLineNum", "<unknown>"),
                    ("ConnectedLineName", "<unknown>"), ("Language", "en"), ("AccountCode", ""),
                    ("Context", "from-internal"), ("Exten", self.visitor), ("Priority", "1"),
                    ("Uniqueid", self.trunk_uid), ("Linkedid", self.uid)]
        name, num = self.action["CallerID"].rsplit(" <", 1)
        lines = [("Channel", self.manager), ("ChannelState", self.state[0]), ("ChannelStateDesc", self.state[1]),
                 ("CallerIDNum", num.rstrip(">")), ("CallerIDName", name.strip('"')),
                 ("ConnectedLineNum", "<unknown>"), ("ConnectedLineName", "<unknown>"), ("Language", "en"),
                 ("AccountCode", ""), ("Context", "internal"), ("Exten", "s"), ("Priority", "1"),
                 ("Uniqueid", self.uid), ("Linkedid", self.uid)]
        lines += [("ChanVariable", f"{n}={self.vars.get(n, '') if vars_set else ''}") for n in CHANNELVARS]
        return lines

    def _dest(self, trunk: bool) -> list[tuple[str, str]]:
        return [("Dest" + k, v) for k, v in self._chan(trunk) if k != "ChanVariable"]

    def emit(self, event: str, *extra: tuple[str, str], trunk: bool = False, vars_set: bool = True) -> Flow:
        self.out.append(_block(self._head(event) + self._chan(trunk, vars_set) + list(extra)))
        return self

    # the originate's own dial of the manager (no caller channel: DialBegin has Dest* only)
    def manager_rings(self) -> Flow:
        self.emit("Newchannel", vars_set=False)
        self.out.append(_block(self._head("DialBegin") + self._dest(False) + [("DialString", self.action["Channel"])]))
        self.state = ("5", "Ringing")
        return self.emit("Newstate")

    def manager_answers(self) -> Flow:
        self.state = ("6", "Up")
        self.emit("Newstate")
        self.out.append(_block(self._head("DialEnd") + self._dest(False) + [("DialStatus", "ANSWER")]))
        return self.originate_response("Success", "4", self.manager)

    def originate_response(self, response: str, reason: str, channel: str) -> Flow:
        name, num = self.action["CallerID"].rsplit(" <", 1)
        self.out.append(_block(self._head("OriginateResponse") + [
            ("ActionID", self.action["ActionID"]), ("Response", response), ("Channel", channel),
            ("Context", self.action["Context"]), ("Exten", self.action["Exten"]), ("Reason", reason),
            ("Uniqueid", self.uid), ("CallerIDNum", num.rstrip(">")), ("CallerIDName", name.strip('"'))]))
        return self

    def records_and_dials_visitor(self) -> Flow:
        self.emit("MixMonitorStart")
        self.emit("Newchannel", trunk=True)
        self.out.append(_block(self._head("DialBegin") + self._chan() + self._dest(True)
                               + [("DialString", f"{self.visitor}@trunk")]))
        self.trunk_state = ("5", "Ringing")
        return self.emit("Newstate", trunk=True)

    def visitor_answers(self) -> Flow:
        self.trunk_state = ("6", "Up")
        self.emit("Newstate", trunk=True)
        self.out.append(_block(self._head("DialEnd") + self._chan() + self._dest(True) + [("DialStatus", "ANSWER")]))
        bridge = [("BridgeUniqueid", str(uuid.uuid4())), ("BridgeType", "basic"),
                  ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", "<unknown>"), ("BridgeName", "<unknown>"),
                  ("BridgeNumChannels", "1"), ("BridgeVideoSourceMode", "none")]
        self.out.append(_block(self._head("BridgeEnter") + bridge + self._chan()))
        self.out.append(_block(self._head("BridgeEnter") + bridge[:5] + [("BridgeNumChannels", "2")] + bridge[6:]
                               + self._chan(True)))
        self._bridge = bridge
        return self

    def visitor_hangs_up(self) -> Flow:
        self.emit("HangupRequest", trunk=True)
        self.out.append(_block(self._head("BridgeLeave") + self._bridge + self._chan(True)))
        self.out.append(_block(self._head("BridgeLeave") + self._bridge + self._chan()))
        self.emit("Hangup", ("Cause", "16"), ("Cause-txt", "Normal Clearing"), trunk=True)
        return self.emit("Hangup", ("Cause", "16"), ("Cause-txt", "Normal Clearing"))

    def visitor_rings_out(self) -> Flow:
        self.out.append(_block(self._head("DialEnd") + self._chan() + self._dest(True)
                               + [("DialStatus", "NOANSWER")]))
        self.emit("Hangup", ("Cause", "19"), ("Cause-txt", "User alerting, no answer"), trunk=True)
        return self.emit("Hangup", ("Cause", "16"), ("Cause-txt", "Normal Clearing"))

    def manager_busy(self) -> Flow:
        self.emit("Newchannel", vars_set=False)
        self.out.append(_block(self._head("DialBegin") + self._dest(False) + [("DialString", self.action["Channel"])]))
        self.state = ("5", "Ringing")  # as in the recording: the channel state when it ends
        self.emit("HangupRequest", ("Cause", "17"))
        self.originate_response("Failure", "5", self.action["Channel"])
        return self.emit("Hangup", ("Cause", "17"), ("Cause-txt", "User busy"))

    def manager_rings_out(self) -> Flow:
        self.originate_response("Failure", "3", self.action["Channel"])
        return self.emit("Hangup", ("Cause", "19"), ("Cause-txt", "User alerting, no answer"), ("TechCause", "480"))

    def bytes(self) -> bytes:
        return b"".join(self.out)


def answered(action: dict[str, str]) -> bytes:
    """Manager answers after 3 s, visitor after 3 more, they talk 5 s, the visitor hangs up."""
    flow = Flow(action, time.time())
    return (flow.manager_rings().at(3).manager_answers().records_and_dials_visitor().at(3).visitor_answers()
            .at(5).visitor_hangs_up().bytes())


def manager_busy(action: dict[str, str]) -> bytes:
    return Flow(action, time.time()).manager_busy().bytes()


def visitor_no_answer(action: dict[str, str]) -> bytes:
    flow = Flow(action, time.time())
    return (flow.manager_rings().at(2).manager_answers().records_and_dials_visitor().at(int(action["Timeout"]) / 1000)
            .visitor_rings_out().bytes())


def manager_no_answer(action: dict[str, str]) -> bytes:
    flow = Flow(action, time.time())
    return flow.manager_rings().at(int(action["Timeout"]) / 1000).manager_rings_out().bytes()


# ---------------------------------------------------------------- the run


def originates(server: FakeAmiServer) -> list[dict[str, str]]:
    return [a for a in server.actions if a.get("Action") == "Originate"]


def run(db_url: str, answer: Callable[[dict[str, str]], bytes] | list | None, until: Callable[[Session, FakeAmiServer], bool],
        *, timeout: float = 20.0, during: Callable[[Session, FakeAmiServer], None] | None = None,
        **callbacks: object) -> FakeAmiServer:
    """The listener with a 0.2 s tick against a fake that answers each Originate with ``answer``
    (a list: one per Originate, in order); stops once ``until`` holds."""
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    answers = list(answer) if isinstance(answer, list) else None

    def respond(action: dict[str, str]) -> bytes:
        return (answers.pop(0) if answers is not None else answer)(action)

    async def scenario() -> FakeAmiServer:
        server = FakeAmiServer([], secret=SECRET, originate=respond if answer is not None else None)
        port = await server.start()
        config = load_config(environ={}, overrides={
            "general": {"node": NODE}, "database": {"url": db_url},
            "ami": {"host": "127.0.0.1", "port": port, "username": "astertrack", "secret": SECRET,
                    "ping_interval": 5, "pong_timeout": 3, "reconnect_max_delay": 0.5, "sweep_interval": 3600,
                    "metrics_port": 0, "cdr_file": ""},
            "callbacks": {"originate_timeout": 8, **callbacks}})
        listener = AmiListener(config, factory)
        task = asyncio.create_task(listener.run())
        started = time.monotonic()
        try:
            while True:
                if task.done():
                    task.result()
                    raise AssertionError("listener stopped on its own")
                await listener.settle()
                with factory() as session:
                    if during is not None:
                        during(session, server)
                    if until(session, server):
                        break
                if time.monotonic() - started > timeout:
                    raise AssertionError(f"condition not met within {timeout} s")
                await asyncio.sleep(0.05)
        finally:
            listener.stop()
            await asyncio.wait_for(task, 30)
            await listener.callbacks.stop()
            await server.close()
        return server

    try:
        return asyncio.run(scenario())
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def fast_tick(monkeypatch):
    monkeypatch.setattr(listener_module, "RECONCILE_INTERVAL", 0.2)


@pytest.fixture
def shop(session_factory):
    """A site whose 'sales' rule rings 101 then 102 (least recently routed first), a visit's lead."""
    with session_factory() as session:
        site = add_site(session, "Shop & Co", timezone="UTC")
        managers = add_managers(session, ["101", "102"], device_state="NOT_INUSE")
        managers[1].last_routed_at = dt.datetime.now(dt.UTC)
        add_rule(session, "sales", add_group(session, "sales", managers), site=site, strategy="least_recent")
        session.commit()
        return site.id, [m.id for m in managers]


def _request(session_factory, site_id: int, **kw) -> int:
    with session_factory() as session:
        from astertrack.db.models import Site
        request = cb.request_callback(session, session.get(Site, site_id), VISITOR, now=dt.datetime.now(dt.UTC), **kw)
        session.commit()
        return request.id


def _state(session: Session, request_id: int) -> CallbackRequest:
    row = session.get(CallbackRequest, request_id)
    session.refresh(row)
    return row


# ---------------------------------------------------------------- the flows


def test_manager_answers_then_visitor_answers_one_answered_recorded_call(session_factory, db_url, shop):
    site_id, (m101, _m102) = shop
    request_id = _request(session_factory, site_id)
    server = run(db_url, answered, lambda s, srv: _state(s, request_id).state == "connected")

    (action,) = originates(server)
    assert action["Channel"] == "PJSIP/101"  # the rule's first free candidate
    assert (action["Context"], action["Exten"], action["Priority"]) == ("astertrack-callback", "79161234567", "1")
    assert action["CallerID"] == '"callback from Shop & Co" <+79161234567>'
    assert (action["Timeout"], action["Async"]) == ("8000", "true")
    assert action["ActionID"].startswith("astertrack-cb-")
    variables = dict(v.split("=", 1) for v in action["Variable"].split("\n"))
    with session_factory() as session:
        request = _state(session, request_id)
        call = session.get(Call, request.call_id)
        assert variables["CT_CALL_ID"] == call.call_uid and variables["CT_CALLBACK_ID"] == str(request_id)
        assert variables["CT_LEAD_CHANNEL"] == "callback" and variables["CT_MANAGER"] == "PJSIP/101"
        assert call.recording_path == f"/var/spool/asterisk/monitor/{variables['CT_RECORDING']}.wav"
        assert action["ChannelId"] == call.linkedid
        # one call record, the same as an inbound one: answered by the manager, wait, talk, recording
        assert (call.state, call.outcome, call.missed_reason) == ("finished", "answered", None)
        assert (call.lead_channel, call.answered_by, call.manager_id) == ("callback", "PJSIP/101", m101)
        assert call.caller_number == VISITOR and call.closed_by == "events"
        assert call.hangup_side == "caller"  # the visitor (the customer) hung up
        assert call.wait_seconds == pytest.approx(6, abs=0.01)  # manager 3 s + visitor 3 s
        assert call.talk_seconds == pytest.approx(5, abs=0.01)
        assert call.recording_path.endswith(f"{call.call_uid}.wav") and call.recording_state == "kept"
        assert (request.attempts, request.last_result) == (1, "answered")
        assert session.scalar(select(Enquiry.channel).where(Enquiry.id == request.enquiry_id)) == "callback"
        lead = session.get(Lead, request.lead_id)  # a connected callback: the lead is being worked on
        assert (lead.status, lead.manager_id, lead.first_channel) == ("in_progress", m101, "callback")
        assert session.scalar(select(Manager.reserved_call_uid).where(Manager.id == m101)) is None  # hold released
        assert session.scalar(select(Call.id).where(Call.lead_channel == "call")) is None  # no stray inbound row


def test_manager_busy_then_a_retry_later_connects(session_factory, db_url, shop):
    site_id, (m101, m102) = shop
    request_id = _request(session_factory, site_id)
    seen: dict[str, object] = {}

    def retry_now(session: Session, server: FakeAmiServer) -> None:
        request = _state(session, request_id)
        if request.state == "scheduled" and request.attempts == 1 and "first" not in seen:
            call = session.get(Call, request.call_id)
            seen["first"] = (request.last_result, request.next_attempt_at, request.updated_at,
                             call.outcome, call.missed_reason, call.lead_channel)
            # the back-off has passed
            session.execute(update(CallbackRequest).where(CallbackRequest.id == request_id)
                            .values(next_attempt_at=dt.datetime.now(dt.UTC)))
            session.commit()

    server = run(db_url, [manager_busy, answered], lambda s, srv: _state(s, request_id).state == "connected",
                 during=retry_now, retry_minutes="2, 5")
    result, next_at, at, outcome, reason, channel = seen["first"]
    assert (result, outcome, reason, channel) == ("manager_busy", "missed", "manager_busy", "callback")
    assert (next_at - at).total_seconds() == pytest.approx(120, abs=1)
    first, second = originates(server)
    # the next attempt goes by the rule again: least recently routed first, now 102
    assert (first["Channel"], second["Channel"]) == ("PJSIP/101", "PJSIP/102")
    assert first["Variable"] != second["Variable"]  # a new call id for each attempt
    with session_factory() as session:
        request = _state(session, request_id)
        assert (request.attempts, request.last_result) == (2, "answered")
        calls = session.scalars(select(Call).order_by(Call.id)).all()
        assert [(c.outcome, c.missed_reason) for c in calls] == [("missed", "manager_busy"), ("answered", None)]


def test_visitor_does_not_answer_retried_then_failed_after_the_last_attempt(session_factory, db_url, shop):
    site_id, _ = shop
    request_id = _request(session_factory, site_id, settings=cb.CallbackSettings(attempts=2))

    def retry_now(session: Session, server: FakeAmiServer) -> None:
        session.execute(update(CallbackRequest).where(CallbackRequest.id == request_id,
                                                      CallbackRequest.state == "scheduled")
                        .values(next_attempt_at=dt.datetime.now(dt.UTC)))
        session.commit()

    server = run(db_url, visitor_no_answer, lambda s, srv: _state(s, request_id).state == "failed",
                 during=retry_now)
    assert len(originates(server)) == 2
    with session_factory() as session:
        request = _state(session, request_id)
        assert (request.attempts, request.last_result) == (2, "visitor_no_answer")
        calls = session.scalars(select(Call).order_by(Call.id)).all()
        assert [(c.outcome, c.missed_reason, c.answered_by) for c in calls] == \
            [("missed", "visitor_no_answer", None)] * 2
        assert all(c.wait_seconds == pytest.approx(10, abs=0.01) for c in calls)  # 2 s + the 8 s Dial timeout


def test_manager_rings_out_is_missed_with_that_reason(session_factory, db_url, shop):
    site_id, _ = shop
    request_id = _request(session_factory, site_id)
    def settled(s, srv) -> bool:  # the request rescheduled AND its call's outcome written (two writers)
        request = _state(s, request_id)
        call = s.get(Call, request.call_id) if request.call_id else None
        return request.state == "scheduled" and request.attempts == 1 and call is not None and call.outcome is not None

    run(db_url, manager_no_answer, settled)
    with session_factory() as session:
        request = _state(session, request_id)
        call = session.get(Call, request.call_id)
        assert (call.outcome, call.missed_reason, call.hangup_cause) == ("missed", "manager_no_answer", 19)
        assert request.last_result == "manager_no_answer"


def test_out_of_hours_request_waits_for_the_next_opening(session_factory, db_url, shop):
    site_id, _ = shop
    today = dt.datetime.now(dt.UTC).date()
    every_day = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    with session_factory() as session:
        session.execute(update(RoutingRule).values(schedule=every_day | {"closed_dates": [today.isoformat()]}))
        session.commit()
    request_id = _request(session_factory, site_id)
    ticks = {"n": 0}

    def count(session: Session, server: FakeAmiServer) -> None:
        ticks["n"] += 1

    server = run(db_url, answered, lambda s, srv: ticks["n"] > 30, during=count)
    assert originates(server) == []
    with session_factory() as session:
        request = _state(session, request_id)
        tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0, 0), tzinfo=dt.UTC)
        assert (request.state, request.attempts, request.next_attempt_at) == ("scheduled", 0, tomorrow)


def test_a_missed_call_is_called_back_once_by_its_manager(session_factory, db_url, shop):
    site_id, (m101, m102) = shop
    now = dt.datetime.now(dt.UTC)
    with session_factory() as session:
        from astertrack.db.models import Site
        session.get(Site, site_id).missed_call_callback = True
        session.add(Call(call_uid="missed-inbound", node=NODE, site_id=site_id, caller_number=VISITOR,
                         started_at=now - dt.timedelta(seconds=30), ended_at=now, state="finished",
                         outcome="missed", missed_reason="no_answer", routed_manager_id=m102, utm_campaign="winter"))
        session.commit()

    def done(session: Session, server: FakeAmiServer) -> bool:
        row = session.scalar(select(CallbackRequest))
        return row is not None and _state(session, row.id).state == "connected"

    server = run(db_url, answered, done)
    (action,) = originates(server)
    assert action["Channel"] == "PJSIP/102"  # the missed call's manager, though 101 is first in the rule
    assert "CT_CAMPAIGN=winter" in action["Variable"].split("\n")
    with session_factory() as session:
        (request,) = session.scalars(select(CallbackRequest)).all()
        missed = session.scalar(select(Call).where(Call.call_uid == "missed-inbound"))
        call = session.get(Call, request.call_id)
        assert (request.kind, request.missed_call_id) == ("missed_call_callback", missed.id)
        assert (call.lead_channel, call.outcome, call.utm_campaign) == ("missed_call_callback", "answered", "winter")


def test_originate_refused_is_a_failed_attempt_retried_later(session_factory, db_url, shop):
    """An AMI user without ``originate`` rights: Asterisk answers ``Response: Error`` (the fake
    does for any action it does not know).  The attempt is a call that could not be connected."""
    site_id, (m101, _) = shop
    request_id = _request(session_factory, site_id)
    server = run(db_url, None, lambda s, srv: _state(s, request_id).attempts == 1
                 and _state(s, request_id).state == "scheduled")
    assert len(originates(server)) == 1
    with session_factory() as session:
        request = _state(session, request_id)
        call = session.get(Call, request.call_id)
        assert (call.state, call.outcome, call.missed_reason) == ("finished", "missed", "failed")
        assert request.last_result == "failed" and request.next_attempt_at > dt.datetime.now(dt.UTC)
        assert session.scalar(select(Manager.reserved_call_uid).where(Manager.id == m101)) is None
