"""Real browser (Debian Chromium, real HTTP server): the "Asterisk is not followed" banner on a page,
the live board's unknown phones and unfollowed calls, in English and Russian, drawn live by the
board's script as the listener's status changes, and gone once it is healthy."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from astertrack.callflow import listener_status as ls
from astertrack.db.models import AmiListenerStatus, Call, User
from astertrack.db.types import utcnow
from tests.webadmin.browser import login

pytestmark = pytest.mark.browser
BANNER = "#ami-banner"




def set_status(db, state: str, since: dt.datetime) -> None:
    row = db.get(AmiListenerStatus, "pbx1") or AmiListenerStatus(node="pbx1")
    row.state, row.since, row.heartbeat_at = state, since, utcnow()
    db.add(row)
    db.commit()


def ringing(db, data) -> None:
    db.add(Call(site_id=data.site, node="pbx1", caller_number="+79161112233", state="ringing",
                started_at=utcnow() - dt.timedelta(minutes=5), routed_manager_id=data.anna, source_id=data.yandex))
    db.commit()


def board_cells(page) -> dict:
    return page.evaluate("""() => ({
        banner: document.getElementById('ami-banner').hidden ? null : document.getElementById('ami-banner').textContent,
        phones: [...document.querySelectorAll('#live-managers tr')].map(tr => [tr.className, tr.cells[2].textContent]),
        calls: [...document.querySelectorAll('#live-calls tr')].map(tr => tr.cells[0].textContent),
    })""")


def test_banner_and_unknown_board_in_english_then_gone_when_the_listener_is_healthy(page, live, data, db):
    ringing(db, data)
    login(page, live, "admin")
    page.goto(f"{live}/calls/")
    assert page.locator(BANNER).is_visible()
    assert page.locator(BANNER).inner_text() == ("No AMI listener has connected to Asterisk yet: call states and "
                                                 "managers' phones are not being followed.")

    set_status(db, ls.LOGGED_IN, utcnow() - dt.timedelta(hours=1))
    page.goto(f"{live}/live/")
    assert not page.locator(BANNER).is_visible()

    # the connection drops while the board is open: the stream brings the banner and the unknowns
    lost = utcnow() - dt.timedelta(minutes=2)
    set_status(db, ls.DISCONNECTED, lost)
    page.wait_for_function("() => !document.getElementById('ami-banner').hidden", timeout=10000)
    cells = board_cells(page)
    local = lost.astimezone(ZoneInfo("Europe/Moscow"))
    clock = re.fullmatch(r"Asterisk connection lost since (\d{1,2}):(\d\d)[\s\u202f](AM|PM) \(node pbx1\): "
                         r"call states and managers' phones are not being followed\.", cells["banner"])
    assert clock and (int(clock[1]), clock[2], clock[3]) == (local.hour % 12 or 12, f"{local:%M}",
                                                            "PM" if local.hour >= 12 else "AM"), cells["banner"]
    assert cells["phones"] == [["dev-unknown", "unknown"], ["dev-unknown", "unknown"]]
    assert len(cells["calls"]) == 1 and cells["calls"][0].endswith(" not followed")
    assert page.locator("#live-calls .badge").is_visible()

    # back: the banner goes, phones and the call are followed again
    set_status(db, ls.LOGGED_IN, utcnow() - dt.timedelta(minutes=1))
    page.wait_for_function("() => document.getElementById('ami-banner').hidden", timeout=10000)
    cells = board_cells(page)
    assert all(cls != "dev-unknown" and text != "unknown" for cls, text in cells["phones"])
    assert "not followed" not in cells["calls"][0]
    page.goto(f"{live}/settings/")
    assert not page.locator(BANNER).is_visible()
    assert page.errors == []


def test_banner_and_unknown_board_in_russian(page, live, data, db):
    ringing(db, data)
    user = db.query(User).filter_by(login="super").one()
    user.locale = "ru"
    db.commit()
    stopped = utcnow() - dt.timedelta(minutes=3)
    set_status(db, ls.STOPPED, stopped)
    login(page, live, "super")
    page.goto(f"{live}/calls/")
    text = page.locator(BANNER).inner_text()
    local = stopped.astimezone(ZoneInfo("Europe/Moscow"))
    assert text == (f"Слушатель AMI остановлен, Asterisk не отслеживается с {local:%H:%M} (узел pbx1): "
                    "состояния звонков и телефонов менеджеров не отслеживаются.")

    page.goto(f"{live}/live/")
    lost = utcnow() - dt.timedelta(minutes=1)
    set_status(db, ls.DISCONNECTED, lost)  # drawn by the script this time
    page.wait_for_function("() => document.getElementById('ami-banner').textContent.startsWith('Связь с Asterisk')",
                           timeout=10000)
    cells = board_cells(page)
    local = lost.astimezone(ZoneInfo("Europe/Moscow"))
    clock = re.fullmatch(r"Связь с Asterisk потеряна с (\d{1,2}):(\d\d) \(узел pbx1\): "
                         r"состояния звонков и телефонов менеджеров не отслеживаются\.", cells["banner"])
    assert clock and (int(clock[1]), clock[2]) == (local.hour, f"{local:%M}"), cells["banner"]
    assert cells["phones"] == [["dev-unknown", "неизвестно"], ["dev-unknown", "неизвестно"]]
    assert cells["calls"][0].endswith(" не отслеживается")

    set_status(db, ls.LOGGED_IN, utcnow() - dt.timedelta(minutes=1))
    page.wait_for_function("() => document.getElementById('ami-banner').hidden", timeout=10000)
    assert all(text != "неизвестно" for _cls, text in board_cells(page)["phones"])
    assert page.errors == []
