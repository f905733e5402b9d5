"""The engine registry: each optional engine missing, its model missing or broken, gives a sentence
naming what to install or where the model should be."""

from __future__ import annotations

import sys
import types

import pytest

from astertrack.speech import engines
from astertrack.speech.engines import EngineUnavailable


def test_registered_engines():
    assert engines.names() == ["faster-whisper", "pocketsphinx", "vosk", "whispercpp"]


@pytest.mark.parametrize(("name", "package"), [("vosk", "vosk"), ("whispercpp", "pywhispercpp"),
                                               ("faster-whisper", "faster-whisper")])
def test_missing_package_names_the_pip_install(name, package, monkeypatch, tmp_path):
    module = engines.make(name).module
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(EngineUnavailable, match=f"pip install {package}"):
        engines.make(name, str(tmp_path)).check()


@pytest.mark.parametrize("name", ["vosk", "whispercpp", "faster-whisper"])
def test_missing_model_names_the_path(name, monkeypatch, tmp_path):
    engine = engines.make(name, str(tmp_path / "models" / "ru"))
    monkeypatch.setitem(sys.modules, engine.module, types.ModuleType(engine.module))
    with pytest.raises(EngineUnavailable, match=f"model not found for '{name}': .*models/ru"):
        engine.check()
    with pytest.raises(EngineUnavailable, match="needs a model"):
        engines.make(name, "").check()


def test_broken_model_is_reported_as_unavailable(monkeypatch, tmp_path):
    fake = types.ModuleType("vosk")
    fake.SetLogLevel = lambda level: None

    def model(path):
        raise Exception("Failed to create a model")

    fake.Model = model
    monkeypatch.setitem(sys.modules, "vosk", fake)
    (tmp_path / "model").mkdir()
    with pytest.raises(EngineUnavailable, match="could not be loaded from .*model: Failed to create a model"):
        engines.make("vosk", str(tmp_path / "model")).load()


def test_unknown_engine_lists_the_known_ones():
    with pytest.raises(EngineUnavailable, match="known: faster-whisper, pocketsphinx, vosk, whispercpp"):
        engines.make("google")


def test_bundled_engine_needs_no_model_and_loads():
    engine = engines.make("pocketsphinx")
    engine.check()
    engine.load()
    assert engine.describe() == "pocketsphinx (bundled model)"
