"""What a chat and its messages look like to each side: the dictionaries the visitor's widget, the
manager's page, the streams and the REST API send (built once here, so the sides cannot drift).
The visitor sees managers by name only; text is sent as text and shown as text by every client."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from astertrack.db.models import Chat, ChatMessage, Enquiry, Manager


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_view(message: ChatMessage, *, for_visitor: bool) -> dict[str, Any]:
    meta = dict(message.meta or {})
    if for_visitor:
        meta = {k: v for k, v in meta.items() if k in ("manager", "to", "by", "reason")}
    view = {"seq": message.seq, "author": message.author, "kind": message.kind, "text": message.text,
            "at": _iso(message.at), "meta": meta}
    if message.client_id is not None:
        view["client_id"] = message.client_id
    if not for_visitor:
        view["id"] = message.id
        view["manager_id"] = message.manager_id
    return view


def state_view(chat: Chat, manager_name: str | None, *, for_visitor: bool) -> dict[str, Any]:
    """The chat's status, who has it, read marks and typing (``*_typing_until``: the client hides
    the mark when that time passes)."""
    view = {"status": chat.status, "seq": chat.seq, "rev": chat.rev, "manager": manager_name,
            "visitor_read_seq": chat.visitor_read_seq, "manager_read_seq": chat.manager_read_seq,
            "visitor_typing_until": _iso(chat.visitor_typing_until),
            "manager_typing_until": _iso(chat.manager_typing_until), "phone_given": chat.phone is not None}
    if not for_visitor:
        view.update(id=chat.id, site_id=chat.site_id, manager_id=chat.manager_id, session_id=chat.session_id,
                    enquiry_id=chat.enquiry_id, created_at=_iso(chat.created_at), updated_at=_iso(chat.updated_at),
                    first_reply_at=_iso(chat.first_reply_at), closed_at=_iso(chat.closed_at),
                    closed_by=chat.closed_by, phone=chat.phone, name=chat.name, page_url=chat.page_url,
                    language=chat.language, offered_to=list(chat.offered_to or []))
    return view


def manager_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Manager.id, Manager.name).where(Manager.id.in_(sorted(ids)))).all())


def changed_since(session: Session, since: dt.datetime) -> list[Chat]:
    """Chats whose ``updated_at`` is ``since`` or later (the streams' one read per tick)."""
    return list(session.scalars(select(Chat).where(Chat.updated_at >= since).order_by(Chat.id)))


def messages_after(session: Session, after: dict[int, int]) -> dict[int, list[ChatMessage]]:
    """For each chat id, its messages numbered above the given one, oldest first (one query)."""
    out: dict[int, list[ChatMessage]] = {chat_id: [] for chat_id in after}
    if not after:
        return out
    ids = sorted(after)
    for start in range(0, len(ids), 200):
        part = ids[start:start + 200]
        wanted = or_(*(and_(ChatMessage.chat_id == chat_id, ChatMessage.seq > after[chat_id]) for chat_id in part))
        for message in session.scalars(select(ChatMessage).where(wanted).order_by(ChatMessage.chat_id, ChatMessage.seq)):
            out[message.chat_id].append(message)
    return out


def chats_of_lead(session: Session, lead_id: int, limit: int = 500) -> list[tuple[Chat, list[ChatMessage]]]:
    """A lead's website chats (those whose enquiry joined the lead), oldest first, each with its
    first ``limit`` messages in order: the conversation kept with the lead (two queries)."""
    found = list(session.scalars(select(Chat).join(Enquiry, Enquiry.id == Chat.enquiry_id)
                                 .where(Enquiry.lead_id == lead_id).order_by(Chat.created_at, Chat.id)))
    if not found:
        return []
    by_chat: dict[int, list[ChatMessage]] = {chat.id: [] for chat in found}
    for message in session.scalars(select(ChatMessage).where(ChatMessage.chat_id.in_(list(by_chat)),
                                                             ChatMessage.seq <= limit)
                                   .order_by(ChatMessage.chat_id, ChatMessage.seq)):
        by_chat[message.chat_id].append(message)
    return [(chat, by_chat[chat.id]) for chat in found]
