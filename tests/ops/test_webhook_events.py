"""The seven webhook events on both databases: each fires once per occurrence with the documented
body, and the real worker process survives a SIGKILL between retries without losing or repeating
a delivery (a local HTTP server stands in for the CRM)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from astertrack.db.models import Call, Lead, Site, Source, WebhookOutbox, WebhookSubscription
from astertrack.db.types import utcnow
from astertrack.integrations.events import CALL_EVENTS, EVENT_MODELS, EVENTS, LEAD_EVENTS
from astertrack.integrations.webhooks import LOOKBACK, Retry, backoff, enqueue, run_once
from astertrack.leads.deals import set_state
from astertrack.leads.enquiries import record_enquiry
from astertrack.leads.merging import merge_leads
from astertrack.samples.processes import BIN, running
from tests.integrations.capture import CaptureServer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def documented_examples() -> dict[str, dict]:
    """event -> the example body docs/webhooks.md prints under its ``### `event` `` heading."""
    text = DOCS.read_text(encoding="utf-8")
    examples = {}
    for part in text.split("\n### `")[1:]:
        event = part.split("`", 1)[0]
        examples[event] = json.loads(part.split("```json\n", 1)[1].split("```", 1)[0])
    return examples


def subscribe(session, url, events=EVENTS, secret="s3cret"):
    row = WebhookSubscription(url=url, events=list(events), secret=secret)
    session.add(row)
    session.commit()
    return row


def outbox(session) -> list[WebhookOutbox]:
    session.commit()  # end the read snapshot so the worker's commits are visible
    session.expire_all()
    return session.scalars(select(WebhookOutbox).order_by(WebhookOutbox.id)).all()


def queued(session) -> set[tuple[str, str]]:
    return {(row.event, row.subject) for row in outbox(session)}


def pass_(session, now) -> int:
    count = enqueue(session, now)
    session.commit()
    return count


def check_body(row: WebhookOutbox) -> None:
    """The body sent validates against its event's model and has exactly the documented keys."""
    model = EVENT_MODELS[row.event]
    model.model_validate(row.payload)
    assert row.payload["event"] == row.event
    assert set(row.payload) == set(model.model_fields) == set(documented_examples()[row.event])


# ---------------------------------------------------------------- documentation


def test_every_event_is_documented_with_an_example_that_validates():
    examples = documented_examples()
    assert list(examples) == list(EVENTS)
    for event, body in examples.items():
        model = EVENT_MODELS[event]
        assert body["event"] == event
        assert model.model_validate(body).model_dump(mode="json") == body  # complete and canonical
        assert set(body) == set(model.model_fields)
    section = DOCS.read_text(encoding="utf-8").split("## Events", 1)[1].split("### ", 1)[0]
    for event in EVENTS:
        assert f"| `{event}` |" in section  # the table says when each fires


# ---------------------------------------------------------------- calls


