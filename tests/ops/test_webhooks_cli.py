"""Webhook subscriptions a user manages: the core (checks, pause, archive, re-send, dead letter)
and the `astertrack webhooks add|list|pause|resume|resend` commands, on both databases, delivering
to a real HTTP server on loopback."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from astertrack.cli.main import main
from astertrack.db.models import WebhookOutbox, WebhookSubscription
from astertrack.db.types import utcnow
from astertrack.integrations import subscriptions
from astertrack.integrations.webhooks import deliver_due, enqueue
from tests.ops.test_webhooks import NOW, _config, add_call


@pytest.mark.parametrize("url, code", [
    ("ftp://example.com/hook", "url_scheme"), ("javascript:alert(1)", "url_scheme"),
    ("https://user:pw@example.com/hook", "url_credentials"), ("https://token@example.com/", "url_credentials"),
    ("", "url_empty"), ("http:///nohost", "url_scheme"), ("https://example.com:99999/", "url_bad"),
    ("https://exa mple.com/", "url_bad"), ("https://example.com/" + "a" * 1000, "url_long")])
def test_bad_urls_are_refused_with_a_reason(url, code):
    with pytest.raises(subscriptions.SubscriptionError) as caught:
        subscriptions.check_url(url)
    assert caught.value.code == code


def test_events_come_from_the_core_list():
    assert subscriptions.check_events(["call.missed", "call.finished", "call.missed"]) == ["call.finished", "call.missed"]
    for events, code in ((["call.exploded"], "event_unknown"), ([], "event_none")):
        with pytest.raises(subscriptions.SubscriptionError) as caught:
            subscriptions.check_events(events)
        assert caught.value.code == code


def test_create_returns_a_fresh_secret_and_the_list_never_carries_it(session):
    first, secret = subscriptions.create(session, " https://crm.example/hook ", ["call.finished"])
    second, other = subscriptions.create(session, "http://crm.example/2", ["call.missed"])
    session.commit()
    assert first.url == "https://crm.example/hook" and len(secret) == 64 and secret != other
    assert session.get(WebhookSubscription, first.id).secret == secret  # the outbox signs with it
    listed = subscriptions.listing(session)
    assert [(row.id, row.state) for row in listed] == [(first.id, "active"), (second.id, "active")]
    assert secret not in repr(listed) and not hasattr(listed[0], "secret")


def test_pause_stops_deliveries_resume_sends_the_waiting_queue(session, session_factory, receiver):
    add_call(session, "answered", ended=NOW - dt.timedelta(minutes=1))
    row, _ = subscriptions.create(session, receiver.url, ["call.finished"])
    assert enqueue(session, NOW) == 1
    assert subscriptions.set_enabled(row, False) and not subscriptions.set_enabled(row, False)
    session.commit()
    assert deliver_due(session_factory, NOW)["claimed"] == 0 and receiver.requests == []
    assert subscriptions.set_enabled(row, True)
    session.commit()
    assert deliver_due(session_factory, NOW)["delivered"] == 1 and len(receiver.requests) == 1


def test_archive_keeps_a_subscription_with_deliveries_and_deletes_an_unused_one(session, session_factory):
    add_call(session, "answered", ended=NOW - dt.timedelta(minutes=1))
    used, _ = subscriptions.create(session, "http://127.0.0.1:9/used", ["call.finished"])
    unused, _ = subscriptions.create(session, "http://127.0.0.1:9/unused", ["call.missed"])
    enqueue(session, NOW)
    assert subscriptions.archive(session, used, NOW) == "archived"
    assert subscriptions.archive(session, unused, NOW) == "deleted"
    session.commit()
    assert session.scalars(select(WebhookSubscription.id)).all() == [used.id]
    assert not subscriptions.set_enabled(used, True)  # an archived one stays off
    add_call(session, "answered", ended=NOW - dt.timedelta(minutes=1))
    assert enqueue(session, NOW) == 0  # nothing new queued for it
    session.commit()
    assert deliver_due(session_factory, NOW)["claimed"] == 0
    delivery = session.scalars(select(WebhookOutbox)).one()
    with pytest.raises(subscriptions.SubscriptionError):
        subscriptions.resend(session, delivery, NOW)


def test_last_failure_is_a_dead_letter_and_a_resend_delivers_it(session, session_factory, receiver):
    add_call(session, "answered", ended=NOW - dt.timedelta(minutes=1))
    subscriptions.create(session, receiver.url, ["call.finished"])
    enqueue(session, NOW)
    session.commit()
    receiver.answers.append((503, b"down for maintenance"))
    assert deliver_due(session_factory, NOW, max_attempts=1)["gave_up"] == 1
    session.expire_all()
    delivery = session.scalars(select(WebhookOutbox)).one()
    assert subscriptions.delivery_state(delivery) == "dead" and delivery.dead_at == NOW
    assert delivery.response_code == 503 and delivery.response_excerpt == "down for maintenance"
    later = NOW + dt.timedelta(days=400)
    assert deliver_due(session_factory, later)["claimed"] == 0  # a dead letter is never retried on its own
    subscriptions.resend(session, delivery, later)
    session.commit()
    assert "after 1 attempt(s)" in delivery.last_error
    assert deliver_due(session_factory, later)["delivered"] == 1
    assert len(receiver.requests) == 2
    session.expire_all()
    assert subscriptions.delivery_state(session.get(WebhookOutbox, delivery.id)) == "delivered"


def _cli(tmp_path, db_url, *args):
    return CliRunner().invoke(main, ["-c", _config(tmp_path, db_url), "webhooks", *args])


def test_cli_add_list_pause_resume_resend(session, tmp_path, db_url, receiver):
    added = _cli(tmp_path, db_url, "add", receiver.url, "--event", "call.finished", "--event", "call.missed")
    assert added.exit_code == 0, added.output
    secret = re.search(r"secret .*: ([0-9a-f]{64})$", added.output.strip()).group(1)
    row = session.scalars(select(WebhookSubscription)).one()
    subscription_id = row.id
    assert row.secret == secret and row.events == ["call.finished", "call.missed"]

    listed = _cli(tmp_path, db_url, "list")
    assert listed.exit_code == 0 and f"{subscription_id}\tactive\tcall.finished,call.missed\t{receiver.url}" in listed.output
    assert secret not in listed.output

    session.rollback()  # end this read: the CLI writes meanwhile
    assert "paused" in _cli(tmp_path, db_url, "pause", str(subscription_id)).output
    add_call(session, "answered", ended=utcnow() - dt.timedelta(minutes=1))
    session.commit()
    once = _cli(tmp_path, db_url, "once")
    assert '"claimed": 0' in once.output and receiver.requests == []
    assert "\tpaused\t" in _cli(tmp_path, db_url, "list").output
    assert "resumed" in _cli(tmp_path, db_url, "resume", str(subscription_id)).output
    assert '"delivered": 1' in _cli(tmp_path, db_url, "once").output
    assert "last: delivered HTTP 200" in _cli(tmp_path, db_url, "list").output

    delivery_id = session.scalars(select(WebhookOutbox.id)).one()
    session.rollback()
    resent = _cli(tmp_path, db_url, "resend", str(delivery_id))
    assert resent.exit_code == 0, resent.output
    assert '"delivered": 1' in _cli(tmp_path, db_url, "once").output
    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["x-astertrack-delivery"] == receiver.requests[1].headers["x-astertrack-delivery"]


def test_cli_refuses_bad_input_clearly(session, tmp_path, db_url):
    bad = _cli(tmp_path, db_url, "add", "https://u:p@crm.example/", "--event", "call.finished")
    assert bad.exit_code == 1 and "user or password" in bad.output
    unknown = _cli(tmp_path, db_url, "add", "https://crm.example/", "--event", "call.exploded")
    assert unknown.exit_code == 1 and "unknown event" in unknown.output
    assert session.scalars(select(WebhookSubscription)).all() == []
    assert "no subscription 42" in _cli(tmp_path, db_url, "pause", "42").output
    assert "no delivery 42" in _cli(tmp_path, db_url, "resend", "42").output
