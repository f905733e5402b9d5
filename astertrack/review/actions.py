"""Review writes on a call.  Nothing here deletes history: comments are only added, every score
is a new row, and an undone handled mark keeps who undid it and when.  The caller commits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import Call, CallComment, CallHandled, CallScore, ChecklistItem, Tag
from astertrack.db.types import utcnow
from astertrack.review.scoring import MAX_ITEM_POINTS, score

MISSED_OUTCOMES = ("missed", "busy")  # the calls a "handled" mark is for (reports.MISSED_OUTCOMES)
TAG_MAX = 80
COMMENT_MAX = 4000
ITEM_TEXT_MAX = 300


class ReviewError(ValueError):
    """A review input the core refuses; ``code`` names the reason for the app's message."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def clean_tag(name: str | None) -> str:
    """A tag as stored: trimmed, inner whitespace collapsed, 1..80 characters."""
    cleaned = " ".join((name or "").split())
    if not cleaned:
        raise ReviewError("tag_empty")
    if len(cleaned) > TAG_MAX:
        raise ReviewError("tag_long")
    return cleaned


def add_tag(session: Session, call: Call, name: str) -> Tag:
    name = clean_tag(name)
    tag = session.scalars(select(Tag).where(Tag.name == name)).first()
    if tag is None:
        tag = Tag(name=name)
        session.add(tag)
    if tag not in call.tags:
        call.tags.append(tag)
    return tag


def tag_names(session: Session) -> list[str]:
    return list(session.scalars(select(Tag.name).order_by(Tag.name)))


def remove_tag(session: Session, call: Call, tag_id: int) -> None:
    call.tags[:] = [t for t in call.tags if t.id != tag_id]


def add_comment(session: Session, call: Call, user_id: int | None, text: str | None) -> CallComment:
    text = (text or "").strip()
    if not text:
        raise ReviewError("comment_empty")
    if len(text) > COMMENT_MAX:
        raise ReviewError("comment_long")
    comment = CallComment(call_id=call.id, user_id=user_id, text=text, at=utcnow())
    session.add(comment)
    return comment


def checklist(session: Session, site_id: int | None, include_archived: bool = False) -> list[ChecklistItem]:
    """The items a call of ``site_id`` is scored against: the site's own and the every-site ones."""
    site = ChecklistItem.site_id.is_(None) if site_id is None else (
        (ChecklistItem.site_id == site_id) | ChecklistItem.site_id.is_(None))
    stmt = select(ChecklistItem).where(site)
    if not include_archived:
        stmt = stmt.where(ChecklistItem.archived_at.is_(None))
    return list(session.scalars(stmt.order_by(ChecklistItem.site_id.is_(None).desc(), ChecklistItem.position,
                                              ChecklistItem.id)))


def record_score(session: Session, call: Call, user_id: int | None, ticked_ids: Iterable[int]) -> CallScore:
    items = checklist(session, call.site_id)
    if not items:
        raise ReviewError("no_checklist")
    result = score(items, ticked_ids)
    row = CallScore(call_id=call.id, user_id=user_id, at=utcnow(), ticks=result.ticks, points=result.points,
                    max_points=result.max_points, total=result.total)
    session.add(row)
    return row


def scores(session: Session, call_id: int) -> list[CallScore]:
    """Every score of the call, newest first (the first one is the call's score)."""
    return list(session.scalars(select(CallScore).where(CallScore.call_id == call_id)
                                .order_by(CallScore.at.desc(), CallScore.id.desc())))


def current_mark(session: Session, call_id: int) -> CallHandled | None:
    return session.scalars(select(CallHandled).where(CallHandled.call_id == call_id,
                                                     CallHandled.undone_at.is_(None))).first()


def handled_history(session: Session, call_id: int) -> list[CallHandled]:
    return list(session.scalars(select(CallHandled).where(CallHandled.call_id == call_id)
                                .order_by(CallHandled.handled_at.desc(), CallHandled.id.desc())))


def mark_handled(session: Session, call: Call, user_id: int | None) -> CallHandled:
    """Mark a missed call handled; marking it again keeps the first mark (who dealt with it first)."""
    if call.outcome not in MISSED_OUTCOMES:
        raise ReviewError("not_missed")
    mark = current_mark(session, call.id)
    if mark is None:
        mark = CallHandled(call_id=call.id, handled_by_id=user_id, handled_at=utcnow())
        session.add(mark)
    return mark


def undo_handled(session: Session, call: Call, user_id: int | None) -> CallHandled | None:
    mark = current_mark(session, call.id)
    if mark is not None:
        mark.undone_at, mark.undone_by_id = utcnow(), user_id
    return mark


@dataclass(frozen=True)
class ItemInput:
    text: str
    points: int
    site_id: int | None
    position: int = 0


def clean_item(text: str | None, points: int | None, site_id: int | None, position: int | None = 0) -> ItemInput:
    text = " ".join((text or "").split())
    if not text:
        raise ReviewError("item_empty")
    if len(text) > ITEM_TEXT_MAX:
        raise ReviewError("item_long")
    if points is None or not 1 <= points <= MAX_ITEM_POINTS:
        raise ReviewError("points_range")
    return ItemInput(text=text, points=points, site_id=site_id, position=position or 0)


def save_item(session: Session, item: ChecklistItem | None, data: ItemInput) -> ChecklistItem:
    """Add an item or change one; past scores keep the text and points they were given with."""
    if item is None:
        item = ChecklistItem()
        session.add(item)
    item.text, item.points, item.site_id, item.position = data.text, data.points, data.site_id, data.position
    return item


def archive_item(item: ChecklistItem, archived: bool = True) -> None:
    item.archived_at = utcnow() if archived else None
