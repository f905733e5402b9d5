"""SQL pieces for review data, shared by the call log, the reports and their exports (one
definition of "handled", "tagged" and "the call's score")."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, select

from astertrack.db.models import Call, CallHandled, CallScore, Tag, User, call_tags


def _current_mark():
    return and_(CallHandled.call_id == Call.id, CallHandled.undone_at.is_(None))


def handled_condition(handled: bool) -> Any:
    """Calls with (``True``) or without (``False``) a current handled mark."""
    marked = exists().where(_current_mark())
    return marked if handled else ~marked


def tag_condition(name: str) -> Any:
    """Calls carrying the tag called ``name``."""
    return Call.id.in_(select(call_tags.c.call_id).join(Tag, Tag.id == call_tags.c.tag_id).where(Tag.name == name))


def handled_at_column():
    return select(CallHandled.handled_at).where(_current_mark()).correlate(Call).scalar_subquery()


def handled_by_column():
    return (select(User.login).join(CallHandled, CallHandled.handled_by_id == User.id)
            .where(_current_mark()).correlate(Call).scalar_subquery())


def score_column():
    """The call's newest score (0..1), or NULL when nobody scored it."""
    return (select(CallScore.total).where(CallScore.call_id == Call.id)
            .order_by(CallScore.at.desc(), CallScore.id.desc()).limit(1).correlate(Call).scalar_subquery())


def review_columns() -> list[Any]:
    """(handled_at, handled_by, score) labelled, for a select over calls."""
    return [handled_at_column().label("handled_at"), handled_by_column().label("handled_by"),
            score_column().label("score")]
