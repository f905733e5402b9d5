"""Archive instead of delete (issue #21 §1): archiving a source with calls and costs keeps every
historical figure and takes it out of routing and the pickers; restore brings it back; a true
delete only for a row nothing refers to, after a page that says what would be affected."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from agi.snapshot import load_snapshot
from astertrack.db import config_revision
from astertrack.db.models import AdCost, AuditLog, Call, Lead, Source, TrackingNumber
from astertrack.db.types import utcnow
from astertrack.reporting.reports import ReportFilter, funnel


def _funnel(db):
    now = utcnow()
    db.rollback()  # a fresh read: the admin committed on its own connection
    return funnel(db, ReportFilter(start=now - dt.timedelta(days=2), end=now + dt.timedelta(days=1)))


def _ids(page: bytes, name: str) -> bool:
    return f">{name}</a>".encode() in page


def test_archiving_a_source_keeps_its_history_and_takes_it_out_of_routing_and_pickers(client, auth, data, db):
    auth.login("admin")
    before = _funnel(db)
    yandex_row = next(r for r in before["rows"] if r["key"] == data.yandex)
    assert yandex_row["cost"] and yandex_row["roi"] is not None
    organic_number = db.scalar(select(TrackingNumber.number).where(TrackingNumber.source_id == data.organic))
    assert load_snapshot(db).directory.numbers[organic_number].source_id == data.organic

    for source in (data.yandex, data.organic):
        response = auth.post(f"/settings/sources/{source}/archive", page="/settings/sources/")
        assert response.status_code == 302
    db.rollback()
    assert db.get(Source, data.yandex).archived_at is not None

    # every historical figure stays
    after = _funnel(db)
    assert after["totals"] == before["totals"]
    assert next(r for r in after["rows"] if r["key"] == data.yandex) == yandex_row
    assert db.scalar(select(func.count()).select_from(Call).where(Call.source_id == data.yandex)) == 1
    assert db.scalar(select(func.count()).select_from(Lead).where(Lead.source_id == data.yandex)) == 1
    assert db.scalar(select(func.count()).select_from(AdCost).where(AdCost.source_id == data.yandex)) == 1
    # out of routing: the static number no longer names its source, the pool has no source
    directory = load_snapshot(db).directory
    assert directory.numbers[organic_number].source_id is None
    assert data.yandex not in {sid for sid, _ in directory.pool_sources.values()}
    # out of the active list and of the pickers, in the archived list
    active = client.get("/settings/sources/").data
    assert not _ids(active, "Yandex Direct") and b"Show archived (2)" in active
    archived = client.get("/settings/sources/?archived=1").data
    assert _ids(archived, "Yandex Direct") and b"Restore" in archived
    picker = client.get("/settings/numbers/new").data
    assert b">Yandex Direct<" not in picker and b">Organic<" not in picker
    # a number still pointing at the archived source keeps it as a marked choice
    number_id = db.scalar(select(TrackingNumber.id).where(TrackingNumber.source_id == data.organic))
    assert b"Organic (archived)" in client.get(f"/settings/numbers/{number_id}").data
    # the call log still names it
    assert b"Yandex Direct" in client.get("/calls/").data

    assert auth.post(f"/settings/sources/{data.organic}/restore", page="/settings/sources/").status_code == 302
    db.rollback()
    assert db.get(Source, data.organic).archived_at is None
    assert load_snapshot(db).directory.numbers[organic_number].source_id == data.organic
    assert b">Organic<" in client.get("/settings/numbers/new").data
    actions = [a for a, in db.execute(select(AuditLog.action).where(AuditLog.entity_kind == "sources")
                                      .order_by(AuditLog.id))]
    assert actions == ["archive", "archive", "restore"]


def test_archiving_a_manager_bumps_the_configuration_and_leaves_routing(client, auth, data, db):
    auth.login("admin")
    db.rollback()
    revision = config_revision.read(db)
    assert auth.post(f"/settings/managers/{data.anna}/archive", page="/settings/managers/").status_code == 302
    db.rollback()
    assert config_revision.read(db) > revision
    snapshot = load_snapshot(db)
    assert data.anna not in snapshot.enabled_manager_ids and data.anna not in snapshot.managers
    assert b">Anna<" not in client.get("/settings/groups/new").data
    # the calls she answered still say so
    assert db.scalar(select(func.count()).select_from(Call).where(Call.manager_id == data.anna)) == 1


def test_deleting_a_referenced_source_is_refused_with_counts_and_offers_archive(client, auth, data, db):
    auth.login("admin")
    page = client.get(f"/settings/sources/{data.yandex}/delete")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "cannot be deleted" in text and 'id="archive-instead"' in text
    for kind, count in (("calls", 1), ("leads", 1), ("ad_costs", 1), ("visitor_sessions", 1)):
        assert f'<tr data-kind="{kind}"><td>' in text and f"</td><td>{count}</td></tr>" in text
    refused = auth.post(f"/settings/sources/{data.yandex}/delete", page="/settings/sources/")
    assert refused.status_code == 409 and b"Not deleted" in refused.data
    db.rollback()
    assert db.get(Source, data.yandex) is not None
    assert db.scalar(select(func.count()).select_from(AdCost).where(AdCost.source_id == data.yandex)) == 1
    assert db.scalar(select(AuditLog.id).where(AuditLog.action == "delete")) is None


def test_an_unreferenced_row_is_deleted_after_the_confirmation_page(client, auth, data, db):
    auth.login("admin")
    spare = Source(site_id=data.site, name="Spare", kind="static")
    db.add(spare)
    db.commit()
    page = client.get(f"/settings/sources/{spare.id}/delete").get_data(as_text=True)
    assert "Nothing refers to" in page and 'id="delete-for-good"' in page and 'class="inline confirm"' in page
    assert auth.post(f"/settings/sources/{spare.id}/delete", page="/settings/sources/").status_code == 302
    db.expunge_all()
    db.rollback()
    assert db.scalar(select(Source.id).where(Source.id == spare.id)) is None
    entry = db.scalar(select(AuditLog).where(AuditLog.action == "delete"))
    assert entry.entity_label == "Spare" and entry.before["name"] == "Spare" and entry.after is None


def test_only_admins_archive_restore_or_delete(client, auth, data, db):
    auth.login("super")
    for action in ("archive", "restore", "delete"):
        response = auth.post(f"/settings/sources/{data.yandex}/{action}")
        assert response.status_code in (302, 403) and b"Restored" not in response.data
    assert client.get(f"/settings/sources/{data.yandex}/delete").status_code in (302, 403)
    db.rollback()
    assert db.get(Source, data.yandex).archived_at is None
    assert client.get("/settings/audit").status_code in (302, 403)


def test_an_archived_manager_leaves_the_user_form_but_a_linked_user_keeps_it(client, auth, data, db):
    from astertrack.db.models import User

    auth.login("admin")
    assert auth.post(f"/settings/managers/{data.anna}/archive", page="/settings/managers/").status_code == 302
    assert b">Anna<" not in client.get("/users/new").data  # no new user can be linked to her
    refused = auth.post("/users/new", {"login": "olga", "role": "manager", "manager_id": str(data.anna),
                                       "locale": "", "active": "y", "password": "a-long-secret-1"}, page="/users/new")
    assert refused.status_code == 400 and b"This manager is archived" in refused.data
    db.rollback()
    assert db.scalar(select(User).where(User.login == "olga")) is None
    # the user already linked to her sees her, marked, and saving another field keeps the link
    anna_user = db.scalar(select(User).where(User.login == "anna"))
    page = client.get(f"/users/{anna_user.id}").data
    assert b"Anna (archived)" in page
    assert auth.post(f"/users/{anna_user.id}", {"login": "anna", "role": "manager", "manager_id": str(data.anna),
                                                "locale": "ru", "active": "y"},
                     page=f"/users/{anna_user.id}").status_code == 302
    db.rollback()
    db.refresh(anna_user)
    assert anna_user.manager_id == data.anna and anna_user.locale == "ru"


def test_every_table_that_can_refer_to_a_setting_has_words_on_the_delete_page():
    """The delete page counts referrers found from the foreign keys: a new table must not show
    up there as its raw name."""
    from astertrack.db.models import Base
    from webadmin.settings.crud import ENTITIES, REFERRER_LABELS

    settings_tables = {entity.model.__tablename__ for entity in ENTITIES.values()}
    referrers = {table.name for table in Base.metadata.tables.values()
                 for fk in table.foreign_keys if fk.column.table.name in settings_tables}
    assert referrers - set(REFERRER_LABELS) == set()
