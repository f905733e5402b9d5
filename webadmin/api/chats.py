"""``/api/v1/chats``: website chats with their state and the attribution of the visit they were
opened from, and each chat's messages by number (a CRM keeps up with ``after``).  The dictionaries
are the manager's side of ``astertrack.chat.views``, so the API and the admin cannot drift; the
visitor's IP address and token are not given out.  Every list is one query."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from astertrack.chat.views import message_view, state_view
from astertrack.db.models import Chat, ChatMessage, Enquiry, Manager, Source, VisitorSession
from webadmin.api import bp
from webadmin.api.registry import check_site, found, limit_to_site, operation, paginate, within_period
from webadmin.api.schemas import (
    ChatList,
    ChatMessageList,
    ChatMessageOut,
    ChatMessagesQuery,
    ChatOut,
    ChatsQuery,
)
from webadmin.db import get_session

_CHAT_FIELDS = set(ChatOut.model_fields)


def _select():
    return (select(Chat, Manager.name, Enquiry.lead_id, Source.id, Source.name, VisitorSession.utm_source,
                   VisitorSession.utm_medium, VisitorSession.utm_campaign, VisitorSession.keyword)
            .outerjoin(Manager, Manager.id == Chat.manager_id)
            .outerjoin(Enquiry, Enquiry.id == Chat.enquiry_id)
            .outerjoin(VisitorSession, VisitorSession.id == Chat.session_id)
            .outerjoin(Source, Source.id == VisitorSession.source_id))


def chat_out(row: Any) -> ChatOut:
    chat, manager, lead_id, source_id, source, utm_source, utm_medium, utm_campaign, keyword = row
    view = state_view(chat, manager, for_visitor=False)
    return ChatOut.model_validate({
        **{key: value for key, value in view.items() if key in _CHAT_FIELDS}, "lead_id": lead_id,
        "source_id": source_id, "source": source, "utm_source": utm_source, "utm_medium": utm_medium,
        "utm_campaign": utm_campaign, "keyword": keyword})


@bp.get("/chats")
@operation("Chats", "List chats", query=ChatsQuery, response=ChatList,
           description="Newest first. `from`/`to` bound the chat's start; `manager_id` is the manager who has "
                       "(or had) the chat.")
def chats(query: ChatsQuery):
    stmt = limit_to_site(_select(), Chat.site_id, query.site_id)
    for column, value in ((Chat.status, query.status), (Chat.manager_id, query.manager_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    stmt = within_period(stmt, Chat.created_at, query)
    return ChatList(**paginate(get_session(), stmt, Chat.id, query, chat_out))


@bp.get("/chats/<int:chat_id>")
@operation("Chats", "One chat", response=ChatOut)
def chat(chat_id: int):
    row = found(get_session().execute(_select().where(Chat.id == chat_id)).first(), "chat", chat_id)
    check_site(row[0].site_id)
    return chat_out(row)


@bp.get("/chats/<int:chat_id>/messages")
@operation("Chats", "A chat's messages", query=ChatMessagesQuery, response=ChatMessageList,
           description="Oldest first, numbered from 1 within the chat; system lines (claimed, transferred, "
                       "asked_phone, contact, closed) are included with their details in `meta`. "
                       "`text` is what a person typed: show it as text, never as HTML.")
def chat_messages(chat_id: int, query: ChatMessagesQuery):
    db = get_session()
    site_id = found(db.scalar(select(Chat.site_id).where(Chat.id == chat_id)), "chat", chat_id)
    check_site(site_id)
    rows = list(db.scalars(select(ChatMessage).where(ChatMessage.chat_id == chat_id, ChatMessage.seq > query.after)
                           .order_by(ChatMessage.seq).limit(query.limit + 1)))
    more = len(rows) > query.limit
    items = [ChatMessageOut.model_validate(message_view(m, for_visitor=False)) for m in rows[:query.limit]]
    return ChatMessageList(items=items, next_after=items[-1].seq if more else None)
