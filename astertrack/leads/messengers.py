"""Messengers (#25): a visit's code carried in the pre-filled message of the site's WhatsApp and
Telegram links, and the conversations that reach the business through the site's own Telegram bot
or its WhatsApp provider's webhook, each a ``messenger`` enquiry of the leads core.

The code is six characters from an alphabet without look-alikes (no 0/O, 1/I/L, U/V), given to a
visit on demand (``visit_code``) and unique among the site's visits of its attribution window.  A
message naming it (``/start K7M2QX`` from a ``t.me/<bot>?start=`` link, or ``(код: K7M2QX)`` /
``(code: K7M2QX)`` in the text) ties the conversation to that visit, and so the lead to its source;
a code that is unknown, expired (past ``Site.attribution_window_days`` since the visit was last seen)
or another site's ties it to nothing: the lead is unattributed, never someone else's visit.  The code
is removed from the text managers see.

Every message is stored once (``message_key``: the provider's id); the first message of a chat
records the enquiry, later ones join it, and a phone shared later is added to it
(``add_phone``).  Nothing here commits: the caller's transaction does.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from astertrack.db.models import (
    Enquiry,
    Lead,
    MessengerChat,
    MessengerMessage,
    Site,
    SiteMessengers,
    VisitorSession,
)
from astertrack.leads.contacts import MESSAGE_MAX, NAME_MAX, clean_text, normalize_phone
from astertrack.leads.enquiries import _lock, find_by_contact, record_enquiry, refresh_lead, resolve
from astertrack.leads.merging import merge_leads

ALPHABET = "ABCDEFGHJKMNPQRSTWXYZ23456789"  # no 0/O, 1/I/L, U/V
CODE_LENGTH = 6
MESSENGERS = ("telegram", "whatsapp")
_CODE_CHARS = f"[{ALPHABET}]{{{CODE_LENGTH}}}"
# "(код: K7M2QX)", "(code: K7M2QX)", "код K7M2QX" as a person may retype it; any case.
_LABELLED = re.compile(rf"\s*\(?\s*(?:код|code)\s*[:#]?\s*({_CODE_CHARS})\s*\)?", re.IGNORECASE)
_START = re.compile(r"^/start(?:@\w+)?(?:\s+(\S{1,64}))?\s*", re.IGNORECASE)
_BARE = re.compile(rf"^{_CODE_CHARS}$")
_TRIES = 20


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def _window_start(site: Site, now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(days=max(site.attribution_window_days or 0, 0))


def visit_code(session: Session, visit: VisitorSession, now: dt.datetime) -> str:
    """The visit's code, given on first use: unique among the site's visits seen within the
    attribution window (an older visit with the same code has expired and never matches)."""
    if visit.messenger_code:
        return visit.messenger_code
    site = session.get(Site, visit.site_id)
    since = _window_start(site, now)
    for _ in range(_TRIES):
        code = new_code()
        taken = session.scalar(select(VisitorSession.id).where(
            VisitorSession.site_id == visit.site_id, VisitorSession.messenger_code == code,
            VisitorSession.last_seen >= since).limit(1))
        if taken is None:  # set only if still unset: two pages asking at once get one code
            session.execute(update(VisitorSession).where(VisitorSession.id == visit.id,
                                                         VisitorSession.messenger_code.is_(None))
                            .values(messenger_code=code))
            session.refresh(visit, ["messenger_code"])
            return visit.messenger_code
    raise RuntimeError("no free visit code after 20 tries")  # 1 in 600 million per try: never in practice


def find_visit(session: Session, site: Site, code: str | None, now: dt.datetime) -> VisitorSession | None:
    """The site's visit of that code within its attribution window; None for anything else."""
    if not code:
        return None
    code = code.strip().upper()
    if not _BARE.match(code):
        return None
    return session.scalar(select(VisitorSession).where(
        VisitorSession.site_id == site.id, VisitorSession.messenger_code == code,
        VisitorSession.last_seen >= _window_start(site, now))
        .order_by(VisitorSession.last_seen.desc()).limit(1))


def split_code(text: str | None) -> tuple[str, str | None]:
    """The text a manager sees (without ``/start <code>`` and the labelled code) and the code."""
    text = text or ""
    code = None
    start = _START.match(text)
    if start:
        payload = start.group(1) or ""
        if _BARE.match(payload.upper()):
            code = payload.upper()
        text = text[start.end():]
    labelled = _LABELLED.search(text)
    if labelled:
        code = code or labelled.group(1).upper()
        text = _LABELLED.sub("", text)
    return text.strip(), code


def add_phone(session: Session, enquiry: Enquiry, phone: str, *, region: str = "RU") -> Lead:
    """A phone the customer gave later in a conversation (a contact shared in a messenger): kept on
    the enquiry; the lead takes it when it has none, and a lead of that phone within the window
    takes this one in (merged, as a manager would: nothing is deleted).  Returns the lead now."""
    contact = normalize_phone(phone, region)
    lead = resolve(session, session.get(Lead, enquiry.lead_id))
    if enquiry.phone is None and enquiry.phone_raw is None:
        enquiry.phone, enquiry.phone_raw, enquiry.phone_invalid = contact.e164, contact.raw, contact.invalid
    if contact.e164 is None or lead.phone is not None:
        return lead
    site = session.get(Site, lead.site_id)
    _lock(session, site.id, [("phone", contact.e164)])
    other = find_by_contact(session, site, contact.e164, None, enquiry.at)
    if other is None or other.id == lead.id:
        lead.phone = contact.e164
        refresh_lead(session, lead)
        return lead
    merge_leads(session, other, lead)
    kept = session.get(Lead, other.id)
    refresh_lead(session, kept)
    return kept


