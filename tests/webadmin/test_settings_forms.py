"""The settings builders through the real forms (CSRF, the test client): what the inputs post is
stored in the shape the tracker and the router read, shown back the same, refused with an error
beside the row or field it concerns (in English and in Russian); the CSV import preview says what
each update changes; a duplicate number is refused on its field before the commit."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from babel.support import Translations
from sqlalchemy import select

from astertrack.db.models import Manager, ManagerGroup, RoutingRule, Site, Source, TrackingNumber, User
from astertrack.dni import sources
from astertrack.reporting import csv_import
from astertrack.routing import rules, schedule
from astertrack.samples.factories import add_numbers, add_pool, add_site, add_static_source
from tests.webadmin import builder_fields as bf
from tests.webadmin.test_settings import shown_form

RULE = {"priority": "5", "enabled": "on", "sticky_days": "30", "strategy": "round_robin"}
MOSCOW = dt.timezone(dt.timedelta(hours=3))
CATALOG = Path(__file__).resolve().parents[2] / "webadmin" / "translations"


def russian(text: str, **params) -> str:
    """What the admin's Russian catalog says for ``text`` (the page must show this, not English)."""
    translated = Translations.load(str(CATALOG), ["ru"]).gettext(text)
    assert translated != text, f"no Russian for {text!r}"
    return translated % params if params else translated


def in_russian(db, login: str = "admin") -> None:
    db.rollback()
    db.query(User).filter_by(login=login).one().locale = "ru"
    db.commit()


def row_errors(page: str) -> dict[str, str]:
    """Each builder row's error, by the row's first input name."""
    found = {}
    for row in re.findall(r'<(?:div|span) class="builder-row[^"]*" data-row="\d+">(.*?)</(?:div|span)>', page, re.S):
        error = re.search(r'<p class="error" data-row-error>([^<]*)</p>', row)
        if error:
            found[re.search(r'name="([^"]+)"', row).group(1)] = error.group(1)
    return found


def field_errors(page: str, name: str) -> list[str]:
    block = re.search(r'<div class="field has-error">(?:(?!<div class="field).)*?name="' + re.escape(name) + r'".*?'
                      r'(?=<div class="field|</form>)', page, re.S)
    return re.findall(r'<p class="error">([^<]*)</p>', block.group(0)) if block else []


# ------------------------------------------------------------------ source rules


def test_source_rule_rows_round_trip_and_match_in_the_tracker(client, auth, data, db):
    auth.login("admin")
    form = {"site_id": str(data.site), "name": "Google Ads", "kind": "static", "priority": "1", "enabled": "on",
            # rows as the script leaves them: a gap where one was removed, a blank row at the end
            "match_rules-0-field": "utm_source", "match_rules-0-op": "equals", "match_rules-0-value": " google ",
            "match_rules-3-field": "landing_page", "match_rules-3-op": "contains", "match_rules-3-value": "/sale",
            "match_rules-4-field": "gclid", "match_rules-4-op": "present", "match_rules-4-value": "ignored",
            "match_rules-5-field": "", "match_rules-5-op": "equals", "match_rules-5-value": ""}
    assert auth.post("/settings/sources/new", form, page="/settings/sources/new").status_code == 302
    source = db.scalars(select(Source).where(Source.name == "Google Ads")).one()
    assert source.match_rules == [{"field": "utm_source", "op": "equals", "value": "google"},
                                  {"field": "landing_page", "op": "contains", "value": "/sale"},
                                  {"field": "gclid", "op": "present"}]
    routing = sources.load_site_routing(db, db.get(Site, data.site).public_key)
    visit = {"utm_source": "Google", "landing_page": "https://shop.example/sale/sofas", "gclid": "Cj0"}
    assert sources.route_visit(routing, visit).source.name == "Google Ads"
    assert sources.route_visit(routing, {**visit, "gclid": None}).source is None

    # opened and saved as shown: the same stored rules
    page = client.get(f"/settings/sources/{source.id}").data.decode()
    assert auth.post(f"/settings/sources/{source.id}", shown_form(page), page="/settings/sources/").status_code == 302
    db.rollback()
    assert db.get(Source, source.id).match_rules == source.match_rules


