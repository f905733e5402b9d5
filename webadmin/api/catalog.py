"""``/api/v1/sources``, ``/numbers``, ``/pools``, ``/managers``: the settings a CRM needs to name
what calls and leads refer to (read only; archived rows are listed with ``archived_at``, since
history still points at them).  Managers belong to no site: every token may list them."""

from __future__ import annotations

from sqlalchemy import func, select

from astertrack.db.models import Manager, NumberPool, Source, TrackingNumber
from webadmin.api import bp
from webadmin.api.registry import limit_to_site, operation, paginate
from webadmin.api.schemas import (
    ManagerList,
    ManagerOut,
    NumberList,
    NumberOut,
    NumbersQuery,
    Page,
    PoolList,
    PoolOut,
    SiteQuery,
    SourceList,
    SourceOut,
)
from webadmin.db import get_session


@bp.get("/sources")
@operation("Settings", "List sources", query=SiteQuery, response=SourceList)
def sources(query: SiteQuery):
    stmt = limit_to_site(select(Source), Source.site_id, query.site_id)
    return SourceList(**paginate(get_session(), stmt, Source.id, query, lambda row: SourceOut.model_validate(row[0])))


@bp.get("/numbers")
@operation("Settings", "List tracking numbers", query=NumbersQuery, response=NumberList)
def numbers(query: NumbersQuery):
    stmt = limit_to_site(select(TrackingNumber), TrackingNumber.site_id, query.site_id)
    if query.source_id is not None:
        stmt = stmt.where(TrackingNumber.source_id == query.source_id)
    if query.pool_id is not None:
        stmt = stmt.where(TrackingNumber.pool_id == query.pool_id)
    return NumberList(**paginate(get_session(), stmt, TrackingNumber.id, query,
                                 lambda row: NumberOut.model_validate(row[0])))


@bp.get("/pools")
@operation("Settings", "List number pools", query=SiteQuery, response=PoolList)
def pools(query: SiteQuery):
    size = (select(func.count(TrackingNumber.id)).where(TrackingNumber.pool_id == NumberPool.id,
                                                         TrackingNumber.archived_at.is_(None))
            .correlate(NumberPool).scalar_subquery())
    stmt = limit_to_site(select(NumberPool, size), NumberPool.site_id, query.site_id)

    def out(row) -> PoolOut:
        pool, count = row
        return PoolOut(id=pool.id, site_id=pool.site_id, name=pool.name, fallback_number=pool.fallback_number,
                       numbers=count or 0, archived_at=pool.archived_at)

    return PoolList(**paginate(get_session(), stmt, NumberPool.id, query, out))


@bp.get("/managers")
@operation("Settings", "List managers", query=Page, response=ManagerList)
def managers(query: Page):
    return ManagerList(**paginate(get_session(), select(Manager), Manager.id, query,
                                  lambda row: ManagerOut.model_validate(row[0])))
