"""Settings CRUD and users through real forms (with CSRF): validation errors lose nothing."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from astertrack.db.models import Manager, ManagerGroup, RoutingRule, Site, Source, User
from astertrack.passwords import verify_password
from tests.webadmin import builder_fields
from tests.webadmin.conftest import AuthActions

SITE_FORM = {"name": "Blog", "domains": "blog.example\nwww.blog.example", "display_format": "8 (XXX) XXX-XX-XX",
             "timezone": "Asia/Yekaterinburg", "hold_seconds": "900", "heartbeat_seconds": "30",
             "hold_cap_seconds": "3600", "unload_grace_seconds": "120", "overflow_policy": "reuse_oldest",
             "attribution_window_days": "14", "attribution_model": "last_touch", "target_call_seconds": "45",
             "crm_url_template": "https://crm.example/?q={phone}", "replace_numbers": "+7 495 100-00-00",
             "default_number": "8 (495) 123-45-67", "lead_window_days": "14", "missed_call_callback": "y"}


def test_create_site(client, auth, data, db):
    auth.login("admin")
    response = auth.post("/settings/sites/new", SITE_FORM, page="/settings/sites/new")
    assert response.status_code == 302
    site = db.query(Site).filter_by(name="Blog").one()
    assert site.domains == ["blog.example", "www.blog.example"]
    assert site.default_number == "+74951234567" and site.replace_numbers == ["+74951000000"]
    assert (site.hold_seconds, site.attribution_model, site.timezone) == (900, "last_touch", "Asia/Yekaterinburg")
    assert site.lazy_allocation is False
    assert (site.lead_window_days, site.missed_call_callback) == (14, True)


def test_site_validation_errors_keep_input(client, auth, data, db):
    auth.login("admin")
    bad = {**SITE_FORM, "timezone": "Mars/Olympus", "hold_seconds": "ten", "crm_url_template": "javascript:alert(1)"}
    response = auth.post("/settings/sites/new", bad, page="/settings/sites/new")
    assert response.status_code == 400
    body = response.data.decode()
    assert "Unknown time zone" in body and "Enter a whole number" in body and "http://" in body
    assert 'value="Blog"' in body  # what the admin typed is still there
    assert db.query(Site).filter_by(name="Blog").count() == 0


def test_source_rules_validated(client, auth, data, db):
    auth.login("admin")
    form = {"site_id": str(data.site), "name": "Google Ads", "kind": "dynamic", "priority": "10", "enabled": "on",
            **builder_fields.conditions([{"field": "utm_source", "op": "regex", "value": "("}])}
    response = auth.post("/settings/sources/new", form, page="/settings/sources/new")
    assert response.status_code == 400 and b"Bad regular expression" in response.data
    form |= builder_fields.conditions([{"field": "utm_source", "op": "equals", "value": "google"}])
    assert auth.post("/settings/sources/new", form, page="/settings/sources/new").status_code == 302
    source = db.query(Source).filter_by(name="Google Ads").one()
    assert source.match_rules == [{"field": "utm_source", "op": "equals", "value": "google"}] and source.enabled


def test_edit_manager_groups_and_schedule(client, auth, data, db):
    group = ManagerGroup(name="Sales")
    db.add(group)
    db.commit()
    auth.login("admin")
    form = {"name": "Anna K", "endpoint": "PJSIP/101", "enabled": "on", "groups": [str(group.id)],
            **builder_fields.hours({"mon": ("09:00", "18:00", [])})}
    assert auth.post(f"/settings/managers/{data.anna}", form, page="/settings/managers/").status_code == 302
    db.expire_all()
    anna = db.get(Manager, data.anna)
    assert anna.name == "Anna K" and [g.name for g in anna.groups] == ["Sales"]
    assert anna.schedule == {"mon": [["09:00", "18:00"]]}
    bare = {k: v for k, v in form.items() if not k.startswith("schedule")}
    form = {**bare, **builder_fields.hours({"mon": ("09:00", "09:00", [])})}
    assert auth.post(f"/settings/managers/{data.anna}", form, page="/settings/managers/").status_code == 400
    # what the engine reads (astertrack.routing.schedule) is accepted: a span past midnight, closed dates
    form = {**bare, **builder_fields.hours({"fri": ("22:00", "02:00", [])}, holidays=["2026-12-31"])}
    assert auth.post(f"/settings/managers/{data.anna}", form, page="/settings/managers/").status_code == 302
    db.rollback()  # end the read snapshot taken above
    assert db.get(Manager, data.anna).schedule == {"fri": [["22:00", "02:00"]], "closed_dates": ["2026-12-31"]}
    form = {**bare, **builder_fields.hours(always=True, holidays=["31.12.2026"])}
    assert auth.post(f"/settings/managers/{data.anna}", form, page="/settings/managers/").status_code == 400
    form["endpoint"] = "PJSIP/101; rm -rf"
    response = auth.post(f"/settings/managers/{data.anna}", form, page="/settings/managers/")
    assert response.status_code == 400 and b"PJSIP/101" in response.data


def test_routing_rule(client, auth, data, db):
    auth.login("admin")
    form = {"name": "Brand", "priority": "5", "enabled": "on", "strategy": "least_recent", "sticky": "on",
            "sticky_days": "30", **builder_fields.match({"utm_campaign": ["brand"], "dids": ["8 495 100-00-00"]}),
            "after_hours_destination": "voicemail:100@default", "ring_timeout": "20"}
    assert auth.post("/settings/rules/new", form, page="/settings/rules/new").status_code == 302
    rule = db.query(RoutingRule).filter_by(name="Brand").one()
    assert rule.match == {"utm_campaign": ["brand"], "dids": ["+74951000000"]}
    assert rule.after_hours_destination == "voicemail:100@default" and rule.site_id is None
    form["after_hours_destination"] = "dial:PJSIP/1\nHangup"
    assert auth.post("/settings/rules/new", form, page="/settings/rules/new").status_code == 400


def test_duplicate_number_is_a_clear_error(client, auth, data):
    auth.login("admin")
    form = {"number": "+74952000000", "site_id": str(data.site), "enabled": "on"}
    response = auth.post("/settings/numbers/new", form, page="/settings/numbers/new")
    assert response.status_code == 400 and b"already a tracking number" in response.data


def test_a_pool_in_use_is_not_deleted(client, auth, data, db):
    """Its numbers and its source still name it: the delete is refused (archive it instead)."""
    auth.login("admin")
    assert auth.post(f"/settings/pools/{data.pool}/delete", page="/settings/pools/").status_code == 409
    assert db.query(Source).filter_by(id=data.yandex).one().pool_id == data.pool


def test_create_user_and_change_password(client, auth, data, db):
    auth.login("admin")
    form = {"login": "carol", "role": "manager", "password": "long-password-1", "active": "on", "locale": "ru"}
    response = auth.post("/users/new", form, page="/users/new")
    assert response.status_code == 400 and b"must be linked to a manager" in response.data
    form["manager_id"] = str(data.boris)
    assert auth.post("/users/new", form, page="/users/new").status_code == 302
    carol = db.query(User).filter_by(login="carol").one()
    assert carol.manager_id == data.boris and carol.locale == "ru"
    assert verify_password(carol.password_hash, "long-password-1")
    short = {**form, "password": "short"}
    assert auth.post(f"/users/{carol.id}", short, page="/users/").status_code == 400
    assert auth.post("/users/new", form, page="/users/new").status_code == 400  # login taken


def test_admin_cannot_demote_self(client, auth, data):
    auth.login("admin")
    form = {"login": "admin", "role": "supervisor", "active": "on"}
    response = auth.post(f"/users/{data.users['admin']}", form, page="/users/")
    assert response.status_code == 400 and b"your own admin access" in response.data


def test_supervisor_cannot_post_settings(client, auth, data, db):
    auth.login("super")
    response = auth.post("/settings/sites/new", SITE_FORM, page="/calls/")
    assert response.status_code == 403
    assert db.query(Site).filter_by(name="Blog").count() == 0


class _FormFields(HTMLParser):
    """What a browser would submit for a form left as shown: inputs, checked boxes, selected options."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, object] = {}
        self._select: str | None = None
        self._textarea: str | None = None
        self._multiple = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("type") != "checkbox":
            self.values[a["name"]] = a.get("value", "")
        elif tag == "input" and a.get("name") and "checked" in a:
            self.values[a["name"]] = a.get("value", "on")
        elif tag == "textarea" and a.get("name"):  # a nameless one (the snippet box) is not submitted
            self._textarea = a["name"]
            self.values[a["name"]] = ""
        elif tag == "select":
            self._select, self._multiple = a["name"], "multiple" in a
            self.values[a["name"]] = [] if self._multiple else None
        elif tag == "option" and self._select:
            current = self.values[self._select]
            if self._multiple:
                if "selected" in a:
                    current.append(a["value"])
            elif "selected" in a or current is None:
                self.values[self._select] = a["value"]

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea] += data