def test_call_events_fire_once_per_call_as_the_call_goes_on(session, session_factory, receiver):
    NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)  # noqa: N806 - the test's fixed clock
    now = NOW
    site = Site(name="shop")
    session.add(site)
    session.flush()
    source = Source(site_id=site.id, name="Yandex Direct")
    session.add(source)
    session.flush()
    ringing = Call(state="ringing", started_at=NOW - dt.timedelta(seconds=5), site_id=site.id, source_id=source.id,
                   did="+74950000001", caller_number="+74951112233", utm_source="yandex")
    pending = Call(state="finished", outcome="missed", missed_reason="no_answer", reconcile_state="pending",
                   started_at=NOW - dt.timedelta(minutes=3), answered_at=None, ended_at=NOW - dt.timedelta(minutes=2))
    old = Call(state="finished", outcome="answered", started_at=NOW - LOOKBACK - dt.timedelta(hours=1),
               answered_at=NOW - LOOKBACK - dt.timedelta(minutes=59), ended_at=NOW - LOOKBACK - dt.timedelta(minutes=50))
    session.add_all([ringing, pending, old])
    session.commit()
    subscribe(session, receiver.url)
    ringing_id, pending_id = ringing.id, pending.id

    # ringing: only call.ringing; the pending call is announced as ringing but held back as missed
    assert pass_(session, now) == 2
    assert queued(session) == {("call.ringing", f"call:{ringing_id}"), ("call.ringing", f"call:{pending_id}")}
    assert pass_(session, now) == 0

    # answered, then talking: call.answered once
    call = session.get(Call, ringing_id)
    call.state, call.answered_at, call.answered_by = "up", now + dt.timedelta(seconds=3), "PJSIP/101"
    session.commit()
    now += dt.timedelta(seconds=10)
    assert pass_(session, now) == 1
    assert pass_(session, now) == 0

    # finished: call.finished (not missed); the reconciled pending call: finished and missed
    call = session.get(Call, ringing_id)
    call.state, call.outcome, call.ended_at, call.talk_seconds, call.wait_seconds = (
        "finished", "answered", now + dt.timedelta(minutes=1), 61.5, 3.0)
    session.get(Call, pending_id).reconcile_state = "done"
    session.commit()
    now += dt.timedelta(minutes=2)
    assert pass_(session, now) == 3
    assert pass_(session, now) == 0
    rows = outbox(session)
    assert sorted((r.event, r.call_id) for r in rows) == sorted([
        ("call.ringing", ringing_id), ("call.answered", ringing_id), ("call.finished", ringing_id),
        ("call.ringing", pending_id), ("call.finished", pending_id), ("call.missed", pending_id)])
    for row in rows:
        check_body(row)
        assert row.subject == f"call:{row.call_id}" and row.lead_id is None
    by_event = {(r.event, r.call_id): r.payload for r in rows}
    first = by_event[("call.ringing", ringing_id)]
    assert first["state"] == "ringing" and first["answered_at"] is None and first["source"] == "Yandex Direct"
    assert by_event[("call.answered", ringing_id)]["manager_endpoint"] == "PJSIP/101"
    finished = by_event[("call.finished", ringing_id)]
    assert finished["outcome"] == "answered" and finished["talk_seconds"] == 61.5
    assert dt.datetime.fromisoformat(finished["ended_at"]) == now - dt.timedelta(minutes=1)
    assert by_event[("call.missed", pending_id)]["missed_reason"] == "no_answer"

    # delivered in the order queued: a call's ringing before its answer, each signed with its event
    assert run_once(session_factory, now)["delivered"] == 6
    sent = [(r.headers["x-astertrack-event"], json.loads(r.body)) for r in receiver.seen()]
    assert all(body["event"] == event for event, body in sent)
    mine = [event for event, body in sent if body["call_id"] == ringing_id]
    assert mine == ["call.ringing", "call.answered", "call.finished"]


def test_only_the_events_a_subscription_asked_for(session, receiver):
    now = utcnow()
    session.add(Call(state="finished", outcome="busy", started_at=now - dt.timedelta(minutes=1), ended_at=now))
    session.commit()
    subscribe(session, receiver.url, ["call.missed", "lead.created"])
    assert pass_(session, now) == 1
    assert {event for event, _ in queued(session)} == {"call.missed"}


# ---------------------------------------------------------------- leads and deals


