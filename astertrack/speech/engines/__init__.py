"""Speech engines behind one interface, registered by name.

An engine turns mono 16-bit PCM into timed words.  ``pocketsphinx`` is the bundled default (its PyPI
package ships an English model, nothing is downloaded at run time); ``vosk``, ``whispercpp`` and
``faster-whisper`` run a model the admin downloads and names by path.  Their packages are optional:
a missing package or model is an ``EngineUnavailable`` whose message says what to install or where
the model should be, shown by the CLI and on the admin's speech page.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ENGINE = "pocketsphinx"


class EngineUnavailable(RuntimeError):
    """The engine's package or model is missing or broken: the admin's problem, not the call's."""


@dataclass(frozen=True)
class Word:
    """One recognised word, seconds from the start of its channel; ``spotted``: found by keyword spotting."""

    text: str
    start: float
    end: float
    spotted: bool = False


@dataclass
class Engine:
    """Base class: subclasses set ``name``, ``package``, ``needs_model`` and implement ``_load``/``words``."""

    model_path: str = ""
    language: str = "ru"
    name: str = field(default="", init=False)
    package: str = field(default="", init=False)  # the pip name to tell the admin
    module: str = field(default="", init=False)  # the import name
    needs_model: bool = field(default=True, init=False)
    rate: int = field(default=16000, init=False)  # the sample rate the engine wants
    _model: object = field(default=None, init=False, repr=False)

    def check(self) -> None:
        """Raise ``EngineUnavailable`` naming what to install or where the model should be."""
        try:
            importlib.import_module(self.module)
        except ImportError:
            raise EngineUnavailable(f"speech engine {self.name!r} is not installed: "
                                    f"pip install {self.package} (in astertrack's virtualenv)") from None
        if self.needs_model:
            if not self.model_path:
                raise EngineUnavailable(f"speech engine {self.name!r} needs a model: set its path in the "
                                        "site's speech settings or [transcription] model_path")
            if not Path(self.model_path).exists():
                raise EngineUnavailable(f"model not found for {self.name!r}: {self.model_path} "
                                        f"(download one and put it there; docs/speech.md)")

    def load(self) -> None:
        """Load the model once per worker process; a broken model is ``EngineUnavailable``."""
        if self._model is None:
            self.check()
            try:
                self._model = self._load()
            except EngineUnavailable:
                raise
            except Exception as exc:  # each library raises its own type for a corrupt model
                raise EngineUnavailable(f"model for {self.name!r} could not be loaded from "
                                        f"{self.model_path or 'the package'}: {exc}") from None

    def describe(self) -> str:
        return f"{self.name} ({self.model_path or 'bundled model'})"

    def _load(self) -> object:  # pragma: no cover - every engine overrides it
        raise NotImplementedError

    def words(self, pcm: bytes, hints: list[str] | None = None) -> list[Word]:  # pragma: no cover
        raise NotImplementedError


ENGINES: dict[str, type[Engine]] = {}


def register(cls: type[Engine]) -> type[Engine]:
    ENGINES[cls.name_default] = cls  # type: ignore[attr-defined]
    return cls


def make(name: str, model_path: str = "", language: str = "ru") -> Engine:
    """The engine called ``name``; an unknown name is ``EngineUnavailable`` listing the known ones."""
    _load_builtin()
    cls = ENGINES.get(name)
    if cls is None:
        raise EngineUnavailable(f"unknown speech engine {name!r}; known: {', '.join(sorted(ENGINES))}")
    return cls(model_path=model_path, language=language)


def names() -> list[str]:
    _load_builtin()
    return sorted(ENGINES)


def _load_builtin() -> None:
    from astertrack.speech.engines import (  # noqa: F401  (importing registers them)
        faster_whisper,
        pocketsphinx_engine,
        vosk_engine,
        whispercpp,
    )