def shown_form(page: str) -> dict[str, object]:
    parser = _FormFields()
    parser.feed(page)
    return {name: value for name, value in parser.values.items() if name != "csrf_token" and value is not None}


def test_new_forms_submit_as_shown(client, auth, data, db):
    """Every "new" form, submitted with only its required text filled, saves (defaults are valid)."""
    auth.login("admin")
    required = {"sites": {"name": "Second"}, "pools": {"name": "P2"}, "sources": {"name": "S2"},
                "numbers": {"number": "+74957000000"}, "managers": {"name": "Vera", "endpoint": "PJSIP/103"},
                "groups": {"name": "Support"}, "rules": {"name": "Default"}}
    for slug, extra in required.items():
        form = {**shown_form(client.get(f"/settings/{slug}/new").data.decode()), **extra}
        response = auth.post(f"/settings/{slug}/new", form, page=f"/settings/{slug}/new")
        assert response.status_code == 302, (slug, re.findall(r'<p class="error">([^<]*)</p>', response.data.decode()))


def test_settings_page_shows_recordings_disk_usage_and_last_retention_sweep(app, client, auth, data, recordings_dir,
                                                                          tmp_path):
    import datetime as dt

    from astertrack.ops import retention

    day = recordings_dir / "2026" / "11" / "23"
    day.mkdir(parents=True)
    (day / "a.wav").write_bytes(b"\0" * 3000)
    (day / "b.wav").write_bytes(b"\0" * 2000)
    retention._usage_cache.clear()
    app.config["DATA_DIR"] = str(tmp_path)
    auth.login("admin")
    page = client.get("/settings/").get_data(as_text=True)
    storage = page[page.index('id="storage"'):page.index("</table>", page.index('id="storage"'))]
    files = [f for f in recordings_dir.rglob("*") if f.is_file()]  # the seed's recordings and ours
    assert f"{len(files)} files" in storage and str(recordings_dir) in storage
    assert '2026-11</th><td>4.9 KB' in storage  # grouped by the YYYY/MM/DD layout
    assert "none yet" in page

    report = retention.SweepReport(started_at=dt.datetime(2026, 11, 23, 3, 30, tzinfo=dt.UTC), dry_run=False)
    report.raw_events_deleted = 7
    retention.save_last_report(tmp_path, report)
    page = client.get("/settings/").get_data(as_text=True)
    assert "2026-11-23T03:30:00+00:00" in page and "deleted: 0 calls" in page

    supervisor = app.test_client()
    AuthActions(supervisor).login("super")  # supervisors see reports, not settings
    assert supervisor.get("/settings/").status_code == 403


