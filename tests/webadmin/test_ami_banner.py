"""The banner on every page while Asterisk is not followed, the live board's unknown managers and
unfollowed calls, and the same marks in the call log and card (test client, both backends)."""

from __future__ import annotations

import datetime as dt
from html import unescape
from zoneinfo import ZoneInfo

import pytest
from babel.dates import format_time

from astertrack.callflow import listener_status as ls
from astertrack.db.models import AmiListenerStatus, Call, User
from astertrack.db.types import utcnow
from webadmin.live.state import board_state

PAGES = ["/calls/", "/live/", "/settings/", "/users/"]
TAIL = "call states and managers' phones are not being followed."


@pytest.fixture(autouse=True)
def no_cache(app):
    app.config["AMI_STATUS_CACHE_SECONDS"] = 0


def set_status(db, state: str, since: dt.datetime, heartbeat: dt.datetime | None = None, node: str = "pbx1",
               error: str | None = None) -> None:
    row = db.get(AmiListenerStatus, node) or AmiListenerStatus(node=node)
    row.state, row.since, row.heartbeat_at, row.last_error = state, since, heartbeat or utcnow(), error
    db.add(row)
    db.commit()


def banner(html: str) -> str | None:
    """The banner's text (unescaped), "" if present but hidden, None if absent."""
    start = html.find('id="ami-banner"')
    if start < 0:
        return None
    tag_end = html.index(">", start)
    if " hidden" in html[start:tag_end]:
        return ""
    return unescape(html[tag_end + 1:html.index("</p>", tag_end)])


def moscow_clock(value: dt.datetime, locale: str) -> str:
    return format_time(value.astimezone(ZoneInfo("Europe/Moscow")), "short", locale=locale)


def ringing(db, data, started: dt.datetime, node: str = "pbx1") -> Call:
    call = Call(site_id=data.site, node=node, caller_number="+79161112233", state="ringing", started_at=started,
                routed_manager_id=data.anna, source_id=data.yandex)
    db.add(call)
    db.commit()
    return call


def test_no_listener_ever_shows_the_banner_on_every_page_but_not_to_visitors(client, auth, data):
    page = client.get("/auth/login").get_data(as_text=True)
    assert banner(page) is None  # not logged in: nothing about the installation
    auth.login("admin")
    for path in PAGES:
        text = banner(client.get(path).get_data(as_text=True))
        assert text == f"No AMI listener has connected to Asterisk yet: {TAIL}", path
    other = client.application.test_client()
    from tests.webadmin.conftest import AuthActions
    AuthActions(other).login("anna")  # a manager is told too: the pop-up cannot work meanwhile
    assert "No AMI listener" in banner(other.get("/calls/").get_data(as_text=True))


def test_lost_connection_says_since_when_in_the_site_time_zone_and_the_users_language(client, auth, data, db):
    since = utcnow() - dt.timedelta(minutes=3)
    set_status(db, ls.DISCONNECTED, since, error="Connect call failed ('127.0.0.1', 5038)")
    auth.login("admin")
    text = banner(client.get("/calls/").get_data(as_text=True))
    assert text == (f"Asterisk connection lost since {moscow_clock(since, 'en')} (node pbx1): "
                    "call states and managers' phones are not being followed.")
    db.get(User, db.query(User.id).filter_by(login="admin").scalar()).locale = "ru"
    db.commit()
    text = banner(client.get("/settings/").get_data(as_text=True))
    assert text == (f"Связь с Asterisk потеряна с {moscow_clock(since, 'ru')} (узел pbx1): "
                    "состояния звонков и телефонов менеджеров не отслеживаются.")


def test_an_outage_from_an_earlier_day_gives_the_date(client, auth, data, db):
    since = utcnow() - dt.timedelta(days=2)
    set_status(db, ls.STOPPED, since)
    auth.login("admin")
    text = banner(client.get("/calls/").get_data(as_text=True))
    local = since.astimezone(ZoneInfo("Europe/Moscow"))
    assert text.startswith("AMI listener stopped, Asterisk not followed since ")
    assert local.strftime("%-m/%-d/%y") in text and "(node pbx1)" in text


def test_banner_absent_when_logged_in_and_back_when_the_heartbeat_goes_stale(client, auth, data, db):
    now = utcnow()
    set_status(db, ls.LOGGED_IN, now - dt.timedelta(hours=1), heartbeat=now)
    auth.login("admin")
    for path in PAGES:
        assert banner(client.get(path).get_data(as_text=True)) == "", path  # there, hidden, empty
    last_beat = utcnow() - ls.STALE_AFTER - dt.timedelta(seconds=5)
    set_status(db, ls.LOGGED_IN, now - dt.timedelta(hours=1), heartbeat=last_beat)
    text = banner(client.get("/calls/").get_data(as_text=True))
    assert text.startswith(f"AMI listener not responding, Asterisk not followed since {moscow_clock(last_beat, 'en')}")


