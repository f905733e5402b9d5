"""Words to comparable forms: lower case, ё→е, Russian lemmas (pymorphy3), English stems (snowball).

The same function normalises transcripts, dictionary phrases and search queries, so "ценой", "цену"
and "цена" meet as "цена", and "prices"/"price" as "price", on every database.
"""

from __future__ import annotations

import re
from functools import lru_cache

WORD = re.compile(r"[0-9a-zа-яё]+(?:['’][a-z]+)?", re.IGNORECASE)
CYRILLIC = re.compile(r"[а-яё]")


def tokens(text: str) -> list[str]:
    """The words of a text, lower case, apostrophes kept inside English words."""
    return [m.group(0).lower().replace("ё", "е").replace("’", "'") for m in WORD.finditer(text or "")]


@lru_cache(maxsize=1)
def _morph():
    import pymorphy3

    return pymorphy3.MorphAnalyzer(lang="ru")


@lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=100_000)
def norm(word: str) -> str:
    """One word's normal form: a Russian lemma, an English stem, digits as they are."""
    word = word.lower().replace("ё", "е")
    if CYRILLIC.search(word):
        return _morph().parse(word)[0].normal_form.replace("ё", "е")
    if word.isdigit():
        return word
    return _stemmer().stemWord(word.replace("'", ""))


def normalise(text: str) -> list[str]:
    return [norm(t) for t in tokens(text)]


def distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, stopping early once past ``limit`` (a recogniser's one-letter slip)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def tolerance(word: str) -> int:
    """Edits allowed for a normalised word: none for short words (too many neighbours), 1 from 4
    letters, 2 from 8."""
    return 0 if len(word) < 4 else 1 if len(word) < 8 else 2


def close(heard: str, wanted: str) -> bool:
    return heard == wanted or distance(heard, wanted, tolerance(wanted)) <= tolerance(wanted)
