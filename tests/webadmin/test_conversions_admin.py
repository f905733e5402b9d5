"""The conversions page (admins only): settings saved with secrets masked on display and in the
audit log, errors on their fields, "send now" reaching a local capture server, the CSV download
matching the core's builder, and the send log showing the platform's answer escaped."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from astertrack.db.models import AuditLog, Call, ConversionLog, ConversionSettings, VisitorSession
from astertrack.db.types import utcnow
from astertrack.integrations.conversions import export
from tests.integrations.capture import CaptureServer

FORM = {"ga4_enabled": "y", "ga4_measurement_id": "g-abc12345", "ga4_api_secret": "ga4-secret-value-9876",
        "ga4_call_event": "phone_call", "ga4_lead_event": "close_convert_lead", "metrica_enabled": "y",
        "metrica_counter_id": "123456", "metrica_token": "y0_metrica-token-5555", "google_ads_enabled": "y",
        "google_ads_conversion_name": "Call from site", "google_ads_timezone": "", "currency": "rub",
        "calls": "answered", "call_value": "1500,50", "lead_state": "won", "lead_value": "amount",
        "lead_fixed_value": ""}


def page(data):
    return f"/settings/conversions/{data.site}/"


@pytest.mark.parametrize("login", ["super", "anna"])
def test_only_admins_reach_the_page(client, auth, db, data, login):
    auth.login(login)
    assert client.get(page(data)).status_code == 403
    assert client.get("/settings/conversions/").status_code == 403
    assert auth.post(page(data), FORM).status_code == 403
    assert auth.post(page(data) + "send").status_code == 403
    assert client.get(page(data) + "export/google_ads.csv").status_code == 403
    assert db.scalars(select(ConversionSettings)).all() == []


def test_anonymous_is_sent_to_login(client, data):
    answer = client.get(f"/settings/conversions/{data.site}/")
    assert answer.status_code in (302, 401) and "/auth/login" in answer.headers.get("Location", "/auth/login")


def test_settings_are_saved_secrets_masked_and_audited(client, auth, db, data):
    auth.login()
    assert 'id="conversions-link"' in client.get("/settings/").get_data(as_text=True)
    assert client.get("/settings/conversions/").headers["Location"].endswith(page(data))
    answer = auth.post(page(data), FORM, page=page(data))
    assert answer.status_code == 302
    row = db.scalars(select(ConversionSettings)).one()
    assert (row.ga4_measurement_id, row.ga4_api_secret, row.metrica_token, row.currency) == (
        "G-ABC12345", "ga4-secret-value-9876", "y0_metrica-token-5555", "RUB")
    html = client.get(page(data)).get_data(as_text=True)
    assert "ga4-secret-value-9876" not in html and "y0_metrica-token-5555" not in html
    assert '<span class="muted" id="masked-ga4_api_secret" translate="no">••••9876</span>' in html
    assert "••••5555" in html

    # An empty secret field keeps the saved secret.
    again = dict(FORM, ga4_api_secret="", metrica_token="", call_value="200")
    assert auth.post(page(data), again, page=page(data)).status_code == 302
    db.rollback()  # a fresh snapshot
    assert db.scalars(select(ConversionSettings)).one().ga4_api_secret == "ga4-secret-value-9876"
    entries = db.scalars(select(AuditLog).where(AuditLog.entity_kind == "conversions").order_by(AuditLog.id)).all()
    assert [e.action for e in entries] == ["create", "update"]
    assert "ga4-secret-value-9876" not in json.dumps([e.before for e in entries] + [e.after for e in entries])
    assert entries[0].after["ga4_api_secret"] == "••••9876"
    assert entries[1].before == {"call_value": "1500.50"} and entries[1].after == {"call_value": "200.00"}

    # The settings history lists the kind and names the fields and choices in words, in both languages.
    history = client.get("/settings/audit?kind=conversions").get_data(as_text=True)
    assert '<option value="conversions" selected' in history
    assert "Value of a call" in history and "GA4 measurement id" in history and "call_value" not in history
    auth.post("/auth/locale", {"locale": "ru", "next": "/settings/audit"}, page="/settings/audit")
    russian = client.get("/settings/audit?kind=conversions").get_data(as_text=True)
    assert "Value of a call" not in russian and "••••9876" in russian


def test_bad_values_are_refused_on_their_fields(client, auth, db, data):
    auth.login()
    bad = dict(FORM, ga4_measurement_id="UA-1-1", metrica_counter_id="abc", call_value="-5",
               google_ads_timezone="Mars/Base", google_ads_conversion_name="")
    answer = auth.post(page(data), bad, page=page(data))
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    for message in ("A GA4 measurement id looks like G-XXXXXXXXXX.", "A Metrica counter id is a number.",
                    "Enter an amount of zero or more", "Unknown time zone.", "Enter the conversion name"):
        assert message in html
    assert db.scalars(select(ConversionSettings)).all() == []


def _answered_call(db, data, **visit):
    values = {"ga_client_id": "111.222", "ym_client_id": "333", "gclid": "gclid-<x>", "first_seen": utcnow()}
    values.update(visit)
    session = VisitorSession(site_id=data.site, **values)
    db.add(session)
    db.flush()
    started = utcnow() - dt.timedelta(hours=1)
    call = Call(site_id=data.site, started_at=started, answered_at=started, state="finished", outcome="answered",
                talk_seconds=60, wait_seconds=5, caller_number="+74957654321", session_id=session.id,
                is_first_call=True)
    db.add(call)
    db.commit()
    return call.id


def test_send_now_reaches_the_platforms_and_the_log_shows_the_answer_escaped(app, client, auth, db, data):
    with CaptureServer() as capture:
        config = app.config["ASTERTRACK_CONFIG"]
        config.set("conversions", "ga4_url", f"{capture.url}/mp/collect")
        config.set("conversions", "metrica_url", capture.url)
        auth.login()
        auth.post(page(data), FORM, page=page(data))
        call_id = _answered_call(db, data)
        capture.answers += [(200, b""), (400, b'{"message": "<script>alert(1)</script> bad file"}')]
        answer = auth.post(page(data) + "send", page=page(data))
        assert answer.status_code == 302
        paths = sorted(r.path for r in capture.requests)
        assert paths == ["/management/v1/counter/123456/offline_conversions/upload_calls", "/mp/collect"]
    html = client.get(page(data)).get_data(as_text=True)
    assert "Google Analytics 4 — sent: 1," in html  # the seed's own calls have no client ids: skipped
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; bad file" in html
    statuses = {row.platform: row.status for row in db.scalars(select(ConversionLog)
                                                                .where(ConversionLog.call_id == call_id))}
    assert statuses == {"ga4": "sent", "metrica": "refused"}
    refused = client.get(page(data) + "?platform=metrica&status=refused").get_data(as_text=True)
    assert f"call:{call_id}" in refused and "HTTP 400" in refused
    assert "Sent" not in refused.split('id="conversion-log"')[1].split("</thead>")[1]


def test_csv_download_matches_the_builder_and_records_nothing(client, auth, db, data):
    auth.login()
    auth.post(page(data), FORM, page=page(data))
    _answered_call(db, data)
    _answered_call(db, data, gclid=None)
    answer = client.get(page(data) + "export/google_ads.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    expected = export.build(db, data.site, "google_ads", utcnow())
    db.rollback()
    assert answer.get_data(as_text=True) == expected.text
    lines = expected.text.splitlines()
    assert lines[0] == "Parameters:TimeZone=Europe/Moscow" and len(lines) == 3 and lines[2].startswith("gclid-<x>,")
    metrica = client.get(page(data) + "export/metrica.csv").get_data(as_text=True)
    assert metrica.splitlines()[0].startswith("ClientId,DateTime,Price,Currency,PhoneNumber")
    assert db.scalars(select(ConversionLog)).all() == []  # a download records nothing
    assert client.get(page(data) + "export/facebook.csv").status_code == 404