def test_lead_and_deal_events_fire_once_per_version(session, receiver):
    site = Site(name="shop")
    session.add(site)
    session.commit()
    subscribe(session, receiver.url, LEAD_EVENTS)
    start = utcnow()
    enquiry = record_enquiry(session, site, "form", at=start, phone="+7 916 123-45-67", name="Ирина")
    session.commit()
    lead_id = enquiry.lead_id
    lead = session.get(Lead, lead_id)
    assert lead.deal_updated_at is None

    now = utcnow()
    assert pass_(session, now) == 2  # created, and its first version
    assert queued(session) == {("lead.created", f"lead:{lead_id}"),
                               ("lead.updated", f"lead:{lead_id}@{lead.updated_at.astimezone(dt.UTC).isoformat(timespec='microseconds')}")}
    assert pass_(session, now) == 0

    # a state change: a new lead version and a deal change
    t1 = now + dt.timedelta(seconds=1)
    set_state(session, session.get(Lead, lead_id), "in_progress", now=t1)
    session.commit()
    assert pass_(session, t1) == 2
    assert pass_(session, t1) == 0

    # saving the same state again: the lead was touched (a version) but the deal did not change
    t2 = t1 + dt.timedelta(seconds=1)
    set_state(session, session.get(Lead, lead_id), "in_progress", now=t2)
    session.commit()
    assert session.get(Lead, lead_id).deal_updated_at == t1
    assert pass_(session, t2) == 1
    assert [e for e, _ in queued(session)].count("deal.updated") == 1

    # won with an amount: both again; the bodies carry the new deal
    t3 = t2 + dt.timedelta(seconds=1)
    set_state(session, session.get(Lead, lead_id), "won", amount="15000.5", currency="rub", now=t3)
    session.commit()
    assert pass_(session, t3) == 2
    rows = outbox(session)
    assert [r.event for r in rows].count("lead.updated") == 4
    assert [r.event for r in rows].count("deal.updated") == 2
    assert [r.event for r in rows].count("lead.created") == 1
    for row in rows:
        check_body(row)
        assert row.lead_id == lead_id and row.call_id is None
    deal = rows[-1].payload if rows[-1].event == "deal.updated" else rows[-2].payload
    assert deal["event"] == "deal.updated" and deal["state"] == "won"
    assert deal["amount"] == "15000.50" and deal["currency"] == "RUB"
    assert dt.datetime.fromisoformat(deal["deal_updated_at"]) == t3
    created = next(r.payload for r in rows if r.event == "lead.created")
    assert created["phone"] == "+79161234567" and created["first_channel"] == "form" and created["enquiries"] == 1
    assert created["name"] == "Ирина"


def test_quick_changes_collapse_into_one_lead_updated_with_the_newest_state(session, receiver):
    site = Site(name="shop")
    session.add(site)
    session.commit()
    enquiry = record_enquiry(session, site, "form", at=utcnow(), phone="+79161234567")
    session.commit()
    subscribe(session, receiver.url, ["lead.updated"])
    now = utcnow()
    set_state(session, session.get(Lead, enquiry.lead_id), "qualified", now=now)
    set_state(session, session.get(Lead, enquiry.lead_id), "won", amount=Decimal("100"), now=now + dt.timedelta(seconds=1))
    session.commit()
    assert pass_(session, now + dt.timedelta(seconds=2)) == 1
    [row] = outbox(session)
    assert row.payload["state"] == "won" and row.payload["amount"] == "100.00"


def test_a_merge_announces_both_leads(session, receiver):
    site = Site(name="shop")
    session.add(site)
    session.commit()
    first = record_enquiry(session, site, "form", at=utcnow(), phone="+79161234567")
    second = record_enquiry(session, site, "form", at=utcnow(), email="a@example.ru")
    session.commit()
    keep, gone = first.lead_id, second.lead_id
    subscribe(session, receiver.url, ["lead.updated"])
    now = utcnow()
    assert pass_(session, now) == 2
    merge_leads(session, session.get(Lead, keep), session.get(Lead, gone), now=now + dt.timedelta(seconds=1))
    session.commit()
    assert pass_(session, now + dt.timedelta(seconds=2)) == 2
    latest = {r.lead_id: r.payload for r in outbox(session)}
    assert latest[gone]["merged_into_id"] == keep and latest[gone]["enquiries"] == 0
    assert latest[keep]["enquiries"] == 2 and latest[keep]["email"] == "a@example.ru"


def test_a_merge_that_brings_a_deal_announces_deal_updated_for_the_kept_lead(session, receiver):
    site = Site(name="shop")
    session.add(site)
    session.commit()
    first = record_enquiry(session, site, "form", at=utcnow(), phone="+79161234567")
    second = record_enquiry(session, site, "form", at=utcnow(), email="a@example.ru")
    set_state(session, session.get(Lead, second.lead_id), "won", amount=700, currency="RUB")
    session.commit()
    keep, gone = first.lead_id, second.lead_id
    subscribe(session, receiver.url, ["deal.updated"])
    now = utcnow()
    assert pass_(session, now) == 1  # the second lead's deal
    merge_leads(session, session.get(Lead, keep), session.get(Lead, gone), now=now + dt.timedelta(seconds=1))
    session.commit()
    assert pass_(session, now + dt.timedelta(seconds=2)) == 1
    kept = [r.payload for r in outbox(session) if r.lead_id == keep]
    assert len(kept) == 1 and kept[0]["amount"] == "700.00" and kept[0]["currency"] == "RUB"


