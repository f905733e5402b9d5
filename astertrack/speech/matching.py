"""Dictionary phrases found in a transcript's timed words: which tag, which phrase, who said it, when.

A phrase matches where its normalised words follow each other in one speaker's words (gaps of up to
``MAX_GAP`` other words allowed, for "цена, ну, услуги"), each within the small edit tolerance of
``normalize.close``.  Words the engine found by keyword spotting count like heard words.
"""

from __future__ import annotations

from dataclasses import dataclass

from astertrack.speech.normalize import close, norm, normalise

MAX_GAP = 1
ANY = "any"


@dataclass(frozen=True)
class Phrase:
    tag: str
    phrase: str
    speaker: str = ANY  # any|caller|manager
    negative: bool = False


@dataclass(frozen=True)
class Match:
    tag: str
    phrase: str
    speaker: str | None
    at: float
    negative: bool


def find(phrases: list[Phrase], words: list[dict]) -> list[Match]:
    """First match of each (tag, phrase) per speaker; ``words``: dicts with w, s (start), sp (speaker)."""
    by_speaker: dict[str | None, list[tuple[str, float]]] = {}
    for w in words:
        by_speaker.setdefault(w.get("sp"), []).append((norm(w["w"]), float(w.get("s") or 0.0)))
    for seq in by_speaker.values():
        seq.sort(key=lambda item: item[1])
    matches: list[Match] = []
    for phrase in phrases:
        wanted = normalise(phrase.phrase)
        if not wanted:
            continue
        for speaker, seq in by_speaker.items():
            if phrase.speaker != ANY and speaker not in (None, phrase.speaker):
                continue
            at = _find_in(wanted, seq)
            if at is not None:
                matches.append(Match(phrase.tag, phrase.phrase, speaker, at, phrase.negative))
    return sorted(matches, key=lambda m: m.at)


def _find_in(wanted: list[str], seq: list[tuple[str, float]]) -> float | None:
    for start, (word, at) in enumerate(seq):
        if not close(word, wanted[0]):
            continue
        position, ok = start, True
        for target in wanted[1:]:
            for step in range(1, MAX_GAP + 2):
                if position + step < len(seq) and close(seq[position + step][0], target):
                    position += step
                    break
            else:
                ok = False
                break
        if ok:
            return at
    return None
