"""The pool's monthly rent the pool-health page and the simulator's "what if" show (#27)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from astertrack.db.models import TrackingPrice
from astertrack.reporting.costs import pool_monthly_cost
from astertrack.samples import factories


def _pool(session, count=3):
    site = factories.add_site(session)
    pool = factories.add_pool(session, site, "main", factories.number_range("+74950000100", count))
    return site, pool


def test_no_rent_set_is_none(session):
    _, pool = _pool(session)
    assert pool_monthly_cost(session, pool.id) is None
    assert pool_monthly_cost(session, pool.id, 10) is None


def test_pool_rent_times_size(session):
    """3 numbers × 450.50 = 1351.50; a "what if" of 7 numbers = 3153.50; of 0 = 0."""
    _, pool = _pool(session)
    session.add(TrackingPrice(pool_id=pool.id, monthly_rent=Decimal("450.50")))
    session.flush()
    assert pool_monthly_cost(session, pool.id) == Decimal("1351.50")
    assert pool_monthly_cost(session, pool.id, 7) == Decimal("3153.50")
    assert pool_monthly_cost(session, pool.id, 0) == Decimal("0.00")


def test_number_override_and_shrinking(session):
    """Pool 500, one number has its own 300: now 300 + 500 + 500 = 1300; at 2 the dearer one goes:
    300 + 500 = 800; at 5 the new numbers cost the pool's 500: 1300 + 1000 = 2300.  A disabled number
    is no part of the current size."""
    _, pool = _pool(session, 4)
    numbers = sorted(pool.numbers, key=lambda n: n.id)
    numbers[3].enabled = False
    session.add_all([TrackingPrice(pool_id=pool.id, monthly_rent=Decimal("500")),
                     TrackingPrice(number_id=numbers[0].id, monthly_rent=Decimal("300"))])
    session.flush()
    assert pool_monthly_cost(session, pool.id) == Decimal("1300.00")
    assert pool_monthly_cost(session, pool.id, 2) == Decimal("800.00")
    assert pool_monthly_cost(session, pool.id, 5) == Decimal("2300.00")


def test_numbers_only_rent_extends_by_their_mean(session):
    """No pool rent; numbers at 100 and 200 (the third unpriced: 0): now 300; at 4, one more at the mean
    of the priced ones, 150: 450."""
    _, pool = _pool(session)
    numbers = sorted(pool.numbers, key=lambda n: n.id)
    session.add_all([TrackingPrice(number_id=numbers[0].id, monthly_rent=Decimal("100")),
                     TrackingPrice(number_id=numbers[1].id, monthly_rent=Decimal("200"))])
    session.flush()
    assert pool_monthly_cost(session, pool.id) == Decimal("300.00")
    assert pool_monthly_cost(session, pool.id, 4) == Decimal("450.00")
    with pytest.raises(ValueError):
        pool_monthly_cost(session, pool.id, -1)
