"""The banner on every admin page while Asterisk is not followed (the AMI listener's status).

Without the listener, managers' phones look idle and calls stay "ringing": the banner says so,
since when and on which node.  One read of ``ami_listener_status`` per page at most, shared by
the pages of one process for ``AMI_STATUS_CACHE_SECONDS`` (2 s by default).  The live board
renders the same messages in JavaScript from ``board_labels()``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from flask import Flask, current_app
from flask_babel import format_datetime, format_time, get_locale, get_timezone, to_user_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from astertrack.callflow import listener_status as ls
from webadmin.db import get_session

log = logging.getLogger(__name__)

CACHE_KEY = "astertrack.ami_status"
PROBLEMS = {
    ls.DISCONNECTED: _l("Asterisk connection lost since %(since)s (node %(node)s)"),
    ls.CONNECTED: _l("Not logged in to Asterisk since %(since)s (node %(node)s)"),
    ls.STOPPED: _l("AMI listener stopped, Asterisk not followed since %(since)s (node %(node)s)"),
    ls.STALE: _l("AMI listener not responding, Asterisk not followed since %(since)s (node %(node)s)"),
}
NEVER = _l("No AMI listener has connected to Asterisk yet")
CONSEQUENCE = _l("%(problems)s: call states and managers' phones are not being followed.")


def current_status() -> ls.AmiStatus | None:
    """The fleet's AMI status, cached per process for a couple of seconds (None: cannot be read)."""
    ttl = current_app.config.get("AMI_STATUS_CACHE_SECONDS", 2.0)
    cached = current_app.extensions.get(CACHE_KEY)
    if cached is not None and time.monotonic() - cached[0] < ttl:
        return cached[1]
    session = get_session()
    try:
        status = ls.read(session)
    except SQLAlchemyError:  # the page itself will tell about the database; the banner stays quiet
        session.rollback()
        log.warning("cannot read the AMI listener status", exc_info=True)
        return None
    current_app.extensions[CACHE_KEY] = (time.monotonic(), status)
    return status


def when(value: dt.datetime, now: dt.datetime) -> str:
    """14:02 today, a date and time before today (in the admin's time zone and locale)."""
    if to_user_timezone(value).date() == to_user_timezone(now).date():
        return format_time(value, "short")
    return format_datetime(value, "short")


def banner_text(status: ls.AmiStatus | None) -> str:
    """What the banner says, "" while every node is followed."""
    if status is None or status.followed:
        return ""
    if status.never_ran:
        problems = [str(NEVER)]
    else:
        problems = [str(PROBLEMS[n.problem]) % {"since": when(n.down_since, status.now), "node": n.node}
                    for n in status.down]
    return str(CONSEQUENCE) % {"problems": "; ".join(problems)}


def board_labels() -> dict:
    """The same messages for the live board's JavaScript (with their %(since)s and %(node)s
    placeholders), and the locale and time zone it formats times in."""
    messages = {**{key: str(text) for key, text in PROBLEMS.items()}, "never": str(NEVER),
                "consequence": str(CONSEQUENCE), "unknown": _("unknown"), "not_followed": _("not followed"),
                "paused": _("paused")}
    return {"messages": messages, "locale": str(get_locale()), "timezone": str(get_timezone())}


def call_followed(call) -> bool:
    """For the call log and card: False for a ringing/up call the listener can no longer see."""
    if call.state not in ls.ACTIVE_CALL_STATES:
        return True
    status = current_status()
    return status is None or status.call_followed(call.node, call.state, call.started_at)


def _inject() -> dict:
    if not getattr(current_user, "is_authenticated", False):
        return {}
    return {"ami_banner": banner_text(current_status())}


def init_app(app: Flask) -> None:
    app.context_processor(_inject)
    app.jinja_env.globals["call_followed"] = call_followed
    app.jinja_env.globals["ami_board_labels"] = board_labels
