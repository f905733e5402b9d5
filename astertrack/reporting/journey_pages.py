"""The "top pages before a call" report (#24): which pages of a site the callers looked at before
they called, so a site owner sees which pages make the phone ring.

A call counts for a page when the visit the call is attributed to (``Call.session_id``) has a page
view of that URL at or before the call's start.  A page seen several times before one call counts
once for that call.  The share is of the site's *calls with pages*: calls in the period whose visit
has at least one page view before the call.  One GROUP BY over ``page_views`` joined to the
period's calls (``ix_calls_*_started`` narrows the calls), per site and URL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from astertrack.db.models import Call, PageView, Site


def N_(text: str) -> str:
    """Mark for translation extraction; the web admin translates (the core has no Flask)."""
    return text


DEFAULT_LIMIT = 50  # pages per site
FORMULAS: dict[str, str] = {
    "calls_viewed": N_("Calls: calls in the period whose website visit viewed the page at or before the call "
                       "started; a page seen several times before one call counts once."),
    "share": N_("Share = those calls ÷ the site's calls with pages (calls in the period whose visit has at least "
                "one page view before the call)."),
}


def top_pages_before_call(db: Session, start: dt.datetime, end: dt.datetime, site_id: int | None = None,
                          limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """One entry per site (name order): ``{"site_id", "site", "calls_with_pages", "rows": [{"url",
    "calls", "share"}]}``, rows busiest first (then URL), at most ``limit`` per site."""
    conds = [Call.started_at >= start, Call.started_at < end, Call.session_id.is_not(None),
             PageView.at <= Call.started_at]
    if site_id is not None:
        conds.append(Call.site_id == site_id)
    viewed = (select(Call.site_id, Call.id.label("call_id"), PageView.url)
              .join(PageView, PageView.session_id == Call.session_id).where(*conds).distinct().subquery())
    per_page = db.execute(select(viewed.c.site_id, viewed.c.url, func.count().label("calls"))
                          .group_by(viewed.c.site_id, viewed.c.url)).all()
    totals = dict(db.execute(select(viewed.c.site_id, func.count(distinct(viewed.c.call_id)))
                             .group_by(viewed.c.site_id)).all())
    if not totals:
        return []
    names = dict(db.execute(select(Site.id, Site.name).where(Site.id.in_([k for k in totals if k is not None]))).all())
    out = []
    for sid, total in totals.items():
        rows = sorted(({"url": r.url, "calls": int(r.calls), "share": r.calls / total}
                       for r in per_page if r.site_id == sid), key=lambda r: (-r["calls"], r["url"]))
        out.append({"site_id": sid, "site": names.get(sid), "calls_with_pages": int(total), "rows": rows[:limit]})
    return sorted(out, key=lambda s: (s["site"] is None, s["site"] or "", s["site_id"] or 0))
