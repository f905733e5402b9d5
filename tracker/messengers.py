"""The messenger endpoints of the tracker (``astertrack.leads.messengers``, docs/messengers.md).

``POST /v/mc``          the visit's code (and the site's bot's username), for the journey script to put into the site's WhatsApp and
                        Telegram links (one of ``TrackerApi``'s actions: the same guards and CORS)
``POST /v/tg/<key>``    the site's own Telegram bot's webhook: Telegram's ``Update``, checked by the
                        ``X-Telegram-Bot-Api-Secret-Token`` header (the secret given to setWebhook)
``POST /v/wa/<key>``    the inbound webhook a WhatsApp provider calls, checked by ``X-Astertrack-Secret``

A webhook answers 401 without its secret header, 403 with a wrong one (compared in constant time),
404 for an unknown site or a messenger the site has not switched on, 413 past ``[messengers]
max_body_bytes``, 400 for a body that is not what the contract says; none of these stores anything.
A repeated delivery (the same message id) answers 200 and stores nothing more.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from astertrack.config import Config
from astertrack.db.engine import begin_write
from astertrack.db.models import Site, SiteMessengers, VisitorSession
from astertrack.db.types import utcnow
from astertrack.dni import allocation
from astertrack.dni.sources import SiteRouting
from astertrack.leads import messengers
from tracker.guard import BadRequest, RateLimiter, client_ip, read_json_body

log = logging.getLogger(__name__)
CODE_PATH = "/v/mc"
TEXT_MAX = 4096  # Telegram's own limit of a message's text
WEBHOOKS_PER_MINUTE = 600  # per client address: a provider's burst, not a flood


def visit_code(conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]):
    """``POST /v/mc`` ``{"k": key, "sid": session}`` → ``{"code": "K7M2QX", "bot": ..., "wa": true}``;
    ``{"code": null}`` for a site with neither its bot nor its WhatsApp webhook on: a code nobody
    reads back would only clutter the visitor's message."""
    from tracker.api import _unit_of_work, json_answer  # (api registers this action)

    sid = allocation.clean_text(data.get("sid"), 32)
    if not sid:
        raise BadRequest(400, "missing session id: field 'sid'")
    with _unit_of_work(conn) as db:
        visit = db.scalar(select(VisitorSession).where(VisitorSession.public_id == sid,
                                                       VisitorSession.site_id == site.id))
        if visit is None:
            raise BadRequest(404, "unknown session")
        settings = db.get(SiteMessengers, site.id)
        bot = settings.telegram_bot_username if settings is not None and settings.telegram_enabled else None
        whatsapp = bool(settings is not None and settings.whatsapp_enabled)
        code = messengers.visit_code(db, visit, utcnow()) if bot or whatsapp else None
    # bot: t.me links to it carry ?start=<code>; wa: WhatsApp links carry it in their text
    return json_answer({"code": code, "bot": bot, "wa": whatsapp})


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status


