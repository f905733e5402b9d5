"""Dictionary matching on normalised words: word forms meet, a recogniser's slip still matches,
an unrelated phrase does not, and a speaker-bound phrase only matches that speaker."""

from __future__ import annotations

from astertrack.speech.matching import Phrase, find
from astertrack.speech.normalize import close, normalise


def words(text: str, speaker: str | None = None, start: float = 0.0) -> list[dict]:
    return [{"w": w, "s": start + i * 0.5, "e": start + i * 0.5 + 0.4, "sp": speaker} for i, w in enumerate(text.split())]


def test_russian_word_forms_meet_at_the_lemma():
    assert normalise("ценой цену Цена цены") == ["цена"] * 4
    assert normalise("Ждали, ждём, ждать") == ["ждать"] * 3


def test_english_word_forms_meet_at_the_stem():
    assert normalise("prices price pricing") == ["price"] * 3
    assert normalise("Complaints complained") == ["complaint", "complain"]


def test_russian_phrase_matches_another_form_and_reports_time_and_speaker():
    phrases = [Phrase("asked for the price", "цена")]
    found = find(phrases, words("а какой ценой вы продаёте", "caller", 10.0))
    assert [(m.tag, m.speaker, m.at) for m in found] == [("asked for the price", "caller", 10.5 + 0.5)]
    assert find(phrases, words("скажите цену пожалуйста"))[0].phrase == "цена"


def test_multi_word_phrase_in_another_form_with_a_filler_word_between():
    phrases = [Phrase("complaint about waiting", "долго ждать")]
    assert find(phrases, words("я так долго ну ждал ответа"))
    assert not find(phrases, words("ждать долго не пришлось"))  # the other order is another phrase


def test_near_miss_of_the_recogniser_still_matches():
    # "стоимось" (a dropped letter) and "complant" are one edit away from the dictionary's words
    assert find([Phrase("asked for the price", "стоимость")], words("какая стоимось доставки"))
    assert find([Phrase("complaint", "complaint")], words("I have a complant about it"))
    assert close("complant", "complaint") and not close("complicated", "complaint")


def test_unrelated_phrase_does_not_match():
    phrases = [Phrase("asked for the price", "цена"), Phrase("manager was rude", "грубый менеджер"),
               Phrase("complaint", "complaint")]
    assert find(phrases, words("добрый день хочу заказать доставку на завтра")) == []
    assert find(phrases, words("good morning how is the weather today")) == []


def test_short_words_get_no_tolerance_so_they_do_not_match_neighbours():
    assert not find([Phrase("t", "cat")], words("the cut was clean"))


def test_speaker_bound_phrase_matches_only_that_speaker():
    phrases = [Phrase("manager was rude", "отстаньте", speaker="manager")]
    said = words("отстаньте от меня", "caller") + words("до свидания", "manager", 5)
    assert find(phrases, said) == []
    said = words("алло", "caller") + words("отстаньте от меня", "manager", 5)
    assert [m.speaker for m in find(phrases, said)] == ["manager"]
