"""Vosk (Kaldi): offline models for Russian and many languages; the admin downloads one and gives its folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from astertrack.speech.engines import Engine, Word, register


@register
@dataclass
class Vosk(Engine):
    name_default = "vosk"
    name: str = field(default="vosk", init=False)
    package: str = field(default="vosk", init=False)
    module: str = field(default="vosk", init=False)

    def _load(self) -> object:
        import vosk

        vosk.SetLogLevel(-1)
        return vosk.Model(self.model_path)

    def words(self, pcm: bytes, hints: list[str] | None = None) -> list[Word]:
        import vosk

        self.load()
        recognizer = vosk.KaldiRecognizer(self._model, self.rate)
        recognizer.SetWords(True)
        out: list[Word] = []
        step = self.rate * 2 * 4  # four seconds at a time
        for offset in range(0, len(pcm), step):
            if recognizer.AcceptWaveform(pcm[offset:offset + step]):
                out += _words(recognizer.Result())
        out += _words(recognizer.FinalResult())
        return out


def _words(result: str) -> list[Word]:
    return [Word(w["word"], float(w["start"]), float(w["end"])) for w in json.loads(result).get("result", [])]
