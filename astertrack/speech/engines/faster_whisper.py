"""faster-whisper (CTranslate2): a converted Whisper model folder the admin downloads; word timestamps on."""

from __future__ import annotations

import array
from dataclasses import dataclass, field

from astertrack.speech.engines import Engine, Word, register


@register
@dataclass
class FasterWhisper(Engine):
    name_default = "faster-whisper"
    name: str = field(default="faster-whisper", init=False)
    package: str = field(default="faster-whisper", init=False)
    module: str = field(default="faster_whisper", init=False)

    def _load(self) -> object:
        from faster_whisper import WhisperModel

        return WhisperModel(self.model_path, device="cpu", compute_type="int8")

    def words(self, pcm: bytes, hints: list[str] | None = None) -> list[Word]:
        import numpy  # a dependency of faster-whisper itself

        self.load()
        audio = numpy.array(array.array("h", pcm), dtype=numpy.float32) / 32768.0
        segments, _info = self._model.transcribe(audio, language=self.language[:2], word_timestamps=True,
                                                 initial_prompt=", ".join(hints or []) or None)
        return [Word(w.word.strip(), round(w.start, 2), round(w.end, 2))
                for segment in segments for w in (segment.words or []) if w.word.strip()]
