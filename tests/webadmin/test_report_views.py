"""Report pages: a one-day period by the hour, a chart that follows "group by", rows linking to
the call log filtered to them (same count), and invalid dates answered with a message."""

from __future__ import annotations

import json
import re
from html import unescape
from zoneinfo import ZoneInfo

import pytest

from astertrack.db.models import Call
from astertrack.reporting import reports

MOSCOW = ZoneInfo("Europe/Moscow")


def _chart(html: str, chart_id: str) -> dict:
    block = re.search(rf'<script type="application/json" id="{chart_id}-data">(.*?)</script>', html, re.S)
    return json.loads(unescape(block.group(1)))


def _call_count(client, url: str) -> int:
    page = client.get(url).get_data(as_text=True)
    return int(re.search(r'id="call-count">(\d+) call', page).group(1))


def _today(data, db) -> str:
    call = db.get(Call, data.answered)
    return call.started_at.astimezone(MOSCOW).date().isoformat()


def calls_on(db, site_id: int, day: str) -> int:
    """The seeded calls of the site on that Moscow day (the seed places them minutes to hours ago,
    so near midnight in Moscow some fall on the day before)."""
    return sum(1 for c in db.query(Call).filter(Call.site_id == site_id)
               if c.started_at.astimezone(MOSCOW).date().isoformat() == day)


def test_one_day_report_draws_24_hourly_points(client, auth, data, db):
    auth.login("super")
    day = _today(data, db)
    html = client.get(f"/reports/sources?site={data.site}&from={day}&to={day}").get_data(as_text=True)
    series = _chart(html, "series-chart")
    assert series["step"] == "hour"
    assert series["labels"] == [f"{h:02d}:00" for h in range(24)]
    total = series["datasets"][0]["data"]
    assert len(total) == 24 and sum(total) == calls_on(db, data.site, day) >= 1
    hour = db.get(Call, data.answered).started_at.astimezone(MOSCOW).hour
    assert total[hour] >= 1
    week = _chart(client.get(f"/reports/sources?site={data.site}").get_data(as_text=True), "series-chart")
    assert week["step"] == "day" and len(week["labels"]) == 30


def test_group_by_changes_the_chart_series(client, auth, data):
    auth.login("super")
    by_source = _chart(client.get("/reports/sources").get_data(as_text=True), "series-chart")
    labels = [d["label"] for d in by_source["datasets"]]
    assert labels[0] == "Total" and set(labels[1:]) == {"Organic", "Yandex Direct"}
    by_campaign = _chart(client.get("/reports/sources?dimension=campaign").get_data(as_text=True), "series-chart")
    labels = [d["label"] for d in by_campaign["datasets"]]
    assert set(labels[1:]) == {"winter-sale", "(none)"}
    lines = {d["label"]: sum(d["data"]) for d in by_campaign["datasets"]}
    assert lines == {"Total": 3, "winter-sale": 1, "(none)": 2}


@pytest.mark.parametrize("dimension", reports.LEAD_DIMENSIONS)
def test_every_row_links_to_the_call_log_with_its_count(client, auth, data, dimension):
    auth.login("super")
    html = client.get(f"/reports/sources?dimension={dimension}").get_data(as_text=True)
    table = html.split('id="report-table"')[1]
    rows = re.findall(r'<tr><td><a class="row-link" href="([^"]+)">.*?</a></td>\s*<td class="n">([\d,]+)</td>', table, re.S)
    assert rows, dimension
    for href, total in rows:
        assert _call_count(client, unescape(href)) == int(total.replace(",", "")), (dimension, href)


def test_the_sources_report_splits_by_enquiry_channel(client, auth, data, db):
    """A callback astertrack placed is its own row when grouped by channel, in words, and the
    channel filter narrows the report and the call log its rows open."""
    answered = db.get(Call, data.answered)
    db.add(Call(site_id=data.site, caller_number="+79160000001", started_at=answered.started_at, state="finished",
                outcome="answered", lead_channel="callback", source_id=answered.source_id))
    db.commit()
    auth.login("super")
    html = client.get("/reports/sources?dimension=lead_channel").get_data(as_text=True)
    table = html.split('id="report-table"')[1]
    rows = dict((name, int(total)) for _href, name, total in re.findall(
        r'<tr><td><a class="row-link" href="([^"]+)">([^<]+)</a></td>\s*<td class="n">([\d,]+)</td>', table, re.S))
    assert rows == {"call": 3, "callback request": 1}
    bars = _chart(html, "bars-chart")
    assert set(bars["labels"]) == {"call", "callback request"}  # words, not codes, in the chart too
    only = client.get("/reports/sources?lead_channel=callback").get_data(as_text=True)
    assert re.search(r'<tfoot><tr><th>Total</th>\s*<th class="n">1</th>', only)
    assert 'value="callback" selected' in only
    assert _call_count(client, "/calls/?lead_channel=callback") == 1
    assert client.get("/reports/sources?lead_channel=nonsense").status_code == 200  # an unknown channel means all


def test_manager_funnel_and_missed_links_match(client, auth, data):
    auth.login("super")
    missed = client.get("/reports/missed").get_data(as_text=True)
    href = re.search(r'id="missed-total"><a href="([^"]+)">(\d+)</a>', missed)
    assert _call_count(client, unescape(href.group(1))) == int(href.group(2)) == 1
    funnel = client.get("/reports/funnel").get_data(as_text=True)
    links = re.findall(r'<a class="row-link" href="([^"]+)">([^<]+)</a></td><td class="n">[\d,]+</td><td class="n">(\d+)',
                       funnel)
    assert {name for _, name, _ in links} == {"Organic", "Yandex Direct"}
    for link, _name, calls in links:
        assert _call_count(client, unescape(link)) == int(calls)
    managers = client.get("/reports/managers?tag=hot").get_data(as_text=True)
    link = unescape(re.search(r'<a class="row-link" href="([^"]+)">Anna</a>', managers).group(1))
    assert "tag=hot" in link and _call_count(client, link) == 1


@pytest.mark.parametrize("locale,message", [("en", "is not a date"), ("ru", "не дата")])
def test_invalid_date_is_a_message_not_thirty_days(client, auth, data, db, locale, message):
    from astertrack.db.models import User

    user = db.get(User, data.users["super"])
    user.locale = locale
    db.commit()
    auth.login("super")
    for page in ("/reports/sources", "/reports/missed", "/calls/"):
        response = client.get(f"{page}?from=2026-13-45")
        assert response.status_code == 400, page
        assert message in response.get_data(as_text=True), page
        assert client.get(f"{page}?from=2026-01-01&format=csv&to=junk").status_code == 400
