"""The worker with the bundled engine on espeak-ng speech at 8 kHz, and on broken files."""

from __future__ import annotations

import datetime as dt
import struct

from sqlalchemy import select

from astertrack.db.models import Call, CallSpeechTag, SpeechPhrase, SpeechSettings, Transcript
from astertrack.samples.factories import add_site
from astertrack.speech import synth, worker
from tests.speech.conftest import add_call, fresh

PRICE = "Hello. What is the price of the service?"
OTHER = "Good morning, how is the weather today"


def transcript(session, call) -> Transcript:
    return session.scalars(select(Transcript).where(Transcript.call_id == call.id)).one()


def tags(session, call) -> list[tuple[str, str | None]]:
    rows = session.scalars(select(CallSpeechTag).where(CallSpeechTag.call_id == call.id)).all()
    return sorted((t.tag, t.speaker) for t in rows)


def test_bundled_engine_hears_the_key_word_and_tags_the_call(session, session_factory, recdir, config,
                                                             needs_espeak):
    site = add_site(session)
    session.add(SpeechPhrase(site_id=site.id, tag="asked for the price", phrase="price"))
    session.add(SpeechPhrase(site_id=None, tag="weather talk", phrase="weather"))
    priced = add_call(session, recdir, "price.wav", channels=[synth.speak(PRICE)], site=site)
    other = add_call(session, recdir, "other.wav", channels=[synth.speak("Please send me the contract today")],
                     site=site)
    progress = []
    counts = worker.run_batch(session_factory, config, progress=lambda n, total, o: progress.append((n, total)))
    assert counts["done"] == 2 and counts["engine_missing"] == 0
    assert progress == [(1, 2), (2, 2)]
    fresh(session)
    row = transcript(session, priced)
    assert row.status == "done" and row.engine == "pocketsphinx" and row.audio_seconds > 2
    heard = [w["w"] for w in row.words]
    assert "price" in heard
    price = next(w for w in row.words if w["w"] == "price")
    assert 0.5 < price["s"] < price["e"] < row.audio_seconds  # word timings kept
    assert tags(session, priced) == [("asked for the price", None)]
    assert tags(session, other) == []  # neither dictionary phrase was said
    tag = session.scalars(select(CallSpeechTag).where(CallSpeechTag.call_id == priced.id)).one()
    assert abs(tag.at_seconds - price["s"]) < 0.01


def test_two_channel_recording_attributes_the_phrase_to_the_right_speaker(session, session_factory, recdir,
                                                                         config, needs_espeak):
    site = add_site(session)
    session.add(SpeechPhrase(site_id=site.id, tag="asked for the price", phrase="price"))
    session.add(SpeechPhrase(site_id=site.id, tag="weather talk", phrase="weather"))
    caller = synth.speak(PRICE) + synth.silence(3.5)
    manager = synth.silence(3.5) + synth.speak(OTHER)
    call = add_call(session, recdir, "stereo.wav", channels=[caller, manager], site=site)
    swapped = add_call(session, recdir, "swapped.wav", channels=[manager, caller], site=site)
    assert worker.run_batch(session_factory, config)["done"] == 2
    fresh(session)
    assert tags(session, call) == [("asked for the price", "caller"), ("weather talk", "manager")]
    assert tags(session, swapped) == [("asked for the price", "manager"), ("weather talk", "caller")]
    text = transcript(session, call).text
    assert text.startswith("caller: ") and "\nmanager: " in text


def _wav_header(frames: int, channels: int = 1) -> bytes:
    data = frames * 2 * channels
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, 8000,
            16000 * channels, 2 * channels, 16) + b"data" + struct.pack("<I", data))


