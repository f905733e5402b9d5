"""The messengers page (admins only) and the lead card's conversation, on both databases: the bot
token never shown back in full (page and audit log), the Telegram secret generated, "register the
webhook" reaching a local capture server, and a message's text shown escaped on the lead card."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from astertrack.db.models import AuditLog, Site, SiteMessengers
from astertrack.leads import messengers
from tests.integrations.capture import CaptureServer
from tests.webadmin.conftest import app, auth, client, data, db, recordings_dir  # noqa: F401  (the admin's fixtures)

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
FORM = {"telegram_enabled": "y", "telegram_bot_username": "@shop_bot", "telegram_bot_token": TOKEN,
        "whatsapp_enabled": "y", "whatsapp_secret": "wa-secret-0123456789"}


def page(site_data):
    return f"/settings/messengers/{site_data.site}/"


@pytest.mark.parametrize("login", ["super", "anna"])
def test_only_admins_reach_the_page(client, auth, db, data, login):  # noqa: F811 (the fixtures above)
    auth.login(login)
    assert client.get(page(data)).status_code == 403
    assert auth.post(page(data), FORM).status_code == 403
    assert auth.post(page(data) + "telegram-webhook").status_code == 403
    assert db.scalars(select(SiteMessengers)).all() == []


def test_settings_saved_token_masked_and_webhook_registered(app, client, auth, db, data):  # noqa: F811 (the fixtures above)
    auth.login()
    assert auth.post(page(data), {**FORM, "telegram_bot_token": "not a token"}, page=page(data)).status_code == 400
    assert auth.post(page(data), FORM, page=page(data)).status_code == 302
    row = db.get(SiteMessengers, data.site)
    assert (row.telegram_enabled, row.telegram_bot_username, row.telegram_bot_token) == (True, "shop_bot", TOKEN)
    assert len(row.telegram_secret) >= 32
    shown = client.get(page(data)).get_data(as_text=True)
    assert TOKEN not in shown and "123456789:…Dsaw" in shown and "wa-secret-0123456789" not in shown
    [entry] = db.scalars(select(AuditLog).where(AuditLog.entity_kind == "messengers")).all()
    assert TOKEN not in json.dumps(entry.after, ensure_ascii=False)
    audit = client.get("/settings/audit?kind=messengers").get_data(as_text=True)
    assert "Bot token" in audit and "telegram_bot_token" not in audit and TOKEN not in audit
    with CaptureServer() as capture:
        config = app.config["ASTERTRACK_CONFIG"]
        config.set("messengers", "telegram_api_url", capture.url)
        config.set("messengers", "tracker_url", "https://track.example.ru/ct")
        answer = auth.post(page(data) + "telegram-webhook", page=page(data))
        assert answer.status_code == 302
    key = db.get(Site, data.site).public_key
    [sent] = capture.requests
    assert sent.path == f"/bot{TOKEN}/setWebhook"
    body = json.loads(sent.body)
    db.rollback()
    assert body["url"] == f"https://track.example.ru/ct/v/tg/{key}"
    assert body["secret_token"] == db.get(SiteMessengers, data.site).telegram_secret


def test_lead_card_shows_the_conversation_escaped(client, auth, db, data):  # noqa: F811 (the fixtures above)
    site = db.get(Site, data.site)
    at = dt.datetime.now(dt.UTC)
    got = messengers.receive(db, site, "telegram", "9001", message_key="9001:1", at=at, username="ivan",
                             text="<img src=x onerror=alert(1)> (код: ABCDEF)")
    db.commit()
    auth.login()
    shown = client.get(f"/leads/{got.enquiry.lead_id}").get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown and "<img src=x" not in shown
    assert "ABCDEF" not in shown and "@ivan" in shown
