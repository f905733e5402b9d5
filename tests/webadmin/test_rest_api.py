"""The REST API (/api/v1) on SQLite and PostgreSQL: the OpenAPI document lists every route Flask
serves there; scopes, revoked tokens and site limits hold on every resource; cursor pagination
returns each of 10,000 calls exactly once even while calls are added between pages; filters
narrow; errors carry machine-readable codes; webhook subscriptions are managed through the API;
and the browsable reference page is behind login for admins and supervisors."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from sqlalchemy import event, func, insert, select

from astertrack.db.models import (
    AuditLog,
    Call,
    Deal,
    Lead,
    Source,
    VisitorSession,
    WebhookOutbox,
    WebhookSubscription,
)
from astertrack.db.types import utcnow
from astertrack.integrations import api_tokens
from astertrack.integrations.events import EVENT_MODELS
from astertrack.samples.factories import add_numbers, add_pool, add_site, add_static_source
from tests.webadmin.conftest import AuthActions
from tests.webadmin.leads_data import make_leads
from webadmin.api import openapi
from webadmin.api.openapi import PREFIX
from webadmin.db import EXTENSION

# ---------------------------------------------------------------- fixtures


@pytest.fixture
def world(db, data):
    """The seed (site "Shop") plus a second site with a source, a number, a pool, a visit and a call."""
    leads = make_leads(db, data)
    other = add_site(db, "Other shop")
    other_pool = add_pool(db, other, "Other pool")
    other_source = add_static_source(db, other, "Other radio", channel="offline")
    add_numbers(db, other, ["+74957000000"], source=other_source)
    add_numbers(db, other, ["+74957000001"], pool=other_pool)
    visit = VisitorSession(site_id=other.id, source_id=other_source.id, utm_source="other", ip="203.0.113.9",
                           user_agent="Mozilla/5.0 secret-agent", ga_client_id="GA1.1.1.2")
    db.add(visit)
    db.flush()
    other_call = Call(site_id=other.id, did="+74957000000", caller_number="+79990001111", started_at=utcnow(),
                      state="finished", outcome="answered", source_id=other_source.id, session_id=visit.id)
    db.add(other_call)
    db.flush()
    tokens = {name: api_tokens.create(db, name, site, scope)[1] for name, site, scope in [
        ("shop", data.site, "write"), ("reader", data.site, "read"), ("every", None, "write"),
        ("every_reader", None, "read"), ("other", other.id, "write"), ("revoked", None, "write")]}
    api_tokens.revoke(db, db.scalars(select(api_tokens.ApiToken).where(api_tokens.ApiToken.name == "revoked")).one())
    db.commit()
    return type("World", (), {"data": data, "leads": leads, "other": other.id, "other_source": other_source.id,
                              "other_call": other_call.id, "other_visit": visit.id, "tokens": tokens})


def api(client, token: str | None, path: str, method: str = "GET", json=None, **query):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.open(PREFIX + path, method=method, json=json, headers=headers, query_string=query or None)


def code(response) -> str:
    return response.get_json()["error"]["code"]


def ids(response) -> list[int]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["id"] for item in response.get_json()["items"]]


# ---------------------------------------------------------------- the document


def test_the_document_lists_every_api_route_flask_serves(app, client):
    response = client.get(PREFIX + "/openapi.json")  # no token: the document holds no data
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"] == "3.1.0"
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    # A route added under /api/v1 without @operation is served but missing here: this fails.
    assert served_routes(app) == documented
    assert len(documented) >= 21
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "an API token made in Settings → API tokens"}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert operation["security"] == ([] if path.endswith("/openapi.json") else [{"bearerAuth": []}])
            for status, answer in operation["responses"].items():
                ref = answer["content"]["application/json"]["schema"].get("$ref")
                assert ref is None or ref.rsplit("/", 1)[-1] in doc["components"]["schemas"], (path, status)
            if method != "get" and not path.endswith("/openapi.json"):
                assert operation["x-scope"] == "write", path
    assert set(doc["webhooks"]) == set(EVENT_MODELS)
    hook = doc["webhooks"]["deal.updated"]["post"]
    assert {p["name"] for p in hook["parameters"]} == {
        "X-Astertrack-Signature-V2", "X-Astertrack-Timestamp", "X-Astertrack-Delivery", "X-Astertrack-Event"}
    assert hook["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/LeadEventBody"}
    assert "amount" in doc["components"]["schemas"]["LeadEventBody"]["properties"]
    # the pydantic models' nested definitions are hoisted: no $defs left inside components
    assert "$defs" not in response.get_data(as_text=True)


def served_routes(app) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every route Flask serves under /api/v1."""
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PREFIX + "/"):
            path = rule.rule
            for name in rule.arguments:
                path = path.replace(f"<int:{name}>", "{" + name + "}").replace(f"<{name}>", "{" + name + "}")
            served |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return served