def test_source_rule_errors_are_on_their_rows_in_both_languages(client, auth, data, db):
    auth.login("admin")
    form = {"site_id": str(data.site), "name": "Bad", "kind": "static", "priority": "1",
            **bf.conditions([{"field": "utm_source", "op": "equals", "value": "ok"},
                             {"field": "utm_term", "op": "regex", "value": "(unclosed"},
                             {"field": "utm_medium", "op": "prefix", "value": "  "}])}
    page = auth.post("/settings/sources/new", form, page="/settings/sources/new").data.decode()
    errors = row_errors(page)
    assert set(errors) == {"match_rules-1-field", "match_rules-2-field"}
    assert errors["match_rules-1-field"].startswith("Bad regular expression")
    assert errors["match_rules-2-field"] == "Enter the value to compare with."
    assert 'value="(unclosed"' in page  # what was typed is still there
    assert db.query(Source).filter_by(name="Bad").count() == 0

    in_russian(db)
    page = auth.post("/settings/sources/new", form, page="/settings/sources/new").data.decode()
    errors = row_errors(page)
    assert errors["match_rules-2-field"] == russian("Enter the value to compare with.")
    assert "Enter the value" not in page and russian("Fix the rows marked below.") in page
    assert russian("starts with") in page  # the operators are words of the admin's language too


# ------------------------------------------------------------------ routing match


def test_routing_match_rows_round_trip_and_match_in_the_router(client, auth, data, db):
    auth.login("admin")
    page = client.get("/settings/rules/new").data.decode()
    source_select = re.search(r'<select name="match-0-source".*?</select>', page, re.S).group(0)
    assert re.findall(r'<option value="(\d+)"[^>]*>([^<]*)</option>', source_select) == [
        (str(data.organic), "Organic"), (str(data.yandex), "Yandex Direct")]  # picked by name, never typed
    form = {**RULE, "name": "VIP from ads", **bf.match({"source_ids": [data.yandex, data.organic],
                                                        "dids": ["8 (495) 100-00-00"], "vip": True,
                                                        "caller_tags": ["wholesale", "wholesale"]})}
    assert auth.post("/settings/rules/new", form, page="/settings/rules/new").status_code == 302
    rule = db.scalars(select(RoutingRule).where(RoutingRule.name == "VIP from ads")).one()
    assert rule.match == {"dids": ["+74951000000"], "source_ids": [data.yandex, data.organic],
                          "caller_tags": ["wholesale"], "vip": True}
    view = rules.RuleView(id=rule.id, name=rule.name, match=rule.match)
    call = rules.CallContext(did="+74951000000", source_id=data.organic, caller_tags=("Wholesale",), caller_is_vip=True)
    assert rules.rule_matches(view, call)
    assert not rules.rule_matches(view, rules.CallContext(**{**call.__dict__, "caller_is_vip": False}))
    assert not rules.rule_matches(view, rules.CallContext(**{**call.__dict__, "source_id": 999}))

    page = client.get(f"/settings/rules/{rule.id}").data.decode()
    assert auth.post(f"/settings/rules/{rule.id}", shown_form(page), page="/settings/rules/").status_code == 302
    db.rollback()
    assert db.get(RoutingRule, rule.id).match == rule.match


def test_routing_match_refuses_a_source_not_offered_and_a_bad_number(client, auth, data, db):
    auth.login("admin")
    form = {**RULE, "name": "x", "match-0-key": "source_ids", "match-0-source": "999",
            "match-1-key": "caller_numbers", "match-1-value": "12"}
    page = auth.post("/settings/rules/new", form, page="/settings/rules/new").data.decode()
    errors = row_errors(page)
    assert errors["match-0-key"] == "Choose a source." and "not a phone number" in errors["match-1-key"]
    in_russian(db)
    page = auth.post("/settings/rules/new", form, page="/settings/rules/new").data.decode()
    assert row_errors(page)["match-0-key"] == russian("Choose a source.")
    assert db.query(RoutingRule).count() == 0


# ------------------------------------------------------------------ working hours


