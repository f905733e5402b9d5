"""Which of a site's calls and leads are conversions not yet in the log for a platform.

Only the last ``SCAN_WINDOW`` is looked at: older conversions are no use to any platform, and a
site that turns conversions on does not log its whole history as "too old"."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import String, cast, exists, func, literal, select
from sqlalchemy.orm import Session

from astertrack.db.models import (
    Call,
    ConversionLog,
    ConversionRule,
    ConversionSettings,
    Enquiry,
    Lead,
    Site,
    Source,
    VisitorSession,
)
from astertrack.integrations.conversions import rules, subjects

SCAN_WINDOW = dt.timedelta(days=30)
CALL_PLATFORMS = ("ga4", "metrica", "google_ads")
LEAD_PLATFORMS = ("ga4", "google_ads")  # Metrica's offline calls take calls only


def rule_for(session: Session, site_id: int) -> ConversionRule:
    """The site's rule, or the default one (answered calls, no value, no leads) when none is saved."""
    rule = session.scalar(select(ConversionRule).where(ConversionRule.site_id == site_id))
    return rule or ConversionRule(site_id=site_id, calls="answered", first_time_only=False, call_value=None,
                                  lead_state=None, lead_value="amount", lead_fixed_value=None)


def _not_logged(site_id: int, platform: str, subject_sql):
    return ~exists().where(ConversionLog.site_id == site_id, ConversionLog.platform == platform,
                           ConversionLog.subject == subject_sql)


def find(session: Session, site: Site, settings: ConversionSettings, platform: str, now: dt.datetime,
         limit: int = 500) -> list[subjects.Conversion]:
    """Conversions (rule met or not: a call that does not count is logged once as skipped)."""
    rule = rule_for(session, site.id)
    since = now - SCAN_WINDOW
    found: list[subjects.Conversion] = []
    if platform in CALL_PLATFORMS and rule.calls != "off":
        subject = literal("call:").concat(cast(Call.id, String))
        calls = session.execute(
            select(Call, Source.name).outerjoin(Source, Source.id == Call.source_id)
            .where(Call.site_id == site.id, Call.state == "finished", Call.lead_channel == "call",
                   func.coalesce(Call.reconcile_state, "") != "pending", Call.started_at >= since,
                   _not_logged(site.id, platform, subject))
            .order_by(Call.id).limit(limit)).all()
        visits = _visits(session, [call.session_id for call, _ in calls])
        found += [subjects.from_call(call, visits.get(call.session_id), site, rule, settings.currency, source)
                  for call, source in calls]
    if platform in LEAD_PLATFORMS and rule.lead_state in rules.LEAD_ORDER:
        reached = [state for state, rank in rules.LEAD_ORDER.items() if rank >= rules.LEAD_ORDER[rule.lead_state]]
        subject = literal("lead:").concat(cast(Lead.id, String)).concat(literal(f"@{rule.lead_state}"))
        leads = session.execute(
            select(Lead, Source.name).outerjoin(Source, Source.id == Lead.source_id)
            .where(Lead.site_id == site.id, Lead.merged_into_id.is_(None), Lead.status.in_(reached),
                   func.coalesce(Lead.updated_at, Lead.created_at) >= since,
                   _not_logged(site.id, platform, subject))
            .order_by(Lead.id).limit(limit)).all()
        visits = _visits(session, [lead.session_id for lead, _ in leads])
        enquiries: dict[int, list[Enquiry]] = defaultdict(list)
        if leads:
            for enquiry in session.scalars(select(Enquiry).where(Enquiry.lead_id.in_([lead.id for lead, _ in leads]))
                                           .order_by(Enquiry.at, Enquiry.id)):
                enquiries[enquiry.lead_id].append(enquiry)
        found += [subjects.from_lead(lead, visits.get(lead.session_id), enquiries[lead.id], site, rule,
                                     settings.currency, source) for lead, source in leads]
    return found


def _visits(session: Session, ids) -> dict[int, VisitorSession]:
    ids = sorted({i for i in ids if i is not None})
    if not ids:
        return {}
    return {visit.id: visit for visit in session.scalars(select(VisitorSession).where(VisitorSession.id.in_(ids)))}
