"""Report pages, call log and call card through the test client: content, filters, CSV, escaping."""

from __future__ import annotations

import csv
import io
import json
import re

from astertrack.db.models import Call, VisitorSession
from tests.webadmin.seed import XSS

ESCAPED = b"&lt;img src=x onerror=alert(1)&gt;"


def test_sources_report_page_has_chart_data_and_formulas(client, auth, data):
    auth.login("super")
    page = client.get("/reports/sources").data
    assert b"Yandex Direct" in page and b"Organic" in page
    match = re.search(rb'<script type="application/json" id="series-chart-data">(.*?)</script>', page, re.S)
    chart = json.loads(match.group(1))
    assert len(chart["labels"]) == 30 and sum(chart["datasets"][0]["data"]) == 3
    assert b"How the numbers are counted" in page and b"target threshold" in page


def test_user_data_is_escaped_in_reports_and_card(client, auth, data):
    auth.login("admin")
    for page in ("/reports/sources?dimension=utm_source", f"/calls/{data.answered}"):
        body = client.get(page).data
        assert ESCAPED in body, page
        assert XSS.encode() not in body, page
    # the chart label travels as JSON inside a non-executable script block, escaped for HTML
    body = client.get("/reports/sources?dimension=utm_source").data
    assert b"<img" not in body.split(b'id="bars-chart-data">')[1].split(b"</script>")[0]


def test_csv_export_neutralises_formulas(client, auth, data, db):
    db.get(Call, data.callback).utm_campaign = "=HYPERLINK(\"http://evil\")"
    db.commit()
    auth.login("admin")
    response = client.get("/reports/sources?dimension=campaign&format=csv")
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0][0] == "campaign"
    assert any(r[0] == "'=HYPERLINK(\"http://evil\")" for r in rows[1:])
    calls = list(csv.reader(io.StringIO(client.get("/calls/?format=csv").data.decode("utf-8-sig"))))
    assert len(calls) == 4 and "+79161234567" in [r[2] for r in calls]


def test_every_report_exports_csv(client, auth, data):
    auth.login("super")
    for page in ("sources", "missed", "first-repeat", "managers", "funnel", "pools"):
        response = client.get(f"/reports/{page}?format=csv")
        assert response.status_code == 200 and response.mimetype == "text/csv", page
        assert len(response.data.decode("utf-8-sig").splitlines()) >= 2, page


def test_missed_report_shows_call_back(client, auth, data):
    auth.login("super")
    page = client.get("/reports/missed").data
    assert b"+79160000001" in page and b"nobody answered" in page and b"no_answer" not in page
    assert b"<b>1</b> called back" in page


def test_funnel_shows_roi(client, auth, data):
    auth.login("super")
    page = client.get("/reports/funnel").data.decode()
    assert "50,000.00" in page and "10,000.00" in page and "400.0 %" in page


def test_bad_filters_do_not_break_pages(client, auth, data):
    auth.login("super")
    for query in ("from=garbage&to=2026-13-45", "site=abc&source=-1", "dimension=x", "from=2020-01-01&to=2026-01-01"):
        assert client.get(f"/reports/sources?{query}").status_code in (200, 400), query
    assert client.get("/calls/?before=nonsense&outcome=weird&caller=abc").status_code == 200


def test_call_log_filters(client, auth, data):
    auth.login("super")

    def ids(query):
        return set(int(i) for i in re.findall(rb'href="/calls/(\d+)"', client.get(f"/calls/?{query}").data))

    assert ids("") == {data.answered, data.missed, data.callback}
    assert ids("outcome=missed") == {data.missed}
    assert ids("outcome=answered") == {data.answered, data.callback}
    assert ids("caller=8 916 000-00-01") == {data.missed, data.callback}
    assert ids("caller=4567") == {data.answered}
    assert ids("tag=hot") == {data.answered}
    assert ids(f"source={data.yandex}") == {data.answered}
    assert ids(f"manager={data.boris}") == {data.missed, data.callback}
    assert ids("campaign=winter-sale") == {data.answered}
    assert ids(f"site={data.site}&from=2000-01-01&to=2000-01-02") == set()


def test_call_card_contents(client, auth, data):
    auth.login("super")
    page = client.get(f"/calls/{data.answered}").data.decode()
    for text in ("winter-sale", "buy sofa", "https://yandex.ru/search", "https://shop.example/sofas", "95.0%",
                 "first-time", "DialEnd", "DialStatus=ANSWER", "Hello, I would like a sofa.", "hot",
                 f'src="/calls/{data.answered}/recording"'):
        assert text in page, text


def test_call_card_without_session(client, auth, data, db):
    db.query(Call).filter(Call.id == data.answered).update({"session_id": None})
    db.query(VisitorSession).delete()
    db.commit()
    auth.login("super")
    assert b"no website session" in client.get(f"/calls/{data.answered}").data


def test_locale_russian(client, auth, data, db):
    from astertrack.db.models import User

    db.get(User, data.users["super"]).locale = "ru"
    db.commit()
    auth.login("super")
    page = client.get("/reports/sources").data.decode()
    assert "Звонки по источникам" in page and "Выйти" in page
    anonymous = client.application.test_client().get("/auth/login", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert "Войти" in anonymous.data.decode()
