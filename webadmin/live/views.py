from __future__ import annotations

from flask import Response, abort, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from flask_login import current_user

from astertrack.ops.streams import SUBSCRIBE
from webadmin.db import get_session
from webadmin.live import bp
from webadmin.live.state import board_state
from webadmin.live.streams import Subscription, add_stream, snapshot
from webadmin.security import ROLES, STAFF, roles_required, session_id


@bp.record_once
def _serve_streams_natively(state: BlueprintSetupState) -> None:
    """The two stream paths go to the app's one stream hub, in the event loop under the event
    worker (``astertrack.ops.serving`` reads ``app.asgi_paths``); see ``webadmin.live.streams``."""
    prefix = state.url_prefix or ""
    for path in ("/board/stream", "/popup/stream"):
        add_stream(state.app, f"{prefix}{path}", None)


@bp.get("/")
@roles_required(*STAFF)
def board():
    return render_template("live/board.html", state=board_state(get_session()))


@bp.get("/board/stream")
@roles_required(*STAFF)
def board_stream():
    return _subscribe("board")


@bp.get("/popup/stream")
@roles_required(*ROLES)
def popup_stream():
    if current_user.manager_id is None:
        abort(404)
    return _subscribe("popup")


def _subscribe(kind: str) -> Response:
    """The gate of a stream: the checks above passed.  Under the event worker, hand the stream's
    subscription to its handler; otherwise answer a one-shot stream of the state now."""
    sid = session_id()
    if sid is None:
        abort(403)
    sub = Subscription(kind=kind, sid=sid, user_id=current_user.id, role=current_user.role,
                       manager_id=current_user.manager_id,
                       only_manager_id=None if current_user.is_staff else current_user.manager_id,
                       card_prefix=url_for("calls.card", call_id=0)[:-1])
    slot = request.environ.get(SUBSCRIBE)
    if isinstance(slot, list):
        slot.append(sub)
        body = ""
    else:
        body = snapshot(get_session(), sub)
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
