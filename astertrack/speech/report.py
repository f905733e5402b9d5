"""The speech tags report: automatic tags counted by source, campaign or manager over a period, and
the "needs attention" list of calls with a negative tag.

Formulas (shown under the report): a cell is the number of distinct calls in the period (the same
filters as the other reports) that the speech analytics tagged with that tag; a call with the phrase
said twice counts once.  Needs attention: calls in the period with at least one tag from a phrase
marked negative, newest first.
"""

from __future__ import annotations

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from astertrack.db.models import Call, CallSpeechTag, Manager, Source
from astertrack.reporting.reports import ReportFilter

DIMENSIONS = ("source", "campaign", "manager")
FORMULAS = {
    "tag_calls": "calls in the period the speech analytics tagged with the tag (a call counts once per tag)",
    "needs_attention": "calls in the period with at least one tag from a phrase marked negative",
}


def _dimension(dimension: str):
    if dimension == "source":
        return Call.source_id, Source.name, Source
    if dimension == "manager":
        return Call.manager_id, Manager.name, Manager
    if dimension == "campaign":
        return Call.utm_campaign, Call.utm_campaign, None
    raise ValueError(dimension)


def tags_by(session: Session, f: ReportFilter, dimension: str) -> dict:
    """{"tags": [tag, ...] busiest first, "rows": [{"key", "label", "counts": {tag: calls}, "total"}]}."""
    key, label, table = _dimension(dimension)
    stmt = (select(key, label, CallSpeechTag.tag, func.count(distinct(Call.id)))
            .select_from(CallSpeechTag).join(Call, Call.id == CallSpeechTag.call_id))
    if table is not None:
        stmt = stmt.outerjoin(table, table.id == key)
    stmt = stmt.where(*f.call_conditions()).group_by(key, label, CallSpeechTag.tag)
    rows: dict = {}
    totals: dict[str, int] = {}
    for k, name, tag, calls in session.execute(stmt):
        row = rows.setdefault(k, {"key": k, "label": name, "counts": {}, "total": 0})
        row["counts"][tag] = calls
        row["total"] += calls
        totals[tag] = totals.get(tag, 0) + calls
    tags = sorted(totals, key=lambda t: (-totals[t], t))
    return {"tags": tags, "totals": totals,
            "rows": sorted(rows.values(), key=lambda r: (-r["total"], str(r["label"] or "")))}


def needs_attention(session: Session, f: ReportFilter, limit: int = 200) -> list[dict]:
    """Calls with a negative tag: the call, its negative tags (tag, phrase, second), newest first."""
    ids = (select(CallSpeechTag.call_id).join(Call, Call.id == CallSpeechTag.call_id)
           .where(CallSpeechTag.negative.is_(True), *f.call_conditions()).distinct())
    calls = session.scalars(select(Call).where(Call.id.in_(ids)).order_by(Call.started_at.desc(), Call.id.desc())
                            .limit(limit)).all()
    tags: dict[int, list[CallSpeechTag]] = {}
    if calls:
        for t in session.scalars(select(CallSpeechTag).where(CallSpeechTag.call_id.in_([c.id for c in calls]),
                                                            CallSpeechTag.negative.is_(True))
                                 .order_by(CallSpeechTag.at_seconds)):
            tags.setdefault(t.call_id, []).append(t)
    return [{"call": c, "tags": tags.get(c.id, [])} for c in calls]
