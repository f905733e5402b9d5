"""Real browser (Debian chromium through Playwright, a real HTTP server): archiving a source asks
for confirmation in the browser, moves it from the active list to the archived one, a restore
brings it back, and the settings history shows the change in English and Russian."""

from __future__ import annotations

import pytest

from tests.webadmin.browser import login

pytestmark = pytest.mark.browser




def _row(page, name: str):
    return page.locator("#settings-list tbody tr", has=page.locator(f"a:text-is('{name}')"))


def test_archive_asks_then_moves_the_source_to_the_archive_and_restore_brings_it_back(page, live, data):
    login(page, live)
    page.goto(f"{live}/settings/sources/")
    row = _row(page, "Yandex Direct")
    assert row.count() == 1

    # dismissed: nothing happens
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    row.locator("button.archive").click()
    page.wait_for_timeout(300)
    assert asked and "Archive “Yandex Direct”?" in asked[0]
    assert _row(page, "Yandex Direct").count() == 1 and "/settings/sources/" in page.url

    # accepted: archived
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    with page.expect_navigation():
        _row(page, "Yandex Direct").locator("button.archive").click()
    assert len(asked) == 2
    assert "Archived" in page.locator(".flash.ok").inner_text()
    assert _row(page, "Yandex Direct").count() == 0
    assert "Show archived (1)" in page.locator("#show-archived").inner_text()

    page.click("#show-archived")
    page.wait_for_load_state()
    archived = _row(page, "Yandex Direct")
    assert archived.count() == 1 and "(archived)" in archived.inner_text()
    with page.expect_navigation():
        archived.locator("button.restore").click()
    assert "Restored" in page.locator(".flash.ok").inner_text()
    page.goto(f"{live}/settings/sources/")
    assert _row(page, "Yandex Direct").count() == 1
    assert page.errors == []


def test_the_settings_history_shows_the_archive_in_english_and_russian(page, live, data):
    login(page, live)
    page.goto(f"{live}/settings/sources/")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        _row(page, "Organic").locator("button.archive").click()
    page.goto(f"{live}/settings/")
    page.click("#audit-link")
    page.wait_for_load_state()
    entry = page.locator("#audit tbody tr[data-action='archive']")
    assert entry.count() == 1
    text = entry.inner_text()
    assert "Sources · Organic" in text and "archived" in text and "Archived at" in text and "admin" in text

    with page.expect_navigation():
        page.click("header .me button[name='locale']")  # switch to Russian
    entry = page.locator("#audit tbody tr[data-action='archive']")
    text = entry.inner_text()
    assert page.locator("h1").inner_text() == "История настроек"
    assert "Источники · Organic" in text and "в архиве" in text and "В архиве с" in text
    assert page.errors == []
