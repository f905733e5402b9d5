"""Storing what the snippet reports: one batch of page views and actions of one session.

The batch rides on the heartbeat (``/v/ping``), the page's unload beacon (``/v/leave``) or a flush
of its own (``/v/j``); all three hand the body's ``ev`` list here.  ``parse_batch`` is pure: it
refuses a malformed batch whole with a status and a message that says what is wrong (nothing of
it stored), and cleans every field (URLs without secrets, text capped).  ``store`` writes it on
the request's connection: the session's event count moves up only while it stays within the
per-session cap (which also finds the session), and the rows go in with it.  On PostgreSQL that is
one statement (the claim as a CTE, each table's rows as arrays through ``unnest``): one round trip
a batch, where two cost a second wake-up of the request's thread and of its backend, and about a
quarter more CPU.  Only a batch that does not fit whole (or names no session) takes the general
path: the claim, then one multi-row insert per table.  Each page load and action carries the snippet's id, so a batch sent twice (a retry, a
beacon after a heartbeat) adds nothing twice; a page view sent again updates its seconds on page.

Event shapes (JSON, short keys: they are sent on every page)::

    {"t": "p", "id": "k3x9", "d": 1500, "u": "https://…", "ti": "Title", "r": "https://ref…", "s": 12}
    {"t": "a", "id": "k3xa", "d": 200, "k": "tel_link", "x": "tel:+7…", "u": "https://…"}

``d`` is how many milliseconds ago it happened (the browser's clock is never trusted for a date).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Integer,
    String,
    Text,
    bindparam,
    case,
    column,
    func,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from astertrack.db.models import PageView, VisitorAction, VisitorSession
from astertrack.journey.cleaning import TITLE_MAX, clean_target, clean_text, clean_url

ACTION_KINDS = ("phone_click", "tel_link", "sms_link", "messenger_link", "email_link", "form_focus", "form_submit")
MAX_BATCH = 50  # events in one request; the snippet flushes at 20
SESSION_CAP = 1000  # events one session may store (a page view re-sent with its seconds counts again)
MAX_AGE_MS = 86_400_000  # an event reported more than a day late is dated a day ago
MAX_SECONDS = 86_400
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,24}$")


class BatchError(Exception):
    """The batch is refused whole: ``status`` (400 malformed, 404 unknown session, 413 too many
    events, 429 the session's cap reached) and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Batch:
    pageviews: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pageviews) + len(self.actions)


@dataclass
class Stored:
    session_id: int | None
    pageviews: int = 0
    actions: int = 0
    refused: int = 0  # over the session's cap


def _int(value: Any, where: str, name: str, default: int | None, maximum: int) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        raise BatchError(400, f"{where}: field '{name}' must be a number")
    return max(0, min(int(value), maximum))


def parse_batch(raw: Any, now: dt.datetime, allowed: frozenset[str] = frozenset()) -> Batch:
    """The body's ``ev`` as clean rows (without session and site), or ``BatchError``."""
    batch = Batch()
    if raw is None:
        return batch
    if not isinstance(raw, list):
        raise BatchError(400, "field 'ev' must be a list of events")
    if len(raw) > MAX_BATCH:
        raise BatchError(413, f"too many events in one request: {len(raw)} (limit {MAX_BATCH})")
    views: dict[str, dict[str, Any]] = {}
    actions: dict[str, dict[str, Any]] = {}
    for index, event in enumerate(raw):
        where = f"event {index}"
        if not isinstance(event, dict):
            raise BatchError(400, f"{where}: expected an object")
        kind = event.get("t")
        key = event.get("id")
        if not isinstance(key, str) or not _KEY.match(key):
            raise BatchError(400, f"{where}: field 'id' must be 1-24 letters, digits, '-' or '_'")
        at = now - dt.timedelta(milliseconds=_int(event.get("d"), where, "d", 0, MAX_AGE_MS) or 0)
        if kind == "p":
            url = clean_url(event.get("u"), allowed)
            if url is None:
                raise BatchError(400, f"{where}: field 'u' must be the page's http(s) address")
            seconds = _int(event.get("s"), where, "s", None, MAX_SECONDS)
            row = {"client_key": key, "at": at, "url": url, "title": clean_text(event.get("ti"), TITLE_MAX),
                   "referrer": clean_url(event.get("r"), allowed), "seconds_on_page": seconds}
            earlier = views.get(key)  # the same page load twice: the first, with the longest time on it
            if earlier is None:
                views[key] = row
            elif (seconds or 0) > (earlier["seconds_on_page"] or 0):
                earlier["seconds_on_page"] = seconds
        elif kind == "a":
            action = event.get("k")
            if action not in ACTION_KINDS:
                raise BatchError(400, f"{where}: field 'k' must be one of {', '.join(ACTION_KINDS)}")
            actions.setdefault(key, {"client_key": key, "at": at, "kind": action,
                                     "target": clean_target(event.get("x")), "url": clean_url(event.get("u"), allowed)})
        else:
            raise BatchError(400, f"{where}: field 't' must be 'p' (a page view) or 'a' (an action)")
    batch.pageviews = list(views.values())
    batch.actions = list(actions.values())
    return batch


_VIEW_COLUMNS = ("client_key", "at", "url", "title", "referrer", "seconds_on_page")  # parse_batch's rows
_ACTION_COLUMNS = ("client_key", "at", "kind", "target", "url")


