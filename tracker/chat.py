"""The website chat's visitor side (docs/widget.md, "Chat"): the widget's endpoints on the tracker,
over the chat core (``astertrack.chat``).

``POST /v/chat/start``    ``{k, sid, text, client_id, lang, page}`` → ``{token, state, messages}``
``POST /v/chat/send``     ``{k, token, text, client_id}`` → ``{message, state}`` (a resend: the stored one)
``POST /v/chat/read``     ``{k, token, seq}``; ``/v/chat/typing`` ``{k, token}``; ``/v/chat/close`` ``{k, token}``
``POST /v/chat/contact``  ``{k, token, phone, name}`` (asked for when nobody answered)
``GET  /v/chat/history``  ``?k=&token=&after=SEQ`` → ``{state, messages}`` (the fallback without EventSource)
``GET  /v/chat/stream``   ``?k=&token=&after=SEQ`` Server-Sent Events: ``message`` events whose id is the
                          message's number (``Last-Event-ID`` resumes after it), then ``state``

The POSTs are actions of ``TrackerApi`` (JSON as text/plain, no preflight; its body cap, per-address
rate limit, site key ``k``, Origin against the site's domains, CORS).  On top of those: the site's
widget must have the chat on; a chat is reached by its token only, and a token of another site's
chat or an unknown one is the same 404 (``no such chat``); new chats per address and messages per
chat have budgets of their own (429 with ``Retry-After``); a closed chat refuses messages with 409
(``closed: true``: the widget starts a new one).  A visitor sees what ``chat.views`` gives a visitor.

The stream is served by the tracker app's one :class:`~astertrack.ops.streams.StreamHub` (the
component the admin's live pages run on), in the event loop under the event worker: the gate is
the Flask view below, which checks the token and hands a ``VisitorSubscription`` (the messages
after the client's last number and the state, as its first bytes) to the hub; the process's one
``VisitorChatFeed`` reads what changed every ``[tracker] chat_poll_seconds`` for all its streams.
Without the event worker (the test client, the development server) the same view answers the
same first bytes as a one-shot stream, and EventSource comes back after ``retry: 1000``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, request
from sqlalchemy import Connection, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from astertrack.chat import conversations as chats
from astertrack.chat.conversations import ChatError
from astertrack.chat.feed import VisitorChatFeed, VisitorSubscription
from astertrack.chat.views import manager_names, message_view, state_view
from astertrack.db.engine import begin_write
from astertrack.db.models import Chat, ChatMessage, Site, SiteWidget, VisitorSession
from astertrack.db.types import utcnow
from astertrack.dni import allocation
from astertrack.dni.sources import SiteRouting
from astertrack.ops.streams import RETRY, SUBSCRIBE, StreamHub, sse
from tracker.guard import BadRequest, RateLimiter, origin_allowed

log = logging.getLogger(__name__)

PREFIX = "/v/chat/"
STREAM_PATH = "/v/chat/stream"
HISTORY_PATH = "/v/chat/history"
MESSAGES_PER_MINUTE = 20  # per chat: a person types a few a minute; a script pasting is stopped
STARTS_PER_WINDOW, START_WINDOW = 5, 600.0  # new chats per client address per 10 minutes
STREAM_SECONDS = 300.0  # a stream's life before EventSource comes back through the gate
KEEPALIVE_SECONDS = 15.0
HISTORY_MAX = 500  # messages per history answer (the client asks again after the last)
HUB = "astertrack_chat_hub"


def _json(body: dict[str, Any], status: int = 200):
    from tracker.api import json_answer  # (api registers these actions)

    return json_answer(body, status)


class ChatEndpoints:
    """The chat's actions and views, with their budgets and the app's stream hub."""

    def __init__(self, app: Flask, api: Any, session_factory: sessionmaker[Session], poll_seconds: float):
        self.api = api
        self.session_factory = session_factory
        self.messages = RateLimiter(MESSAGES_PER_MINUTE)
        self.starts = RateLimiter(STARTS_PER_WINDOW, window=START_WINDOW)
        self.feed = VisitorChatFeed(session_factory, lambda: poll_seconds)
        self.hub = StreamHub(app, [self.feed], max_seconds=lambda: STREAM_SECONDS, keepalive=KEEPALIVE_SECONDS)

    # ------------------------------------------------------------ helpers

    def _chat(self, db: Session, site: SiteRouting, data: dict[str, Any]) -> Chat:
        """The chat of ``token`` on this site, with the chat on; any other case is the same 404."""
        token = data.get("token")
        chat = chats.by_token(db, token if isinstance(token, str) else None)
        if chat is None or chat.site_id != site.id or not _enabled(db, site.id):
            raise BadRequest(404, "no such chat")
        return chat

    def _budget(self, chat: Chat) -> None:
        allowed, retry = self.messages.allow(f"chat:{chat.id}")
        if not allowed:
            raise _TooMany(f"too many messages in this chat (limit {MESSAGES_PER_MINUTE} a minute)", retry)

    def _changed(self) -> None:
        self.hub.wake()  # this process's streams show it now, not at the next tick

    # ------------------------------------------------------------ actions (TrackerApi's guards ran)

    def start(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]):
        from tracker.api import _unit_of_work

        text = _text_field(data)
        lang = data.get("lang") if data.get("lang") in ("ru", "en") else "ru"
        sid = allocation.clean_text(data.get("sid"), 32)
        with _answering() as answer, _unit_of_work(conn) as db:
            begin_write(db)
            if not _enabled(db, site.id):
                raise BadRequest(404, "the chat is off on this site")
            cid = chats.clean_client_id(data.get("client_id"))
            chats.clean_message(text)  # a refused message does not spend the address's budget
            visit = None
            if sid:  # another site's session or an unknown one: a chat without attribution
                visit = db.scalar(select(VisitorSession).where(VisitorSession.public_id == sid,
                                                              VisitorSession.site_id == site.id))
            now = utcnow()
            again = _started_before(db, site.id, visit, cid)
            if again is not None:  # its answer was lost: the same chat, under a fresh token
                token = chats.new_token()
                again.token_hash = chats.token_hash(token)
                chat = again
            else:
                ip = self.api.client(environ)
                allowed, retry = self.starts.allow(f"ip:{ip}")
                if not allowed:
                    raise _TooMany(f"too many new chats from this address (limit {STARTS_PER_WINDOW} "
                                   f"in {int(START_WINDOW // 60)} minutes)", retry)
                page = allocation.clean_text(data.get("page"), 2048)
                record = db.get(Site, site.id)
                chat, token = chats.start(db, record, at=now, visit=visit, language=lang, page_url=page,
                                          ip=self.api._ip(environ, self.api.sites.privacy(site.id)))
                chats.post(db, chat, "visitor", text, at=now, client_id=cid, region=self.api.region)
                db.flush()
                self._budget(chat)  # the first message counts in the chat's budget too
            db.flush()
            answer.update(token=token, **_views(db, chat, after=0))
        self._changed()
        return _json(answer)

    def send(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]):
        from tracker.api import _unit_of_work

        text = _text_field(data)
        with _answering() as answer, _unit_of_work(conn) as db:
            begin_write(db)
            chat = self._chat(db, site, data)
            self._budget(chat)
            posted = chats.post(db, chat, "visitor", text, at=utcnow(), client_id=data.get("client_id"),
                                region=self.api.region)
            db.flush()
            answer.update(message=message_view(posted.message, for_visitor=True),
                          state=_state(db, db.get(Chat, chat.id)))
        self._changed()
        return _json(answer)

    def read(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]):
        return self._change(conn, site, data, lambda db, chat, now: chats.mark_read(
            db, chat, "visitor", data.get("seq"), at=now))

    def typing(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]):
        return self._change(conn, site, data, lambda db, chat, now: chats.typing(db, chat, "visitor", at=now))

    def close(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]):
        return self._change(conn, site, data, lambda db, chat, now: chats.close(db, chat, by="visitor", at=now))

    def contact(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]):
        name = data.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            raise BadRequest(400, "field 'name': at most 200 characters")
        return self._change(conn, site, data, lambda db, chat, now: chats.give_contact(
            db, chat, phone=data.get("phone"), name=name, at=now, region=self.api.region))

    def _change(self, conn: Connection, site: SiteRouting, data: dict[str, Any], change) -> Any:
        from tracker.api import _unit_of_work

        with _answering() as answer, _unit_of_work(conn) as db:
            begin_write(db)
            chat = change(db, self._chat(db, site, data), utcnow())
            db.flush()
            answer.update(state=_state(db, chat))
        self._changed()
        return _json(answer)

    # ------------------------------------------------------------ the GET views (Flask)

    def _get_chat(self, db: Session) -> tuple[Chat, str | None]:
        origin = request.headers.get("Origin")
        site = self.api.sites.get(request.args.get("k", "")[:32])
        if site is None:
            raise BadRequest(404, "unknown site key")
        if origin is not None and not origin_allowed(origin, site.domains):
            raise BadRequest(403, "origin not allowed for this site")
        return self._chat(db, site, {"token": request.args.get("token")}), origin

    def _after(self) -> int:
        raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
        if not raw.isdigit() or len(raw) > 12:
            raise BadRequest(400, "field 'after': a message number")
        return int(raw)

    def _refused(self, exc: BadRequest) -> Response:
        return _cors(Response(_json_bytes({"error": exc.message}), status=exc.status, mimetype="application/json"))

    def _rate_limited(self) -> Response | None:
        """The per-address limit of the GETs (the POSTs pass TrackerApi's own): a 429, or None."""
        allowed, retry = self.api.limiter.allow(self.api.client(request.environ))
        if allowed:
            return None
        response = self._refused(BadRequest(429, "too many requests"))
        response.headers["Retry-After"] = str(retry)
        return response

    def history(self) -> Response:
        limited = self._rate_limited()
        if limited is not None:
            return limited
        try:
            after = self._after()
            with self.session_factory() as db:
                chat, _ = self._get_chat(db)
                body = _views(db, chat, after=after)
        except BadRequest as exc:
            return self._refused(exc)
        except OperationalError:
            log.exception("database unavailable")
            return self._refused(BadRequest(503, "temporarily unavailable"))
        response = _cors(Response(_json_bytes(body), mimetype="application/json"))
        response.headers["Cache-Control"] = "no-store"
        return response

    def stream(self) -> Response:
        """The gate of a visitor's stream: the token holds; the first bytes are the messages after
        the client's last number and the state; the hub sends the rest."""
        limited = self._rate_limited()
        if limited is not None:
            return limited
        try:
            after = self._after()
            with self.session_factory() as db:
                chat, _ = self._get_chat(db)
                rev = chat.rev  # read before the messages: anything newer is sent again by the feed
                found = chats.messages(db, chat.id, after=after, limit=HISTORY_MAX)
                views = [message_view(m, for_visitor=True) for m in found]
                first = "".join(sse("message", m, id=m["seq"]) for m in views) + sse("state", _state(db, chat))
                sub = VisitorSubscription(chat_id=chat.id, seq=max([after, *(m["seq"] for m in views)]), rev=rev,
                                          first=first.encode())
        except BadRequest as exc:
            return self._refused(exc)
        except OperationalError:
            log.exception("database unavailable")
            return self._refused(BadRequest(503, "temporarily unavailable"))
        slot = request.environ.get(SUBSCRIBE)
        if isinstance(slot, list):
            slot.append(sub)
            body = b""
        else:  # no event worker: a one-shot stream of the same bytes
            body = RETRY + sub.first
        response = _cors(Response(body, mimetype="text/event-stream"))
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        return response


class _TooMany(BadRequest):
    def __init__(self, message: str, retry: int):
        super().__init__(429, message)
        self.retry = retry


class _answering:
    """The action's answer body; a core refusal (``ChatError``) becomes a clear 4xx."""

    def __enter__(self) -> dict[str, Any]:
        self.body: dict[str, Any] = {}
        return self.body

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, ChatError):
            if exc.field == "chat" and "closed" in str(exc):
                raise _Closed() from None
            raise BadRequest(400, f"field '{exc.field}': {exc}") from None
        return False