def test_a_new_subscription_is_not_flooded_with_old_history(session, receiver):
    site = Site(name="shop")
    session.add(site)
    session.commit()
    long_ago = utcnow() - LOOKBACK - dt.timedelta(hours=2)
    enquiry = record_enquiry(session, site, "form", at=long_ago, phone="+79161234567")
    set_state(session, session.get(Lead, enquiry.lead_id), "won", amount=5, now=long_ago)
    lead = session.get(Lead, enquiry.lead_id)
    lead.updated_at = long_ago
    session.add(Call(state="finished", outcome="answered", started_at=long_ago, answered_at=long_ago, ended_at=long_ago))
    session.commit()
    subscribe(session, receiver.url)
    assert pass_(session, utcnow()) == 0
    # ...but a change today is news
    set_state(session, session.get(Lead, enquiry.lead_id), "lost")
    session.commit()
    assert {event for event, _ in queued(session)} == set() and pass_(session, utcnow()) == 2
    assert {event for event, _ in queued(session)} == {"lead.updated", "deal.updated"}


def test_two_workers_enqueue_each_occurrence_once(session, session_factory, receiver):
    """Two nodes scanning at the same moment: each occurrence is queued once between them."""
    from astertrack.db.engine import begin_write, session_scope

    now = utcnow()
    for _ in range(3):
        session.add(Call(state="finished", outcome="missed", started_at=now - dt.timedelta(minutes=1), ended_at=now))
    session.commit()
    subscribe(session, receiver.url, CALL_EVENTS)
    barrier, counts, errors = threading.Barrier(2), [], []

    def node():
        try:
            barrier.wait(5)
            with session_scope(session_factory) as db:
                begin_write(db)
                counts.append(enqueue(db, now))
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=node) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and sorted(counts) == [0, 9]
    rows = outbox(session)
    assert len(rows) == 9 and len({(r.event, r.subject) for r in rows}) == 9


# ---------------------------------------------------------------- retries and restart


def test_retry_settings_come_from_the_configuration(tmp_path):
    from astertrack.config import load_config

    path = tmp_path / "a.conf"
    path.write_text("[webhooks]\nmax_attempts = 4\nretry_base_seconds = 1.5\nretry_max_seconds = 5\n", encoding="utf-8")
    retry = Retry.from_config(load_config(str(path), environ={}))
    assert retry == Retry(4, 1.5, 5.0)
    assert [backoff(n, retry).total_seconds() for n in (1, 2, 3, 4)] == [1.5, 3.0, 5.0, 5.0]
    empty = tmp_path / "empty.conf"
    empty.write_text("", encoding="utf-8")
    assert Retry.from_config(load_config(str(empty), environ={})) == Retry(8, 30.0, 3600.0)
    bad = tmp_path / "bad.conf"
    bad.write_text("[webhooks]\nretry_base_seconds = soon\n", encoding="utf-8")
    with pytest.raises(ValueError, match="retry_base_seconds"):
        load_config(str(bad), environ={})


def _outbox_row(session_factory) -> WebhookOutbox | None:
    with session_factory() as db:
        return db.scalars(select(WebhookOutbox)).first()


