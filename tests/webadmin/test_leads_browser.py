"""Real browser (Chromium against a real HTTP server): the lead card lists the enquiries in order,
its form changes the state and the amount, a bad amount is refused on its field; the merge flow."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from astertrack.db.models import Deal, Lead
from tests.webadmin.browser import login
from tests.webadmin.leads_data import make_leads

pytestmark = pytest.mark.browser


@pytest.fixture
def leads(db, data):
    return make_leads(db, data)




def test_the_lead_card_changes_state_and_amount_and_lists_the_enquiries(page, live, db, data, leads):
    login(page, live, "super")
    page.goto(f"{live}/leads/")
    page.click(f'tr[data-lead="{leads.ivan}"] a')
    assert page.url.endswith(f"/leads/{leads.ivan}")
    rows = page.locator("#enquiries tr.enquiry")
    assert rows.count() == 2
    assert [rows.nth(i).locator("td.channel").inner_text() for i in range(2)] == ["call", "web form"]
    assert page.locator("#enquiries td.message").nth(1).inner_text().startswith("<script>alert('lead')</script>")
    assert page.locator("#enquiries .gclid").inner_text() == "gclid-123"
    assert page.locator("#enquiries audio").count() == 1  # the call's recording

    page.select_option("#lead-status", "lost")
    page.fill("#lead-amount", "-3")
    page.click("#save-state")
    page.wait_for_load_state()
    assert "Write the amount as a number" in page.locator("#error-amount").inner_text()
    db.rollback()
    assert db.get(Lead, leads.ivan).status == "won"  # refused: nothing written

    page.select_option("#lead-status", "in_progress")
    page.fill("#lead-amount", "23500,75")
    page.select_option("#lead-currency", "EUR")
    page.click("#save-state")
    page.wait_for_load_state()
    assert page.get_by_text("Lead saved.").is_visible()
    assert page.locator("#current-status").inner_text() == "in progress"
    assert page.locator("#current-amount").inner_text() == "23,500.75 EUR"
    db.rollback()
    lead = db.get(Lead, leads.ivan)
    assert (lead.status, str(lead.amount), lead.currency) == ("in_progress", "23500.75", "EUR")
    assert db.scalars(select(Deal.status).where(Deal.lead_id == lead.id)).all() == ["open"]
    assert page.errors == []


def test_merging_from_the_card(page, live, db, leads):
    login(page, live, "admin")
    page.goto(f"{live}/leads/{leads.ivan}")
    page.click("#merge-link")
    page.fill('#merge-search input[name="q"]', "olga@example.com")
    page.click("#merge-search button")
    page.locator("#merge-candidates a.button").click()
    page.click("#merge-button")
    page.wait_for_load_state()
    assert page.url.endswith(f"/leads/{leads.ivan}")
    assert page.locator("#enquiries tr.enquiry").count() == 3
    page.goto(f"{live}/leads/{leads.olga}")
    assert page.locator("#merged-into").is_visible()
    page.goto(f"{live}/leads/")
    assert page.locator(f'tr[data-lead="{leads.olga}"]').count() == 0
    assert page.errors == []
