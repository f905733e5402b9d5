"""The leads pages: the list's filters, pages, roles and CSV export; the card with its enquiries
(hostile text escaped), recordings and visit; the state and deal form; merging two leads."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from sqlalchemy import select

from astertrack.db.models import AuditLog, Deal, Lead
from astertrack.leads import CHANNELS, STATES
from tests.webadmin.leads_data import make_leads
from tests.webadmin.seed import XSS
from webadmin.labels import VOCABULARIES


@pytest.fixture
def leads(db, data):
    return make_leads(db, data)


def listed(client, query: str = "") -> set[int]:
    page = client.get(f"/leads/?{query}")
    assert page.status_code == 200, page.status_code
    text = page.get_data(as_text=True)
    return {int(part.split('"')[0]) for part in text.split('data-lead="')[1:]}


def test_every_lead_state_and_channel_has_a_label():
    assert set(STATES) <= set(VOCABULARIES["lead_status"])
    assert set(CHANNELS) <= set(VOCABULARIES["lead_channel"])


def test_the_list_filters_by_channel_state_source_manager_and_text(client, auth, db, data, leads):
    auth.login()
    seeded = db.scalars(select(Lead.id).where(Lead.id.not_in([leads.ivan, leads.olga, leads.petr]))).all()
    assert listed(client) == {leads.ivan, leads.olga, leads.petr, *seeded}
    assert listed(client, "channel=form") == {leads.ivan, leads.olga}  # Ivan's second enquiry was a form
    assert listed(client, "first_channel=form") == {leads.olga}
    assert listed(client, "first_channel=call&channel=form") == {leads.ivan}
    assert listed(client, f"source={data.organic}") == {leads.petr}
    assert listed(client, f"manager={data.boris}") == set()  # Boris missed Petr's call: the lead has no manager
    assert leads.ivan in listed(client, f"manager={data.anna}")
    assert listed(client, "q=olga@example") == {leads.olga}
    assert listed(client, "q=%2B7 916 123-45-67") == {leads.ivan}
    assert listed(client, "q=8 916 1234567") == {leads.ivan}
    assert listed(client, f"q=%23{leads.petr}") == {leads.petr}
    assert listed(client, "q=100%25") == set()  # LIKE wildcards are text
    assert listed(client, "status=won") == {leads.ivan}  # the seed's deal
    assert listed(client, "status=new") == {leads.olga, leads.petr}
    assert listed(client, "from=2001-01-01&to=2001-01-31") == set()
    assert listed(client, "status=bogus&channel=carrier-pigeon") == listed(client)  # unknown choices are ignored
    assert client.get("/leads/?from=yesterday").status_code == 400


def test_the_list_pages(client, auth, db, data, leads, monkeypatch):
    monkeypatch.setattr("webadmin.leads.views.PAGE_SIZE", 2)
    auth.login()
    first, second = listed(client), listed(client, "page=2")
    assert len(first) == 2 and second and not first & second
    assert "Page 1 of" in client.get("/leads/").get_data(as_text=True)


def test_a_manager_sees_only_leads_with_their_calls(client, auth, data, leads):
    auth.login("anna")
    assert leads.ivan in listed(client) and leads.petr not in listed(client) and leads.olga not in listed(client)
    assert client.get(f"/leads/{leads.ivan}").status_code == 200
    assert client.get(f"/leads/{leads.petr}").status_code == 404
    assert client.get(f"/leads/{leads.petr}/merge").status_code == 404
    # a manager's filters cannot widen the list
    assert leads.petr not in listed(client, f"manager={data.boris}&source={data.organic}")
    csv_text = client.get("/leads/?format=csv").get_data(as_text=True)
    assert "+79160000001" not in csv_text and "+79161234567" in csv_text
    auth.post("/auth/logout", page="/leads/")
    auth.login("boris")
    assert listed(client) == {leads.petr}  # the missed call was routed to Boris
    auth.post("/auth/logout", page="/leads/")
    auth.login("super")
    assert {leads.ivan, leads.olga, leads.petr} <= listed(client)


def test_anonymous_users_get_the_login_page(client, leads):
    for path in ("/leads/", f"/leads/{leads.ivan}", "/leads/?format=csv", "/settings/api-tokens/"):
        response = client.get(path)
        assert response.status_code == 302 and "/auth/login" in response.location, path


def test_the_csv_export_streams_the_filtered_leads_with_formulas_neutralised(client, auth, leads):
    auth.login()
    response = client.get("/leads/?channel=form&format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv" and response.is_streamed
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    by_id = {int(row["id"]): row for row in rows}
    assert set(by_id) == {leads.ivan, leads.olga}
    assert by_id[leads.ivan]["phone"] == "+79161234567" and by_id[leads.ivan]["first_channel"] == "call"
    assert by_id[leads.ivan]["enquiries"] == "2" and by_id[leads.ivan]["source"] == "Yandex Direct"
    assert by_id[leads.olga]["phone"] == "" and by_id[leads.olga]["phone_as_given"] == "call me <b>maybe</b>"
    assert by_id[leads.olga]["email"] == "olga@example.com"
    assert by_id[leads.olga]["name"].startswith("'=cmd")  # never a spreadsheet formula


def test_the_card_lists_every_enquiry_with_its_attribution_escaped(client, auth, data, leads):
    auth.login()
    page = client.get(f"/leads/{leads.ivan}").get_data(as_text=True)
    assert XSS not in page and "<script>alert('lead')" not in page and "<b>x</b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;script&gt;alert(" in page
    channels = [chunk.split('"')[0] for chunk in page.split('class="enquiry" data-channel="')[1:]]
    assert channels == ["call", "form"]  # in order
    assert "2 enquiries" in page and "web form" in page and "Repeat" in page
    assert "gclid-123" in page and "winter-sale" in page and "buy sofa" in page
    assert f'src="/calls/{data.answered}/recording"' in page  # the call's recording plays on the card
    assert "https://yandex.ru/search" in page  # the visit: referrer
    olga = client.get(f"/leads/{leads.olga}").get_data(as_text=True)
    assert 'id="phone-invalid"' in olga and "call me &lt;b&gt;maybe&lt;/b&gt;" in olga and "<b>maybe" not in olga


def test_a_manager_sees_no_player_for_another_managers_call(client, auth, db, data, leads):
    # Boris answered Ivan once more: the call joins Ivan's lead, whose other calls are Anna's
    from astertrack.db.models import Call, Enquiry
    from astertrack.leads.enquiries import record_enquiry
    callback = db.get(Call, data.callback)
    callback.caller_number = "+79161234567"
    db.commit()
    record_enquiry(db, data.site, "call", at=callback.started_at, call=callback)
    db.commit()
    assert db.scalars(select(Enquiry.lead_id).where(Enquiry.call_id == data.callback)).one() == leads.ivan
    auth.login("anna")
    page = client.get(f"/leads/{leads.ivan}").get_data(as_text=True)
    assert f'/calls/{data.answered}/recording"' in page
    assert f"/calls/{data.callback}" not in page and "a call of another manager" in page


def test_the_state_form_sets_state_and_deal_and_writes_the_audit_log(client, auth, db, leads):
    auth.login()
    response = auth.post(f"/leads/{leads.petr}/state", {"status": "won", "amount": "15000,50", "currency": "USD"},
                         page=f"/leads/{leads.petr}")
    assert response.status_code == 302
    db.rollback()  # a fresh snapshot (and expired objects)
    lead = db.get(Lead, leads.petr)
    assert (lead.status, lead.amount, lead.currency) == ("won", Decimal("15000.50"), "USD")
    deal = db.scalars(select(Deal).where(Deal.lead_id == lead.id)).one()
    assert (deal.status, deal.revenue, deal.currency) == ("won", Decimal("15000.50"), "USD")
    entry = db.scalars(select(AuditLog).where(AuditLog.entity_kind == "leads")).one()
    assert entry.action == "update" and entry.user_login == "admin"
    assert entry.before == {"status": "new", "amount": None, "currency": None}
    assert entry.after == {"status": "won", "amount": "15000.50", "currency": "USD"}
    page = client.get(f"/leads/{leads.petr}").get_data(as_text=True)
    assert "Lead saved." in page and "15,000.50 USD" in page


@pytest.mark.parametrize(("locale", "amount_error", "state_error"), [
    ("en", "Write the amount as a number", "Not a valid choice"),
    ("ru", "Укажите сумму числом", "Неверный вариант")])
def test_the_state_form_shows_errors_on_their_field_in_both_languages(client, auth, db, leads, locale,
                                                                       amount_error, state_error):
    auth.login()
    auth.post("/auth/locale", {"locale": locale, "next": "/leads/"})
    response = auth.post(f"/leads/{leads.petr}/state", {"status": "won", "amount": "-5", "currency": "RUB"},
                         page=f"/leads/{leads.petr}")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'id="error-amount"' in page and amount_error in page
    response = auth.post(f"/leads/{leads.petr}/state", {"status": "sold", "amount": "", "currency": "RUB"},
                         page=f"/leads/{leads.petr}")
    assert response.status_code == 400 and 'id="error-status"' in response.get_data(as_text=True)
    assert state_error in response.get_data(as_text=True)
    response = auth.post(f"/leads/{leads.petr}/state", {"status": "won", "amount": "10", "currency": "XYZ"},
                         page=f"/leads/{leads.petr}")
    assert response.status_code == 400 and 'id="error-currency"' in response.get_data(as_text=True)
    db.rollback()  # a fresh snapshot (and expired objects)
    lead = db.get(Lead, leads.petr)
    assert (lead.status, lead.amount) == ("new", None)  # nothing half-written
    assert db.scalars(select(Deal).where(Deal.lead_id == leads.petr)).all() == []


def test_the_state_form_needs_its_csrf_token(client, auth, db, leads):
    auth.login()
    assert client.post(f"/leads/{leads.petr}/state", data={"status": "won"}).status_code == 400
    db.rollback()  # a fresh snapshot (and expired objects)
    assert db.get(Lead, leads.petr).status == "new"


def test_merging_two_leads_moves_the_enquiries_and_takes_the_other_off_the_list(client, auth, db, leads):
    auth.login()
    pick = client.get(f"/leads/{leads.ivan}/merge?q=olga@example.com").get_data(as_text=True)
    assert f"/leads/{leads.ivan}/merge/{leads.olga}" in pick and f"/merge/{leads.petr}" not in pick
    confirm = client.get(f"/leads/{leads.ivan}/merge/{leads.olga}")
    assert confirm.status_code == 200 and 'id="merge-form"' in confirm.get_data(as_text=True)
    db.rollback()  # a fresh snapshot (and expired objects)
    assert db.get(Lead, leads.olga).merged_into_id is None  # looking is not merging
    response = auth.post(f"/leads/{leads.ivan}/merge/{leads.olga}", page=f"/leads/{leads.ivan}")
    assert response.status_code == 302 and response.location.endswith(f"/leads/{leads.ivan}")
    db.rollback()  # a fresh snapshot (and expired objects)
    assert db.get(Lead, leads.olga).merged_into_id == leads.ivan
    assert db.get(Lead, leads.ivan).enquiries_count == 3
    assert leads.olga not in listed(client) and leads.ivan in listed(client)
    merged = client.get(f"/leads/{leads.olga}").get_data(as_text=True)
    assert 'id="merged-into"' in merged and f'href="/leads/{leads.ivan}"' in merged and 'id="state-form"' not in merged
    kept = client.get(f"/leads/{leads.ivan}").get_data(as_text=True)
    assert "3 enquiries" in kept and f'href="/leads/{leads.olga}"' in kept
    entry = db.scalars(select(AuditLog).where(AuditLog.entity_kind == "leads", AuditLog.entity_id == leads.olga)).one()
    assert entry.after == {"merged_into_id": leads.ivan}
    # merging again (a second tab) changes nothing and says why
    again = auth.post(f"/leads/{leads.ivan}/merge/{leads.olga}", page=f"/leads/{leads.ivan}", follow_redirects=True)
    assert "merged meanwhile" in again.get_data(as_text=True)
    assert client.get(f"/leads/{leads.ivan}/merge/{leads.ivan}").status_code == 404


def test_call_back_from_the_card_schedules_a_callback_request(client, auth, db, data, leads):
    from astertrack.db.models import CallbackRequest

    auth.login("anna")
    card = client.get(f"/leads/{leads.ivan}").get_data(as_text=True)
    assert 'id="callback-form"' in card
    auth.post("/auth/logout", page="/leads/")
    auth.login()
    assert 'id="callback-form"' not in client.get(f"/leads/{leads.olga}").get_data(as_text=True)  # no valid phone
    auth.post("/auth/logout", page="/leads/")
    auth.login("anna")
    response = auth.post(f"/leads/{leads.ivan}/callback", page=f"/leads/{leads.ivan}", follow_redirects=True)
    assert "Callback requested" in response.get_data(as_text=True)
    request = db.scalars(select(CallbackRequest)).one()
    assert (request.phone, request.lead_id, request.kind, request.state) == (
        "+79161234567", leads.ivan, "callback", "scheduled")
    assert request.requested_by_id == data.users["anna"]
    # asking twice does not dial twice: the open request is kept
    auth.post(f"/leads/{leads.ivan}/callback", page=f"/leads/{leads.ivan}")
    db.rollback()
    assert len(db.scalars(select(CallbackRequest)).all()) == 1
    # someone else's lead: not found, nothing requested
    assert auth.post(f"/leads/{leads.petr}/callback", page=f"/leads/{leads.ivan}").status_code == 404


def test_an_e_mail_that_is_not_one_is_shown_flagged_and_escaped(client, auth, db, data):
    from astertrack.db.types import utcnow
    from astertrack.leads.enquiries import record_enquiry

    enquiry = record_enquiry(db, data.site, "form", at=utcnow(), email="<i>nina</i> at mail")
    db.commit()
    auth.login()
    page = client.get(f"/leads/{enquiry.lead_id}").get_data(as_text=True)
    assert 'id="email-invalid"' in page and "&lt;i&gt;nina&lt;/i&gt; at mail" in page and "<i>nina" not in page