def _wait(condition, seconds, what, log: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; worker log:\n{log.read_text(errors='replace')[-3000:]}")


def test_a_worker_killed_between_retries_loses_and_repeats_nothing(session, session_factory, db_url, tmp_path):
    with CaptureServer() as crm:
        crm.answers += [(500, b"")] * 3
        now = utcnow()
        session.add(Call(state="finished", outcome="answered", started_at=now - dt.timedelta(minutes=2),
                         answered_at=now - dt.timedelta(minutes=2), ended_at=now - dt.timedelta(minutes=1)))
        session.commit()
        subscribe(session, crm.url, ["call.finished"], secret="k")
        config = tmp_path / "astertrack.conf"
        config.write_text(f"[database]\nurl = {db_url}\n\n[webhooks]\nretry_base_seconds = 1\nmax_attempts = 8\n",
                          encoding="utf-8")
        command = [str(BIN / "astertrack"), "-c", str(config), "webhooks", "run", "--interval", "0.2"]
        log = tmp_path / "worker.log"

        with log.open("ab") as out, running(command, stdout=out, stderr=out) as worker:
            # two failures, both recorded; the third attempt is due a couple of seconds later
            _wait(lambda: len(crm.seen(500)) >= 2 and (_outbox_row(session_factory) or WebhookOutbox(attempts=0)).attempts >= 2,
                  30, "two failed attempts", log)
            worker.kill()  # SIGKILL: no cleanup at all
            worker.wait(10)
        row = _outbox_row(session_factory)
        assert row.attempts == 2 and row.delivered_at is None and len(crm.seen()) == 2

        with log.open("ab") as out, running(command, stdout=out, stderr=out):
            _wait(lambda: crm.seen(200), 30, "the successful delivery", log)
            time.sleep(1.5)  # several more passes (interval 0.2 s): nothing else may arrive
            requests = crm.seen()
        assert [r.status for r in requests] == [500, 500, 500, 200]
        assert len({r.headers["x-astertrack-delivery"] for r in requests}) == 1
        assert len({r.body for r in requests}) == 1
        row = _outbox_row(session_factory)
        assert row.delivered_at is not None and row.attempts == 4 and row.dead_at is None
        assert requests[0].headers["x-astertrack-delivery"] == str(row.id)
        assert json.loads(requests[-1].body)["call_id"] == row.call_id
        with session_factory() as db:
            assert len(db.scalars(select(WebhookOutbox)).all()) == 1
        text = log.read_text(errors="replace")
        assert text.count("webhook worker started") == 2 and "1 s doubling" in text


# ---------------------------------------------------------------- command line


def _cli(tmp_path, db_url, *args, extra=""):
    from click.testing import CliRunner

    from astertrack.cli.main import main

    config = tmp_path / "cli.conf"
    config.write_text(f"[database]\nurl = {db_url}\n{extra}", encoding="utf-8")
    return CliRunner().invoke(main, ["-c", str(config), "webhooks", *args])


def test_cli_subscribes_to_every_event_and_its_help_names_them(session, tmp_path, db_url):
    helped = _cli(tmp_path, db_url, "add", "--help")
    assert helped.exit_code == 0
    for event in EVENTS:
        assert event in helped.output
    added = _cli(tmp_path, db_url, "add", "https://crm.example/", *sum((["--event", e] for e in reversed(EVENTS)), []))
    assert added.exit_code == 0, added.output
    assert session.scalars(select(WebhookSubscription)).one().events == list(EVENTS)
    unknown = _cli(tmp_path, db_url, "add", "https://crm.example/", "--event", "lead.deleted")
    assert unknown.exit_code == 1 and "unknown event(s) lead.deleted" in unknown.output and "deal.updated" in unknown.output


def test_once_takes_the_retry_settings_from_the_configuration(session, tmp_path, db_url):
    with CaptureServer(status=500) as crm:
        now = utcnow()
        session.add(Call(state="finished", outcome="busy", started_at=now - dt.timedelta(minutes=1), ended_at=now))
        session.commit()
        subscribe(session, crm.url, ["call.missed"])
        first = _cli(tmp_path, db_url, "once", extra="[webhooks]\nmax_attempts = 2\nretry_base_seconds = 7\n")
        assert first.exit_code == 0, first.output
        assert json.loads(first.output.strip().splitlines()[-1])["failed"] == 1
        [row] = outbox(session)
        assert dt.timedelta(seconds=6) < row.next_attempt_at - row.created_at <= dt.timedelta(seconds=9)
        row.next_attempt_at = utcnow() - dt.timedelta(seconds=1)
        session.commit()
        second = _cli(tmp_path, db_url, "once", extra="[webhooks]\nmax_attempts = 2\n")
        assert json.loads(second.output.strip().splitlines()[-1])["gave_up"] == 1
        [row] = outbox(session)
        assert row.dead_at is not None and row.attempts == 2 and len(crm.seen()) == 2