def test_a_route_without_its_contract_is_caught(app):
    app.add_url_rule(PREFIX + "/undocumented", "api.undocumented", lambda: "{}")
    doc = openapi.build(app)
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    assert served_routes(app) - documented == {(PREFIX + "/undocumented", "GET")}


def test_the_document_shows_the_models_constraints(client):
    doc = client.get(PREFIX + "/openapi.json").get_json()
    params = {p["name"]: p for p in doc["paths"]["/api/v1/calls"]["get"]["parameters"]}
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}
    assert params["from"]["schema"] == {"type": "string", "format": "date-time"}
    assert params["outcome"]["schema"]["enum"] == ["answered", "missed", "busy"]
    codes = doc["paths"]["/api/v1/calls"]["get"]["x-error-codes"]
    assert codes["400"] == ["invalid_parameter", "invalid_cursor"] and codes["401"] == ["unauthorized"]
    assert doc["paths"]["/api/v1/leads/{lead_id}/deal"]["patch"]["x-error-codes"]["403"] == ["read_only", "wrong_site"]


# ---------------------------------------------------------------- tokens and scopes


def test_a_read_token_cannot_change_a_deal(client, db, world):
    lead = world.leads.petr
    deals_before = db.scalar(select(func.count(Deal.id)))
    response = api(client, world.tokens["reader"], f"/leads/{lead}/deal", "PATCH", {"state": "won", "amount": "500"})
    assert response.status_code == 403 and code(response) == "read_only"
    db.rollback()
    row = db.get(Lead, lead)
    assert (row.status, row.amount) == ("new", None)
    assert db.scalar(select(func.count(Deal.id))) == deals_before
    assert db.scalars(select(AuditLog).where(AuditLog.entity_kind == "leads")).all() == []
    # ...and the same token reads it
    assert api(client, world.tokens["reader"], f"/leads/{lead}").get_json()["state"] == "new"


def test_a_write_token_sets_the_deal_audited(client, db, world):
    lead = world.leads.petr
    response = api(client, world.tokens["shop"], f"/leads/{lead}/deal", "PATCH",
                   {"state": "won", "amount": "1500.5", "currency": "usd", "external_id": "crm-1"})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["state"], body["amount"], body["currency"], body["external_id"]) == ("won", "1500.50", "USD", "crm-1")
    db.rollback()
    deal = db.scalars(select(Deal).where(Deal.lead_id == lead)).one()
    assert (deal.status, deal.revenue, deal.currency) == ("won", Decimal("1500.50"), "USD")
    entry = db.scalars(select(AuditLog).where(AuditLog.entity_kind == "leads")).one()
    assert entry.user_login.startswith("api:at_") and entry.after["status"] == "won"
    bad = api(client, world.tokens["shop"], f"/leads/{lead}/deal", "PATCH", {"state": "won", "currency": "RUR"})
    assert bad.status_code == 400 and code(bad) == "invalid_parameter"
    assert bad.get_json()["error"]["details"][0]["field"] == "currency"


