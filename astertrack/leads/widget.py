"""The website widget's settings (docs/widget.md): its channels, texts, looks and pop-up rules, read
by the tracker (the config the widget script fetches) and written by the admin.

One module so the tracker and the admin share the defaults and the checks (an app never imports
another app).  Out of hours the callback button promises the moment the callbacks core will dial
(``callbacks.due_at``: the routing rule's next opening), so the promise and the dial cannot drift.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import Site, SiteWidget
from astertrack.leads.callbacks import call_context, due_at

LANGUAGES = ("ru", "en")
POSITIONS = ("bottom-right", "bottom-left")
# The channels the widget shows, in the launcher's order.
CHANNELS = ("popup", "callback", "chat")
CHAT_TEXT_KEYS = ("chat_title", "chat_greeting", "chat_placeholder", "chat_send", "chat_ask_phone",
                  "chat_phone_button", "chat_thanks", "chat_offline_title", "chat_offline_offer",
                  "chat_offline_thanks", "chat_closed", "chat_typing", "chat_read")
TEXT_KEYS = ("popup_title", "popup_offer", "popup_button", "popup_thanks",
             "callback_title", "callback_offer", "callback_later", "callback_button", "callback_thanks",
             *CHAT_TEXT_KEYS)
TEXT_MAX = 300
LIST_MAX = 20  # URL substrings / utm pairs per site
HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
UTM = re.compile(r"^utm_(source|medium|campaign|content|term)=[^=&\s]{1,100}$")
# ``{time}`` in callback_later: the next opening in the visitor's own time zone (the widget fills it in)
DEFAULT_TEXTS: dict[str, dict[str, str]] = {
    "ru": {"popup_title": "Получите консультацию", "popup_offer": "Оставьте телефон — перезвоним и ответим на вопросы.",
           "popup_button": "Жду звонка", "popup_thanks": "Спасибо! Мы скоро свяжемся с вами.",
           "callback_title": "Обратный звонок", "callback_offer": "Перезвоним за 30 секунд.",
           "callback_later": "Сейчас мы не работаем. Позвоним вам {time}.",
           "callback_button": "Перезвоните мне", "callback_thanks": "Спасибо! Уже набираем ваш номер.",
           "chat_title": "Чат", "chat_greeting": "Здравствуйте! Напишите ваш вопрос — менеджер ответит здесь.",
           "chat_placeholder": "Сообщение", "chat_send": "Отправить",
           "chat_ask_phone": "Менеджеры сейчас заняты. Оставьте телефон — мы перезвоним.",
           "chat_phone_button": "Оставить телефон", "chat_thanks": "Спасибо! Мы перезвоним вам.",
           "chat_offline_title": "Напишите нам", "chat_offline_offer": "Сейчас мы не в сети. Оставьте сообщение и телефон — ответим в рабочее время.",
           "chat_offline_thanks": "Спасибо! Мы ответим в рабочее время.", "chat_closed": "Чат завершён.",
           "chat_typing": "Менеджер печатает…", "chat_read": "Прочитано"},
    "en": {"popup_title": "Get a free consultation", "popup_offer": "Leave your phone and we will call you back.",
           "popup_button": "Call me", "popup_thanks": "Thank you! We will be in touch shortly.",
           "callback_title": "Callback", "callback_offer": "We will call you back in 30 seconds.",
           "callback_later": "We are closed now. We will call you on {time}.",
           "callback_button": "Call me back", "callback_thanks": "Thank you! We are calling you now.",
           "chat_title": "Chat", "chat_greeting": "Hello! Write your question and a manager will answer here.",
           "chat_placeholder": "Message", "chat_send": "Send",
           "chat_ask_phone": "Our managers are busy. Leave your phone and we will call you back.",
           "chat_phone_button": "Leave my phone", "chat_thanks": "Thank you! We will call you back.",
           "chat_offline_title": "Write to us", "chat_offline_offer": "We are offline now. Leave a message and your phone; we will answer in working hours.",
           "chat_offline_thanks": "Thank you! We will answer in working hours.", "chat_closed": "The chat has ended.",
           "chat_typing": "The manager is typing…", "chat_read": "Read"},
}
# After a request made out of hours (the widget shows the opening itself with callback_later).
LATER_THANKS = {"ru": "Спасибо! Позвоним вам {time}.", "en": "Thank you! We will call you on {time}."}


class WidgetError(ValueError):
    """A setting the widget cannot use; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def clean_colour(value: str | None) -> str:
    value = (value or "").strip()
    if not HEX.match(value):
        raise WidgetError("colour", f"not a colour: {value[:20]!r} (expected #RRGGBB)")
    return value.lower()


