"""The writer thread: nothing lost when the database blips, one bad op does not sink its batch."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from ami_listener.writer import OP_GAP, CallWriter
from astertrack.callflow.state_machine import OP_EVENT, OP_FINISH, OP_LIVE
from astertrack.db.models import AmiGap, Call, CallEvent
from astertrack.db.types import utcnow


def record(key: str, **extra) -> dict:
    base = {"key": key, "linkedids": [key], "call_uid": None, "uniqueid": key, "channel": "PJSIP/trunk-00000001",
            "did": "74950000101", "caller_number": "79161234567", "caller_name": "Ivan", "started_at": time.time(),
            "source": None, "routed_manager": None, "routed_by": None, "queue": None}
    base.update(extra)
    return base


def finish(key: str) -> dict:
    return record(key, state="finished", outcome="missed", missed_reason="no_answer", answered_at=None,
                  ended_at=time.time(), wait_seconds=8.0, talk_seconds=0.0, total_seconds=8.0, answered_by=None,
                  transferred=False, transferred_to=None, hangup_cause=16, hangup_cause_text="Normal Clearing",
                  hangup_side="pbx", recording_path=None, recording_state=None, closed_by="events",
                  ringing_endpoint=None)


def test_database_outage_is_retried_until_it_comes_back(session_factory):
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OperationalError("connect", {}, ConnectionRefusedError("database is down"))
        return session_factory()

    writer = CallWriter(flaky, "pbx-test", retry_delay=0.01)
    writer.start()
    writer.submit([(OP_LIVE, "1.1", record("1.1", state="ringing", ringing_endpoint="PJSIP/101",
                                            answered_by=None, answered_at=None)),
                   (OP_EVENT, "1.1", {"Event": "DialBegin", "Uniqueid": "1.1", "Timestamp": 1.0}),
                   (OP_FINISH, "1.1", finish("1.1"))])
    assert writer.flush(10)
    writer.stop()
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.state, call.outcome, call.did) == ("finished", "missed", "+74950000101")
        assert session.scalar(select(CallEvent.name)) == "DialBegin"
    assert calls["n"] >= 3


def test_one_bad_op_is_logged_and_the_rest_of_the_batch_is_kept(session_factory, caplog):
    writer = CallWriter(session_factory, "pbx-test")
    now = utcnow()
    writer.apply([
        (OP_LIVE, "2.1", record("2.1", state="ringing", ringing_endpoint=None, answered_by=None, answered_at=None)),
        (OP_EVENT, "2.1", {"Event": "Hangup", "Uniqueid": "2.1", "Bad": {1, 2}}),  # not storable as JSON
        (OP_FINISH, "2.1", finish("2.1")),
        (OP_GAP, now, now, "listener start"),
        (OP_FINISH, "3.1", finish("3.1")),
    ])
    with session_factory() as session:
        assert sorted(session.scalars(select(Call.uniqueid))) == ["2.1", "3.1"]
        assert session.scalar(select(AmiGap.reason)) == "listener start"
    assert writer.errors == 1
    assert "could not store event" in caplog.text