def test_broken_files_get_a_clear_status_and_the_worker_moves_on(session, session_factory, recdir, config,
                                                                needs_espeak):
    silent = add_call(session, recdir, "silent.wav", channels=[synth.silence(5)])
    empty = add_call(session, recdir, "empty.wav", b"")
    no_frames = add_call(session, recdir, "noframes.wav", _wav_header(0))
    truncated = add_call(session, recdir, "cut.wav", _wav_header(80000) + bytes(4000))
    not_audio = add_call(session, recdir, "page.wav", b"<html><body>404 Not Found</body></html>")
    missing = add_call(session, recdir, "gone.wav")
    good = add_call(session, recdir, "good.wav", channels=[synth.speak(PRICE)])
    counts = worker.run_batch(session_factory, config)
    assert counts["pending"] == 7 and counts["done"] == 1 and counts["bad_audio"] == 6
    fresh(session)
    statuses = {c.recording_path: (transcript(session, c).status, transcript(session, c).detail)
                for c in (silent, empty, no_frames, truncated, not_audio, missing, good)}
    assert statuses["silent.wav"][0] == "silent" and "silent" in statuses["silent.wav"][1]
    assert statuses["empty.wav"] == ("empty", "the recording file is empty (0 bytes)")
    assert statuses["noframes.wav"][0] == "empty"
    assert statuses["cut.wav"][0] == "truncated" and "cut off" in statuses["cut.wav"][1]
    assert statuses["page.wav"][0] == "not_audio"
    assert statuses["gone.wav"][0] == "missing"
    assert statuses["good.wav"][0] == "done"
    assert worker.run_batch(session_factory, config)["pending"] == 0  # a bad file is not tried again


def test_engine_failure_is_retried_with_back_off_then_failed(session, session_factory, recdir, config,
                                                           needs_espeak, monkeypatch):
    call = add_call(session, recdir, "good.wav", channels=[synth.speak(PRICE)])
    config.set("transcription", "max_attempts", 3)
    config.set("transcription", "retry_seconds", 60)

    def broken(self, pcm, hints=None):
        raise RuntimeError("decoder crashed")

    from astertrack.speech.engines.pocketsphinx_engine import PocketSphinx
    monkeypatch.setattr(PocketSphinx, "words", broken)
    delays = []
    for attempt in (1, 2, 3):
        assert worker.run_batch(session_factory, config)["pending"] == 1
        fresh(session)
        row = transcript(session, call)
        assert row.attempts == attempt and "decoder crashed" in row.detail
        if attempt < 3:
            assert row.status == "retry"
            delays.append((row.next_attempt_at - row.created_at).total_seconds())
            assert worker.run_batch(session_factory, config)["pending"] == 0  # not due yet
            row.next_attempt_at = row.next_attempt_at - dt.timedelta(hours=1)
            session.commit()
    assert row.status == "failed" and row.next_attempt_at is None
    assert 55 < delays[0] < 65 and 115 < delays[1] < 185  # 60 s, then 120 s
    assert worker.run_batch(session_factory, config)["pending"] == 0


def test_missing_engine_or_model_marks_no_call_and_names_what_to_install(session, session_factory, recdir,
                                                                        config):
    site = add_site(session)
    other = add_site(session, "Other")
    session.add(SpeechSettings(site_id=site.id, engine="vosk", model_path=str(recdir / "no-model")))
    session.add(SpeechSettings(site_id=other.id, engine="faster-whisper", model_path=""))
    add_call(session, recdir, "a.wav", b"x", site=site)
    add_call(session, recdir, "b.wav", b"x", site=other)
    counts = worker.run_batch(session_factory, config)
    assert counts["engine_missing"] == 2 and counts["done"] == 0
    messages = " | ".join(counts["unavailable"].values())
    assert "pip install vosk" in messages or "model not found" in messages
    assert "faster-whisper" in messages
    fresh(session)
    assert session.scalars(select(Transcript)).all() == []
    assert len(worker.pending(session, 10, 1, dt.datetime.now(dt.UTC))) == 2  # waiting for the admin
    assert session.get(Call, 1) is not None
