"""A manager dialling a customer from their own desk phone (not a call astertrack placed), recorded on
the lab's chan_pjsip PBX (tests/fixtures/asterisk/lab-2026-12-06, README "Set 5"), replayed into the
real listener: one ``outbound_calls`` row, never an inbound call; astertrack's own calls never make one."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from astertrack.callflow.ami_parse import AmiStreamParser
from astertrack.callflow.state_machine import OP_FINISH, OP_OUTBOUND, CallStateMachine
from astertrack.db.models import Call, Manager, OutboundCall
from tests.ami.fake_ami import capture_body
from tests.ami.harness import NODE, Script, finished_calls, run_listener
from tests.conftest import RECORDED_ASTERISK

LAB = RECORDED_ASTERISK / "lab-2026-12-06"


def at(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def outbound_rows(session) -> int:
    return session.scalar(select(func.count()).select_from(OutboundCall)) or 0


def replay(db_url: str, flow: str) -> None:
    run_listener(db_url, [Script(stream=capture_body(LAB / f"{flow}.ami.txt"))], lambda s: outbound_rows(s) >= 1,
                 cdr_file="")


def machine_ops(flow: str) -> list[tuple]:
    machine = CallStateMachine()
    for msg in AmiStreamParser().feed(capture_body(LAB / f"{flow}.ami.txt")):
        machine.feed(msg)
    assert not machine.groups  # every call of the recording ended
    return machine.drain()


@pytest.fixture
def anna(session_factory):
    with session_factory() as session:
        session.add_all([Manager(name="Anna", endpoint="PJSIP/101", extension="101"),
                         Manager(name="Boris", endpoint="PJSIP/102", extension="102")])
        session.commit()
        return session.scalar(select(Manager.id).where(Manager.name == "Anna"))


def test_manager_outbound_answered_is_one_outbound_record(session_factory, db_url, anna):
    """Anna (PJSIP/101) dials 79161112233 through the trunk; the far end answers after 3 s and hangs
    up after 5 s (Cdr: ANSWERED, billsec 5)."""
    replay(db_url, "pjsip_manager_outbound_answered")
    with session_factory() as session:
        (row,) = session.scalars(select(OutboundCall)).all()
        assert (row.node, row.linkedid, row.manager_id, row.endpoint) == (NODE, "1796569669.74", anna, "PJSIP/101")
        assert (row.number, row.number_raw, row.disposition) == ("+79161112233", "79161112233", "answered")
        assert row.started_at == at(1796569669.628161)  # Newchannel of PJSIP/101 (state Ring)
        assert row.answered_at == at(1796569672.632696)  # both legs in the simple_bridge
        assert row.ended_at == at(1796569677.654490)  # the last Hangup
        assert (row.ended_at - row.answered_at).total_seconds() == pytest.approx(5, abs=0.1)
        assert session.scalar(select(func.count()).select_from(Call)) == 0  # no inbound call made of it


def test_manager_outbound_unanswered_is_kept_as_not_answered(session_factory, db_url, anna):
    """79161112244 is rejected by the far end at once (cause 1): DialEnd NOANSWER, no bridge."""
    replay(db_url, "pjsip_manager_outbound_unanswered")
    with session_factory() as session:
        (row,) = session.scalars(select(OutboundCall)).all()
        assert (row.manager_id, row.number, row.disposition, row.answered_at) == (anna, "+79161112244", "noanswer",
                                                                                 None)
        assert row.ended_at == at(1796569686.935509)
        assert session.scalar(select(func.count()).select_from(Call)) == 0


def test_the_state_machine_reports_the_phone_its_number_and_times():
    (op,) = [op for op in machine_ops("pjsip_manager_outbound_answered") if op[0] == OP_OUTBOUND]
    rec = op[2]
    assert (rec["endpoint"], rec["exten"], rec["dial_string"]) == ("PJSIP/101", "79161112233", "79161112233@trunk")
    assert rec["callee_endpoints"] == ["PJSIP/trunk"]
    assert rec["answered_at"] - rec["started_at"] == pytest.approx(3.004, abs=0.01)


@pytest.mark.parametrize("flow", ["pjsip_queue_timeout", "sip_queue_timeout", "pjsip_callback_request", "sip_callback_request", "pjsip_missed_call_callback"])
def test_astertrack_calls_and_their_legs_are_never_outbound_records(flow):
    """Inbound calls the AGI announced (their Dial legs to the phones included) and callbacks astertrack
    originated (the manager's phone first, then the customer) are calls, not a manager's own dial."""
    ops = machine_ops(flow)
    assert [op for op in ops if op[0] == OP_FINISH]
    assert not [op for op in ops if op[0] == OP_OUTBOUND]


def test_an_unannounced_inbound_call_dialling_a_manager_is_no_outbound_record(session_factory, db_url, anna):
    """The AGI was down and the dialplan's fallback dialled PJSIP/101 without a call id: the state machine
    offers it (the trunk dialled out), the writer keeps only a manager phone's own dial."""
    run_listener(db_url, [Script(stream=capture_body(LAB / "pjsip_agi_down_fallback_not_recorded.ami.txt"))],
                 lambda s: finished_calls(s) >= 1, cdr_file="")
    with session_factory() as session:
        assert outbound_rows(session) == 0
        assert session.scalar(select(Call.answered_by)) == "PJSIP/101"


def test_a_phone_that_is_no_managers_makes_no_record(session_factory, db_url):
    """Without a manager on PJSIP/101 the listener keeps nothing of the dial (and no inbound call)."""
    with pytest.raises(AssertionError, match="not met"):
        run_listener(db_url, [Script(stream=capture_body(LAB / "pjsip_manager_outbound_answered.ami.txt"))],
                     lambda s: outbound_rows(s) >= 1, cdr_file="", timeout=3)
    with session_factory() as session:
        assert outbound_rows(session) == 0
        assert session.scalar(select(func.count()).select_from(Call)) == 1  # an unknown phone: a call, as before