def test_one_node_down_among_two_names_only_that_node(client, auth, data, db):
    now = utcnow()
    set_status(db, ls.LOGGED_IN, now - dt.timedelta(hours=1), node="pbx1")
    set_status(db, ls.CONNECTED, now - dt.timedelta(minutes=1), node="pbx2")
    auth.login("admin")
    text = banner(client.get("/calls/").get_data(as_text=True))
    assert text.startswith("Not logged in to Asterisk since ") and "(node pbx2)" in text and "pbx1" not in text


def test_the_banner_escapes_a_hostile_node_name(client, auth, data, db):
    set_status(db, ls.DISCONNECTED, utcnow(), node="<script>x</script>")
    auth.login("admin")
    page = client.get("/calls/").get_data(as_text=True)
    assert "<script>x</script>" not in page and "(node <script>x</script>)" in banner(page)


def test_board_marks_managers_unknown_and_calls_not_followed_while_down(data, db):
    now = utcnow()
    call = ringing(db, data, now - dt.timedelta(minutes=2))
    set_status(db, ls.DISCONNECTED, now - dt.timedelta(minutes=1))
    state = board_state(db)
    assert state["ami"]["followed"] is False and state["ami"]["nodes"][0]["problem"] == "disconnected"
    assert {m["name"]: (m["device_state"], m["state_known"]) for m in state["managers"]} \
        == {"Anna": ("NOT_INUSE", False), "Boris": ("INUSE", False)}
    assert [(c["id"], c["followed"]) for c in state["calls"]] == [(call.id, False)]

    set_status(db, ls.LOGGED_IN, now - dt.timedelta(minutes=1) - ls.RESYNC_SETTLE)
    state = board_state(db)
    assert state["ami"] == {"followed": True, "never_ran": False, "since": None,
                            "nodes": [{"node": "pbx1", "state": "logged_in", "problem": None, "since": None,
                                       "last_error": None}]}
    assert all(m["state_known"] for m in state["managers"])
    assert [(c["id"], c["followed"]) for c in state["calls"]] == [(call.id, True)]


def test_board_page_call_log_and_card_mark_the_unfollowed_call_until_the_listener_is_back(client, auth, data, db):
    now = utcnow()
    call = ringing(db, data, now - dt.timedelta(minutes=5))
    auth.login("super")
    board = client.get("/live/").get_data(as_text=True)
    assert board.count('class="dev-unknown"') == 2 and "NOT_INUSE" not in board.split('id="live-managers"')[1]
    assert '<tr class="not-followed">' in board and "not followed</span>" in board
    log = client.get("/calls/").get_data(as_text=True)
    assert log.count('class="badge not-followed"') == 1  # the ringing call, not the finished ones
    assert 'class="badge not-followed"' in client.get(f"/calls/{call.id}").get_data(as_text=True)
    assert 'class="badge not-followed"' not in client.get(f"/calls/{data.answered}").get_data(as_text=True)

    set_status(db, ls.LOGGED_IN, now - dt.timedelta(minutes=1))  # back; the resync has settled
    board = client.get("/live/").get_data(as_text=True)
    assert "dev-unknown" not in board and "not-followed" not in board
    assert "not-followed" not in client.get("/calls/").get_data(as_text=True)
    assert "not-followed" not in client.get(f"/calls/{call.id}").get_data(as_text=True)


def test_board_in_russian_says_unknown_and_not_followed(client, auth, data, db):
    ringing(db, data, utcnow())
    user = db.query(User).filter_by(login="super").one()
    user.locale = "ru"
    db.commit()
    auth.login("super")
    board = client.get("/live/").get_data(as_text=True)
    assert "неизвестно" in board and "не отслеживается" in board
    assert "Слушатель AMI ещё ни разу не подключался к Asterisk" in banner(board)


def test_the_status_is_read_once_per_cache_period(app, client, auth, data, db, monkeypatch):
    app.config["AMI_STATUS_CACHE_SECONDS"] = 60
    auth.login("admin")
    reads = []
    real = ls.read
    monkeypatch.setattr(ls, "read", lambda session, now=None: reads.append(1) or real(session, now))
    for _ in range(3):
        assert "No AMI listener" in banner(client.get("/calls/").get_data(as_text=True))
    assert len(reads) == 1
    set_status(db, ls.LOGGED_IN, utcnow())
    assert "No AMI listener" in banner(client.get("/calls/").get_data(as_text=True))  # still the cached answer
    app.config["AMI_STATUS_CACHE_SECONDS"] = 0
    assert banner(client.get("/calls/").get_data(as_text=True)) == ""
