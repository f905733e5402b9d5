"""A chat's life: started by a visitor, offered to managers, claimed, answered, transferred,
asking for a phone when nobody answers in time, closed — every change one transaction of the
caller's (nothing here commits).

Each message gets the next number of its chat (``Chat.seq``) while the chat's row is locked (a
PostgreSQL row lock; SQLite's write lock, ``BEGIN IMMEDIATE``), so a chat's messages are numbered
in the order they were stored and a client resumes after the last number it saw.  A message
carries its sender's own id (``client_id``): sent again after a network drop, it is found and
returned, never stored twice.  Every change a stream shows bumps ``Chat.rev`` and ``updated_at``.

The visitor's first message records the chat's enquiry (channel ``chat``, the visit's
attribution: ``leads.record_enquiry``); a phone given later joins the lead of that phone
(``messengers.add_phone``, the same rule as a messenger's shared contact).

On SQLite a caller that reads the chat before changing it (``by_token``, ``session.get``) begins
its transaction with ``db.engine.begin_write`` first, as for every read-then-write there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.chat import CLIENT_ID_MAX, OPEN_STATUSES, TEXT_MAX, TYPING_SECONDS
from astertrack.chat.offers import offer_order
from astertrack.db.engine import begin_write
from astertrack.db.models import Chat, ChatMessage, Enquiry, Manager, Site, SiteWidget, VisitorSession
from astertrack.leads.contacts import NAME_MAX, PAGE_URL_MAX, clean_text, normalize_phone
from astertrack.leads.enquiries import record_enquiry
from astertrack.leads.messengers import add_phone

TOKEN_MAX = 100
_CLIENT_ID = re.compile(rf"^[A-Za-z0-9_-]{{1,{CLIENT_ID_MAX}}}$")
IDLE_CLOSE = dt.timedelta(hours=24)  # an open chat nobody wrote in for this long is closed


class ChatError(ValueError):
    """A chat action refused; ``field`` names the input or the state that refused it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Posted:
    message: ChatMessage
    created: bool  # False: the same client id was stored before (a resend)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def by_token(session: Session, token: str | None) -> Chat | None:
    if not token or len(token) > TOKEN_MAX:
        return None
    return session.scalar(select(Chat).where(Chat.token_hash == token_hash(token)))


def _writing(session: Session) -> None:
    if session.bind.dialect.name == "sqlite" and not session.in_transaction():
        begin_write(session)


def _locked(session: Session, chat: Chat) -> Chat:
    """The chat's row, locked for this transaction and read fresh."""
    _writing(session)
    locked = session.scalar(select(Chat).where(Chat.id == chat.id).with_for_update()
                            .execution_options(populate_existing=True))
    if locked is None:
        raise ChatError("chat", "no such chat")
    return locked


def _append(session: Session, chat: Chat, author: str, kind: str, at: dt.datetime, *, text: str | None = None,
            client_id: str | None = None, manager_id: int | None = None,
            meta: dict[str, Any] | None = None) -> ChatMessage:
    chat.seq += 1
    _touch(chat, at)
    message = ChatMessage(chat_id=chat.id, seq=chat.seq, author=author, kind=kind, text=text, client_id=client_id,
                          manager_id=manager_id, meta=meta or {}, at=at)
    session.add(message)
    return message


def _touch(chat: Chat, at: dt.datetime) -> None:
    chat.rev += 1
    chat.updated_at = max(at, chat.updated_at) if chat.updated_at else at


def _manager_meta(manager: Manager | None) -> dict[str, Any]:
    return {"manager_id": manager.id, "manager": manager.name} if manager is not None else {}


def clean_message(text: Any) -> str:
    cleaned = clean_text(text if isinstance(text, str) else None, TEXT_MAX + 1)
    if not cleaned:
        raise ChatError("text", "an empty message")
    if len(cleaned) > TEXT_MAX:
        raise ChatError("text", f"a message is at most {TEXT_MAX} characters")
    return cleaned


def clean_client_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _CLIENT_ID.match(value):
        raise ChatError("client_id", f"a message id is 1 to {CLIENT_ID_MAX} letters, digits, - or _")
    return value


def wait_seconds(session: Session, site_id: int) -> int:
    value = session.scalar(select(SiteWidget.chat_wait_seconds).where(SiteWidget.site_id == site_id))
    return int(value) if value else 90