def clean_lines(value: str | list[str] | None, field: str, utm: bool = False) -> list[str]:
    """One entry a line (URL substrings, or ``utm_x=value`` pairs), blank lines dropped."""
    lines = value.splitlines() if isinstance(value, str) else list(value or [])
    out = [line.strip() for line in lines if line and line.strip()]
    if len(out) > LIST_MAX:
        raise WidgetError(field, f"at most {LIST_MAX} entries")
    for line in out:
        if len(line) > 200:
            raise WidgetError(field, f"an entry longer than 200 characters: {line[:40]!r}…")
        if utm and not UTM.match(line):
            raise WidgetError(field, f"not a utm pair: {line[:60]!r} (expected utm_source=value)")
    return out


def clean_texts(texts: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """The texts an admin set (empty ones left out: the defaults apply), capped."""
    out: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        given = (texts or {}).get(lang) or {}
        kept = {key: str(given[key]).strip()[:TEXT_MAX] for key in TEXT_KEYS if str(given.get(key) or "").strip()}
        if kept:
            out[lang] = kept
    return out


def texts_for(widget: SiteWidget | None) -> dict[str, dict[str, str]]:
    """Every text in both languages: the site's own over the defaults."""
    own = (widget.texts if widget is not None else None) or {}
    return {lang: {**DEFAULT_TEXTS[lang], **(own.get(lang) or {})} for lang in LANGUAGES}


def load(session: Session, site_id: int) -> SiteWidget | None:
    return session.scalar(select(SiteWidget).where(SiteWidget.site_id == site_id))


def enabled_revision(session: Session, site_id: int) -> int:
    """The widget's revision when one of its channels is on, else 0 (the snippet then loads nothing)."""
    row = session.execute(select(SiteWidget.revision, SiteWidget.popup_enabled, SiteWidget.callback_enabled,
                                 SiteWidget.chat_enabled).where(SiteWidget.site_id == site_id)).first()
    if row is None or not any_channel(row):
        return 0
    return int(row.revision)


def any_channel(row: Any) -> bool:
    """Whether a widget row (or a row of its columns) has one of its channels on."""
    return bool(row.popup_enabled or row.callback_enabled or row.chat_enabled)


def callback_due(session: Session, site: Site, now: dt.datetime) -> dt.datetime:
    """When a callback asked for now would be dialled (the callbacks core's own rule)."""
    return due_at(session, site, call_context(site, None, None), now)


def public_config(session: Session, site: Site, widget: SiteWidget, now: dt.datetime) -> dict[str, Any]:
    """What the widget script needs (no secret, nothing of other sites): its channels, texts,
    looks and rules, whether a callback asked now is dialled now or at the next opening, and
    whether the chat is open now (the same hours: out of them the chat is a form)."""
    config: dict[str, Any] = {
        "rev": widget.revision, "channels": [c for c in CHANNELS if getattr(widget, f"{c}_enabled")],
        "texts": texts_for(widget), "later_thanks": LATER_THANKS,
        "colour": widget.colour if HEX.match(widget.colour or "") else "#1f6feb",
        "position": widget.position if widget.position in POSITIONS else POSITIONS[0],
    }
    if widget.popup_enabled:
        config["popup"] = {"delay": max(0, widget.popup_delay_seconds), "exit": bool(widget.popup_exit_intent),
                           "page": max(0, widget.popup_page_views), "urls": list(widget.popup_url_contains or []),
                           "utm": list(widget.popup_utm or []), "days": max(0, widget.popup_period_days)}
    due = callback_due(session, site, now) if widget.callback_enabled or widget.chat_enabled else None
    if widget.callback_enabled and due is not None:
        config["callback"] = {"open": due <= now,
                              "at": None if due <= now else due.isoformat().replace("+00:00", "Z")}
    if widget.chat_enabled and due is not None:
        config["chat"] = {"open": due <= now}
    return config