def _str(value: Any, field: str, limit: int, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise BadRequest(400, f"missing field '{field}'")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(400, f"field '{field}' must be a string")
    text = str(value)
    if len(text) > limit:
        raise BadRequest(400, f"field '{field}' is longer than {limit} characters")
    if required and not text.strip():
        raise BadRequest(400, f"field '{field}' is empty")
    return text


def parse_telegram(update: dict[str, Any]) -> dict[str, Any] | None:
    """The parts of a Telegram ``Update`` we keep; None for an update that is not a person's
    message (an edit, a bot, a channel post: answered 200 and ignored)."""
    if not isinstance(update.get("update_id"), int):
        raise BadRequest(400, "not a Telegram update: field 'update_id'")
    message = update.get("message")
    if message is None:
        return None
    if not isinstance(message, dict):
        raise BadRequest(400, "field 'message' must be an object")
    sender = message.get("from")
    chat = message.get("chat")
    if not isinstance(sender, dict) or not isinstance(chat, dict):
        return None  # a channel post has no sender
    if not isinstance(sender.get("id"), int) or not isinstance(message.get("message_id"), int) \
            or not isinstance(chat.get("id"), int):
        raise BadRequest(400, "field 'message' needs integer message_id, from.id and chat.id")
    if sender.get("is_bot") is True:
        return None
    phone = None
    contact = message.get("contact")
    if contact is not None:
        if not isinstance(contact, dict):
            raise BadRequest(400, "field 'message.contact' must be an object")
        if contact.get("user_id") == sender["id"]:  # the person's own number, not a contact card forwarded
            phone = _str(contact.get("phone_number"), "message.contact.phone_number", 32)
    names = [_str(sender.get(k), f"from.{k}", 64) for k in ("first_name", "last_name")]
    return {"chat_key": str(sender["id"]), "message_key": f"{chat['id']}:{message['message_id']}",
            "text": _str(message.get("text") or message.get("caption"), "message.text", TEXT_MAX),
            "username": _str(sender.get("username"), "from.username", 64),
            "name": " ".join(n for n in names if n) or None, "phone": phone}


def parse_whatsapp(body: dict[str, Any]) -> dict[str, Any]:
    """Our documented contract: ``{"id", "from", "text"?, "name"?}`` (docs/messengers.md)."""
    sender = _str(body.get("from"), "from", 32, required=True)
    return {"chat_key": sender.lstrip("+").strip(), "message_key": _str(body.get("id"), "id", 100, required=True),
            "text": _str(body.get("text"), "text", TEXT_MAX), "name": _str(body.get("name"), "name", 200),
            "phone": sender, "username": None}


class Webhooks:
    def __init__(self, session_factory: sessionmaker[Session], config: Config):
        self.session_factory = session_factory
        self.max_body = config.values["messengers"]["max_body_bytes"]
        self.region = config.values["general"]["default_region"]
        self.trust_xff = config.values["tracker"]["trust_forwarded_for"]
        self.limiter = RateLimiter(WEBHOOKS_PER_MINUTE)

    def handle(self, messenger: str, key: str) -> tuple[Response, int]:
        try:
            allowed, retry = self.limiter.allow(client_ip(request.environ, self.trust_xff))
            if not allowed:
                response, status = _error(429, "too many requests")
                response.headers["Retry-After"] = str(retry)
                return response, status
            header = "X-Telegram-Bot-Api-Secret-Token" if messenger == "telegram" else "X-Astertrack-Secret"
            given = request.headers.get(header)
            if not given:
                return _error(401, f"missing header {header}")
            with self.session_factory() as db:
                begin_write(db)
                site = db.scalar(select(Site).where(Site.public_key == key[:32], Site.archived_at.is_(None)))
                settings = db.get(SiteMessengers, site.id) if site is not None else None
                enabled = settings is not None and (settings.telegram_enabled if messenger == "telegram"
                                                    else settings.whatsapp_enabled)
                if not enabled:
                    return _error(404, f"no {messenger} webhook for this site")
                secret = settings.telegram_secret if messenger == "telegram" else settings.whatsapp_secret
                if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
                    return _error(403, "wrong secret")
                length = request.content_length
                body = read_json_body(request.stream, length, self.max_body)
                parsed = parse_telegram(body) if messenger == "telegram" else parse_whatsapp(body)
                if parsed is None:
                    return jsonify(ok=True, ignored=True), 200
                try:
                    got = messengers.receive(db, site, messenger, parsed.pop("chat_key"), at=utcnow(),
                                             region=self.region, **parsed)
                    db.commit()
                except IntegrityError:  # the same message delivered twice at once: stored by the other
                    db.rollback()
                    return jsonify(ok=True, duplicate=True), 200
                return jsonify(ok=True, duplicate=not got.created,
                               lead_id=got.enquiry.lead_id if got.enquiry else None), 200
        except BadRequest as exc:
            return _error(exc.status, exc.message)
        except OperationalError:
            log.exception("database unavailable")
            return _error(503, "temporarily unavailable")


def register(app: Flask, api: Any, session_factory: sessionmaker[Session], config: Config) -> None:
    """The visit code as one of the API's actions (its guards, CORS and preflight), and the two
    webhook routes (Flask: a few requests a minute, not every page view)."""
    api.actions[CODE_PATH] = visit_code
    hooks = Webhooks(session_factory, config)

    @app.post(CODE_PATH)
    def messenger_code():  # what HotPaths does not take (it takes every POST to its actions)
        status, headers, body = api.answer(CODE_PATH, request.environ)
        return Response(body, status=status, headers=headers)

    @app.post("/v/tg/<key>")
    def telegram_webhook(key: str):
        return hooks.handle("telegram", key)

    @app.post("/v/wa/<key>")
    def whatsapp_webhook(key: str):
        return hooks.handle("whatsapp", key)
