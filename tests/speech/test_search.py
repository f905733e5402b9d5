"""Search across transcripts (SQLite FTS5, PostgreSQL tsvector): a word the call said finds it, in
another word form too, at the second it was said; a word it did not say does not."""

from __future__ import annotations

from astertrack.db.models import Call
from astertrack.samples.factories import add_site
from astertrack.speech import search, worker
from tests.speech.conftest import fresh


def said(session, session_factory, config, text: str, site=None, start: float = 0.0) -> Call:
    call = Call(outcome="answered", state="finished", site_id=site.id if site else None)
    session.add(call)
    session.commit()
    words = [{"w": w, "s": start + i, "e": start + i + 0.8, "sp": None} for i, w in enumerate(text.split())]
    assert worker.store(session_factory, worker.Outcome(call.id, "done", words=words, audio_seconds=20.0),
                        config) == "done"
    return call


def test_finds_a_call_by_a_word_it_contains_in_another_form_and_not_by_another(session, session_factory, config):
    price = said(session, session_factory, config, "здравствуйте а какой ценой вы продаёте диван", start=3)
    delivery = said(session, session_factory, config, "когда будет доставка заказа to my house")
    english = said(session, session_factory, config, "I want to know the prices of your sofas")
    fresh(session)
    assert [h.call_id for h in search.search(session, "цена")] == [price.id]
    assert [h.call_id for h in search.search(session, "цену")] == [price.id]  # another form of the same word
    hit = search.search(session, "ценой")[0]
    assert hit.at == 3 + 3 and "ценой" in hit.snippet  # the second of the word, for the card's player
    assert [h.call_id for h in search.search(session, "доставки")] == [delivery.id]
    assert [h.call_id for h in search.search(session, "price")] == [english.id]
    assert [h.call_id for h in search.search(session, "sofa")] == [english.id]
    assert search.search(session, "скидка") == []  # a word no call said
    assert search.search(session, "цена доставка") == []  # every word must be in one call
    assert [h.call_id for h in search.search(session, "доставка заказ")] == [delivery.id]


def test_search_is_limited_to_the_users_sites_and_ignores_query_syntax(session, session_factory, config):
    site, other = add_site(session), add_site(session, "Other")
    mine = said(session, session_factory, config, "нужна скидка", site=site)
    said(session, session_factory, config, "нужна скидка", site=other)
    fresh(session)
    assert [h.call_id for h in search.search(session, "скидку", site_ids=[site.id])] == [mine.id]
    assert len(search.search(session, "скидку")) == 2
    for hostile in ['"скидка', "скидка OR *", "NEAR(скидка)", "скидка & !x | 'y", "", "  ", "x" * 5000]:
        search.search(session, hostile)  # no syntax error reaches the database
    assert len(search.search(session, 'скидка"*')) == 2  # the quote and star are dropped, the word stays


def test_parallel_workers_transcribe_every_call(session, session_factory, recdir, config, needs_espeak):
    from astertrack.speech import synth
    from tests.speech.conftest import add_call

    calls = [add_call(session, recdir, f"c{i}.wav", channels=[synth.speak(f"call number {i}")]) for i in range(3)]
    counts = worker.run_batch(session_factory, config, workers=2)
    assert counts["done"] == 3 and counts["pending"] == 3
    fresh(session)
    assert all(session.get(Call, c.id) is not None for c in calls)