class _Closed(BadRequest):
    def __init__(self):
        super().__init__(409, "the chat is closed")


def _text_field(data: dict[str, Any]) -> Any:
    text = data.get("text")
    if not isinstance(text, str):
        raise BadRequest(400, "field 'text': a message is text")
    return text


def _enabled(db: Session, site_id: int) -> bool:
    return bool(db.scalar(select(SiteWidget.chat_enabled).where(SiteWidget.site_id == site_id)))


def _started_before(db: Session, site_id: int, visit: VisitorSession | None, cid: str | None) -> Chat | None:
    """The open chat this visit started with the same first message id (a start sent again)."""
    if visit is None or cid is None:
        return None
    return db.scalar(select(Chat).join(ChatMessage, ChatMessage.chat_id == Chat.id)
                     .where(Chat.site_id == site_id, Chat.session_id == visit.id, Chat.status != "closed",
                            ChatMessage.author == "visitor", ChatMessage.client_id == cid).limit(1))


def _state(db: Session, chat: Chat) -> dict[str, Any]:
    name = manager_names(db, {chat.manager_id}).get(chat.manager_id) if chat.manager_id else None
    return state_view(chat, name, for_visitor=True)


def _views(db: Session, chat: Chat, *, after: int) -> dict[str, Any]:
    return {"state": _state(db, chat), "messages": [message_view(m, for_visitor=True) for m in
                                                    chats.messages(db, chat.id, after=after, limit=HISTORY_MAX)]}


