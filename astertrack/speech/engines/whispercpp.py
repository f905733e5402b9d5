"""whisper.cpp through pywhispercpp: a ggml model file the admin downloads (ggml-base.bin, ggml-small.bin...)."""

from __future__ import annotations

import array
from dataclasses import dataclass, field

from astertrack.speech.engines import Engine, Word, register


@register
@dataclass
class WhisperCpp(Engine):
    name_default = "whispercpp"
    name: str = field(default="whispercpp", init=False)
    package: str = field(default="pywhispercpp", init=False)
    module: str = field(default="pywhispercpp.model", init=False)

    def _load(self) -> object:
        from pywhispercpp.model import Model

        return Model(self.model_path, print_progress=False, print_realtime=False)

    def words(self, pcm: bytes, hints: list[str] | None = None) -> list[Word]:
        self.load()
        samples = [v / 32768.0 for v in array.array("h", pcm)]
        out: list[Word] = []
        for segment in self._model.transcribe(samples, language=self.language[:2]):
            # whisper.cpp gives segment times in centiseconds; words inside share them evenly
            start, end = segment.t0 / 100.0, segment.t1 / 100.0
            tokens = segment.text.split()
            span = (end - start) / max(1, len(tokens))
            out += [Word(t, round(start + i * span, 2), round(start + (i + 1) * span, 2))
                    for i, t in enumerate(tokens)]
        return out
