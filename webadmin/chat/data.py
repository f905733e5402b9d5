"""What the chats page shows: each chat's summary (site, the visit's source, campaign, keyword,
landing page, pages viewed, who has it, since when), the lists a user sees, a chat's lines and
journey.  Summaries are plain data built by one query for many chats: the page and the stream
(off the request, on the hub's thread) build them the same way."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms.fields.choices import SelectChoice

from astertrack.chat import OPEN_STATUSES
from astertrack.chat.offers import OFFER_STEP_SECONDS
from astertrack.chat.views import manager_names, message_view
from astertrack.db.models import Chat, ChatMessage, Enquiry, Manager, Site, Source, VisitorSession
from webadmin.chat.access import visible
from webadmin.journey.data import journey as visitor_journey
from webadmin.journey.data import safe_href
from webadmin.leads.card import chat_line

LIST_LIMIT = 300  # open chats read for the lists (idle chats close after a day)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def summaries(db: Session, chat_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each chat's summary: everything a list row shows, as text or numbers (one query)."""
    if not chat_ids:
        return {}
    rows = db.execute(
        select(Chat, Site.name.label("site"), Source.name.label("source"), VisitorSession.utm_source,
               VisitorSession.utm_medium, VisitorSession.utm_campaign, VisitorSession.keyword,
               VisitorSession.utm_term, VisitorSession.landing_page, VisitorSession.page_views,
               Manager.name.label("manager"))
        .join(Site, Site.id == Chat.site_id)
        .outerjoin(VisitorSession, VisitorSession.id == Chat.session_id)
        .outerjoin(Source, Source.id == VisitorSession.source_id)
        .outerjoin(Manager, Manager.id == Chat.manager_id)
        .where(Chat.id.in_(sorted(set(chat_ids))))).all()
    out = {}
    for row in rows:
        chat: Chat = row[0]
        utm = " / ".join(v for v in (row.utm_source, row.utm_medium) if v)
        out[chat.id] = {
            "id": chat.id, "status": chat.status, "site": row.site, "source": row.source or "", "utm": utm,
            "campaign": row.utm_campaign or "", "keyword": row.keyword or row.utm_term or "",
            "landing_page": row.landing_page or chat.page_url or "", "page_views": row.page_views or 0,
            "manager_id": chat.manager_id, "manager": row.manager or "", "offered_to": list(chat.offered_to or []),
            "created_at": _iso(chat.created_at), "first_reply_at": _iso(chat.first_reply_at),
            "closed_at": _iso(chat.closed_at), "seq": chat.seq, "rev": chat.rev,
            "visitor_read_seq": chat.visitor_read_seq, "manager_read_seq": chat.manager_read_seq,
            "visitor_typing_until": _iso(chat.visitor_typing_until), "phone": chat.phone or "",
            "name": chat.name or "",
        }
    return out


def notify_in(summary: dict[str, Any], manager_id: int | None, now: dt.datetime) -> float | None:
    """Seconds until this manager is notified of the chat (0: now); None when they are not to be
    (not offered to them, taken, closed).  The first in ``offered_to`` is notified first, each next
    one ``OFFER_STEP_SECONDS`` later (``chat.offers.notified_at``)."""
    if manager_id is None or summary["manager_id"] is not None or summary["status"] not in ("waiting", "unanswered"):
        return None
    offered = summary["offered_to"]
    if offered and manager_id not in offered:
        return None
    step = OFFER_STEP_SECONDS * offered.index(manager_id) if offered else 0
    at = dt.datetime.fromisoformat(summary["created_at"]) + dt.timedelta(seconds=step)
    return max(0.0, (at - now).total_seconds())


def for_viewer(summary: dict[str, Any], *, staff: bool, manager_id: int | None, now: dt.datetime) -> dict[str, Any]:
    """The summary as one viewer gets it: which list it goes in and when they are notified."""
    mine = manager_id is not None and summary["manager_id"] == manager_id
    if summary["status"] == "closed":
        section = "closed"
    elif summary["manager_id"] is None:
        section = "waiting"
    else:
        section = "mine" if mine else "others"
    typing = summary["visitor_typing_until"]
    typing_in = max(0.0, (dt.datetime.fromisoformat(typing) - now).total_seconds()) if typing else 0.0
    return {**summary, "section": section, "notify_in": notify_in(summary, manager_id, now),
            "typing_seconds": round(typing_in, 1),
            "visible": visible(summary["offered_to"], summary["manager_id"], staff=staff, manager_id=manager_id)}


