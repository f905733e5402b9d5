"""Speech fixtures: a recordings folder, a configuration pointing at it, calls with recordings."""

from __future__ import annotations

import os

import pytest

from astertrack.config import Config
from astertrack.db.models import Call
from astertrack.speech import audio, synth


@pytest.fixture
def recdir(tmp_path):
    path = tmp_path / "recordings"
    path.mkdir()
    return path


@pytest.fixture
def config(recdir):
    config = Config()
    config.set("recordings", "dir", str(recdir))
    config.set("transcription", "language", "en")
    config.set("transcription", "workers", 1)
    config.set("transcription", "min_talk_seconds", 1)
    return config


@pytest.fixture
def needs_espeak():
    if not synth.available():
        message = "espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message + ": in CI that is a failure, not a skip")
        pytest.skip(message)


def add_call(session, recdir, name, content: bytes | None = None, *, channels: list[bytes] | None = None,
             site=None, **fields):
    """An answered, finished call whose kept recording is ``content`` (raw bytes) or ``channels`` (PCM)."""
    call = Call(outcome="answered", state="finished", recording_state="kept", recording_path=name,
                talk_seconds=fields.pop("talk_seconds", 30.0), site_id=site.id if site else None, **fields)
    session.add(call)
    session.flush()
    target = recdir / name
    if channels is not None:
        audio.write_wav(target, channels, synth.RATE)
    elif content is not None:
        target.write_bytes(content)
    session.commit()
    return call


def fresh(session):
    """See the worker's commits from the test's session."""
    session.rollback()
    session.expire_all()


# The admin's fixtures (app on each backend, seeded data, a logged-in client) for the speech pages
from tests.webadmin.conftest import app, auth, client, data, db, live, page, recordings_dir  # noqa: E402,F401