def test_hours_grid_round_trips_and_is_read_by_the_schedule(client, auth, data, db):
    auth.login("admin")
    grid = bf.hours({"mon": ("09:00", "18:00", [("13:00", "14:00")]), "fri": ("10:00", "00:00", []),
                     "sat": ("22:00", "03:00", [("23:00", "23:30")])}, holidays=["2026-12-31", "2026-12-31"])
    form = {"name": "Anna", "endpoint": "PJSIP/101", "enabled": "on", **grid}
    assert auth.post(f"/settings/managers/{data.anna}", form, page="/settings/managers/").status_code == 302
    db.rollback()
    stored = db.get(Manager, data.anna).schedule
    assert stored == {"mon": [["09:00", "13:00"], ["14:00", "18:00"]], "fri": [["10:00", "24:00"]],
                      "sat": [["22:00", "23:00"], ["23:30", "03:00"]], "closed_dates": ["2026-12-31"]}
    schedule.validate(stored)
    at = lambda *a: dt.datetime(*a, tzinfo=MOSCOW)  # noqa: E731
    assert schedule.is_open(stored, at(2026, 12, 21, 9, 0), "Europe/Moscow")
    assert not schedule.is_open(stored, at(2026, 12, 21, 13, 0), "Europe/Moscow")
    assert schedule.is_open(stored, at(2026, 12, 25, 23, 59), "Europe/Moscow")  # Friday until midnight
    assert not schedule.is_open(stored, at(2026, 12, 26, 23, 10), "Europe/Moscow")  # Saturday night's break
    assert schedule.is_open(stored, at(2026, 12, 27, 2, 30), "Europe/Moscow")  # ...and past midnight
    assert not schedule.is_open(stored, at(2026, 12, 31, 10, 0), "Europe/Moscow")  # the holiday

    page = client.get(f"/settings/managers/{data.anna}").data.decode()
    shown = shown_form(page)
    assert (shown["schedule-fri-to"], shown["schedule-sat-break-0-from"]) == ("00:00", "23:00")
    assert "schedule-always" not in shown and "schedule-tue-open" not in shown
    assert auth.post(f"/settings/managers/{data.anna}", shown, page="/settings/managers/").status_code == 302
    db.rollback()
    assert db.get(Manager, data.anna).schedule == stored


@pytest.mark.parametrize(("grid", "stored"), [
    (bf.hours(always=True), {}),
    (bf.hours(always=True, holidays=["2027-01-01"]), {"closed_dates": ["2027-01-01"]}),
    (bf.hours({}), {day: [] for day in bf.DAYS}),  # weekly hours with no open day: never open
    ({}, {}),  # a client that does not post the grid at all: always open, as the column's default
])
def test_hours_grid_always_and_never(client, auth, data, db, grid, stored):
    auth.login("admin")
    form = {**RULE, "name": "r", **grid}
    assert auth.post("/settings/rules/new", form, page="/settings/rules/new").status_code == 302
    saved = db.scalars(select(RoutingRule.schedule)).one()
    assert saved == stored
    monday = dt.datetime(2026, 12, 21, 10, 0, tzinfo=MOSCOW)
    assert schedule.is_open(saved, monday, "Europe/Moscow") is (stored != {day: [] for day in bf.DAYS})


def test_hours_errors_are_on_their_day_in_both_languages(client, auth, data, db):
    auth.login("admin")
    form = {"name": "Anna", "endpoint": "PJSIP/101", "enabled": "on",
            **bf.hours({"mon": ("09:00", "18:00", [("17:00", "19:00")]), "tue": ("09:00", "09:00", []),
                        "wed": ("9am", "18:00", []), "thu": ("09:00", "18:00", [("12:00", "13:00"), ("12:30", "14:00")])},
                       holidays=["31.12.2026"])}
    page = auth.post(f"/settings/managers/{data.anna}", form, page="/settings/managers/").data.decode()

    def day_error(day):
        row = re.search(rf'<tr data-day="{day}"[^>]*>(.*?)</tr>', page, re.S).group(1)
        return re.findall(r'<p class="error" data-row-error>([^<]*)</p>', row)

    assert day_error("mon") == ["A break must lie inside the working hours (09:00–18:00) and end after it starts."]
    assert day_error("tue") == ["The day starts and ends at the same time."]
    assert day_error("wed") == ["Enter a time such as 09:00."]
    assert day_error("thu") == ["Breaks overlap or are out of order."]
    assert day_error("fri") == []
    assert row_errors(page)["schedule-holiday-0"] == "Enter a date such as 2026-12-31."
    db.rollback()
    assert db.get(Manager, data.anna).schedule == {}  # nothing saved

    in_russian(db)
    page = auth.post(f"/settings/managers/{data.anna}", form, page="/settings/managers/").data.decode()
    assert day_error("tue") == [russian("The day starts and ends at the same time.")]
    assert row_errors(page)["schedule-holiday-0"] == russian("Enter a date such as 2026-12-31.")
    assert russian("Monday") in page and russian("Add a break") in page