def _upsert_views(insert):
    """A page load sent again keeps one row, with the longest time on the page."""
    seconds = insert.excluded.seconds_on_page
    return insert.on_conflict_do_update(
        index_elements=[PageView.session_id, PageView.client_key],
        set_={"seconds_on_page": case((seconds > func.coalesce(PageView.seconds_on_page, -1), seconds),
                                      else_=PageView.seconds_on_page)})


def _skip_known_actions(insert):
    return insert.on_conflict_do_nothing(index_elements=[VisitorAction.session_id, VisitorAction.client_key])


@functools.cache
def _statements(dialect: str):
    """The three statements, built once (their compiled form is cached by SQLAlchemy; a statement
    built per request with its rows as literal VALUES cost milliseconds of Python a batch).
    The rows go as executemany parameters: psycopg sends them in one pipeline."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    views = _upsert_views(insert(PageView))
    actions = _skip_known_actions(insert(VisitorAction))
    claim = (update(VisitorSession)
             .where(VisitorSession.public_id == bindparam("sid"), VisitorSession.site_id == bindparam("site"),
                    VisitorSession.journey_events + bindparam("n") <= bindparam("cap"))
             .values(journey_events=VisitorSession.journey_events + bindparam("n"))
             .returning(VisitorSession.id))
    return views, actions, claim


@functools.cache
def _at_once():
    """PostgreSQL: the claim and both inserts as one statement, the rows as one array parameter
    per column (``v_url``, ``a_kind``…), so its shape (and prepared plan) is the same for every
    batch.  Returns the session's id when the whole batch was claimed and written, no row when
    the session is unknown or lacks the room (then nothing was written)."""
    claimed = _statements("postgresql")[2].cte("claim")

    def rows_of(model, prefix: str, names: tuple[str, ...]):
        columns = [(name, model.__table__.c[name].type) for name in names]
        # text arrays: a cast to varchar(n)[] would cut an over-long value where the column refuses it
        arrays = [bindparam(f"{prefix}_{name}", type_=ARRAY(Text() if isinstance(kind, String) else kind))
                  for name, kind in columns]
        rows = func.unnest(*arrays).table_valued(*(column(name, kind) for name, kind in columns))
        rows = rows.render_derived(name=prefix)
        chosen = select(claimed.c.id, bindparam("site", type_=Integer), *(rows.c[name] for name in names))
        return postgresql.insert(model).from_select(["session_id", "site_id", *names],
                                                    chosen.select_from(claimed).join(rows, true()))

    views = _upsert_views(rows_of(PageView, "v", _VIEW_COLUMNS)).cte("views")
    actions = _skip_known_actions(rows_of(VisitorAction, "a", _ACTION_COLUMNS)).cte("actions")
    return select(claimed.c.id).add_cte(views, actions)


def _claim(conn: Connection, site_id: int, sid: str, count: int, cap: int) -> tuple[int | None, int]:
    """(session id, events it may store now): the count moved up in the same statement that
    finds the session, only while it stays within ``cap``."""
    claim = _statements(conn.dialect.name)[2]
    moved = conn.execute(claim, {"sid": sid, "site": site_id, "n": count, "cap": cap}).scalar()
    if moved is not None:
        return moved, count
    row = conn.execute(select(VisitorSession.id, VisitorSession.journey_events)
                       .where(VisitorSession.public_id == sid, VisitorSession.site_id == site_id)).first()
    if row is None:
        return None, 0
    room = max(0, cap - row.journey_events)
    if room == 0:
        return row.id, 0
    return _claim(conn, site_id, sid, room, cap)  # what is left of the cap (a race makes it smaller)


def store(conn: Connection, site_id: int, sid: str, batch: Batch, cap: int | None = None) -> Stored:
    """Write ``batch`` for the session ``sid`` of the site: page views first, then actions, as far
    as the session's cap allows.  ``BatchError(404)`` for a session the site does not have."""
    if not batch:
        return Stored(session_id=None)
    cap = SESSION_CAP if cap is None else cap
    if conn.dialect.name == "postgresql":
        params: dict[str, Any] = {"sid": sid, "site": site_id, "n": len(batch), "cap": cap}
        for prefix, rows, names in (("v", batch.pageviews, _VIEW_COLUMNS), ("a", batch.actions, _ACTION_COLUMNS)):
            params.update({f"{prefix}_{name}": [row[name] for row in rows] for name in names})
        session_id = conn.execute(_at_once(), params).scalar()
        if session_id is not None:
            return Stored(session_id=session_id, pageviews=len(batch.pageviews), actions=len(batch.actions))
        # an unknown session, or one without room for the whole batch: the general path says which
    session_id, room = _claim(conn, site_id, sid, len(batch), cap)
    if session_id is None:
        raise BatchError(404, "unknown session: field 'sid'")
    views = batch.pageviews[:room]
    actions = batch.actions[:max(0, room - len(views))]
    insert_views, insert_actions, _ = _statements(conn.dialect.name)
    if views:
        conn.execute(insert_views, [{**row, "session_id": session_id, "site_id": site_id} for row in views])
    if actions:
        conn.execute(insert_actions, [{**row, "session_id": session_id, "site_id": site_id} for row in actions])
    return Stored(session_id=session_id, pageviews=len(views), actions=len(actions),
                  refused=len(batch) - len(views) - len(actions))
