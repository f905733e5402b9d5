from __future__ import annotations

import json
import time

from flask import Response, abort, current_app, render_template, stream_with_context, url_for
from flask_login import current_user

from astertrack.db.models import Manager
from webadmin.db import get_session, session_factory
from webadmin.live import bp
from webadmin.live.state import board_state, popup_card, ringing_for
from webadmin.security import ROLES, STAFF, roles_required, session_id, session_is_open

KEEPALIVE_SECONDS = 15
SESSION_CHECK_SECONDS = 5  # a stream ends this soon after its session does (logout, password change)


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _stream(generator) -> Response:
    response = Response(stream_with_context(generator), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


@bp.get("/")
@roles_required(*STAFF)
def board():
    return render_template("live/board.html", state=board_state(get_session()))


@bp.get("/board/stream")
@roles_required(*STAFF)
def board_stream():
    factory = session_factory()
    poll = current_app.config["SSE_POLL_SECONDS"]
    deadline = time.monotonic() + current_app.config["SSE_MAX_SECONDS"]

    sid = session_id()

    def generate():
        yield "retry: 1000\n\n"
        last = None
        last_sent = checked = time.monotonic()
        while time.monotonic() < deadline:
            with factory() as db:
                if time.monotonic() - checked >= SESSION_CHECK_SECONDS:
                    checked = time.monotonic()
                    if not session_is_open(db, sid):
                        return
                state = board_state(db)
            encoded = json.dumps(state, sort_keys=True)
            if encoded != last:
                last = encoded
                last_sent = time.monotonic()
                yield _sse("board", state)
            elif time.monotonic() - last_sent > KEEPALIVE_SECONDS:
                last_sent = time.monotonic()
                yield ": keepalive\n\n"
            time.sleep(poll)

    return _stream(generate())


@bp.get("/popup/stream")
@roles_required(*ROLES)
def popup_stream():
    manager_id = current_user.manager_id
    if manager_id is None:
        abort(404)
    factory = session_factory()
    poll = current_app.config["SSE_POLL_SECONDS"]
    deadline = time.monotonic() + current_app.config["SSE_MAX_SECONDS"]
    card_prefix = url_for("calls.card", call_id=0)[:-1]

    sid = session_id()
    own_calls_only = None if current_user.is_staff else manager_id

    def generate():
        yield "retry: 1000\n\n"
        sent: set[int] = set()
        last_sent = checked = time.monotonic()
        while time.monotonic() < deadline:
            with factory() as db:
                if time.monotonic() - checked >= SESSION_CHECK_SECONDS:
                    checked = time.monotonic()
                    if not session_is_open(db, sid):
                        return
                manager = db.get(Manager, manager_id)
                if manager is None:
                    return
                for call in ringing_for(db, manager):
                    if call.id not in sent:
                        sent.add(call.id)
                        last_sent = time.monotonic()
                        yield _sse("ring", popup_card(db, call, f"{card_prefix}{call.id}",
                                                      only_manager_id=own_calls_only))
            if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
                last_sent = time.monotonic()
                yield ": keepalive\n\n"
            time.sleep(poll)

    return _stream(generate())
