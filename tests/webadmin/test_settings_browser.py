"""The settings builders in a real browser (headless Debian Chromium through Playwright, the app
behind a real threaded HTTP server): rows added with the page's script, a source picked by name,
the hours grid with a break and a holiday, the time-zone search; what is saved is what the
tracker and the router then match, and re-opening the page shows the same values.  Also the CSV
import preview: a pool number moving to a static source is warned about and nothing is written
until the import is confirmed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from astertrack.db.models import RoutingRule, Site, Source, TrackingNumber
from astertrack.dni import sources
from astertrack.routing import rules, schedule
from tests.webadmin.browser import login

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"




def save(page) -> None:
    with page.expect_navigation():
        page.click("form.edit > button")
    assert page.locator("p.flash.ok").count() == 1, page.locator("p.error").all_inner_texts()


def shot(page, name: str, request) -> None:
    if "sqlite" in request.node.name:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_source_rule_builder_adds_a_row_with_the_script(page, live, data, db, request):
    login(page, live)
    page.goto(f"{live}/settings/sources/{data.yandex}")
    assert page.input_value("#match_rules-0-value") == "yandex"  # the stored rule, as a row
    page.click("#f-match_rules .add-row")  # the script adds row 2 (row 1 is the blank row)
    page.select_option("#match_rules-1-field", "utm_medium")
    page.select_option("#match_rules-1-op", "prefix")
    page.fill("#match_rules-1-value", "cpc")
    page.select_option("#match_rules-2-field", "gclid")
    page.select_option("#match_rules-2-op", "absent")
    assert not page.is_visible("#match_rules-2-value")  # "is absent" takes no value
    shot(page, "settings-source-rules", request)
    save(page)

    db.rollback()
    stored = db.get(Source, data.yandex).match_rules
    assert stored == [{"field": "utm_source", "op": "equals", "value": "yandex"},
                      {"field": "utm_medium", "op": "prefix", "value": "cpc"}, {"field": "gclid", "op": "absent"}]
    routing = sources.load_site_routing(db, db.get(Site, data.site).public_key)
    assert sources.route_visit(routing, {"utm_source": "Yandex", "utm_medium": "CPC-search"}).source.id == data.yandex
    assert sources.route_visit(routing, {"utm_source": "yandex", "utm_medium": "cpc", "gclid": "x"}).source is None
    assert sources.route_visit(routing, {"utm_source": "yandex", "utm_medium": "organic"}).source is None

    page.goto(f"{live}/settings/sources/{data.yandex}")
    assert [page.input_value(f"#match_rules-{i}-field") for i in range(4)] == \
        ["utm_source", "utm_medium", "gclid", ""]
    assert page.input_value("#match_rules-1-op") == "prefix" and page.input_value("#match_rules-1-value") == "cpc"
    assert page.errors == []


def test_routing_rule_builder_hours_grid_and_reopen(page, live, data, db, request):
    login(page, live)
    page.goto(f"{live}/settings/rules/new")
    page.fill("#f-name", "Organic brand, office hours")
    # the match: a source picked by its name, then a campaign on a row the script adds
    page.select_option("#match-0-key", "source_ids")
    assert page.is_visible("#match-0-source") and not page.is_visible("#match-0-value")
    page.select_option("#match-0-source", label="Organic")
    page.click("#f-match .add-row")
    page.select_option("#match-1-key", "utm_campaign")
    page.fill("#match-1-value", "brand")
    # the hours: weekly, Monday with two breaks (the second added by the script), two holidays
    page.uncheck("#schedule-always")
    for day in ("tue", "wed", "thu", "fri"):
        page.uncheck(f"#schedule-{day}-open")
    page.fill("#schedule-mon-from", "09:00")
    page.fill("#schedule-mon-to", "18:00")
    page.fill("#schedule-mon-break-0-from", "13:00")
    page.fill("#schedule-mon-break-0-to", "14:00")
    page.click("tr[data-day=mon] .add-row")
    page.fill("#schedule-mon-break-1-from", "16:00")
    page.fill("#schedule-mon-break-1-to", "16:15")
    page.check("#schedule-sat-open")
    page.fill("#schedule-sat-from", "22:00")
    page.fill("#schedule-sat-to", "02:00")
    page.fill("#schedule-holiday-0", "2026-12-28")
    page.click("#f-schedule .holidays .add-row")
    page.fill("#schedule-holiday-1", "2027-01-04")
    page.fill("#f-after_hours_destination", "voicemail:100@default")
    shot(page, "settings-routing-rule", request)
    save(page)

    db.rollback()
    rule = db.query(RoutingRule).filter_by(name="Organic brand, office hours").one()
    assert rule.match == {"source_ids": [data.organic], "utm_campaign": ["brand"]}
    assert rule.schedule == {"mon": [["09:00", "13:00"], ["14:00", "16:00"], ["16:15", "18:00"]],
                             "sat": [["22:00", "02:00"]], "closed_dates": ["2026-12-28", "2027-01-04"]}
    view = rules.RuleView(id=rule.id, name=rule.name, match=rule.match)
    assert rules.rule_matches(view, rules.CallContext(source_id=data.organic, utm_campaign="brand"))
    assert not rules.rule_matches(view, rules.CallContext(source_id=data.yandex, utm_campaign="brand"))
    moscow = dt.timezone(dt.timedelta(hours=3))
    at = lambda *args: dt.datetime(*args, tzinfo=moscow)  # noqa: E731
    assert schedule.is_open(rule.schedule, at(2026, 12, 21, 10, 0), "Europe/Moscow")  # a Monday morning
    assert not schedule.is_open(rule.schedule, at(2026, 12, 21, 13, 30), "Europe/Moscow")  # the lunch break
    assert not schedule.is_open(rule.schedule, at(2026, 12, 21, 16, 10), "Europe/Moscow")  # the second break
    assert not schedule.is_open(rule.schedule, at(2026, 12, 28, 10, 0), "Europe/Moscow")  # a holiday Monday
    assert schedule.is_open(rule.schedule, at(2026, 12, 27, 1, 0), "Europe/Moscow")  # Saturday's night shift
    assert not schedule.is_open(rule.schedule, at(2026, 12, 22, 10, 0), "Europe/Moscow")  # Tuesday: closed

    page.goto(f"{live}/settings/rules/{rule.id}")
    assert page.input_value("#match-0-key") == "source_ids"
    assert page.locator("#match-0-source option:checked").inner_text() == "Organic"
    assert (page.input_value("#match-1-key"), page.input_value("#match-1-value")) == ("utm_campaign", "brand")
    assert not page.is_checked("#schedule-always") and page.is_checked("#schedule-mon-open")
    assert not page.is_checked("#schedule-tue-open") and page.is_checked("#schedule-sat-open")
    assert [page.input_value(f"#schedule-mon-break-{j}-{end}") for j in (0, 1) for end in ("from", "to")] == \
        ["13:00", "14:00", "16:00", "16:15"]
    assert [page.input_value(f"#schedule-holiday-{j}") for j in (0, 1)] == ["2026-12-28", "2027-01-04"]
    save(page)  # saved again unchanged: the same stored value
    db.rollback()
    assert db.get(RoutingRule, rule.id).schedule["mon"] == [["09:00", "13:00"], ["14:00", "16:00"], ["16:15", "18:00"]]
    assert page.errors == []


def test_time_zone_is_searched_and_picked(page, live, data, db, request):
    login(page, live)
    page.goto(f"{live}/settings/sites/{data.site}")
    assert page.input_value("#f-timezone") == "Europe/Moscow"  # the site's current zone
    page.fill(".tz-search", "yekat")
    assert page.input_value("#f-timezone") == "Asia/Yekaterinburg"
    assert page.locator("#f-timezone option:not([hidden])").count() == 1
    shot(page, "settings-time-zone", request)
    save(page)
    db.rollback()
    assert db.get(Site, data.site).timezone == "Asia/Yekaterinburg"
    page.goto(f"{live}/settings/sites/{data.site}")
    assert page.input_value("#f-timezone") == "Asia/Yekaterinburg"
    assert page.errors == []


def test_import_preview_shows_the_change_and_waits_for_confirmation(page, live, data, db, request):
    login(page, live)
    page.goto(f"{live}/settings/numbers/import")
    page.fill("#import-text", "number;site;source;pool;label\n+74951000000;Shop;Organic;;print\n")
    with page.expect_navigation():
        page.click("#preview-import")
    row = page.locator("#import-rows tr[data-line='2']")
    assert "Pool: Main pool → —" in row.inner_text() and "Source: — → Organic" in row.inner_text()
    assert "leaves pool Main pool and becomes the static number of source Organic" in row.inner_text()
    assert page.is_visible("#import-warnings")
    shot(page, "settings-import-preview", request)
    db.rollback()
    number = db.query(TrackingNumber).filter_by(number="+74951000000").one()
    assert (number.pool_id, number.source_id) == (data.pool, None)  # the preview wrote nothing
    with page.expect_navigation():
        page.click("#apply-import")
    assert "1 record updated" in page.locator("p.flash.ok").inner_text()
    db.rollback()
    number = db.query(TrackingNumber).filter_by(number="+74951000000").one()
    assert (number.pool_id, number.source_id, number.label) == (None, data.organic, "print")
    assert page.errors == []
