"""In Chromium: a click on an automatic tag's time moves the card's player there, a click on a
transcript word too, and a search result's ?t= starts the player at its second."""

from __future__ import annotations

import pytest

from astertrack.db.models import SpeechPhrase
from tests.speech.test_admin import store_words
from tests.webadmin.browser import login

pytestmark = pytest.mark.browser


def player_time(page) -> float:
    return page.evaluate("() => document.getElementById('player').currentTime")


def wait_at(page, second: float, within: float = 0.3) -> None:
    page.wait_for_function(f"() => Math.abs(document.getElementById('player').currentTime - {second}) < {within}",
                           timeout=10000)


def wait_ready(page) -> None:
    page.wait_for_function("() => document.getElementById('player').readyState >= 1", timeout=10000)


def test_tag_and_word_clicks_seek_the_player(page, live, app, data, db):
    # words one a second from 2.0 s: "менеджер" at 2.0, "грубиян" at 3.0 (the seeded recording is 3 s)
    store_words(app, data.answered, "менеджер грубиян", [SpeechPhrase(site_id=data.site, tag="rude",
                                                                     phrase="грубиян", negative=True)], db)
    login(page, live, "admin")
    page.goto(f"{live}/calls/{data.answered}")
    wait_ready(page)
    assert player_time(page) == 0
    page.click("#speech-tags button.seek")  # "грубиян" at 3.0 s: the end of the 3 s file
    page.wait_for_function("() => document.getElementById('player').currentTime >= 2.8", timeout=10000)
    page.evaluate("() => document.getElementById('player').pause()")
    page.click("#transcript span.seek >> text=менеджер")
    wait_at(page, 2.0)
    page.goto(f"{live}/speech/search?q=менеджера")
    page.click("#search-results a >> nth=0")
    assert "t=2.0" in page.url
    wait_ready(page)
    wait_at(page, 2.0)
    assert not page.errors
