"""The webhooks page (admins only): a subscription created with its secret shown once and never
listed, errors on their fields in both languages, pause/resume/archive with audit rows, the
delivery log (the receiver's answer escaped) and a re-send a real local receiver gets."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select, update

from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import AuditLog, User, WebhookOutbox, WebhookSubscription
from astertrack.db.types import utcnow
from astertrack.integrations.webhooks import deliver_due, enqueue
from tests.ops.test_webhooks import add_call

PAGE = "/settings/webhooks/"


@pytest.fixture
def factory(app):
    engine = make_engine(app.config["DATABASE_URL"])
    yield make_session_factory(engine)
    engine.dispose()


def _create(auth, url, events=("call.finished",)):
    return auth.post(PAGE, {"url": url, "events": list(events)}, page=PAGE)


@pytest.mark.parametrize("login", ["super", "anna"])
def test_only_admins_reach_the_page_and_its_buttons(client, auth, db, data, login):
    auth.login(login)
    assert client.get(PAGE).status_code == 403
    assert auth.post(PAGE, {"url": "https://crm.example/", "events": ["call.finished"]}, page="/calls/").status_code == 403
    assert auth.post("/settings/webhooks/1/pause", page="/calls/").status_code == 403
    assert auth.post("/settings/webhooks/deliveries/1/resend", page="/calls/").status_code == 403
    assert db.scalars(select(WebhookSubscription)).all() == []


def test_create_shows_the_secret_once_and_the_list_never(client, auth, db, data):
    auth.login()
    assert 'id="webhooks-link"' in client.get("/settings/").get_data(as_text=True)
    answer = _create(auth, "https://crm.example/hook?x=<b>", ["call.finished", "call.missed"])
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    html = answer.get_data(as_text=True)
    secret = re.search(r'id="new-secret-value" readonly size="70" value="([0-9a-f]{64})"', html).group(1)
    row = db.scalars(select(WebhookSubscription)).one()
    assert row.secret == secret and row.events == ["call.finished", "call.missed"] and row.enabled
    assert "https://crm.example/hook?x=&lt;b&gt;" in html and "<b>" not in html.split("<main")[-1].split("id=\"webhooks\"")[1]
    listing = client.get(PAGE).get_data(as_text=True)
    assert secret not in listing and "new-secret" not in listing and "Call missed" in listing
    entry = db.scalars(select(AuditLog).where(AuditLog.entity_kind == "webhooks")).one()
    assert entry.action == "create" and secret not in str(entry.after)
    audit = client.get("/settings/audit?kind=webhooks").get_data(as_text=True)
    assert "Receiver URL" in audit and "Call finished" in audit


@pytest.mark.parametrize("locale, url_error, events_error", [
    ("en", "Do not put a user or password in the URL", "Choose at least one event."),
    ("ru", "Не указывайте пользователя и пароль в адресе", "Выберите хотя бы одно событие.")])
def test_errors_show_on_their_fields_in_both_languages(client, auth, db, data, locale, url_error, events_error):
    db.execute(update(User).where(User.login == "admin").values(locale=locale))
    db.commit()
    auth.login()
    answer = auth.post(PAGE, {"url": "https://u:p@crm.example/", "events": []}, page=PAGE)
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert url_error in html and events_error in html
    scheme = auth.post(PAGE, {"url": "ftp://crm.example/", "events": ["call.exploded"]}, page=PAGE)
    assert scheme.status_code == 400 and "ftp://crm.example/" in scheme.get_data(as_text=True)
    assert db.scalars(select(WebhookSubscription)).all() == []


@pytest.mark.parametrize("locale, labels", [
    ("en", ["Call ringing", "Call answered", "Call finished", "Call missed (busy included)", "Lead created",
            "Lead changed", "Deal changed (state, amount, currency)"]),
    ("ru", ["Звонок поступил (звонит)", "На звонок ответили", "Звонок завершён", "Звонок пропущен (включая «занято»)",
            "Новый лид", "Лид изменён", "Сделка изменена (статус, сумма, валюта)"])])
def test_all_seven_events_are_offered_in_both_languages_and_kept_in_order(client, auth, db, data, locale, labels):
    from astertrack.integrations.events import EVENTS
    from webadmin.labels import VOCABULARIES

    assert list(VOCABULARIES["webhook_event"]) == list(EVENTS)  # one list: the core's
    db.execute(update(User).where(User.login == "admin").values(locale=locale))
    db.commit()
    auth.login()
    html = client.get(PAGE).get_data(as_text=True)
    offered = re.findall(r'name="events" type="checkbox" value="([a-z.]+)"', html)
    assert offered == list(EVENTS)
    for label in labels:
        assert label in html
    answer = _create(auth, "https://crm.example/hook", ["deal.updated", "call.ringing", "lead.updated"])
    assert answer.status_code == 200
    row = db.scalars(select(WebhookSubscription)).one()
    assert row.events == ["call.ringing", "lead.updated", "deal.updated"]  # the documented order
    listing = client.get(PAGE).get_data(as_text=True)
    assert labels[0] in listing and labels[5] in listing and labels[6] in listing
    history = client.get("/settings/audit").get_data(as_text=True)
    assert labels[6] in history  # the settings history names the events in the page's language


def test_pause_stops_deliveries_and_archive_keeps_the_log(client, auth, db, data, factory, receiver):
    auth.login()
    _create(auth, receiver.url)
    row = db.scalars(select(WebhookSubscription)).one()
    now = utcnow()
    add_call(db, "answered", ended=now - dt.timedelta(minutes=1))
    queued = enqueue(db, now)  # the seeded calls too
    db.commit()
    assert queued >= 1
    assert auth.post(f"{PAGE}{row.id}/pause", page=PAGE).status_code == 302
    db.rollback()  # a fresh read: the app wrote meanwhile
    db.expire_all()
    assert not row.enabled and 'class="state">Paused' in client.get(PAGE).get_data(as_text=True)
    assert deliver_due(factory, now)["claimed"] == 0 and receiver.requests == []
    auth.post(f"{PAGE}{row.id}/resume", page=PAGE)
    assert deliver_due(factory, now)["delivered"] == queued and len(receiver.requests) == queued
    assert "Delivered <span translate=\"no\">HTTP 200</span>" in client.get(PAGE).get_data(as_text=True)
    archived = auth.post(f"{PAGE}{row.id}/archive", page=PAGE, follow_redirects=True)
    assert "Subscription archived" in archived.get_data(as_text=True), archived.get_data(as_text=True)[-3000:]
    db.rollback()  # a fresh read: the app wrote meanwhile
    db.expire_all()
    assert row.archived_at is not None and not row.enabled
    listing = client.get(PAGE).get_data(as_text=True)
    assert f"{PAGE}{row.id}/archive" not in listing and 'class="state">Archived' in listing
    actions = db.scalars(select(AuditLog.action).where(AuditLog.entity_kind == "webhooks").order_by(AuditLog.id)).all()
    assert actions == ["create", "update", "update", "archive"]


def test_resend_makes_a_delivery_due_and_the_receiver_gets_it(client, auth, db, data, factory, receiver):
    auth.login()
    _create(auth, receiver.url)
    row = db.scalars(select(WebhookSubscription)).one()
    now = utcnow()
    add_call(db, "answered", ended=now - dt.timedelta(minutes=1))
    queued = enqueue(db, now)
    db.commit()
    receiver.status = 500
    assert deliver_due(factory, now, max_attempts=1)["gave_up"] == queued
    delivery = db.scalars(select(WebhookOutbox).order_by(WebhookOutbox.id)).first()
    log = client.get(f"{PAGE}{row.id}/").get_data(as_text=True)
    assert 'class="state">Gave up' in log and "<td>500</td>" in log
    assert auth.post(f"{PAGE}deliveries/{delivery.id}/resend", page=f"{PAGE}{row.id}/").status_code == 302
    receiver.status = 200
    assert deliver_due(factory, utcnow())["delivered"] == 1
    assert len(receiver.requests) == queued + 1 and receiver.requests[-1].headers["x-astertrack-delivery"] == str(delivery.id)
    db.rollback()  # a fresh read: the app wrote meanwhile
    db.expire_all()
    assert db.get(WebhookOutbox, delivery.id).delivered_at is not None
    entry = db.scalars(select(AuditLog).where(AuditLog.entity_kind == "webhooks").order_by(AuditLog.id.desc())).first()
    assert entry.after == {"resent_delivery": delivery.id}


def test_a_hostile_receiver_answer_is_escaped_in_the_log(client, auth, db, data):
    auth.login()
    _create(auth, "https://crm.example/hook")
    row = db.scalars(select(WebhookSubscription)).one()
    db.add(WebhookOutbox(subscription_id=row.id, event="call.finished", payload={}, attempts=1,
                         response_code=502, response_excerpt="<script>alert(1)</script><img src=x onerror=alert(2)>",
                         last_error="HTTP 502 <b>bad</b>"))
    db.commit()
    html = client.get(f"{PAGE}{row.id}/").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "<img src=x" not in html and "<b>bad</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert 'class="state">Failed, will retry' in html
    assert client.get(f"{PAGE}999/").status_code == 404
