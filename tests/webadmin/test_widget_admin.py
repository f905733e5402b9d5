"""The website widget's settings page (admins only): saved through the core's checks, audited with
the form's labels, a bad colour or utm line refused on its field with nothing saved, texts shown
back escaped, and each save a new revision (the tracker's config key)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from astertrack.db.models import AuditLog, SiteWidget
from astertrack.leads import widget as core

FORM = {"popup_enabled": "y", "callback_enabled": "y", "colour": "#A0B1C2", "position": "bottom-left",
        "popup_delay_seconds": "15", "popup_page_views": "2", "popup_url_contains": "/pricing\n\n/sale",
        "popup_utm": "utm_source=google", "popup_period_days": "3",
        "text_ru_popup_title": "Скидка 10%", "text_en_popup_title": "<script>alert(1)</script>"}


def page(data):
    return f"/settings/widget/{data.site}/"


@pytest.mark.parametrize("login", ["super", "anna"])
def test_only_admins_reach_the_page(client, auth, db, data, login):
    auth.login(login)
    assert client.get(page(data)).status_code == 403
    assert auth.post(page(data), FORM).status_code == 403
    assert db.scalars(select(SiteWidget)).all() == []


def test_settings_are_saved_checked_audited_and_escaped(client, auth, db, data):
    auth.login()
    assert 'id="widget-link"' in client.get("/settings/").get_data(as_text=True)
    assert client.get("/settings/widget/").headers["Location"].endswith(page(data))
    html = client.get(page(data)).get_data(as_text=True)
    assert f'placeholder="{core.DEFAULT_TEXTS["ru"]["popup_title"]}"' in html  # the defaults shown

    assert auth.post(page(data), FORM, page=page(data)).status_code == 302
    row = db.scalars(select(SiteWidget)).one()
    assert (row.popup_enabled, row.callback_enabled, row.colour, row.position, row.revision) == (
        True, True, "#a0b1c2", "bottom-left", 1)
    assert (row.popup_delay_seconds, row.popup_page_views, row.popup_period_days) == (15, 2, 3)
    assert (row.popup_url_contains, row.popup_utm) == (["/pricing", "/sale"], ["utm_source=google"])
    assert row.texts == {"ru": {"popup_title": "Скидка 10%"}, "en": {"popup_title": "<script>alert(1)</script>"}}
    html = client.get(page(data)).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    log = db.scalars(select(AuditLog).where(AuditLog.entity_kind == "widget")).one()
    assert log.action == "create"
    history = client.get("/settings/audit?kind=widget").get_data(as_text=True)
    assert "Website widget" in history and "Pop-up: title (English)" in history

    assert auth.post(page(data), {**FORM, "callback_enabled": ""}, page=page(data)).status_code == 302
    db.rollback()  # a fresh snapshot: the app wrote on its own connection
    row = db.scalars(select(SiteWidget)).one()
    assert (row.callback_enabled, row.revision) == (False, 2)


@pytest.mark.parametrize("field, value", [("colour", "red;}body{display:none"), ("popup_utm", "source=google"),
                                          ("popup_period_days", "-1"), ("position", "top")])
def test_bad_values_are_refused_on_their_field(client, auth, db, data, field, value):
    auth.login()
    answer = auth.post(page(data), {**FORM, field: value}, page=page(data))
    assert answer.status_code == 400
    assert 'class="field has-error"' in answer.get_data(as_text=True)
    assert db.scalars(select(SiteWidget)).all() == []


def test_the_chat_is_switched_on_with_its_wait_retention_and_texts(client, auth, db, data):
    from astertrack.db.models import User

    auth.login()
    chat = {**FORM, "chat_enabled": "y", "chat_wait_seconds": "45", "chat_retention_days": "30",
            "text_en_chat_greeting": "<b>Hi</b>"}
    assert auth.post(page(data), {**chat, "chat_wait_seconds": "5"}, page=page(data)).status_code == 400
    assert auth.post(page(data), chat, page=page(data)).status_code == 302
    row = db.scalars(select(SiteWidget)).one()
    assert (row.chat_enabled, row.chat_wait_seconds, row.chat_retention_days) == (True, 45, 30)
    assert row.texts["en"] == {"popup_title": "<script>alert(1)</script>", "chat_greeting": "<b>Hi</b>"}
    assert core.enabled_revision(db, data.site) == 1
    html = client.get(page(data)).get_data(as_text=True)
    assert "Chat: greeting" in html and f'placeholder="{core.DEFAULT_TEXTS["ru"]["chat_title"]}"' in html
    assert "&lt;b&gt;Hi&lt;/b&gt;" in html
    assert auth.post(page(data), {**FORM, "chat_wait_seconds": "", "chat_retention_days": ""},
                     page=page(data)).status_code == 302
    db.rollback()
    row = db.scalars(select(SiteWidget)).one()
    assert (row.chat_enabled, row.chat_wait_seconds, row.chat_retention_days) == (False, 90, 365)  # the defaults
    db.get(User, data.users["admin"]).locale = "ru"
    db.commit()
    html = client.get(page(data)).get_data(as_text=True)
    assert "Чат: приветствие" in html and "Чат: хранить переписку столько дней (0 — всегда)" in html