def start(session: Session, site: Site, *, at: dt.datetime, visit: VisitorSession | None = None,
          language: str = "ru", page_url: str | None = None, ip: str | None = None) -> tuple[Chat, str]:
    """A new chat and the visitor's token (shown once; only its hash is kept).  Nobody to offer it
    to now: it starts by asking for a phone."""
    _writing(session)
    order = offer_order(session, site, visit, at)
    token = new_token()
    chat = Chat(site_id=site.id, session_id=visit.id if visit is not None else None, token_hash=token_hash(token),
                status="waiting" if order else "unanswered", offered_to=order,
                language=language if language in ("ru", "en") else "ru",
                page_url=clean_text(page_url, PAGE_URL_MAX), ip=clean_text(ip, 45),
                seq=0, rev=0, created_at=at, updated_at=at)
    session.add(chat)
    session.flush()
    if not order:
        _append(session, chat, "system", "asked_phone", at, meta={"reason": "nobody_available"})
    return chat, token


def post(session: Session, chat: Chat, author: str, text: Any, *, at: dt.datetime, client_id: Any = None,
         manager: Manager | None = None, region: str = "RU") -> Posted:
    """A visitor's or a manager's message (stored once per ``client_id``)."""
    if author not in ("visitor", "manager"):
        raise ChatError("author", f"unknown author {author!r}")
    if author == "manager" and manager is None:
        raise ChatError("manager", "a manager's message needs the manager")
    body = clean_message(text)
    cid = clean_client_id(client_id)
    chat = _locked(session, chat)
    if cid is not None:
        existing = session.scalar(select(ChatMessage).where(
            ChatMessage.chat_id == chat.id, ChatMessage.author == author, ChatMessage.client_id == cid))
        if existing is not None:
            return Posted(existing, False)
    if chat.status == "closed":
        raise ChatError("chat", "the chat is closed")
    if author == "visitor":
        message = _append(session, chat, "visitor", "text", at, text=body, client_id=cid)
        chat.last_visitor_at = at
        chat.visitor_typing_until = None
        chat.visitor_read_seq = chat.seq
        if chat.enquiry_id is None:
            visit = session.get(VisitorSession, chat.session_id) if chat.session_id else None
            enquiry = record_enquiry(session, chat.site_id, "chat", at=at, phone=chat.phone, name=chat.name,
                                     message=body, page_url=chat.page_url, visitor_session=visit, region=region)
            session.flush()
            chat.enquiry_id = enquiry.id
        return Posted(message, True)
    if chat.manager_id is None:
        _claim(session, chat, manager, at)
    message = _append(session, chat, "manager", "text", at, text=body, client_id=cid, manager_id=manager.id)
    chat.status = "active"
    chat.first_reply_at = chat.first_reply_at or at
    chat.manager_typing_until = None
    chat.manager_read_seq = chat.seq
    if chat.enquiry_id is not None:
        enquiry = session.get(Enquiry, chat.enquiry_id)
        if enquiry is not None and enquiry.manager_id is None:
            enquiry.manager_id = manager.id
    return Posted(message, True)


def _claim(session: Session, chat: Chat, manager: Manager, at: dt.datetime) -> None:
    chat.manager_id = manager.id
    if chat.status == "waiting":
        chat.status = "active"
    _append(session, chat, "system", "claimed", at, manager_id=manager.id, meta=_manager_meta(manager))


def claim(session: Session, chat: Chat, manager: Manager, *, at: dt.datetime) -> Chat:
    """The manager takes the chat (one taken by another is refused: transfer it instead)."""
    chat = _locked(session, chat)
    if chat.status == "closed":
        raise ChatError("chat", "the chat is closed")
    if chat.manager_id == manager.id:
        return chat
    if chat.manager_id is not None:
        raise ChatError("manager", "another manager has this chat")
    _claim(session, chat, manager, at)
    return chat


def transfer(session: Session, chat: Chat, to: Manager, *, by: Manager | None, at: dt.datetime) -> Chat:
    """Hand the chat to another manager (a supervisor may move anybody's)."""
    chat = _locked(session, chat)
    if chat.status == "closed":
        raise ChatError("chat", "the chat is closed")
    if to.archived_at is not None or not to.enabled:
        raise ChatError("manager", "that manager cannot take chats")
    if chat.manager_id == to.id:
        return chat
    previous = session.get(Manager, chat.manager_id) if chat.manager_id else None
    chat.manager_id = to.id
    if chat.status == "waiting":
        chat.status = "active"
    meta = {"to_id": to.id, "to": to.name}
    if previous is not None:
        meta.update(from_id=previous.id, **{"from": previous.name})
    if by is not None:
        meta["by_id"] = by.id
    _append(session, chat, "system", "transferred", at, manager_id=by.id if by else None, meta=meta)
    return chat