def test_a_schedule_the_grid_cannot_show_exactly_is_flagged(client, auth, data, db):
    manager = db.get(Manager, data.anna)
    manager.schedule = {"mon": [["09:00", "12:00"], ["11:00", "18:00"]]}  # overlapping spans, typed as JSON once
    db.commit()
    auth.login("admin")
    page = client.get(f"/settings/managers/{data.anna}").data.decode()
    assert "cannot show exactly" in page


# ------------------------------------------------------------------ time zone


def test_time_zone_picker_offers_the_zone_database_with_the_current_zone(client, auth, data, db):
    auth.login("admin")
    page = client.get(f"/settings/sites/{data.site}").data.decode()
    select_html = re.search(r'<select[^>]*name="timezone".*?</select>', page, re.S).group(0)
    assert re.search(r'<option selected value="Europe/Moscow">Europe/Moscow \(UTC\+03:00\)</option>', select_html)
    assert '<optgroup label="Asia">' in select_html and 'value="America/New_York"' in select_html
    assert 'class="tz-search"' in page
    form = shown_form(page)
    form["timezone"] = "Mars/Olympus"
    page = auth.post(f"/settings/sites/{data.site}", form, page="/settings/sites/").data.decode()
    assert field_errors(page, "timezone") == [
        "Unknown time zone &#39;Mars/Olympus&#39;; choose one from the list, such as Europe/Moscow."]
    in_russian(db)
    page = auth.post(f"/settings/sites/{data.site}", form, page="/settings/sites/").data.decode()
    assert field_errors(page, "timezone")[0].startswith(russian("Unknown time zone %(zone)s; choose one from the "
                                                                "list, such as Europe/Moscow.").split("%")[0])
    form["timezone"] = "America/Argentina/Buenos_Aires"
    assert auth.post(f"/settings/sites/{data.site}", form, page="/settings/sites/").status_code == 302
    db.rollback()
    assert db.get(Site, data.site).timezone == "America/Argentina/Buenos_Aires"


# ------------------------------------------------------------------ unique values


def test_a_duplicate_number_is_refused_on_its_field(client, auth, data, db):
    auth.login("admin")
    taken = db.scalars(select(TrackingNumber).where(TrackingNumber.number == "+74952000000")).one()
    form = {"number": "8 (495) 200-00-00", "site_id": str(data.site), "enabled": "on"}
    response = auth.post("/settings/numbers/new", form, page="/settings/numbers/new")
    page = response.data.decode()
    assert response.status_code == 400
    assert field_errors(page, "number") == [
        f"This number is already a tracking number (record #{taken.id}): edit that record instead."]
    assert "another record already uses" not in page  # on the field, not a banner
    assert db.query(TrackingNumber).count() == 4
    # the number's own record saves with its own number
    edit = {"number": "+74952000000", "site_id": str(data.site), "source_id": str(data.organic), "label": "print",
            "enabled": "on"}
    assert auth.post(f"/settings/numbers/{taken.id}", edit, page="/settings/numbers/").status_code == 302

    in_russian(db)
    page = auth.post("/settings/numbers/new", form, page="/settings/numbers/new").data.decode()
    assert field_errors(page, "number") == [russian("This number is already a tracking number (record #%(other)s): "
                                                    "edit that record instead.", other=taken.id)]


def test_duplicate_group_names_and_endpoints_are_refused_on_their_fields(client, auth, data, db):
    db.add(ManagerGroup(name="Sales"))
    db.commit()
    auth.login("admin")
    page = auth.post("/settings/groups/new", {"name": "Sales"}, page="/settings/groups/new").data.decode()
    assert field_errors(page, "name")[0].startswith("Another group (record #")
    form = {"name": "Vera", "endpoint": "PJSIP/101", "enabled": "on"}  # Anna's endpoint
    page = auth.post("/settings/managers/new", form, page="/settings/managers/new").data.decode()
    assert field_errors(page, "endpoint") == [f"Another manager (record #{data.anna}) already uses this phone endpoint."]
    assert db.query(Manager).count() == 2


# ------------------------------------------------------------------ CSV import preview


