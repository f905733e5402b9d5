"""Dates in report and call-log filters: out-of-range or malformed values get a clear 400 in
the user's language, never a 500 (``date + 1 day`` past 9999-12-31 overflowed)."""

from __future__ import annotations

import pytest

from astertrack.db.models import User

PAGES = ["/reports/sources", "/reports/sources?dimension=campaign", "/reports/missed", "/reports/first-repeat",
         "/reports/managers", "/reports/funnel", "/reports/pools", "/calls/"]
OUT_OF_RANGE = ["from=9999-12-30&to=9999-12-31", "from=0001-01-01", "to=0001-01-01", "from=0001-01-01&to=0001-01-02",
                "to=9999-12-31", "from=1999-12-31&to=2000-01-05"]
MALFORMED = ["from=9999-99-99", "to=2026-13-45", "from=garbage", "from=2026-02-30"]


def _with(page: str, query: str) -> str:
    return f"{page}{'&' if '?' in page else '?'}{query}"


@pytest.mark.parametrize("query", OUT_OF_RANGE)
def test_dates_out_of_range_are_a_clear_400_on_every_report_and_the_call_log(client, auth, data, query):
    auth.login("super")
    for page in PAGES:
        for url in (_with(page, query), _with(page, query + "&format=csv")):
            response = client.get(url)
            assert response.status_code == 400, url
            text = response.get_data(as_text=True)
            assert "Dates must be between 2000-01-01 and 2099-12-31." in text, url


@pytest.mark.parametrize("query", MALFORMED)
def test_malformed_dates_are_named_in_the_message(client, auth, data, query):
    auth.login("super")
    value = query.split("=", 1)[1]
    for page in PAGES:
        response = client.get(_with(page, query))
        assert response.status_code == 400, page
        text = response.get_data(as_text=True)
        assert f"“{value}” is not a date: write it as YYYY-MM-DD." in text, page


def test_the_message_is_in_russian_for_a_russian_user(client, auth, data, db):
    db.get(User, data.users["anna"]).locale = "ru"
    db.commit()
    auth.login("anna")
    response = client.get("/calls/?from=9999-12-30&to=9999-12-31")
    assert response.status_code == 400
    assert "Даты должны быть между 2000-01-01 и 2099-12-31." in response.get_data(as_text=True)
    response = client.get("/calls/?from=9999-99-99")
    assert "«9999-99-99» — это не дата: пишите ГГГГ-ММ-ДД." in response.get_data(as_text=True)


def test_the_message_offers_the_page_with_its_default_period(client, auth, data):
    auth.login("super")
    text = client.get("/reports/missed?from=9999-12-30&to=9999-12-31&site=1").get_data(as_text=True)
    assert 'href="/reports/missed?site=1"' in text


def test_dates_in_range_still_work(client, auth, data):
    auth.login("super")
    for page in PAGES:
        assert client.get(_with(page, "from=2000-01-01&to=2000-01-02")).status_code == 200, page
        assert client.get(_with(page, "from=2099-12-30&to=2099-12-31")).status_code == 200, page