def test_a_revoked_token_is_refused_everywhere(client, world):
    token = world.tokens["revoked"]
    for path, method, body in [("/calls", "GET", None), (f"/leads/{world.leads.petr}/deal", "PATCH", {"state": "won"}),
                               ("/webhooks", "POST", {"url": "https://x.example/", "events": ["call.finished"]})]:
        response = api(client, token, path, method, body)
        assert response.status_code == 401 and code(response) == "unauthorized", path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_site_token_never_sees_another_sites_rows(client, world):
    shop, other = world.tokens["shop"], world.tokens["other"]
    site = world.data.site
    for path in ("/calls", "/leads", "/sessions", "/sources", "/numbers", "/pools"):
        items = api(client, shop, path, limit=500).get_json()["items"]
        assert items and {item["site_id"] for item in items} == {site}, path
        others = api(client, other, path, limit=500).get_json()["items"]
        assert {item["site_id"] for item in others} <= {world.other}, path
        asked = api(client, shop, path, site_id=world.other)
        assert asked.status_code == 403 and code(asked) == "wrong_site", path
    for path in (f"/calls/{world.other_call}", f"/sessions/{world.other_visit}", f"/leads/{world.leads.petr}",
                 f"/leads/{world.leads.petr}/enquiries"):
        owner = shop if "leads" in path else other
        stranger = other if owner == shop else shop
        assert api(client, owner, path).status_code == 200, path
        refused = api(client, stranger, path)
        assert refused.status_code == 403 and code(refused) == "wrong_site", path
    refused = api(client, other, f"/leads/{world.leads.petr}/deal", "PATCH", {"state": "won"})
    assert refused.status_code == 403 and code(refused) == "wrong_site"
    # subscriptions are not per site: a site's token manages none
    for method, path in (("GET", "/webhooks"), ("POST", "/webhooks")):
        refused = api(client, shop, path, method, {"url": "https://x.example/", "events": ["call.finished"]}
                      if method == "POST" else None)
        assert refused.status_code == 403 and code(refused) == "wrong_site"
    # an every-site token sees both sites
    both = {item["site_id"] for item in api(client, world.tokens["every"], "/calls").get_json()["items"]}
    assert both == {site, world.other}


def test_a_visit_gives_attribution_but_no_ip_or_user_agent(client, world):
    visit = api(client, world.tokens["every"], f"/sessions/{world.other_visit}").get_json()
    assert visit["ga_client_id"] == "GA1.1.1.2" and visit["source"] == "Other radio"
    assert "ip" not in visit and "user_agent" not in visit
    assert "203.0.113.9" not in str(api(client, world.tokens["every"], "/sessions").get_json())


# ---------------------------------------------------------------- pagination


def _bulk_calls(db, site_id: int, count: int, start: dt.datetime, source_id: int | None = None) -> None:
    rows = [{"site_id": site_id, "did": "+74951000000", "caller_number": f"+7916{i:07d}",
             "started_at": start + dt.timedelta(seconds=i), "state": "finished", "outcome": "answered",
             "source_id": source_id, "call_uid": f"bulk-{start.timestamp():.0f}-{i}"} for i in range(count)]
    db.commit()  # end the session's read snapshot first: SQLite refuses to write from a stale one
    db.execute(insert(Call), rows)
    db.commit()


def test_pagination_returns_each_of_10000_calls_once_while_calls_arrive(client, db, world):
    start = utcnow() - dt.timedelta(days=2)
    _bulk_calls(db, world.data.site, 10_000, start)
    expected = set(db.scalars(select(Call.id)))
    seen: list[int] = []
    cursor, pages = None, 0
    while True:
        query = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = api(client, world.tokens["every"], "/calls", **query).get_json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        # calls keep arriving between pages: they neither repeat nor push rows out of the pages to come
        _bulk_calls(db, world.data.site, 3, utcnow() + dt.timedelta(minutes=pages))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) and set(seen) == expected
    assert seen == sorted(seen, reverse=True) and pages == len(expected) // 500 + 1


