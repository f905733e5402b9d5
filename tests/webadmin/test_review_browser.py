"""A supervisor reviews calls in a real browser (Debian Chromium, real HTTP server): tags,
comments, scores and marks a missed call handled on the card; the call log filtered by the tag
shows the call; the one-day report's chart has hourly points."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from astertrack.db.models import Call, ChecklistItem
from tests.webadmin.browser import login
from tests.webadmin.test_report_views import calls_on

pytestmark = pytest.mark.browser




def test_supervisor_reviews_calls_on_the_card(page, live, data, db):
    db.add_all([ChecklistItem(site_id=data.site, text="Greeted by name", points=1, position=1),
                ChecklistItem(site_id=data.site, text="Offered a delivery date", points=3, position=2)])
    db.commit()
    login(page, live, "super")
    page.goto(f"{live}/calls/{data.callback}")
    page.fill("#tag-form input[name=name]", "follow up")
    page.click("#tag-form button")
    page.wait_for_load_state()
    assert "follow up" in page.inner_text("#call-tags")
    page.fill("#comment-form textarea", "Client wants a call on Friday")
    page.click("#comment-form button")
    page.wait_for_load_state()
    assert "Client wants a call on Friday" in page.inner_text("#comment-list")
    page.check("#score-form >> text=Offered a delivery date")
    page.click("#score-form button")
    page.wait_for_load_state()
    assert "75%" in page.inner_text("#score-value") and "3 of 4 points" in page.inner_text("#score-value")

    page.goto(f"{live}/calls/{data.missed}")
    assert "Not handled yet." in page.inner_text("#handled-state")
    page.click("#mark-handled")
    page.wait_for_load_state()
    assert "Handled by super" in page.inner_text("#handled-state")

    page.goto(f"{live}/calls/")
    page.select_option("select[name=tag]", "follow up")
    page.click("form.filters button")
    page.wait_for_load_state()
    assert "tag=follow+up" in page.url
    links = page.eval_on_selector_all("#call-log tbody a", "els => els.map(e => e.getAttribute('href'))")
    assert links == [f"/calls/{data.callback}"]
    page.goto(f"{live}/calls/?handled=yes")
    links = page.eval_on_selector_all("#call-log tbody a", "els => els.map(e => e.getAttribute('href'))")
    assert links == [f"/calls/{data.missed}"]
    assert page.errors == []


def test_one_day_report_chart_has_hourly_points(page, live, data, db):
    day = db.get(Call, data.answered).started_at.astimezone(ZoneInfo("Europe/Moscow")).date().isoformat()
    login(page, live, "super")
    page.goto(f"{live}/reports/sources?site={data.site}&from={day}&to={day}")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('series-chart'))")
    chart = page.evaluate("""() => {
        const chart = Chart.getChart(document.getElementById('series-chart'));
        return {labels: chart.data.labels, sets: chart.data.datasets.map(d => d.label),
                total: chart.data.datasets[0].data.reduce((a, b) => a + b, 0),
                points: chart.getDatasetMeta(0).data.length};
    }""")
    assert chart["labels"][:2] == ["00:00", "01:00"] and len(chart["labels"]) == 24 and chart["points"] == 24
    assert chart["total"] == calls_on(db, data.site, day) and chart["sets"][0] == "Total"
    page.select_option("select[name=dimension]", "campaign")
    page.click("form.filters button")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('series-chart'))")
    sets = page.evaluate("() => Chart.getChart(document.getElementById('series-chart')).data.datasets.map(d => d.label)")
    assert "winter-sale" in sets
    assert page.errors == []
