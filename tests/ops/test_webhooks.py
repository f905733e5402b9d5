"""Webhook outbox worker on both databases, delivering to a real HTTP server on loopback."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from astertrack.cli.main import main
from astertrack.db.models import Call, Manager, Site, Source, WebhookOutbox, WebhookSubscription
from astertrack.db.types import utcnow
from astertrack.integrations.events import CallEventBody
from astertrack.integrations.webhooks import (
    MAX_BACKOFF_SECONDS,
    Retry,
    backoff,
    deliver_due,
    enqueue,
    run_once,
)
from astertrack.samples.processes import spawn, stop_process

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def add_call(session, outcome="answered", state="finished", ended=NOW - dt.timedelta(minutes=5), **extra):
    call = Call(state=state, outcome=outcome if state == "finished" else None, started_at=ended - dt.timedelta(minutes=2),
                ended_at=ended if state == "finished" else None, caller_number="+74951112233", did="+74950000001",
                **extra)
    session.add(call)
    session.flush()
    return call


def subscribe(session, url, events, secret="s3cret"):
    subscription = WebhookSubscription(url=url, events=events, secret=secret)
    session.add(subscription)
    session.flush()
    return subscription


def outbox(session):
    session.commit()  # end the read snapshot so the worker's commits are visible
    session.expire_all()  # the factory does not expire on commit
    return session.scalars(select(WebhookOutbox).order_by(WebhookOutbox.id)).all()


def test_enqueues_finished_calls_once_per_subscription_and_event(session, receiver):
    site = Site(name="shop")
    manager = Manager(name="Anna", endpoint="PJSIP/101")
    session.add_all([site, manager])
    session.flush()
    source = Source(site_id=site.id, name="Yandex Direct")
    session.add(source)
    session.flush()
    answered = add_call(session, "answered", manager_id=manager.id, site_id=site.id, source_id=source.id, utm_source="yandex", utm_campaign="winter",
                        keyword="buy sofa", is_first_call=True, recording_path="/var/spool/x.wav",
                        recording_state="kept", talk_seconds=61.5, wait_seconds=7.0)
    missed = add_call(session, "missed", missed_reason="no_answer")
    busy = add_call(session, "busy")
    add_call(session, state="up")  # still talking: not announced
    add_call(session, "answered", ended=NOW - dt.timedelta(days=3))  # too old
    every = subscribe(session, receiver.url, ["call.finished"])
    missed_only = subscribe(session, receiver.url, ["call.missed"])
    both = subscribe(session, receiver.url, ["call.finished", "call.missed"])
    disabled = subscribe(session, receiver.url, ["call.finished"])
    disabled.enabled = False
    session.commit()

    assert enqueue(session, NOW) == 3 + 2 + 5
    session.commit()
    assert enqueue(session, NOW) == 0  # second run: nothing new
    session.commit()

    rows = outbox(session)
    by_sub = {}
    for row in rows:
        by_sub.setdefault(row.subscription_id, set()).add((row.event, row.call_id))
    assert by_sub[every.id] == {("call.finished", c.id) for c in (answered, missed, busy)}
    assert by_sub[missed_only.id] == {("call.missed", missed.id), ("call.missed", busy.id)}
    assert len(by_sub[both.id]) == 5
    assert disabled.id not in by_sub
    payload = next(r.payload for r in rows if r.call_id == answered.id)
    assert payload["call_uid"] == answered.call_uid
    assert payload["manager_endpoint"] == "PJSIP/101"
    assert payload["source"] == "Yandex Direct" and payload["site_id"] == site.id
    assert payload["utm_campaign"] == "winter" and payload["keyword"] == "buy sofa"
    assert payload["is_first_call"] is True and payload["talk_seconds"] == 61.5
    assert payload["recording_state"] == "kept"
    assert "/var/spool" not in json.dumps(payload)
    CallEventBody.model_validate(payload)  # the documented body (events.py), nothing more or less
    assert payload["event"] == "call.finished" and payload["state"] == "finished" and payload["channel"] == "call"
    assert {row.subject for row in rows if row.subscription_id == every.id} == {
        f"call:{c.id}" for c in (answered, missed, busy)}
    assert dt.datetime.fromisoformat(payload["ended_at"]) == answered.ended_at

    # a call finishing later is picked up by the next pass
    add_call(session, "missed")
    session.commit()
    assert enqueue(session, NOW) == 1 + 1 + 2
    session.commit()


def test_delivers_signed_json_and_marks_delivered(session, session_factory, receiver):
    call = add_call(session, "missed", missed_reason="no_answer")
    subscribe(session, receiver.url, ["call.missed"], secret="topsecret")
    session.commit()

    counts = run_once(session_factory, NOW)
    assert counts == {"enqueued": 1, "claimed": 1, "delivered": 1, "failed": 0, "gave_up": 0}
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    headers = request.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-astertrack-event"] == "call.missed"
    expected = "sha256=" + hmac.new(b"topsecret", request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-astertrack-signature"], expected)
    body = json.loads(request.body)
    assert body["event"] == "call.missed" and body["call_uid"] == call.call_uid and body["outcome"] == "missed"
    [row] = outbox(session)
    assert headers["x-astertrack-delivery"] == str(row.id)
    assert row.delivered_at == NOW and row.attempts == 1 and row.last_error is None

    # nothing left: a second pass neither enqueues nor posts
    assert run_once(session_factory, NOW + dt.timedelta(minutes=1))["claimed"] == 0
    assert len(receiver.requests) == 1


def test_server_error_is_retried_with_backoff_then_given_up(session, session_factory, receiver):
    add_call(session, "answered")
    subscribe(session, receiver.url, ["call.finished"])
    session.commit()
    enqueue(session, NOW)
    session.commit()
    receiver.status = 500

    counts = deliver_due(session_factory, NOW, max_attempts=3)
    assert counts["failed"] == 1
    [row] = outbox(session)
    assert row.attempts == 1 and row.delivered_at is None and row.last_error == "HTTP 500"
    assert row.next_attempt_at == NOW + dt.timedelta(seconds=30)

    # not due yet: nothing is posted
    assert deliver_due(session_factory, NOW + dt.timedelta(seconds=29), max_attempts=3)["claimed"] == 0
    assert len(receiver.requests) == 1

    later = NOW + dt.timedelta(seconds=30)
    assert deliver_due(session_factory, later, max_attempts=3)["failed"] == 1
    [row] = outbox(session)
    assert row.attempts == 2 and row.next_attempt_at == later + dt.timedelta(seconds=60)

    last = later + dt.timedelta(seconds=60)
    assert deliver_due(session_factory, last, max_attempts=3)["gave_up"] == 1
    [row] = outbox(session)
    assert row.attempts == 3 and row.delivered_at is None
    assert row.last_error.startswith("gave up after 3 attempts") and "HTTP 500" in row.last_error
    assert row.next_attempt_at > last + dt.timedelta(days=365)
    assert deliver_due(session_factory, last + dt.timedelta(days=30), max_attempts=3)["claimed"] == 0
    assert len(receiver.requests) == 3


def test_recovers_after_a_failure(session, session_factory, receiver):
    add_call(session, "answered")
    subscribe(session, receiver.url, ["call.finished"])
    session.commit()
    receiver.status = 503
    assert run_once(session_factory, NOW)["failed"] == 1
    receiver.status = 204
    assert run_once(session_factory, NOW + dt.timedelta(minutes=1))["delivered"] == 1
    [row] = outbox(session)
    assert row.attempts == 2 and row.delivered_at is not None and row.last_error is None


def test_backoff_doubles_and_is_capped():
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff(20).total_seconds() == MAX_BACKOFF_SECONDS == 3600
    assert [backoff(n, Retry(8, 1, 3)).total_seconds() for n in (1, 2, 3, 9)] == [1, 2, 3, 3]


def test_non_http_url_fails_clearly_without_a_request(session, session_factory, receiver):
    add_call(session, "answered")
    subscribe(session, "file:///etc/passwd", ["call.finished"])
    session.commit()
    counts = run_once(session_factory, NOW)
    assert counts["failed"] == 1 and counts["delivered"] == 0
    [row] = outbox(session)
    assert "unsupported URL scheme 'file'" in row.last_error and "only http and https" in row.last_error
    assert row.delivered_at is None


def test_unreachable_server_is_an_error_not_a_crash(session, session_factory, receiver):
    add_call(session, "answered")
    receiver.close()
    subscribe(session, receiver.url, ["call.finished"])
    session.commit()
    assert run_once(session_factory, NOW)["failed"] == 1
    [row] = outbox(session)
    assert row.last_error and "HTTP" not in row.last_error


def test_claimed_rows_are_not_posted_twice(session, session_factory, receiver):
    """A second worker arriving while the first holds the rows finds nothing due."""
    for _ in range(3):
        add_call(session, "answered")
    subscribe(session, receiver.url, ["call.finished"])
    session.commit()
    enqueue(session, NOW)
    session.commit()
    seen = []

    def slow_post(url, body, headers, timeout):
        if not seen:
            seen.append(deliver_due(session_factory, NOW)["claimed"])  # the "other node"
        return 200

    assert deliver_due(session_factory, NOW, post=slow_post)["delivered"] == 3
    assert seen == [0]


def _config(tmp_path, db_url):
    path = tmp_path / "astertrack.conf"
    path.write_text(f"[database]\nurl = {db_url}\n", encoding="utf-8")
    return str(path)


def test_once_command_prints_counts(session, receiver, tmp_path, db_url):
    call = add_call(session, "busy", ended=utcnow() - dt.timedelta(minutes=1))
    subscribe(session, receiver.url, ["call.missed"])
    session.commit()
    result = CliRunner().invoke(main, ["-c", _config(tmp_path, db_url), "webhooks", "once"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1]) == {
        "enqueued": 1, "claimed": 1, "delivered": 1, "failed": 0, "gave_up": 0}
    assert json.loads(receiver.requests[0].body)["call_id"] == call.id


def test_run_delivers_and_stops_cleanly_on_sigterm(session, receiver, tmp_path, db_url):
    add_call(session, "answered", ended=utcnow() - dt.timedelta(minutes=1))
    subscribe(session, receiver.url, ["call.finished"])
    session.commit()
    env = {**os.environ, "ASTERTRACK_CONFIG": _config(tmp_path, db_url)}
    process = spawn([str(Path(sys.executable).parent / "astertrack"), "webhooks", "run", "--interval", "0.2"],
                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.requests, "the worker delivered nothing"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        stop_process(process, 10)
    assert process.returncode == 0, err
    assert "delivered=1" in out
    assert "stopped" in err


# ---------------------------------------------------------------- signatures v2

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def documented_verify():
    """The receiver's verification function exactly as docs/webhooks.md prints it."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Verifying a delivery", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]