def test_a_malformed_cursor_or_limit_is_400_with_a_code(client, world):
    token = world.tokens["every"]
    for cursor in ("garbage!", "eyJiZWZvcmUiOiAieCJ9", "e30", "bnVsbA"):  # ... {"before": "x"}, {}, null
        response = api(client, token, "/calls", cursor=cursor)
        assert response.status_code == 400 and code(response) == "invalid_cursor", cursor
    for limit in ("0", "501", "ten"):
        response = api(client, token, "/calls", limit=limit)
        assert response.status_code == 400 and code(response) == "invalid_parameter"
        assert response.get_json()["error"]["details"][0]["field"] == "limit"
    unknown = api(client, token, "/calls", site=1)
    assert unknown.status_code == 400 and unknown.get_json()["error"]["details"][0]["field"] == "site"
    for path in ("/calls/abc", "/no-such-resource"):  # no route matches: still the API's JSON, not an HTML page
        missing = api(client, token, path)
        assert missing.status_code == 404 and missing.is_json and code(missing) == "not_found", path
    huge = api(client, token, f"/calls/{2**63}")
    assert huge.status_code == 404 and code(huge) == "not_found"
    assert code(api(client, token, "/calls/999999")) == "not_found"
    bad_time = api(client, token, "/calls", **{"from": "yesterday"})
    assert bad_time.status_code == 400 and bad_time.get_json()["error"]["details"][0]["field"] == "from"


def test_a_server_error_is_json_without_a_trace(app, client, world, monkeypatch):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: the error is answered, not raised

    def broken(row):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("webadmin.api.calls.call_out", broken)
    response = api(client, world.tokens["every"], f"/calls/{world.data.answered}")
    assert response.status_code == 500, response.get_data(as_text=True)[:3000]
    assert code(response) == "server_error", (response.headers, response.get_data(as_text=True)[:2000])
    assert "secret internals" not in response.get_data(as_text=True)


# ---------------------------------------------------------------- filters


def test_filters_narrow_calls_leads_and_visits(client, db, world):
    data, token = world.data, world.tokens["every"]
    answered = db.get(Call, data.answered)
    at = answered.started_at

    def call_ids(**query):
        return set(ids(api(client, token, "/calls", limit=500, **query)))

    everything = call_ids()
    assert call_ids(**{"from": at.isoformat(), "to": (at + dt.timedelta(seconds=1)).isoformat()}) == {data.answered}
    assert data.answered not in call_ids(to=at.isoformat())  # to is exclusive
    assert call_ids(source_id=data.yandex) == {data.answered}
    assert call_ids(manager_id=data.anna) == {data.answered}
    assert call_ids(outcome="missed") == {data.missed}
    assert call_ids(site_id=world.other) == {world.other_call}
    assert call_ids(state="finished") == everything
    db.rollback()  # a fresh transaction: the API's requests wrote since this one read (SQLite would refuse)
    db.get(Call, data.callback).lead_channel = "callback"
    db.commit()
    assert call_ids(channel="callback") == {data.callback}
    assert data.callback not in call_ids(channel="call")
    db.rollback()
    db.get(Call, data.answered).attribution_confidence, db.get(Call, data.answered).attribution_reason = 1.0, "held_now"
    db.get(Call, data.missed).attribution_confidence = 0.3
    db.commit()
    assert data.answered in call_ids(min_confidence="0.8") and data.missed not in call_ids(min_confidence="0.8")
    assert call_ids(min_confidence="0.8") <= {c for c in everything if (db.get(Call, c).attribution_confidence or 0) >= 0.8}
    assert api(client, token, f"/calls/{data.answered}").get_json()["attribution_reason"] == "held_now"
    assert api(client, token, "/calls", min_confidence="2").status_code == 400
    naive = call_ids(**{"from": at.replace(tzinfo=None).isoformat(), "to": (at + dt.timedelta(seconds=1)).replace(tzinfo=None).isoformat()})
    assert naive == {data.answered}  # a time without an offset is UTC

    leads = api(client, token, "/leads", state="won").get_json()["items"]
    assert [lead["id"] for lead in leads] == [world.leads.ivan] and leads[0]["amount"] == "50000.00"
    forms = {lead["id"] for lead in api(client, token, "/leads", channel="form").get_json()["items"]}
    assert forms == {world.leads.olga}
    assert {lead["id"] for lead in api(client, token, "/leads", source_id=data.yandex).get_json()["items"]} == {world.leads.ivan}
    enquiries = api(client, token, f"/leads/{world.leads.ivan}/enquiries").get_json()["items"]
    assert {e["channel"] for e in enquiries} == {"call", "form"} and enquiries[0]["id"] > enquiries[1]["id"]
    assert {item["id"] for item in api(client, token, "/sessions", source_id=world.other_source).get_json()["items"]} == {
        world.other_visit}
    numbers = api(client, token, "/numbers", source_id=world.other_source).get_json()["items"]
    assert [n["number"] for n in numbers] == ["+74957000000"]
    pools = {p["name"]: p["numbers"] for p in api(client, token, "/pools").get_json()["items"]}
    assert pools == {"Main pool": 3, "Other pool": 1}
    assert {m["name"] for m in api(client, world.tokens["shop"], "/managers").get_json()["items"]} == {"Anna", "Boris"}