def open_chats(db: Session, *, staff: bool, manager_id: int | None, now: dt.datetime) -> list[dict[str, Any]]:
    """The open chats this viewer sees, oldest first, as ``for_viewer`` summaries."""
    rows = db.execute(select(Chat.id, Chat.offered_to, Chat.manager_id).where(Chat.status.in_(OPEN_STATUSES))
                      .order_by(Chat.created_at, Chat.id).limit(LIST_LIMIT)).all()
    ids = [r.id for r in rows if visible(r.offered_to, r.manager_id, staff=staff, manager_id=manager_id)]
    found = summaries(db, ids)
    return [for_viewer(found[i], staff=staff, manager_id=manager_id, now=now) for i in ids if i in found]


def waiting_count(db: Session, *, staff: bool, manager_id: int | None) -> int:
    """Chats nobody has taken that this viewer may take (the nav's count)."""
    rows = db.execute(select(Chat.offered_to).where(Chat.status.in_(OPEN_STATUSES), Chat.manager_id.is_(None))
                      .limit(LIST_LIMIT)).all()
    return sum(1 for r in rows if visible(r.offered_to, None, staff=staff, manager_id=manager_id))


def words() -> dict[str, str]:
    """The system lines in the reader's language with their placeholders (``%(manager)s``), for the
    script to word the lines the stream brings: the same strings as ``leads.card.chat_line``."""
    return {
        "claimed": _("%(manager)s took the chat"),
        "transferred": _("transferred from %(source)s to %(target)s"),
        "given": _("given to %(target)s"),
        "asked_nobody": _("asked for a phone: nobody was available"),
        "asked_late": _("asked for a phone: nobody answered in time"),
        "contact_name": _("left a phone %(phone)s, name %(name)s"),
        "contact": _("left a phone %(phone)s"),
        "closed_visitor": _("the visitor closed the chat"),
        "closed_manager": _("%(manager)s closed the chat"),
        "closed_system": _("closed: nobody wrote for a day"),
        "a_manager": _("a manager"),
        "visitor": _("Visitor"),
        "read": _("read"),
        "typing": _("The visitor is typing…"),
        "new_chat": _("New website chat"),
        "failed": _("Not sent: press Enter to try again."),
    }


def lines(db: Session, chat: Chat, after: int = 0, limit: int = 500) -> list[dict[str, Any]]:
    """The chat's messages after ``after`` as the pane shows them: the manager's view of each plus
    ``who`` and, for a system line, ``line`` worded in the reader's language (plain text)."""
    messages = list(db.scalars(select(ChatMessage).where(ChatMessage.chat_id == chat.id, ChatMessage.seq > after)
                               .order_by(ChatMessage.seq).limit(limit)))
    names = manager_names(db, {m.manager_id for m in messages if m.manager_id})
    out = []
    for m in messages:
        view = message_view(m, for_visitor=False)
        if m.author == "system":
            view["who"], view["line"] = "", chat_line(m, names)
        elif m.author == "visitor":
            view["who"] = _("Visitor")
        else:
            view["who"] = names.get(m.manager_id) or _("a manager")
        out.append(view)
    return out


def chat_journey(db: Session, chat: Chat, only_manager_id: int | None) -> dict[str, Any] | None:
    """The visitor's journey (pages viewed, earlier calls and leads) through the chat's lead: the
    lead card's own partial reads it.  None before the visitor's first message (no lead yet)."""
    lead_id = db.scalar(select(Enquiry.lead_id).where(Enquiry.id == chat.enquiry_id)) if chat.enquiry_id else None
    if lead_id is None:
        return None
    return visitor_journey(db, "lead", lead_id, only_manager_id=only_manager_id)


def transfer_targets(db: Session, chat: Chat) -> list[SelectChoice]:
    """Managers who may take the chat: enabled, not archived, not its owner."""
    return [SelectChoice(m.id, m.name) for m in db.scalars(
        select(Manager).where(Manager.enabled.is_(True), Manager.archived_at.is_(None)).order_by(Manager.name))
        if m.id != chat.manager_id]


def safe_link(url: str | None) -> str | None:
    return safe_href(url)
