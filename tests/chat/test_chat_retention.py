"""Website chats and their messages leave after their site's chat retention (365 days without a
widget row; 0 keeps them), counted from the close, or from the last change of an open chat; the
chat's enquiry stays in its lead."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from astertrack.chat import conversations as chats
from astertrack.db.models import Chat, ChatMessage, Enquiry, SiteWidget
from astertrack.ops.retention import Sweeper
from astertrack.samples.factories import add_site

NOW = dt.datetime(2026, 11, 23, 3, 30, tzinfo=dt.UTC)


def _chat(session, site, *, started_days: float, closed_days: float | None = None, messages: int = 3) -> int:
    at = NOW - dt.timedelta(days=started_days)
    chat, _ = chats.start(session, site, at=at)
    for i in range(messages):
        chats.post(session, chat, "visitor", f"<b>{i}</b>", at=at + dt.timedelta(seconds=i))
    if closed_days is not None:
        chats.close(session, chat, by="visitor", at=NOW - dt.timedelta(days=closed_days))
    session.commit()
    return chat.id


def _left(session, site_id) -> set[int]:
    return set(session.scalars(select(Chat.id).where(Chat.site_id == site_id)))


def test_chats_leave_after_their_sites_days_from_the_close(session_factory, tmp_path):
    with session_factory() as session:
        short = add_site(session, "short")
        session.add(SiteWidget(site_id=short.id, chat_retention_days=30))
        default = add_site(session, "default")  # no widget row: a year
        forever = add_site(session, "forever")
        session.add(SiteWidget(site_id=forever.id, chat_retention_days=0))
        session.commit()
        gone = _chat(session, short, started_days=40, closed_days=35)
        closed_late = _chat(session, short, started_days=40, closed_days=10)  # counts from its close
        open_idle = _chat(session, short, started_days=40, messages=2)  # open, last change 40 days ago
        open_recent = _chat(session, short, started_days=1)
        year_old = _chat(session, default, started_days=400, closed_days=366)
        months_old = _chat(session, default, started_days=200, closed_days=200)
        ancient = _chat(session, forever, started_days=3000, closed_days=2999)
        enquiry_ids = set(session.scalars(select(Chat.enquiry_id).where(Chat.id.in_([gone, year_old]))))
        ids = (short.id, default.id, forever.id)

    # each chat: the asked-for-a-phone line (nobody to offer it to), the visitor's messages, the closed line
    dry = Sweeper(session_factory, tmp_path, now=NOW, batch_size=1, dry_run=True).run()
    assert dry.totals["chats_deleted"] == 3 and dry.totals["chat_messages_deleted"] == 5 + 3 + 5
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Chat)) == 7  # a dry run deletes nothing

    report = Sweeper(session_factory, tmp_path, now=NOW, batch_size=1).run()
    by_site = {site.site_id: site for site in report.sites}
    assert (by_site[ids[0]].chats_deleted, by_site[ids[0]].chat_messages_deleted) == (2, 5 + 3)
    assert (by_site[ids[1]].chats_deleted, by_site[ids[1]].chat_messages_deleted) == (1, 5)
    assert by_site[ids[2]].chats_deleted == 0
    assert "2 chats (8 messages)" in by_site[ids[0]].summary()
    with session_factory() as session:
        assert _left(session, ids[0]) == {closed_late, open_recent}
        assert _left(session, ids[1]) == {months_old}
        assert _left(session, ids[2]) == {ancient}
        assert session.scalar(select(func.count()).select_from(ChatMessage).where(
            ChatMessage.chat_id.in_([gone, open_idle, year_old]))) == 0
        # what the chats left in the leads stays
        assert len(session.scalars(select(Enquiry.id).where(Enquiry.id.in_(enquiry_ids))).all()) == 2
    assert Sweeper(session_factory, tmp_path, now=NOW).run().totals["chats_deleted"] == 0