def test_a_list_is_a_constant_number_of_queries(app, client, db, world):
    """No N+1: a page of 300 calls (or leads) with sources and managers costs what a page of 3 does."""
    source_ids = list(db.scalars(select(Source.id)))
    _bulk_calls(db, world.data.site, 300, utcnow() - dt.timedelta(hours=5), source_id=random.Random(1).choice(source_ids))
    engine = app.extensions[EXTENSION].kw["bind"]
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    api(client, world.tokens["every"], "/managers")  # the token's last_used_at is written now, not in a measured call
    event.listen(engine, "before_cursor_execute", count)
    try:
        cost = {}
        for path in ("/calls", "/leads", "/sessions", "/pools"):
            for limit in (3, 300):
                statements.clear()
                ids(api(client, world.tokens["every"], path, limit=limit))
                cost[path, limit] = len(statements)
            assert cost[path, 3] == cost[path, 300], (path, cost)
    finally:
        event.remove(engine, "before_cursor_execute", count)


# ---------------------------------------------------------------- webhooks through the API


def test_webhook_subscriptions_through_the_api(client, db, world):
    token, reader = world.tokens["every"], world.tokens["every_reader"]
    body = {"url": "https://crm.example/hook", "events": ["call.finished", "deal.updated"]}
    assert code(api(client, reader, "/webhooks", "POST", body)) == "read_only"
    bad = api(client, token, "/webhooks", "POST", {"url": "ftp://x", "events": ["call.finished"]})
    assert bad.status_code == 400 and code(bad) == "invalid_parameter"
    assert code(api(client, token, "/webhooks", "POST", {"url": "https://x.example/", "events": ["call.exploded"]})) == \
        "invalid_parameter"
    created = api(client, token, "/webhooks", "POST", body)
    assert created.status_code == 201
    made = created.get_json()
    assert len(made["secret"]) == 64 and made["state"] == "active"
    db.rollback()
    assert db.get(WebhookSubscription, made["id"]).secret == made["secret"]
    listed = api(client, reader, "/webhooks").get_json()
    assert [item["id"] for item in listed["items"]] == [made["id"]] and "secret" not in str(listed)
    assert "secret" not in api(client, reader, f"/webhooks/{made['id']}").get_json()

    paused = api(client, token, f"/webhooks/{made['id']}", "PATCH", {"enabled": False})
    assert paused.status_code == 200 and paused.get_json()["state"] == "paused"
    assert code(api(client, reader, f"/webhooks/{made['id']}", "PATCH", {"enabled": True})) == "read_only"
    assert api(client, token, f"/webhooks/{made['id']}", "PATCH", {"enabled": "no"}).status_code == 400

    db.commit()  # a fresh snapshot to write from (SQLite)
    delivery = WebhookOutbox(subscription_id=made["id"], event="call.finished", call_id=world.data.answered,
                             payload={"event": "call.finished"}, attempts=8, dead_at=utcnow(), response_code=500)
    db.add(delivery)
    db.commit()
    log = api(client, reader, f"/webhooks/{made['id']}/deliveries").get_json()["items"]
    assert [(d["id"], d["state"], d["response_code"]) for d in log] == [(delivery.id, "dead", 500)]
    resent = api(client, token, f"/webhooks/deliveries/{delivery.id}/resend", "POST")
    assert resent.status_code == 200 and resent.get_json()["state"] == "pending" and resent.get_json()["attempts"] == 0

    removed = api(client, token, f"/webhooks/{made['id']}", "DELETE")
    assert removed.get_json() == {"id": made["id"], "result": "archived"}  # its delivery refers to it: kept
    db.rollback()
    assert db.get(WebhookSubscription, made["id"]).archived_at is not None
    again = api(client, token, f"/webhooks/{made['id']}", "PATCH", {"enabled": True})
    assert again.status_code == 409 and code(again) == "archived"
    assert code(api(client, token, f"/webhooks/deliveries/{delivery.id}/resend", "POST")) == "archived"
    unused = api(client, token, "/webhooks", "POST", body).get_json()["id"]
    assert api(client, token, f"/webhooks/{unused}", "DELETE").get_json()["result"] == "deleted"
    db.rollback()
    assert db.get(WebhookSubscription, unused) is None  # nothing referred to it
    actions = [(e.action, e.user_login[:7]) for e in db.scalars(select(AuditLog).where(AuditLog.entity_kind == "webhooks")
                                                                 .order_by(AuditLog.id))]
    assert [a for a, _login in actions] == ["create", "update", "update", "archive", "create", "delete"]
    assert {login for _a, login in actions} == {"api:at_"}