@dataclass
class Received:
    message: MessengerMessage
    enquiry: Enquiry | None
    created: bool  # False: a repeated delivery, stored before


def receive(session: Session, site: Site, messenger: str, chat_key: str, *, message_key: str, at: dt.datetime,
            text: str | None = None, username: str | None = None, name: str | None = None,
            phone: str | None = None, region: str = "RU") -> Received:
    """One inbound message: stored once, its chat's enquiry recorded or joined (see the module)."""
    if messenger not in MESSENGERS:
        raise ValueError(f"unknown messenger {messenger!r}")
    existing = session.scalar(select(MessengerMessage).where(
        MessengerMessage.site_id == site.id, MessengerMessage.messenger == messenger,
        MessengerMessage.message_key == message_key))
    if existing is not None:
        chat = session.get(MessengerChat, existing.chat_id)
        return Received(existing, session.get(Enquiry, chat.enquiry_id) if chat.enquiry_id else None, False)
    shown, code = split_code(text)
    shown = clean_text(shown, MESSAGE_MAX)
    chat = session.scalar(select(MessengerChat).where(
        MessengerChat.site_id == site.id, MessengerChat.messenger == messenger, MessengerChat.chat_key == chat_key))
    if chat is None:
        chat = MessengerChat(site_id=site.id, messenger=messenger, chat_key=chat_key, created_at=at)
        session.add(chat)
    if username:
        chat.username = clean_text(username, 64)
    if chat.session_id is None and code:
        visit = find_visit(session, site, code, at)
        if visit is not None:
            chat.session_id = visit.id
    chat.last_message_at = at
    enquiry = session.get(Enquiry, chat.enquiry_id) if chat.enquiry_id else None
    if enquiry is None:
        visit = session.get(VisitorSession, chat.session_id) if chat.session_id else None
        enquiry = record_enquiry(session, site, "messenger", at=at, phone=phone, name=clean_text(name, NAME_MAX),
                                 message=shown, visitor_session=visit, region=region)
        session.flush()
        chat.enquiry_id = enquiry.id
    else:
        if enquiry.message is None and shown:  # "/start" said nothing: the first words are the enquiry's
            enquiry.message = shown
        if phone:
            add_phone(session, enquiry, phone, region=region)
    message = MessengerMessage(site_id=site.id, messenger=messenger, message_key=message_key[:100],
                               at=at, text=shown)
    session.flush()
    message.chat_id = chat.id
    session.add(message)
    session.flush()
    return Received(message, enquiry, True)


def messages_of_lead(session: Session, lead_id: int, limit: int = 200) -> list[tuple[MessengerMessage, str | None]]:
    """A lead's messenger messages, oldest first, with the chat's username (for the lead card)."""
    rows = session.execute(
        select(MessengerMessage, MessengerChat.username)
        .join(MessengerChat, MessengerChat.id == MessengerMessage.chat_id)
        .join(Enquiry, Enquiry.id == MessengerChat.enquiry_id)
        .where(Enquiry.lead_id == lead_id)
        .order_by(MessengerMessage.at, MessengerMessage.id).limit(limit)).all()
    return [(row[0], row[1]) for row in rows]


def settings_of(session: Session, site_id: int) -> SiteMessengers:
    """The site's messenger settings (a row added, off, when it has none)."""
    row = session.get(SiteMessengers, site_id)
    if row is None:
        row = SiteMessengers(site_id=site_id, telegram_enabled=False, whatsapp_enabled=False)
        session.add(row)
    return row


def masked_token(token: str | None) -> str:
    """A bot token as the admin shows it: its bot id and the last four characters."""
    if not token:
        return ""
    bot, _, rest = token.partition(":")
    return f"{bot}:…{rest[-4:]}" if rest else "…"


class TelegramError(Exception):
    pass


def set_telegram_webhook(settings: SiteMessengers, site: Site, *, api_url: str, tracker_url: str,
                         timeout: float = 10.0) -> str:
    """Register the site's webhook with Telegram's ``setWebhook`` (the URL, the secret it sends
    back, message updates only); returns the URL.  Raises TelegramError with Telegram's word."""
    if not settings.telegram_bot_token or not settings.telegram_secret:
        raise TelegramError("the site has no bot token or webhook secret")
    if not tracker_url:
        raise TelegramError("[messengers] tracker_url is not set: Telegram needs the tracker's public address")
    url = f"{tracker_url.rstrip('/')}/v/tg/{site.public_key}"
    body = json.dumps({"url": url, "secret_token": settings.telegram_secret,
                       "allowed_updates": ["message"]}).encode()
    request = urllib.request.Request(f"{api_url.rstrip('/')}/bot{settings.telegram_bot_token}/setWebhook",
                                     data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the configured API)
            answer = json.loads(response.read(65536) or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read(65536) or b"{}")
        except ValueError:
            answer = {}
        raise TelegramError(f"Telegram refused: {answer.get('description') or exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TelegramError(f"Telegram did not answer: {exc}") from None
    if not answer.get("ok"):
        raise TelegramError(f"Telegram refused: {answer.get('description') or 'no reason given'}")
    settings.telegram_webhook_at = dt.datetime.now(dt.UTC)
    return url