def close(session: Session, chat: Chat, *, by: str, at: dt.datetime, manager: Manager | None = None) -> Chat:
    """Close the chat (again: nothing happens)."""
    if by not in ("visitor", "manager", "system"):
        raise ChatError("by", f"unknown closer {by!r}")
    chat = _locked(session, chat)
    if chat.status == "closed":
        return chat
    chat.status, chat.closed_at, chat.closed_by = "closed", at, by
    chat.visitor_typing_until = chat.manager_typing_until = None
    _append(session, chat, "system", "closed", at, manager_id=manager.id if manager else None,
            meta={"by": by, **_manager_meta(manager)})
    return chat


def give_contact(session: Session, chat: Chat, *, phone: Any, name: Any = None, at: dt.datetime,
                 region: str = "RU") -> Chat:
    """The visitor's phone (asked for when nobody answered): kept on the chat, its enquiry and lead."""
    contact = normalize_phone(phone if isinstance(phone, str) else None, region)
    if contact.e164 is None:
        raise ChatError("phone", "not a phone number")
    chat = _locked(session, chat)
    chat.phone = contact.e164
    if isinstance(name, str) and name.strip():
        chat.name = clean_text(name, NAME_MAX)
    enquiry = session.get(Enquiry, chat.enquiry_id) if chat.enquiry_id else None
    if enquiry is None:
        visit = session.get(VisitorSession, chat.session_id) if chat.session_id else None
        enquiry = record_enquiry(session, chat.site_id, "chat", at=at, phone=contact.e164, name=chat.name,
                                 page_url=chat.page_url, visitor_session=visit, region=region)
        session.flush()
        chat.enquiry_id = enquiry.id
    else:
        if chat.name and not enquiry.name:
            enquiry.name = chat.name
        add_phone(session, enquiry, contact.e164, region=region)
    _append(session, chat, "system", "contact", at, meta={"phone": contact.e164, "name": chat.name})
    return chat


def mark_read(session: Session, chat: Chat, reader: str, seq: Any, *, at: dt.datetime) -> Chat:
    """The reader has seen every message up to ``seq`` (marks only move forward)."""
    if reader not in ("visitor", "manager"):
        raise ChatError("reader", f"unknown reader {reader!r}")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ChatError("seq", "a message number is a whole number")
    column = f"{reader}_read_seq"
    if min(seq, chat.seq) <= getattr(chat, column):
        return chat
    chat = _locked(session, chat)
    seen = min(seq, chat.seq)
    if seen > getattr(chat, column):
        setattr(chat, column, seen)
        _touch(chat, at)
    return chat


def typing(session: Session, chat: Chat, who: str, *, at: dt.datetime) -> Chat:
    """``who`` is typing: shown for ``TYPING_SECONDS``; renewed only when half of it is gone, so a
    stream of keystrokes costs a write every few seconds."""
    if who not in ("visitor", "manager"):
        raise ChatError("who", f"unknown typist {who!r}")
    column = f"{who}_typing_until"
    until = getattr(chat, column)
    if chat.status == "closed" or (until is not None and until - at > dt.timedelta(seconds=TYPING_SECONDS / 2)):
        return chat
    chat = _locked(session, chat)
    setattr(chat, column, at + dt.timedelta(seconds=TYPING_SECONDS))
    _touch(chat, at)
    return chat


def sweep(session: Session, now: dt.datetime) -> int:
    """Chats nobody answered within their site's wait ask for a phone; chats idle for a day close.
    Returns how many chats changed."""
    _writing(session)
    changed = 0
    rows = session.execute(select(Chat, SiteWidget.chat_wait_seconds)
                           .outerjoin(SiteWidget, SiteWidget.site_id == Chat.site_id)
                           .where(Chat.status.in_(("waiting", "active")), Chat.first_reply_at.is_(None))).all()
    for chat, wait in rows:
        if chat.created_at + dt.timedelta(seconds=int(wait or 90)) <= now:
            chat = _locked(session, chat)
            if chat.status in ("waiting", "active") and chat.first_reply_at is None:
                chat.status = "unanswered"
                _append(session, chat, "system", "asked_phone", now, meta={"reason": "no_reply"})
                changed += 1
    idle = session.scalars(select(Chat).where(Chat.status.in_(OPEN_STATUSES), Chat.updated_at < now - IDLE_CLOSE))
    for chat in list(idle):
        close(session, chat, by="system", at=now)
        changed += 1
    return changed


def messages(session: Session, chat_id: int, *, after: int = 0, limit: int = 500) -> list[ChatMessage]:
    """A chat's messages after number ``after``, oldest first."""
    return list(session.scalars(select(ChatMessage).where(ChatMessage.chat_id == chat_id, ChatMessage.seq > after)
                                .order_by(ChatMessage.seq).limit(limit)))
