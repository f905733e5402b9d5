"""The chats page, its JSON actions and its stream.

Every action answers JSON: ``{"ok": true, ...}`` or ``{"ok": false, "error": <what>}`` with 400
(bad input), 404 (a chat the user may not see), 409 (refused by the chat's state: taken by
another manager, closed).  After a change the hub's feeds run at once (``StreamHub.wake``)."""

from __future__ import annotations

from flask import Response, abort, current_app, jsonify, render_template, request
from flask.blueprints import BlueprintSetupState
from flask_babel import gettext as _
from flask_login import current_user

from astertrack.chat import conversations
from astertrack.chat.conversations import ChatError
from astertrack.db.engine import begin_write
from astertrack.db.models import Chat, Manager
from astertrack.db.types import utcnow
from astertrack.ops.streams import SUBSCRIBE
from webadmin.chat import bp, data
from webadmin.chat.access import may_answer, may_transfer, visible_chat_or_404
from webadmin.chat.feed import KIND, ChatSubscription, ManagerChatFeed, snapshot
from webadmin.chat.forms import AwayForm, ButtonForm, ReadForm, ReplyForm, TransferForm
from webadmin.db import EXTENSION, get_session
from webadmin.live.streams import add_stream, stream_hub
from webadmin.security import ROLES, roles_required, session_id

# what the page says for the core's refusals (its own messages are for logs and the API)
ERRORS = {
    "text": lambda: _("Write a message of at most 2000 characters."),
    "client_id": lambda: _("The message id is not valid; reload the page."),
    "chat": lambda: _("The chat is closed."),
    "manager": lambda: _("Another manager has this chat."),
}


@bp.record_once
def _serve_stream(state: BlueprintSetupState) -> None:
    """``/chats/stream`` on the app's one stream hub, with its feed (the session check covers it)."""
    app = state.app
    feed = ManagerChatFeed(app.extensions[EXTENSION],
                           lambda: float(app.config["CHAT_POLL_SECONDS"]))
    add_stream(app, f"{state.url_prefix or ''}/stream", feed)


@bp.app_template_global("chats_waiting")
def chats_waiting() -> int:
    """The nav's count: chats nobody has taken that the current user may take."""
    if not current_user.is_authenticated:
        return 0
    return data.waiting_count(get_session(), staff=current_user.is_staff, manager_id=current_user.manager_id)


def status_labels() -> dict[str, str]:
    return {"waiting": _("Waiting"), "active": _("Answered"), "unanswered": _("Asked for a phone"),
            "closed": _("Closed")}


def _ok(**body) -> Response:
    return jsonify(ok=True, **body)


def _refused(status: int, error: str, field: str | None = None) -> Response:
    response = jsonify(ok=False, error=error, field=field)
    response.status_code = status
    return response


def _form_errors(form) -> Response:
    field, errors = next(iter(form.errors.items()))
    if field == "csrf_token":
        return _refused(400, _("The page has expired; reload it."), field)
    return _refused(400, "; ".join(str(e) for e in errors), field)


def _writing(chat_id: int) -> Chat:
    """The chat for a change, read in a write transaction (SQLite: its write lock first; the
    request's earlier reads end here) and checked against the user as for a read."""
    db = get_session()
    db.commit()
    begin_write(db)
    return visible_chat_or_404(chat_id)


def _me() -> Manager | None:
    return get_session().get(Manager, current_user.manager_id) if current_user.manager_id is not None else None


def _done(chat: Chat, **body) -> Response:
    db = get_session()
    db.commit()
    stream_hub(current_app).wake()
    summary = data.summaries(db, [chat.id]).get(chat.id)
    view = data.for_viewer(summary, staff=current_user.is_staff, manager_id=current_user.manager_id,
                           now=utcnow()) if summary else None
    return _ok(chat=view, **body)


def _chat_error(error: ChatError) -> Response:
    get_session().rollback()
    status = 400 if error.field in ("text", "client_id") else 409
    return _refused(status, str(ERRORS.get(error.field, lambda: str(error))()), error.field)


# ---- the page

@bp.get("/")
@roles_required(*ROLES)
def index():
    db = get_session()
    now = utcnow()
    staff, mid = current_user.is_staff, current_user.manager_id
    chats = data.open_chats(db, staff=staff, manager_id=mid, now=now)
    selected = request.args.get("chat", type=int)
    chat = visible_chat_or_404(selected) if selected else None
    pane = None
    if chat is not None:
        summary = data.summaries(db, [chat.id])[chat.id]
        pane = {"chat": chat, "summary": data.for_viewer(summary, staff=staff, manager_id=mid, now=now),
                "lines": data.lines(db, chat),
                "journey": data.chat_journey(db, chat, None if staff else (mid if mid is not None else -1)),
                "may_answer": may_answer(chat) and chat.status != "closed",
                "may_claim": mid is not None and chat.manager_id is None and chat.status != "closed",
                "may_transfer": may_transfer(chat) and chat.status != "closed",
                "may_close": (staff or chat.manager_id in (None, mid)) and chat.status != "closed"}
        form = TransferForm(formdata=None)
        form.manager_id.choices = data.transfer_targets(db, chat)
        pane["transfer"] = form
    me = _me()
    return render_template(
        "chat/index.html", chats=chats, pane=pane, words=data.words(), button=ButtonForm(formdata=None),
        status_labels=status_labels(),
        away=bool(me.chat_away) if me is not None else None, has_manager=mid is not None,
        sections=[("waiting", _("Waiting")), ("mine", _("My chats")),
                  *([("others", _("Other managers' chats"))] if staff else [])])