def _delivered(session, session_factory, receiver, secret="topsecret"):
    add_call(session, "missed", missed_reason="no_answer")
    subscribe(session, receiver.url, ["call.missed"], secret=secret)
    session.commit()
    before = int(time.time())
    assert run_once(session_factory, NOW)["delivered"] == 1
    request = receiver.requests[-1]
    from werkzeug.datastructures import Headers

    return Headers(list(request.headers.items())), request.body, before


def test_signature_covers_timestamp_delivery_id_and_body(session, session_factory, receiver):
    headers, body, before = _delivered(session, session_factory, receiver)
    timestamp = headers["X-Astertrack-Timestamp"]
    assert timestamp.isdigit() and before <= int(timestamp) <= time.time() + 1
    delivery = headers["X-Astertrack-Delivery"]
    signed = f"{timestamp}.{delivery}.".encode() + body
    expected = "sha256=" + hmac.new(b"topsecret", signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Astertrack-Signature-V2"], expected)
    # the body-only header stays for one release, so receivers can switch over
    legacy = "sha256=" + hmac.new(b"topsecret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Astertrack-Signature"], legacy)


def test_documented_example_accepts_a_real_delivery_and_refuses_tampering(session, session_factory, receiver):
    verify = documented_verify()
    headers, body, _ = _delivered(session, session_factory, receiver)
    timestamp = int(headers["X-Astertrack-Timestamp"])
    assert verify("topsecret", headers, body) is True
    assert verify("topsecret", headers, body, now=timestamp + 299) is True
    # a delivery captured and replayed later is refused, however good its signature
    assert verify("topsecret", headers, body, now=timestamp + 301) is False
    assert verify("topsecret", headers, body, now=timestamp - 301) is False
    assert verify("wrong-secret", headers, body) is False
    assert verify("topsecret", headers, body + b" ") is False
    for name, value in (("X-Astertrack-Delivery", "999999"), ("X-Astertrack-Timestamp", str(timestamp + 1)),
                        ("X-Astertrack-Timestamp", "not-a-number"), ("X-Astertrack-Signature-V2", "sha256=00")):
        forged = headers.copy()
        forged[name] = value
        assert verify("topsecret", forged, body) is False, name
    stripped = headers.copy()
    del stripped["X-Astertrack-Signature-V2"]  # only the old body-only header: not enough
    assert verify("topsecret", stripped, body) is False


def test_each_retry_is_signed_at_its_own_time(session, session_factory, receiver):
    verify = documented_verify()
    add_call(session, "answered")
    subscribe(session, receiver.url, ["call.finished"], secret="k")
    session.commit()
    receiver.status = 500
    assert run_once(session_factory, NOW)["failed"] == 1
    time.sleep(1.1)
    receiver.status = 200
    assert deliver_due(session_factory, NOW + dt.timedelta(seconds=30))["delivered"] == 1
    from werkzeug.datastructures import Headers

    first, second = (Headers(list(r.headers.items())) for r in receiver.requests)
    assert int(second["X-Astertrack-Timestamp"]) > int(first["X-Astertrack-Timestamp"])
    assert first["X-Astertrack-Delivery"] == second["X-Astertrack-Delivery"]  # one id: receivers de-duplicate
    assert verify("k", second, receiver.requests[1].body) is True
