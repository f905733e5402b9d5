"""Lead states and their Deal rows, manual merges, and concurrent enquiries for one number."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from astertrack.db.models import CallbackRequest, Deal, Enquiry, Lead
from astertrack.leads.deals import deal_status, parse_amount, parse_currency, set_state
from astertrack.leads.enquiries import joins_window, record_enquiry
from astertrack.leads.errors import LeadError
from astertrack.leads.merging import merge_leads
from astertrack.samples.factories import add_site, add_static_source

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


# ---------------------------------------------------------------- pure rules


def test_window_rule():
    day = dt.timedelta(days=1)
    assert joins_window(T0, T0 + 10 * day, T0 + 40 * day, 30)
    assert not joins_window(T0, T0 + 10 * day, T0 + 41 * day, 30)
    assert joins_window(T0, T0, T0 - 30 * day, 30) and not joins_window(T0, T0, T0 - 31 * day, 30)
    assert not joins_window(T0, T0, T0 + dt.timedelta(seconds=1), 0)


@pytest.mark.parametrize(("raw", "expected"), [("1500", Decimal("1500.00")), ("1 500,5".replace(" ", ""),
                                                Decimal("1500.50")), (12, Decimal("12.00")), (None, None), ("", None)])
def test_amounts(raw, expected):
    assert parse_amount(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "abc", "1e20", "NaN", "Infinity", True])
def test_bad_amounts(raw):
    with pytest.raises(LeadError) as error:
        parse_amount(raw)
    assert error.value.field == "amount"


def test_currencies():
    assert parse_currency(" usd ") == "USD" and parse_currency("RUB") == "RUB" and parse_currency("") is None
    for bad in ("RUR", "XYZ", "rubles", "SUR"):
        with pytest.raises(LeadError):
            parse_currency(bad)


def test_deal_status_of_each_state():
    assert [deal_status(s) for s in ("new", "in_progress", "qualified", "won", "lost")] == [
        "open", "open", "open", "won", "lost"]


# ---------------------------------------------------------------- set_state


def _lead(session, site, phone="+79161234567", at=T0):
    return session.get(Lead, record_enquiry(session, site, "form", at=at, phone=phone).lead_id)


def test_won_with_amount_writes_one_won_deal_and_changes_follow(session):
    site = add_site(session)
    lead = _lead(session, site)
    set_state(session, lead, "in_progress")
    assert session.scalar(select(func.count(Deal.id))) == 0  # an open lead without an amount has no deal
    set_state(session, lead, "won", amount="125000.50", currency="usd")
    session.commit()
    [deal] = session.scalars(select(Deal)).all()
    assert (deal.status, deal.revenue, deal.currency) == ("won", Decimal("125000.50"), "USD")
    assert deal.closed_at is not None
    assert (lead.status, lead.amount, lead.currency) == ("won", Decimal("125000.50"), "USD")
    set_state(session, lead, "lost")  # the deal fell through: still one deal, now lost
    session.commit()
    [deal] = session.scalars(select(Deal)).all()
    assert deal.status == "lost"
    set_state(session, lead, "qualified", amount=900)  # reopened: open again, amount in USD still
    session.commit()
    [deal] = session.scalars(select(Deal)).all()
    assert (deal.status, deal.revenue, deal.currency, deal.closed_at) == ("open", Decimal("900.00"), "USD", None)


def test_amount_without_currency_defaults_to_rub(session):
    site = add_site(session)
    lead = _lead(session, site)
    set_state(session, lead, "won", amount=5000)
    session.commit()
    assert session.scalar(select(Deal.currency)) == "RUB" and lead.currency == "RUB"


def test_bad_state_or_currency_changes_nothing(session):
    site = add_site(session)
    lead = _lead(session, site)
    session.commit()
    for kwargs, field in (({"state": "sold"}, "state"), ({"state": "won", "currency": "RUR", "amount": 1}, "currency"),
                          ({"state": "won", "amount": "-5"}, "amount")):
        with pytest.raises(LeadError) as error:
            set_state(session, lead, **kwargs)
        assert error.value.field == field
    session.commit()
    assert (lead.status, lead.amount) == ("new", None)
    assert session.scalar(select(func.count(Deal.id))) == 0


# ---------------------------------------------------------------- merge


def test_merge_moves_enquiries_keeps_the_row_and_later_enquiries_follow(session):
    site = add_site(session)
    ads = add_static_source(session, site, "Ads")
    keep = _lead(session, site, "+79161234567", T0 + dt.timedelta(days=2))
    other = session.get(Lead, record_enquiry(session, site, "call", at=T0, phone="+79035550000",
                                             source_id=ads.id).lead_id)
    set_state(session, other, "won", amount=300)
    session.add(CallbackRequest(site_id=site.id, lead_id=other.id, phone="+79035550000"))
    session.commit()
    result = merge_leads(session, keep, other, user=None)
    session.commit()
    assert result["enquiries"] == 1 and result["deals"] == 1
    keep, other = session.get(Lead, keep.id), session.get(Lead, other.id)
    assert other.merged_into_id == keep.id and other.merged_at is not None and other.enquiries_count == 0
    # The kept lead's first enquiry is now the other's earlier call.
    assert (keep.enquiries_count, keep.first_channel, keep.created_at, keep.source_id) == (2, "call", T0, ads.id)
    assert keep.amount == Decimal("300.00")
    assert session.scalar(select(Deal.lead_id)) == keep.id
    assert session.scalar(select(CallbackRequest.lead_id)) == keep.id
    assert session.scalar(select(func.count(Lead.id))) == 2  # nothing deleted
    # A later enquiry from the merged lead's number joins the kept lead.
    later = record_enquiry(session, site, "form", at=T0 + dt.timedelta(days=5), phone="+79035550000")
    assert later.lead_id == keep.id and later.repeat
    # set_state on the merged lead acts on the kept one.
    assert set_state(session, other, "lost").id == keep.id


def test_merge_refusals(session):
    site, elsewhere = add_site(session, "A"), add_site(session, "B")
    a, b = _lead(session, site, "+79161234567"), _lead(session, site, "+79035550000")
    c = _lead(session, elsewhere, "+79161234567")
    with pytest.raises(LeadError):
        merge_leads(session, a, a)
    with pytest.raises(LeadError):
        merge_leads(session, a, c)
    merge_leads(session, a, b)
    with pytest.raises(LeadError):
        merge_leads(session, a, b)
    with pytest.raises(LeadError):  # keep is followed to a, which is ... b's keeper: b is merged already
        merge_leads(session, b, a)


# ---------------------------------------------------------------- concurrency


def test_two_enquiries_at_once_make_one_lead(session_factory):
    """Threads on their own connections, released together, many rounds: never two leads for a number."""
    with session_factory() as setup:
        site = add_site(setup)
        setup.commit()
        site_id = site.id
    rounds, width = 8, 4
    errors: list[BaseException] = []

    def worker(barrier: threading.Barrier, phone: str, i: int) -> None:
        try:
            barrier.wait(timeout=30)
            with session_factory() as db:
                record_enquiry(db, site_id, "form" if i % 2 else "call", at=T0 + dt.timedelta(seconds=i),
                               phone=phone, email=f"u{i}@example.com" if i == 3 else None)
                db.commit()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    for r in range(rounds):
        phone = f"+7916555{r:04d}"
        barrier = threading.Barrier(width)
        threads = [threading.Thread(target=worker, args=(barrier, phone, i)) for i in range(width)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors
    with session_factory() as db:
        per_phone = db.execute(select(Lead.phone, func.count(Lead.id), func.sum(Lead.enquiries_count))
                               .group_by(Lead.phone)).all()
        assert len(per_phone) == rounds
        assert all(count == 1 and enquiries == width for _, count, enquiries in per_phone), per_phone
        assert db.scalar(select(func.count(Enquiry.id)).where(Enquiry.repeat.is_(False))) == rounds
