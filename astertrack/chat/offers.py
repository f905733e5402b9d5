"""Who is offered a new chat, and when: the inbound routing rule's managers in the rule's order,
the same free-manager rules as calls (enabled, not paused, inside their hours), and not away from
chat; managers whose phone is free come before those on a call.  The first is notified at once,
each next one ``step`` seconds later, so a chat nobody claims reaches everybody in the rule."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import Chat, Manager, Site, VisitorSession
from astertrack.leads.callbacks import call_context, rule_for
from astertrack.routing import rules

OFFER_STEP_SECONDS = 20


def offer_order(session: Session, site: Site, visit: VisitorSession | None, now: dt.datetime) -> list[int]:
    """Manager ids to notify, first first; empty when nobody can take a chat now."""
    rule = rule_for(session, call_context(site, None, visit))
    if rule is None:
        return []
    members = {m.id: m for m in session.scalars(select(Manager).where(
        Manager.id.in_(list(rule.member_ids)), Manager.archived_at.is_(None), Manager.chat_away.is_(False)))}
    views = [rules.ManagerView(id=m.id, endpoint=m.endpoint, name=m.name, enabled=bool(m.enabled),
                               paused=bool(m.paused), schedule=m.schedule or {},
                               device_state=m.device_state or "UNKNOWN", last_routed_at=m.last_routed_at)
             for i in rule.member_ids if (m := members.get(i)) is not None]
    ordered = [m for m in rules.order_candidates(rule.strategy, views, rule.rr_cursor)
               if rules.is_available(m, now, site.timezone)]
    free = [m.id for m in ordered if m.device_state in ("UNKNOWN", "") or rules.is_free_state(m.device_state)]
    return free + [m.id for m in ordered if m.id not in free]


def notified_at(chat: Chat, manager_id: int, step: int = OFFER_STEP_SECONDS) -> dt.datetime | None:
    """When ``manager_id`` is (or was) notified of ``chat``; None when never (not offered to them)."""
    order = list(chat.offered_to or [])
    if manager_id not in order:
        return None
    return chat.created_at + dt.timedelta(seconds=step * order.index(manager_id))