@bp.get("/<int:chat_id>/messages")
@roles_required(*ROLES)
def messages(chat_id: int):
    """The chat's lines after ``after`` (the script fills a gap the stream left)."""
    chat = visible_chat_or_404(chat_id)
    after = max(0, request.args.get("after", 0, type=int) or 0)
    db = get_session()
    summary = data.summaries(db, [chat.id])[chat.id]
    return _ok(messages=data.lines(db, chat, after=after),
               chat=data.for_viewer(summary, staff=current_user.is_staff, manager_id=current_user.manager_id,
                                    now=utcnow()))


# ---- actions (JSON)

@bp.post("/<int:chat_id>/reply")
@roles_required(*ROLES)
def reply(chat_id: int):
    form = ReplyForm()
    if not form.validate():
        return _form_errors(form)
    chat = _writing(chat_id)
    if not may_answer(chat):
        return _refused(409, ERRORS["manager"]() if current_user.manager_id is not None
                        else _("Only a user with a manager answers chats."), "manager")
    try:
        posted = conversations.post(get_session(), chat, "manager", form.text.data, at=utcnow(),
                                    client_id=form.client_id.data, manager=_me())
    except ChatError as error:
        return _chat_error(error)
    line = data.lines(get_session(), chat, after=posted.message.seq - 1, limit=1)
    return _done(chat, message=line[0] if line else None, created=posted.created)


@bp.post("/<int:chat_id>/claim")
@roles_required(*ROLES)
def claim(chat_id: int):
    form = ButtonForm()
    if not form.validate():
        return _form_errors(form)
    chat = _writing(chat_id)
    me = _me()
    if me is None:
        return _refused(409, _("Only a user with a manager answers chats."), "manager")
    try:
        chat = conversations.claim(get_session(), chat, me, at=utcnow())
    except ChatError as error:
        return _chat_error(error)
    return _done(chat)


@bp.post("/<int:chat_id>/transfer")
@roles_required(*ROLES)
def transfer(chat_id: int):
    chat = _writing(chat_id)
    if not may_transfer(chat):
        return _refused(409, _("Only the chat's manager or a supervisor hands it on."), "manager")
    form = TransferForm()
    form.manager_id.choices = data.transfer_targets(get_session(), chat)
    if not form.validate():
        get_session().rollback()
        return _form_errors(form)
    target = get_session().get(Manager, form.manager_id.data)
    try:
        chat = conversations.transfer(get_session(), chat, target, by=_me(), at=utcnow())
    except ChatError as error:
        return _chat_error(error)
    return _done(chat)


@bp.post("/<int:chat_id>/close")
@roles_required(*ROLES)
def close(chat_id: int):
    form = ButtonForm()
    if not form.validate():
        return _form_errors(form)
    chat = _writing(chat_id)
    if not (current_user.is_staff or chat.manager_id in (None, current_user.manager_id)):
        return _refused(409, ERRORS["manager"](), "manager")
    chat = conversations.close(get_session(), chat, by="manager", at=utcnow(), manager=_me())
    return _done(chat)


@bp.post("/<int:chat_id>/typing")
@roles_required(*ROLES)
def typing(chat_id: int):
    form = ButtonForm()
    if not form.validate():
        return _form_errors(form)
    chat = visible_chat_or_404(chat_id)
    if not may_answer(chat):
        return _refused(409, ERRORS["manager"](), "manager")
    db = get_session()
    db.commit()  # the core takes the write lock only when the mark needs renewing
    chat = conversations.typing(db, db.get(Chat, chat_id), "manager", at=utcnow())
    db.commit()
    return _ok()


@bp.post("/<int:chat_id>/read")
@roles_required(*ROLES)
def read(chat_id: int):
    form = ReadForm()
    if not form.validate():
        return _form_errors(form)
    chat = visible_chat_or_404(chat_id)
    if not may_answer(chat):  # a supervisor looking on does not mark the manager's chat read
        return _ok(read=False)
    db = get_session()
    db.commit()
    conversations.mark_read(db, db.get(Chat, chat_id), "manager", form.seq.data, at=utcnow())
    db.commit()
    stream_hub(current_app).wake()
    return _ok(read=True)


@bp.post("/away")
@roles_required(*ROLES)
def away():
    """The user's own chat status: away means offered no new chat (calls are unaffected)."""
    form = AwayForm()
    if not form.validate():
        return _form_errors(form)
    if current_user.manager_id is None:
        abort(404)
    db = get_session()
    db.commit()
    begin_write(db)
    manager = db.get(Manager, current_user.manager_id)
    manager.chat_away = bool(form.away.data)
    db.commit()
    return _ok(away=manager.chat_away)


# ---- the stream

@bp.get("/stream")
@roles_required(*ROLES)
def stream():
    """The gate of the chats stream: under the event worker the subscription goes to the hub;
    otherwise a one-shot stream of the chats now (EventSource comes back in a second)."""
    sid = session_id()
    if sid is None:
        abort(403)
    sub = ChatSubscription(sid=sid, user_id=current_user.id, role=current_user.role,
                           manager_id=current_user.manager_id, staff=current_user.is_staff)
    assert sub.kind == KIND
    slot = request.environ.get(SUBSCRIBE)
    if isinstance(slot, list):
        slot.append(sub)
        body = ""
    else:
        body = snapshot(get_session(), sub, utcnow())
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response