@pytest.fixture
def moves(db, data):
    """A second site with a pool and a static source, and a static number of the first site."""
    other = add_site(db, "Outlet", timezone="Europe/Moscow")
    outlet_pool = add_pool(db, other, "Outlet pool")
    radio = add_static_source(db, db.get(Site, data.site), "Radio")
    add_numbers(db, db.get(Site, data.site), ["+74953330000"], source=radio)
    db.commit()
    return {"site": other, "pool": outlet_pool, "radio": radio}


def test_import_preview_lists_changes_and_warns_about_moves(db, data, moves):
    text = ("number;site;source;pool;label;enabled\n"
            "+74951000000;Shop;Organic;;;\n"  # pool number -> static source
            "+74952000000;Shop;;Main pool;;\n"  # static number of Organic -> pool
            "+74953330000;Shop;Organic;;;no\n"  # static number: Radio -> Organic, disabled
            "+74951000001;Outlet;;Outlet pool;;\n"  # pool number -> another site's pool
            "+74951000002;Shop;;Main pool;;\n")  # nothing changes
    rows, errors = csv_import.parse_numbers_csv(text, db)
    assert errors == []
    by_number = {row.number: row for row in rows}
    first = by_number["+74951000000"]
    assert [(c.field, c.old, c.new) for c in first.changes] == [("source", None, "Organic"), ("pool", "Main pool", None)]
    assert [w.text for w in first.warnings] == [
        "leaves pool %(pool)s and becomes the static number of source %(source)s: visitors are no longer shown it and "
        "its calls are all attributed to %(source)s"]
    assert "leaves pool Main pool and becomes the static number of source Organic" in str(first.warnings[0])
    assert "stops being the static number of source Organic and joins pool Main pool" in \
        str(by_number["+74952000000"].warnings[0])
    radio = by_number["+74953330000"]
    assert [(c.field, c.old, c.new) for c in radio.changes] == [("source", "Radio", "Organic"), ("enabled", True, False)]
    assert str(radio.warnings[0]) == "its calls are attributed to Organic instead of Radio"
    outlet = by_number["+74951000001"]
    assert [str(w) for w in outlet.warnings] == ["moves from site Shop to site Outlet",
                                                 "moves from pool Main pool to pool Outlet pool"]
    assert by_number["+74951000002"].changes == [] and by_number["+74951000002"].warnings == []
    db.rollback()
    assert db.scalars(select(TrackingNumber.pool_id).where(TrackingNumber.number == "+74951000000")).one() == data.pool


def test_import_preview_page_in_russian_and_a_stale_confirmation_applies_nothing(client, auth, data, db):
    auth.login("admin")
    in_russian(db)
    text = "number;site;source;pool\n+74951000000;Shop;Organic;\nnot a number;Shop;;\n"
    page = auth.post("/settings/numbers/import", {"text": text}, page="/settings/numbers/import").data.decode()
    assert russian("leaves pool %(pool)s and becomes the static number of source %(source)s: visitors are no longer "
                   "shown it and its calls are all attributed to %(source)s", pool="Main pool", source="Organic") in page
    assert russian("%(value)s is not a phone number", value="&#39;not a number&#39;") in page
    assert "Main pool</del> → <ins>—</ins>" in page and russian("Changes") in page
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', page).group(1)

    number = db.scalars(select(TrackingNumber).where(TrackingNumber.number == "+74951000000")).one()
    number.label = "changed meanwhile"  # someone else edits the number between preview and confirmation
    db.commit()
    response = auth.post("/settings/numbers/import", {"text": text, "confirm": "1", "digest": digest},
                         page="/settings/numbers/import")
    assert response.status_code == 409
    db.rollback()
    db.expire_all()  # the session keeps what it committed (expire_on_commit=False): read the table again
    assert db.get(TrackingNumber, number.id).pool_id == data.pool  # nothing applied
    fresh = re.search(r'name="digest" value="([0-9a-f]+)"', response.data.decode()).group(1)
    assert fresh != digest
    applied = auth.post("/settings/numbers/import", {"text": text, "confirm": "1", "digest": fresh},
                        page="/settings/numbers/import")
    assert applied.status_code == 302
    db.rollback()
    db.expire_all()
    assert (db.get(TrackingNumber, number.id).pool_id, db.get(TrackingNumber, number.id).source_id) == \
        (None, data.organic)
