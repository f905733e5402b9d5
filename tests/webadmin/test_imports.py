"""Numbers and ad-cost CSV imports: parsing with per-row errors, preview, apply."""

from __future__ import annotations

import datetime as dt
import io
import re
from decimal import Decimal

import pytest

from astertrack.db.models import AdCost, TrackingNumber
from astertrack.reporting import csv_import

NUMBERS = """number;site;source;pool;label;enabled
8 (495) 300-00-01;Shop;Organic;;print ad;yes
+7 495 300-00-02;Shop;;Main pool;;
+7 495 300-00-02;Shop;;Main pool;;
not a number;Shop;;;;
+7 495 300-00-03;Nowhere;;;;
+7 495 300-00-04;Shop;Ghost;;;maybe
+74952000000;Shop;Organic;;relabelled;no
"""


def test_parse_numbers_csv_reports_each_bad_row(session, data_in_session):
    rows, errors = csv_import.parse_numbers_csv(NUMBERS, session)
    assert [r.number for r in rows] == ["+74953000001", "+74953000002", "+74952000000"]
    assert [r.action for r in rows] == ["create", "create", "update"]
    assert rows[0].source_id == data_in_session.organic and rows[1].pool_id == data_in_session.pool
    by_line = {e.line: e.message for e in errors}
    assert set(by_line) == {4, 5, 6, 7}
    assert "already appears on line 3" in by_line[4]
    assert "not a phone number" in by_line[5]
    assert "no site named 'Nowhere'" in by_line[6]
    assert "Ghost" in by_line[7] and "enabled must be yes or no" in by_line[7]
    counts = csv_import.apply_numbers(session, rows)
    session.commit()
    assert counts == {"create": 2, "update": 1}
    updated = session.query(TrackingNumber).filter_by(number="+74952000000").one()
    assert updated.label == "relabelled" and updated.enabled is False


def test_numbers_csv_without_number_column(session, data_in_session):
    with pytest.raises(csv_import.CsvImportError, match="Missing column"):
        csv_import.parse_numbers_csv("phone,site\n1,2\n", session)
    with pytest.raises(csv_import.CsvImportError, match="empty"):
        csv_import.parse_numbers_csv("", session)


def test_parse_ad_costs(session, data_in_session):
    text = ("source,date,amount,currency\nYandex Direct,2026-11-01,\"12 345,50\",rub\n"
            "Organic,01.11.2026,0,\nGhost,2026-11-01,5,\nYandex Direct,2026-11-31,5,\nOrganic,2026-11-02,-3,\n"
            "Yandex Direct,2026-11-01,7,\n")
    rows, errors = csv_import.parse_ad_costs_csv(text, session)
    assert [(r.source_name, r.day, r.amount) for r in rows] == [
        ("Yandex Direct", dt.date(2026, 11, 1), Decimal("12345.50")), ("Organic", dt.date(2026, 11, 1), Decimal("0.00"))]
    assert rows[0].currency == "RUB"
    assert [e.line for e in errors] == [4, 5, 6, 7]
    csv_import.apply_ad_costs(session, rows)
    session.commit()
    rows, _ = csv_import.parse_ad_costs_csv("source,date,amount\nOrganic,2026-11-01,99\n", session)
    assert rows[0].action == "update"
    csv_import.apply_ad_costs(session, rows)
    session.commit()
    organic = session.query(AdCost).filter_by(source_id=data_in_session.organic, day=dt.date(2026, 11, 1)).one()
    assert organic.amount == Decimal("99.00")


def test_numbers_import_preview_then_apply(client, auth, data, db):
    auth.login("admin")
    upload = {"file": (io.BytesIO(NUMBERS.encode("cp1251")), "numbers.csv")}
    preview = auth.post("/settings/numbers/import", upload, page="/settings/numbers/import",
                        content_type="multipart/form-data")
    body = preview.data.decode()
    assert preview.status_code == 200
    assert "3 rows ready, 4 rows with errors" in body and "not a phone number" in body
    assert db.query(TrackingNumber).filter_by(number="+74953000001").count() == 0  # preview writes nothing
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', body).group(1)
    applied = auth.post("/settings/numbers/import", {"text": NUMBERS, "confirm": "1", "digest": digest},
                        page="/settings/numbers/import")
    assert applied.status_code == 302
    db.rollback()  # end the read snapshot taken before the import
    assert db.query(TrackingNumber).filter_by(number="+74953000001").count() == 1


def test_costs_import_bad_header_is_explained(client, auth, data):
    auth.login("admin")
    response = auth.post("/settings/costs/import", {"text": "foo,bar\n1,2\n"}, page="/settings/costs/import")
    assert response.status_code == 400 and b"Missing column" in response.data


@pytest.fixture
def data_in_session(session):
    from tests.webadmin.seed import seed

    return seed(session)