# ---------------------------------------------------------------- the reference page


def test_the_reference_page_is_for_admins_and_supervisors(app, client, auth, world):
    assert client.get("/settings/api-tokens/docs").status_code == 302  # to the login page
    auth.login("anna")
    assert client.get("/settings/api-tokens/docs").status_code == 403
    for login in ("admin", "super"):
        client = app.test_client()
        AuthActions(client).login(login)
        page = client.get("/settings/api-tokens/docs")
        assert page.status_code == 200, login
        html = page.get_data(as_text=True)
        doc = client.get(PREFIX + "/openapi.json").get_json()
        for path in doc["paths"]:
            assert f'data-path="{path}"' in html, path
        for event_name in EVENT_MODELS:
            assert f'data-event="{event_name}"' in html
        assert "curl -sS -X PATCH \\\n  -H &#34;Authorization: Bearer $TOKEN&#34;" in html
        assert "Authorization: Bearer at_" not in html  # no token is ever printed
        if login == "admin":
            tokens_page = client.get("/settings/api-tokens/")
            assert 'href="/settings/api-tokens/docs"' in tokens_page.get_data(as_text=True)


def test_the_reference_page_speaks_russian(client, auth, db, world):
    from astertrack.db.models import User

    db.scalars(select(User).where(User.login == "super")).one().locale = "ru"
    db.commit()
    auth.login("super")
    html = client.get("/settings/api-tokens/docs").get_data(as_text=True)
    assert "Справочник API" in html and "Коды ошибок" in html and "События вебхуков" in html


def test_the_reference_page_in_a_browser(live, page, world):
    from tests.webadmin.browser import login

    login(page, live)
    page.goto(f"{live}/settings/api-tokens/")
    page.click("#api-docs-link")
    page.wait_for_load_state()
    assert page.locator("article.api-operation").count() >= 21
    assert page.locator("article.api-webhook").count() == len(EVENT_MODELS)
    assert page.locator("#openapi-url").inner_text() == f"{live}/api/v1/openapi.json"
    deal = page.locator("#lead_deal")
    assert "PATCH /api/v1/leads/{lead_id}/deal" in deal.inner_text()
    assert "read_only" in deal.locator(".error-code").all_inner_texts()
    page.click("a[href='#lead_deal']")
    assert page.url.endswith("#lead_deal")
    assert page.errors == []
