"""The admin's speech pages: the card's automatic tags (a click seeks the player) beside the manual
ones, the call log's tag column, each site's engine with its error, the dictionaries, search, and
the speech tags report with its "needs attention" list."""

from __future__ import annotations

import html

from astertrack.config import Config
from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import SpeechPhrase
from astertrack.speech import worker
from tests.webadmin.conftest import AuthActions

HOSTILE = '<script>alert(1)</script>'


def store_words(app, call_id: int, text: str, phrases: list[SpeechPhrase], db) -> None:
    """Give a call timed words (one a second from 2 s) through the worker's own store, tags included."""
    for p in phrases:
        db.add(p)
    db.commit()
    engine = make_engine(app.config["DATABASE_URL"])
    try:
        words = [{"w": w, "s": 2.0 + i, "e": 2.8 + i, "sp": "caller" if i < 3 else "manager"}
                 for i, w in enumerate(text.split())]
        outcome = worker.Outcome(call_id, "done", words=words, audio_seconds=30.0)
        assert worker.store(make_session_factory(engine), outcome, Config()) == "done"
    finally:
        engine.dispose()


def test_card_and_log_show_automatic_tags_that_seek_beside_manual_ones(app, client, auth, data, db):
    store_words(app, data.answered, "какой ценой диван вы грубиян " + HOSTILE,
                [SpeechPhrase(site_id=data.site, tag="asked for the price", phrase="цена"),
                 SpeechPhrase(site_id=data.site, tag="rude " + HOSTILE, phrase="грубиян", negative=True)], db)
    auth.login()
    page = client.get(f"/calls/{data.answered}?t=3").get_data(as_text=True)
    assert 'data-seek="3.0"' in page  # the player starts at ?t=
    assert '<span class="tag auto">asked for the price</span>' in page
    assert 'data-seek="3.0">' in page and "«цена»" in page
    assert 'class="tag auto negative">rude &lt;script&gt;' in page and HOSTILE not in page
    assert '<span class="tag manual">' in page and ">manual<" in page and ">automatic<" in page
    assert '<span class="seek" data-seek="4.0">диван</span>' in page
    assert "js/speech.js" in page
    log = client.get("/calls/?from=2000-01-01").get_data(as_text=True)
    assert 'title="automatic: «цена»"' in log and f"/calls/{data.answered}?t=3.0#speech" in log
    assert 'class="tag manual"' in log


def test_card_says_why_a_recording_has_no_transcript(app, client, auth, data, db):
    engine = make_engine(app.config["DATABASE_URL"])
    worker.store(make_session_factory(engine), worker.Outcome(data.callback, "silent", "the recording is silent"),
                 Config())
    engine.dispose()
    auth.login()
    page = client.get(f"/calls/{data.callback}").get_data(as_text=True)
    assert 'data-status="silent"' in page and "The recording is silent: nothing to transcribe." in page