def test_user_form_offers_the_admin_roles_and_languages_and_refuses_others(client, auth, data, db):
    from webadmin.i18n import LOCALES
    from webadmin.security import ROLES

    auth.login("admin")
    page = client.get("/users/new").get_data(as_text=True)
    role_select = re.search(r'<select[^>]*name="role".*?</select>', page, re.S).group(0)
    assert re.findall(r'<option[^>]*value="([^"]*)"', role_select) == list(ROLES)
    locale_select = re.search(r'<select[^>]*name="locale".*?</select>', page, re.S).group(0)
    assert re.findall(r'<option[^>]*value="([^"]*)"', locale_select) == ["", *LOCALES]
    form = {"login": "dave", "role": "owner", "password": "long-password-1", "active": "on"}
    assert auth.post("/users/new", form, page="/users/new").status_code == 400
    assert auth.post("/users/new", {**form, "role": "supervisor", "locale": "de"}, page="/users/new").status_code == 400
    assert auth.post("/users/new", {**form, "role": "supervisor", "locale": ""}, page="/users/new").status_code == 302
    dave = db.query(User).filter_by(login="dave").one()
    assert dave.role == "supervisor" and dave.locale is None and dave.manager_id is None


def _snippet_box(page: str) -> str | None:
    import html

    match = re.search(r'<textarea[^>]*id="snippet-code"[^>]*>(.*?)</textarea>', page, re.S)
    return html.unescape(match.group(1)).strip() if match else None


def test_site_page_shows_the_exact_snippet_tag_with_a_copy_button(client, auth, data, db):
    key = db.get(Site, data.site).public_key
    auth.login("admin")
    page = client.get(f"/settings/sites/{data.site}").get_data(as_text=True)
    assert _snippet_box(page) == f'<script async src="/ct/v.js" data-key="{key}"></script>'
    assert re.search(r'<button type="button" id="snippet-copy"[^>]*>Copy</button>', page)
    assert 'aria-live="polite"' in page and 'id="snippet-status"' in page
    assert "/static/js/snippet.js" in page
    # the same page in Russian
    db.rollback()  # a fresh snapshot: the login wrote meanwhile
    db.query(User).filter_by(login="admin").one().locale = "ru"
    db.commit()
    page = client.get(f"/settings/sites/{data.site}").get_data(as_text=True)
    assert _snippet_box(page) == f'<script async src="/ct/v.js" data-key="{key}"></script>'
    assert re.search(r'id="snippet-copy"[^>]*>Копировать</button>', page)
    # a site that does not exist yet has no key to show
    assert _snippet_box(client.get("/settings/sites/new").get_data(as_text=True)) is None
