"""``/api/v1/sessions``: website visits with their utm tags, click ids (gclid, yclid, fbclid) and
analytics ids (GA client id, Metrica client id), for a CRM or a BI that joins calls to visits.
The visitor's IP address and user agent are not given out (see ``schemas.SessionOut``)."""

from __future__ import annotations

from sqlalchemy import select

from astertrack.db.models import Source, VisitorSession
from webadmin.api import bp
from webadmin.api.registry import check_site, found, limit_to_site, operation, paginate, within_period
from webadmin.api.schemas import SessionList, SessionOut, SessionsQuery
from webadmin.db import get_session

_FIELDS = [name for name in SessionOut.model_fields if name != "source"]


def session_out(row) -> SessionOut:
    visit, source = row
    return SessionOut.model_validate({**{name: getattr(visit, name) for name in _FIELDS}, "source": source})


def _select():
    return select(VisitorSession, Source.name).outerjoin(Source, Source.id == VisitorSession.source_id)


@bp.get("/sessions")
@operation("Sessions", "List visits", query=SessionsQuery, response=SessionList,
           description="Newest first. `from`/`to` bound the visit's first request.")
def sessions(query: SessionsQuery):
    stmt = limit_to_site(_select(), VisitorSession.site_id, query.site_id)
    if query.source_id is not None:
        stmt = stmt.where(VisitorSession.source_id == query.source_id)
    stmt = within_period(stmt, VisitorSession.first_seen, query)
    return SessionList(**paginate(get_session(), stmt, VisitorSession.id, query, session_out))


@bp.get("/sessions/<int:session_id>")
@operation("Sessions", "One visit", response=SessionOut)
def visit(session_id: int):
    row = found(get_session().execute(_select().where(VisitorSession.id == session_id)).first(), "session", session_id)
    check_site(row[0].site_id)
    return session_out(row)
