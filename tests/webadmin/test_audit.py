"""The settings audit log (issue #21 §1): who changed what, before and after, for create, update,
archive, restore and delete of settings and for user management; readable by admins in English
and Russian, with field names and values, never raw JSON."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from astertrack.db.models import AuditLog, ManagerGroup


def _entries(db, kind: str) -> list[AuditLog]:
    db.rollback()
    return list(db.scalars(select(AuditLog).where(AuditLog.entity_kind == kind).order_by(AuditLog.id)))


def _group_lifecycle(auth, db) -> int:
    assert auth.post("/settings/groups/new", {"name": "Sales", "queue_name": ""},
                     page="/settings/groups/new").status_code == 302
    db.rollback()
    group_id = db.scalar(select(ManagerGroup.id).where(ManagerGroup.name == "Sales"))
    assert auth.post(f"/settings/groups/{group_id}", {"name": "Sales team", "queue_name": ""},
                     page=f"/settings/groups/{group_id}").status_code == 302
    # saving again without a change writes nothing
    assert auth.post(f"/settings/groups/{group_id}", {"name": "Sales team", "queue_name": ""},
                     page=f"/settings/groups/{group_id}").status_code == 302
    for action in ("archive", "restore", "delete"):
        assert auth.post(f"/settings/groups/{group_id}/{action}", page="/settings/groups/").status_code == 302
    return group_id


def test_every_settings_change_is_logged_with_before_and_after(client, auth, data, db):
    auth.login("admin")
    group_id = _group_lifecycle(auth, db)
    entries = _entries(db, "groups")
    assert [e.action for e in entries] == ["create", "update", "archive", "restore", "delete"]
    assert {(e.entity_id, e.user_login, e.user_id) for e in entries} == {(group_id, "admin", data.users["admin"])}
    create, update, archive, restore, delete = entries
    assert create.before is None and create.after["name"] == "Sales" and create.after["managers"] == []
    assert update.before == {"name": "Sales"} and update.after == {"name": "Sales team"}
    assert archive.before == {"archived_at": None} and archive.after["archived_at"].startswith(str(dt.date.today())[:4])
    assert restore.after == {"archived_at": None}
    assert delete.before["name"] == "Sales team" and delete.after is None and delete.entity_label == "Sales team"


def test_a_change_that_fails_writes_no_audit_entry(client, auth, data, db):
    auth.login("admin")
    auth.post("/settings/groups/new", {"name": "Sales", "queue_name": ""}, page="/settings/groups/new")
    duplicate = auth.post("/settings/groups/new", {"name": "Sales", "queue_name": ""}, page="/settings/groups/new")
    assert duplicate.status_code in (400, 409)
    assert [e.action for e in _entries(db, "groups")] == ["create"]


def test_user_management_is_logged_without_the_password(client, auth, data, db):
    auth.login("admin")
    assert auth.post("/users/new", {"login": "olga", "role": "manager", "manager_id": str(data.anna),
                                    "locale": "", "active": "y", "password": "a-long-secret-1"}, page="/users/new").status_code == 302
    olga = _entries(db, "users")[0]
    assert olga.action == "create" and olga.after["login"] == "olga" and olga.after["password_changed"] is True
    assert "password_hash" not in olga.after and "a-long-secret-1" not in str(olga.after)
    assert auth.post(f"/users/{olga.entity_id}", {"login": "olga", "role": "supervisor",
                                                  "manager_id": str(data.anna), "locale": ""}, page=f"/users/{olga.entity_id}").status_code == 302
    change = _entries(db, "users")[1]
    assert change.before == {"role": "manager", "active": True} and change.after == {"role": "supervisor",
                                                                                     "active": False}


def _audit_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-action="(\w+)" data-kind="(\w+)">', html)


def test_the_audit_page_shows_readable_changes_in_english_and_russian(client, auth, data, db):
    auth.login("admin")
    _group_lifecycle(auth, db)
    page = client.get("/settings/audit").get_data(as_text=True)
    assert [a for a, _k in _audit_rows(page)] == ["delete", "restore", "archive", "update", "create"]
    assert "Settings history" in page and "Manager groups · Sales team" in page
    assert "<th>Name</th><td>Sales</td><td>Sales team</td>" in page  # field label, before, after
    assert "{" not in page.split('id="audit"')[1]  # no raw JSON
    assert "changed" in page and "archived" in page and "restored" in page
    auth.post("/auth/locale", {"locale": "ru", "next": "/settings/audit"}, page="/settings/audit")
    russian = client.get("/settings/audit").get_data(as_text=True)
    assert "История настроек" in russian and "Группы менеджеров · Sales team" in russian
    assert "<th>Название</th><td>Sales</td><td>Sales team</td>" in russian
    assert "изменено" in russian and "восстановлено" in russian and "удалено" in russian


def test_the_audit_page_filters_and_pages(client, auth, data, db, monkeypatch):
    auth.login("admin")
    _group_lifecycle(auth, db)
    db.rollback()  # SQLite: no read transaction left open under our write
    db.add(AuditLog(at=dt.datetime(2025, 1, 10, 12, tzinfo=dt.UTC), action="update", entity_kind="sources",
                    entity_id=data.yandex, entity_label="Yandex Direct", before={"priority": 10},
                    after={"priority": 20}, user_login="former-admin"))
    db.commit()
    only_sources = client.get("/settings/audit?kind=sources").get_data(as_text=True)
    assert _audit_rows(only_sources) == [("update", "sources")] and "Yandex Direct" in only_sources
    by_user = client.get("/settings/audit?user=former-admin").get_data(as_text=True)
    assert _audit_rows(by_user) == [("update", "sources")]
    in_2025 = client.get("/settings/audit?from=2025-01-01&to=2025-01-31").get_data(as_text=True)
    assert _audit_rows(in_2025) == [("update", "sources")]
    assert client.get("/settings/audit?from=2025-13-01").status_code == 400
    monkeypatch.setattr("webadmin.settings.audit.PAGE_SIZE", 4)
    first = client.get("/settings/audit").get_data(as_text=True)
    second = client.get("/settings/audit?page=2").get_data(as_text=True)
    assert len(_audit_rows(first)) == 4 and len(_audit_rows(second)) == 2
    assert 'rel="next"' in first and 'rel="prev"' in second


def test_only_admins_read_the_audit_log(app, data):
    from tests.webadmin.conftest import AuthActions

    for login in ("super", "anna"):
        client = app.test_client()
        AuthActions(client).login(login)
        response = client.get("/settings/audit")
        assert response.status_code in (302, 403) and b"Settings history" not in response.data


def test_lead_state_changes_and_api_tokens_read_as_words_in_the_log(client, auth, data, db):
    from astertrack.db.models import Lead, Site
    from astertrack.db.types import utcnow
    from astertrack.leads.enquiries import record_enquiry

    site_name = db.get(Site, data.site).name
    lead_id = record_enquiry(db, data.site, "form", at=utcnow(), phone="+79160001122").lead_id
    db.commit()
    auth.login("admin")
    assert auth.post(f"/leads/{lead_id}/state", {"status": "in_progress", "amount": "1500", "currency": "RUB"},
                     page=f"/leads/{lead_id}").status_code in (200, 302)
    assert db.get(Lead, lead_id) is not None
    assert auth.post("/settings/api-tokens/", {"name": "CRM", "site_id": str(data.site), "scope": "write"},
                     page="/settings/api-tokens/").status_code in (200, 302)
    page = client.get("/settings/audit").get_data(as_text=True)
    kinds = {k for _a, k in _audit_rows(page)}
    assert {"leads", "api_tokens"} <= kinds
    log = page.split('id="audit"')[1]
    assert "<th>State</th><td>new</td><td>in progress</td>" in log
    assert "<th>Access</th><td></td><td>read and write</td>" in log and f"<td>{site_name}</td>" in log
    assert "in_progress" not in log and ">status<" not in log and ">scope<" not in log