def _json_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _cors(response: Response) -> Response:
    origin = request.headers.get("Origin")
    if origin:  # (an origin not of the site's domains was refused before)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def register(app: Flask, api: Any, session_factory: sessionmaker[Session], poll_seconds: float) -> ChatEndpoints:
    """The chat's POSTs as the API's actions, its two GETs as Flask views, the stream path on the
    app's one stream hub (``app.asgi_paths``, read by the event worker)."""
    endpoints = ChatEndpoints(app, api, session_factory, poll_seconds)
    for name in ("start", "send", "read", "typing", "contact", "close"):
        path = PREFIX + name
        api.actions[path] = _guarded(getattr(endpoints, name))

        def flask_answer(path: str = path) -> Response:  # what HotPaths does not take
            status, headers, body = api.answer(path, request.environ)
            return Response(body, status=status, headers=headers)

        app.add_url_rule(path, f"chat_{name}", flask_answer, methods=["POST"])
    app.add_url_rule(HISTORY_PATH, "chat_history", endpoints.history, methods=["GET"])
    app.add_url_rule(STREAM_PATH, "chat_stream", endpoints.stream, methods=["GET"])
    app.asgi_paths = {**(getattr(app, "asgi_paths", None) or {}), STREAM_PATH: endpoints.hub}
    app.extensions.setdefault("astertrack_tracker", {})["chat"] = endpoints
    return endpoints


def _guarded(action):
    """A 429 of the chat's own budgets carries its Retry-After (TrackerApi answers other refusals)."""

    def run(conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]):
        try:
            return action(conn, site, data, environ)
        except _TooMany as exc:
            status, headers, body = _json({"error": exc.message}, 429)
            headers.append(("Retry-After", str(exc.retry)))
            return status, headers, body
        except _Closed as exc:
            return _json({"error": exc.message, "closed": True}, 409)

    return run
