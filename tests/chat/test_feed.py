"""The chat feed on both databases: one read finds what changed; each listener of a chat is sent
every message once, in order, whatever the ticks and the listeners' starting points."""

from __future__ import annotations

import datetime as dt

import pytest

from astertrack.chat import conversations as chats
from astertrack.chat.feed import MARGIN, VisitorChatFeed, VisitorSubscription, read_changes
from astertrack.db.models import SiteWidget
from astertrack.ops.streams import Listener
from astertrack.samples.factories import add_group, add_managers, add_rule, add_site

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def shop(session):
    site = add_site(session, timezone="UTC")
    [anna] = add_managers(session, ["101"])
    add_rule(session, "all", add_group(session, "sales", [anna]), site=site)
    session.add(SiteWidget(site_id=site.id, chat_enabled=True))
    session.commit()
    return site, anna


def _frames(listener: Listener) -> list[tuple[str, str | None]]:
    """(event, id) of each frame queued for the listener."""
    out = []
    for frame in listener.take().decode().split("\n\n"):
        if not frame.strip():
            continue
        fields = dict(line.split(": ", 1) for line in frame.split("\n"))
        out.append((fields["event"], fields.get("id")))
    return out


def _tick(feed, listeners):
    plan = feed.plan(listeners, 0.0)
    if plan is not None:
        feed.deliver(plan, feed.read(plan), listeners, 0.0)


def test_each_listener_gets_every_message_once_in_order(session, session_factory, shop):
    site, anna = shop
    chat, _ = chats.start(session, site, at=T0)
    chats.post(session, chat, "visitor", "one", at=T0, client_id="1")
    session.commit()
    clock = Clock()
    feed = VisitorChatFeed(session_factory, lambda: 0.1, clock=clock)
    fresh = Listener(VisitorSubscription(chat_id=chat.id, seq=1, rev=chat.rev), 0)  # has message 1
    behind = Listener(VisitorSubscription(chat_id=chat.id, seq=0, rev=0), 0)  # reconnecting from nothing
    _tick(feed, [fresh, behind])
    assert _frames(fresh) == [] and _frames(behind) == [("message", "1"), ("state", None)]

    clock.now = T0 + dt.timedelta(seconds=1)
    chats.post(session, chat, "manager", "two", at=clock.now, manager=anna)
    session.commit()
    _tick(feed, [fresh, behind])
    expected = [("message", "2"), ("message", "3"), ("state", None)]  # the claim line, then the reply
    assert _frames(fresh) == expected and _frames(behind) == expected
    _tick(feed, [fresh, behind])  # nothing new: nothing sent, though the window still covers the change
    assert _frames(fresh) == [] and _frames(behind) == []

    chats.typing(session, chat, "manager", at=clock.now)
    session.commit()
    _tick(feed, [fresh])
    assert _frames(fresh) == [("state", None)]


def test_the_window_reaches_back_for_late_commits_and_other_chats_stay_out(session, session_factory, shop):
    site, _ = shop
    mine, _ = chats.start(session, site, at=T0)
    other, _ = chats.start(session, site, at=T0)
    session.commit()
    clock = Clock()
    feed = VisitorChatFeed(session_factory, lambda: 0.1, clock=clock)
    lis = Listener(VisitorSubscription(chat_id=mine.id, seq=0, rev=mine.rev), 0)
    clock.now = T0 + dt.timedelta(seconds=10)
    _tick(feed, [lis])  # the last read started at T0 + 10 s
    clock.now = T0 + dt.timedelta(seconds=11)
    # stamped before the last read but committed after it: within MARGIN, still found
    chats.post(session, mine, "visitor", "late", at=T0 + dt.timedelta(seconds=10) - MARGIN / 2, client_id="a")
    chats.post(session, other, "visitor", "not yours", at=clock.now, client_id="b")
    session.commit()
    _tick(feed, [lis])
    assert _frames(lis) == [("message", "1"), ("state", None)]
    changes = read_changes(session, T0, None)
    assert set(changes) == {mine.id, other.id}
    assert [m["text"] for m in changes[other.id].visitor_messages] == ["not yours"]
