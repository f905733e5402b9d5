"""The CRM endpoint (/api/v1/leads) and the API tokens page: bearer tokens only (401 without a
live one, 403 for another site or a read-only token), JSON errors with codes (400, 404, 413), the
state and revenue set by lead id, call id and phone, and the deal counted in the funnel report."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal

import pytest
from sqlalchemy import select

from astertrack.db.models import ApiToken, AuditLog, Call, Deal, Lead
from astertrack.db.types import utcnow
from astertrack.integrations import api_tokens
from astertrack.reporting import reports
from astertrack.samples.factories import add_site
from tests.webadmin.leads_data import make_leads

STATE = "/api/v1/leads/state"


@pytest.fixture
def leads(db, data):
    return make_leads(db, data)


@pytest.fixture
def tokens(db, data):
    other = add_site(db, "Other shop")
    made = {name: api_tokens.create(db, name, site, scope)[1] for name, site, scope in [
        ("shop", data.site, "write"), ("every", None, "write"), ("reader", data.site, "read"),
        ("other", other.id, "write"), ("revoked", data.site, "write")]}
    api_tokens.revoke(db, db.scalars(select(ApiToken).where(ApiToken.name == "revoked")).one())
    db.commit()
    return made


def call(client, token: str | None, body, method: str = "POST", path: str = STATE, **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.open(path, method=method, data=data, content_type="application/json", headers=headers)


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


def test_no_token_a_wrong_one_or_a_revoked_one_is_401(client, leads, tokens):
    body = {"lead_id": leads.ivan, "state": "won"}
    for token in (None, "at_nonsense", tokens["shop"] + "x", tokens["revoked"], ""):
        response = call(client, token, body)
        assert response.status_code == 401, token
        assert error_code(response) == "unauthorized" and response.headers["WWW-Authenticate"].startswith("Bearer")
    basic = client.post(STATE, json=body, headers={"Authorization": f"Basic {tokens['shop']}"})
    assert basic.status_code == 401
    assert call(client, None, None, "GET", f"/api/v1/leads/{leads.ivan}").status_code == 401


def test_a_token_of_another_site_or_a_read_only_token_is_403(client, db, leads, tokens):
    response = call(client, tokens["other"], {"lead_id": leads.ivan, "state": "won"})
    assert response.status_code == 403 and error_code(response) == "wrong_site"
    response = call(client, tokens["other"], {"phone": "+79161234567", "site_id": leads_site(db, leads), "state": "won"})
    assert response.status_code == 403 and error_code(response) == "wrong_site"
    assert call(client, tokens["other"], None, "GET", f"/api/v1/leads/{leads.ivan}").status_code == 403
    response = call(client, tokens["reader"], {"lead_id": leads.petr, "state": "won"})
    assert response.status_code == 403 and error_code(response) == "read_only"
    read = call(client, tokens["reader"], None, "GET", f"/api/v1/leads/{leads.ivan}")
    assert read.status_code == 200 and read.get_json()["id"] == leads.ivan
    db.rollback()
    assert db.get(Lead, leads.petr).status == "new"


def leads_site(db, leads) -> int:
    return db.get(Lead, leads.ivan).site_id


def test_unknown_leads_calls_and_phones_are_404(client, leads, tokens):
    for body in ({"lead_id": 999999, "state": "won"}, {"call_id": 999999, "state": "won"},
                 {"phone": "+79990001122", "state": "won"}, {"call_uid": "nope", "state": "won"}):
        response = call(client, tokens["shop"], body)
        assert response.status_code == 404, body
        assert error_code(response) in ("lead_not_found", "call_not_found")
    assert error_code(call(client, tokens["shop"], None, "GET", "/api/v1/leads/999999")) == "lead_not_found"


@pytest.mark.parametrize(("body", "code"), [
    ({"state": "won", "amount": 100, "currency": "RUR"}, "invalid_currency"),
    ({"state": "won", "amount": 100, "currency": 643}, "invalid_currency"),
    ({"state": "sold"}, "invalid_state"),
    ({}, "invalid_state"),
    ({"state": "won", "amount": "-1"}, "invalid_amount"),
    ({"state": "won", "amount": "ten"}, "invalid_amount"),
    ({"state": "won", "amount": True}, "invalid_amount"),
    ({"state": "won", "external_id": "x" * 101}, "invalid_external_id"),
])
def test_bad_values_are_400_with_a_code_and_change_nothing(client, db, leads, tokens, body, code):
    response = call(client, tokens["shop"], {"lead_id": leads.petr, **body})
    assert response.status_code == 400 and error_code(response) == code
    assert response.get_json()["error"]["message"]
    db.rollback()
    assert db.get(Lead, leads.petr).status == "new" and db.scalars(select(Deal).where(Deal.lead_id == leads.petr)).all() == []


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "invalid_json"), (b"[1, 2]", "invalid_json"), (b"\xff\xfe", "invalid_json"),
    ({"state": "won"}, "lead_identifier_required"),
    ({"lead_id": 1, "phone": "+79161234567", "state": "won"}, "lead_identifier_required"),
    ({"lead_id": "1; drop table", "state": "won"}, "invalid_lead_id"),
    ({"phone": "<script>", "state": "won"}, "invalid_phone"),
])
def test_malformed_bodies_are_400(client, leads, tokens, body, code):
    response = call(client, tokens["shop"], body)
    assert response.status_code == 400 and error_code(response) == code


def test_an_every_site_token_must_name_the_site_of_a_phone(client, data, leads, tokens):
    response = call(client, tokens["every"], {"phone": "+79161234567", "state": "won"})
    assert response.status_code == 400 and error_code(response) == "site_required"
    response = call(client, tokens["every"], {"phone": "+79161234567", "site_id": data.site, "state": "won"})
    assert response.status_code == 200 and response.get_json()["id"] == leads.ivan


def test_a_body_over_16_kib_is_413(client, leads, tokens):
    body = json.dumps({"lead_id": leads.ivan, "state": "won", "pad": "x" * 17000})
    response = call(client, tokens["shop"], body)
    assert response.status_code == 413 and error_code(response) == "body_too_large"


def test_state_and_revenue_by_lead_id(client, db, leads, tokens):
    response = call(client, tokens["shop"], {"lead_id": leads.ivan, "state": "won", "amount": "15000.50",
                                             "currency": "usd", "external_id": "deal-77"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json" and "Set-Cookie" not in response.headers
    lead = response.get_json()
    assert (lead["id"], lead["state"], lead["amount"], lead["currency"], lead["external_id"]) == (
        leads.ivan, "won", "15000.50", "USD", "deal-77")
    assert lead["phone"] == "+79161234567" and lead["first_channel"] == "call" and lead["enquiries"] == 2
    db.rollback()
    row = db.get(Lead, leads.ivan)
    assert (row.status, row.amount, row.currency, row.external_id) == ("won", Decimal("15000.50"), "USD", "deal-77")
    deal = db.scalars(select(Deal).where(Deal.lead_id == leads.ivan)).one()
    assert (deal.status, deal.revenue) == ("won", Decimal("15000.50"))
    entry = db.scalars(select(AuditLog).where(AuditLog.entity_kind == "leads")).one()
    token = db.scalars(select(ApiToken).where(ApiToken.name == "shop")).one()
    assert entry.user_login == f"api:{token.prefix}"  # the seed's lead was won already: only what changed
    assert entry.after == {"amount": "15000.50", "currency": "USD", "external_id": "deal-77"}
    assert token.last_used_at is not None
    again = call(client, tokens["shop"], None, "GET", f"/api/v1/leads/{leads.ivan}").get_json()
    assert again["state"] == "won" and again["amount"] == "15000.50"


def test_state_by_call_id_and_by_phone(client, db, data, leads, tokens):
    by_call = call(client, tokens["shop"], {"call_id": data.missed, "state": "in_progress"})
    assert by_call.status_code == 200 and by_call.get_json()["id"] == leads.petr
    uid = db.get(Call, data.missed).call_uid
    by_uid = call(client, tokens["shop"], {"call_uid": uid, "state": "qualified"})
    assert by_uid.get_json()["state"] == "qualified"
    by_phone = call(client, tokens["shop"], {"phone": "8 916 000-00-01", "state": "lost"})
    assert by_phone.status_code == 200 and by_phone.get_json()["id"] == leads.petr
    db.rollback()
    assert db.get(Lead, leads.petr).status == "lost"


def test_a_call_without_a_lead_yet_becomes_one(client, db, data, tokens):
    now = utcnow()
    fresh = Call(site_id=data.site, did="+74952000000", caller_number="+79035550011", started_at=now,
                 state="finished", outcome="answered", source_id=data.organic)
    db.add(fresh)
    db.commit()
    response = call(client, tokens["shop"], {"call_id": fresh.id, "state": "in_progress"})
    assert response.status_code == 200
    lead = response.get_json()
    assert lead["phone"] == "+79035550011" and lead["call_id"] == fresh.id and lead["state"] == "in_progress"


def test_a_merged_lead_answers_as_the_lead_it_joined(client, db, leads, tokens):
    from astertrack.leads.merging import merge_leads

    merge_leads(db, db.get(Lead, leads.ivan), db.get(Lead, leads.olga))
    db.commit()
    response = call(client, tokens["shop"], {"lead_id": leads.olga, "state": "won", "amount": 10})
    assert response.status_code == 200 and response.get_json()["id"] == leads.ivan


def test_a_deal_set_through_the_endpoint_is_in_the_funnel(client, db, data, leads, tokens):
    now = utcnow()
    window = reports.ReportFilter(start=now - dt.timedelta(days=1), end=now + dt.timedelta(hours=1))
    before = reports.funnel(db, window)["totals"]
    db.rollback()
    response = call(client, tokens["shop"], {"lead_id": leads.petr, "state": "won", "amount": "70000",
                                             "currency": "RUB"})
    assert response.status_code == 200
    after = reports.funnel(db, window)
    assert after["totals"]["deals"] == before["deals"] + 1
    assert after["totals"]["revenue"] == before["revenue"] + Decimal("70000")
    organic = next(row for row in after["rows"] if row["key"] == data.organic)  # Petr's call came from it
    assert (organic["deals"], organic["revenue"]) == (1, Decimal("70000"))


def test_the_api_needs_no_cookie_and_no_csrf_token(client, auth, leads, tokens):
    # a logged-in browser's cookie is not a token: without the header the answer is still 401
    auth.login()
    assert call(client, None, {"lead_id": leads.ivan, "state": "won"}).status_code == 401


# ---------------------------------------------------------------- the tokens page


def test_an_admin_creates_a_token_shown_once_and_revokes_it(client, auth, db, data, leads):
    auth.login()
    page = auth.post("/settings/api-tokens/", {"name": "amoCRM <b>", "site_id": str(data.site), "scope": "write"},
                     page="/settings/api-tokens/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    plain = re.search(r'id="new-token-value" readonly size="60" value="([^"]+)"', html).group(1)
    assert plain.startswith("at_") and "amoCRM &lt;b&gt;" in html and "amoCRM <b>" not in html
    row = db.scalars(select(ApiToken)).one()
    assert row.token_hash == api_tokens.token_hash(plain) and row.site_id == data.site and row.user_id == data.users["admin"]
    assert plain not in json.dumps(db.scalars(select(AuditLog.after)).all())
    listing = client.get("/settings/api-tokens/").get_data(as_text=True)
    assert plain not in listing and row.prefix in listing  # never shown again
    works = call(client, plain, {"lead_id": leads.ivan, "state": "in_progress"})
    assert works.status_code == 200

    assert auth.post(f"/settings/api-tokens/{row.id}/revoke", page="/settings/api-tokens/").status_code == 302
    db.rollback()
    assert db.get(ApiToken, row.id).revoked_at is not None  # kept, never deleted
    assert call(client, plain, {"lead_id": leads.ivan, "state": "won"}).status_code == 401
    kinds = [(e.action, e.entity_kind) for e in db.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert ("create", "api_tokens") in kinds and ("update", "api_tokens") in kinds


def test_the_token_form_shows_errors_on_its_fields(client, auth, db, data):
    auth.login()
    response = auth.post("/settings/api-tokens/", {"name": "  ", "site_id": "", "scope": "admin"},
                         page="/settings/api-tokens/")
    assert response.status_code == 400
    assert response.get_data(as_text=True).count('class="error"') == 2
    assert db.scalars(select(ApiToken)).all() == []


@pytest.mark.parametrize("login", ["super", "anna"])
def test_only_admins_see_the_tokens_page(client, auth, data, login):
    auth.login(login)
    assert client.get("/settings/api-tokens/").status_code == 403
    assert auth.post("/settings/api-tokens/", {"name": "x", "scope": "write"}, page="/leads/").status_code == 403
