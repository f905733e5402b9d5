"""The audit log of settings changes: a row's fields as JSON, the fields an update changed, and
the ``AuditLog`` row the admin adds in the same transaction as the change itself.

Everything but ``record`` is a plain function of plain values (unit-tested without a database)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from astertrack.db.config_revision import WATCHED
from astertrack.db.models import AuditLog

ACTIONS = ("create", "update", "archive", "restore", "delete")

# Never copied into the log: secrets, and live state that calls and the AMI listener write all
# day (an admin did not change it).
HIDDEN = frozenset({"id", "password_hash", "public_key", "last_login_at", "created_at", "archived_at"}
                   | set().union(*WATCHED.values()) - {"paused"})


def json_safe(value: Any) -> Any:
    """``value`` as JSON can hold it: times as ISO text, money as text, sequences as lists."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [json_safe(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    return value


def fields_of(obj: Any, extra: Mapping[str, Any] | None = None, hidden: Iterable[str] = HIDDEN) -> dict[str, Any]:
    """A mapped row's columns (minus ``hidden``) plus ``extra`` (e.g. a relationship's ids)."""
    skip = set(hidden)
    values = {column.key: json_safe(getattr(obj, column.key, None))
              for column in obj.__mapper__.column_attrs if column.key not in skip}
    values.update({key: json_safe(value) for key, value in (extra or {}).items()})
    return values


def changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields whose value differs, as (old values, new values); a field only on one side
    counts as None on the other."""
    keys = [k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


def label_of(obj: Any) -> str:
    """What a person calls the row: its name, number or login, else its id."""
    for attribute in ("name", "number", "login"):
        value = getattr(obj, attribute, None)
        if value:
            return str(value)[:200]
    return f"#{getattr(obj, 'id', '?')}"


def entry(action: str, kind: str, entity_id: int | None, label: str | None, before: Mapping[str, Any] | None,
          after: Mapping[str, Any] | None, user_id: int | None = None, user_login: str | None = None,
          at: dt.datetime | None = None) -> AuditLog | None:
    """The log row of one change, or None for an update that changed nothing.  An update keeps
    only the changed fields; create keeps ``after``, delete ``before``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r} (known: {', '.join(ACTIONS)})")
    if action == "update":
        before, after = changed(before or {}, after or {})
        if not after and not before:
            return None
    row = AuditLog(action=action, entity_kind=kind, entity_id=entity_id, entity_label=label,
                   before=dict(before) if before is not None else None,
                   after=dict(after) if after is not None else None,
                   user_id=user_id, user_login=user_login)
    if at is not None:
        row.at = at
    return row


def record(session: Session, action: str, kind: str, obj: Any, before: Mapping[str, Any] | None = None,
           after: Mapping[str, Any] | None = None, user: Any = None) -> AuditLog | None:
    """Add the log row of a change of ``obj`` to ``session`` (committed with the change).
    Call it after a flush on create, so the new row's id is known."""
    row = entry(action, kind, getattr(obj, "id", None), label_of(obj), before, after,
                user_id=getattr(user, "id", None), user_login=getattr(user, "login", None))
    if row is not None:
        session.add(row)
    return row
