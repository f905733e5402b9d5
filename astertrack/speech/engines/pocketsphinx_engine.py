"""PocketSphinx: the bundled default; its PyPI wheel carries the US English model and dictionary."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field

from astertrack.speech.engines import Engine, Word, register

FRAME = 0.01  # PocketSphinx counts 100 frames a second
# Keyphrase spotting threshold per phone of the phrase: 1e-(5 x phones).  A flat threshold floods short
# words ("rude" everywhere) and misses long ones; tuned on espeak-ng speech at 8 kHz (docs/speech.md).
KWS_EXPONENT_PER_PHONE = 5


@register
@dataclass
class PocketSphinx(Engine):
    """Full decoding with the bundled language model, plus keyword spotting of the site's dictionary
    phrases (``hints``): a general model misses rare words on 8 kHz phone audio that a keyphrase
    search for the few words a dictionary names still finds."""

    name_default = "pocketsphinx"
    name: str = field(default="pocketsphinx", init=False)
    package: str = field(default="pocketsphinx", init=False)
    module: str = field(default="pocketsphinx", init=False)
    needs_model: bool = field(default=False, init=False)
    _lm_search: str = field(default="", init=False, repr=False)

    def _load(self) -> object:
        from pocketsphinx import Decoder

        kwargs = {"loglevel": "FATAL", "cmn": "batch"}
        if self.model_path:  # an admin's own model directory (acoustic model, dict, lm)
            kwargs.update(hmm=os.path.join(self.model_path, "acoustic-model"),
                          dict=os.path.join(self.model_path, "pronounciation-dictionary.dict"),
                          lm=os.path.join(self.model_path, "language-model.lm.bin"))
        decoder = Decoder(**kwargs)
        self._lm_search = decoder.current_search()
        return decoder

    def words(self, pcm: bytes, hints: list[str] | None = None) -> list[Word]:
        self.load()
        decoder = self._model
        decoder.activate_search(self._lm_search)
        found = self._decode(decoder, pcm, spotted=False)
        phrases = self._known_phrases(decoder, hints or [])
        if phrases:
            with tempfile.NamedTemporaryFile("w", suffix=".kws", delete=False, encoding="utf-8") as handle:
                handle.write("".join(f"{p} /1e-{KWS_EXPONENT_PER_PHONE * n}/\n" for p, n in phrases))
            try:
                decoder.add_kws("_hints", handle.name)
                decoder.activate_search("_hints")
                found += self._decode(decoder, pcm, spotted=True)
                decoder.activate_search(self._lm_search)
            finally:
                os.unlink(handle.name)
        return sorted(found, key=lambda w: (w.start, w.spotted))

    @staticmethod
    def _decode(decoder, pcm: bytes, spotted: bool) -> list[Word]:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        if decoder.hyp() is None:
            return []
        out = []
        for seg in decoder.seg():
            word = re.sub(r"\(\d+\)$", "", seg.word.strip())  # "read(2)": an alternative pronunciation
            if not word or word.startswith(("<", "[")):
                continue
            out.append(Word(word, round(seg.start_frame * FRAME, 2), round(seg.end_frame * FRAME, 2), spotted))
        return out

    @staticmethod
    def _known_phrases(decoder, hints: list[str]) -> list[tuple[str, int]]:
        """Hints whose every word the pronunciation dictionary knows (the rest cannot be spotted),
        with their number of phones."""
        out: dict[str, int] = {}
        for hint in hints:
            words = re.findall(r"[a-z']+", hint.lower())
            phones = [decoder.lookup_word(w) for w in words]
            if words and all(phones):
                out[" ".join(words)] = sum(len(p.split()) for p in phones)
        return list(out.items())

