"""The Tracking costs page in Debian's chromium (#27): Chart.js draws rent and minutes per source."""

from __future__ import annotations

import pytest

from tests.reporting import costs_fixture
from tests.webadmin.browser import login


@pytest.fixture
def costs_data(data, db):
    return costs_fixture.build(db)


def test_costs_chart_is_drawn(page, costs_data, live):
    login(page, live, "super")
    page.goto(f"{live}/reports/tracking-costs?month=2026-11&site={costs_data['site'].id}")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('bars-chart'))")
    drawn = page.evaluate("""() => {
        const canvas = document.getElementById('bars-chart');
        const chart = Chart.getChart(canvas);
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let ink = 0;
        for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) { ink++; } }
        return {ink, labels: chart.data.labels, rent: chart.data.datasets[0].data,
                minutes: chart.data.datasets[1].data};
    }""")
    assert drawn["ink"] > 1000
    by_label = dict(zip(drawn["labels"], zip(drawn["rent"], drawn["minutes"], strict=True), strict=True))
    assert by_label["Google"] == (1350, 7.5) and by_label["Billboard"] == (300, 10)
    assert page.errors == []