def test_engine_page_shows_the_engine_its_model_and_the_error_of_a_missing_one(client, auth, data):
    auth.login()
    page = client.get(f"/speech/{data.site}/").get_data(as_text=True)
    assert 'id="engine-name" translate="no">pocketsphinx<' in page and 'id="engine-ready"' in page
    response = auth.post(f"/speech/{data.site}/engine", {"engine": "vosk", "model_path": "/srv/models/vosk-ru",
                                                         "language": "ru"}, page=f"/speech/{data.site}/",
                         follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Saved, but the engine is not ready" in page
    assert 'id="engine-problem">speech engine &#39;vosk&#39; is not installed: pip install vosk' in page
    assert 'id="engine-model" translate="no">/srv/models/vosk-ru<' in page
    bad = auth.post(f"/speech/{data.site}/engine", {"engine": "google", "language": "ru"}, page=f"/speech/{data.site}/")
    assert bad.status_code == 400


def test_dictionary_phrases_are_added_shown_normalised_and_removed(client, auth, data, db):
    auth.login()
    page = f"/speech/{data.site}/"
    response = auth.post(f"/speech/{data.site}/phrases", {"tag": "price", "phrase": "Ценой  доставки",
                                                          "speaker": "caller"}, page=page, follow_redirects=True)
    text = response.get_data(as_text=True)
    assert "<td>Ценой доставки</td>" in text and "цена доставка" in text
    assert auth.post(f"/speech/{data.site}/phrases", {"tag": "x", "phrase": "!!!", "speaker": "any"},
                     page=page).status_code == 400
    assert auth.post(f"/speech/{data.site}/phrases", {"tag": "x", "phrase": "a", "speaker": "nobody"},
                     page=page).status_code == 400
    phrase = db.query(SpeechPhrase).one()
    assert (phrase.speaker, phrase.negative) == ("caller", False)
    assert auth.post(f"/speech/{data.site}/phrases/{phrase.id}/delete", page=page).status_code == 302
    db.rollback()
    assert db.query(SpeechPhrase).count() == 0


def test_speech_settings_are_for_admins_only(client, auth, data):
    auth.login("super")
    assert client.get(f"/speech/{data.site}/").status_code == 403


def test_search_links_to_the_second_and_keeps_managers_to_their_calls(app, client, auth, data, db):
    store_words(app, data.answered, "скажите цену дивана", [], db)
    auth.login()
    page = client.get("/speech/search?q=цена").get_data(as_text=True)
    assert f"/calls/{data.answered}?t=3.0#speech" in page and "цену" in page
    assert "No transcript says that." in client.get("/speech/search?q=холодильник").get_data(as_text=True)
    assert client.get("/speech/search?q=" + "%22" * 300).status_code == 200
    other = app.test_client()
    AuthActions(other).login("boris")  # the answered call is Anna's
    page = other.get("/speech/search?q=цена").get_data(as_text=True)
    assert f"/calls/{data.answered}?" not in page and "No transcript says that." in page


def test_report_counts_tags_by_source_and_lists_calls_that_need_attention(app, client, auth, data, db):
    store_words(app, data.answered, "какая цена вы грубиян",
                [SpeechPhrase(site_id=None, tag="price", phrase="цена"),
                 SpeechPhrase(site_id=None, tag="rude", phrase="грубиян", negative=True)], db)
    store_words(app, data.callback, "цена", [], db)
    auth.login()
    page = client.get("/reports/speech-tags?from=2000-01-01").get_data(as_text=True)
    assert 'id="bars-chart"' in page
    attention = page[page.index('id="needs-attention"'):]
    assert f"/calls/{data.answered}" in attention and f"/calls/{data.callback}\"" not in attention
    csv = client.get("/reports/speech-tags?from=2000-01-01&format=csv").get_data(as_text=True).splitlines()
    assert csv[0].split(",")[-3:] == ["price", "rude", "total"]
    rows = {line.split(",")[0]: line.split(",")[1:] for line in csv[1:]}
    assert sum(int(r[0]) for r in rows.values()) == 2 and sum(int(r[1]) for r in rows.values()) == 1
    by_manager = client.get("/reports/speech-tags?from=2000-01-01&dimension=manager&format=csv").get_data(as_text=True)
    assert by_manager.lstrip("\ufeff").splitlines() == ["manager,price,rude,total", "Anna,1,1,2", "Boris,1,0,1"]
    assert client.get("/reports/speech-tags?dimension=bogus").status_code == 400
    assert html.escape("rude") in page


def test_speech_pages_speak_russian(client, auth, data, db):
    from astertrack.db.models import User

    db.query(User).filter_by(login="admin").update({"locale": "ru"})
    db.commit()
    auth.login()
    page = client.get(f"/speech/{data.site}/").get_data(as_text=True)
    assert "Речевая аналитика" in page and "Словари" in page and "Добавить фразу" in page
    assert "Поиск по расшифровкам" in client.get("/speech/search?q=x").get_data(as_text=True)
    assert "Требуют внимания" in client.get("/reports/speech-tags").get_data(as_text=True)
