"""Transcription worker on both databases with a real stand-in engine run as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from astertrack.cli.main import main
from astertrack.config import Config
from astertrack.db.models import Call, Transcript
from astertrack.samples.processes import spawn, stop_process
from astertrack.speech.transcription import Failure, build_argv, pending_calls, run_batch, transcribe_one

ENGINE = """\
import os, sys, time
args = sys.argv[1:]
mode = os.environ.get("FAKE_ENGINE_MODE", "ok")
if mode == "fail":
    print("model not loaded", file=sys.stderr)
    sys.exit(3)
if mode == "sleep":
    time.sleep(30)
print("  здравствуйте, это тест |" + "|".join(args) + "|  ")
"""


@pytest.fixture
def engine_script(tmp_path):
    path = tmp_path / "engine.py"
    path.write_text(ENGINE, encoding="utf-8")
    return path


@pytest.fixture
def recdir(tmp_path):
    path = tmp_path / "recordings"
    path.mkdir()
    return path


def make_config(recdir, engine_script, timeout=20, min_talk=3):
    config = Config()
    config.set("recordings", "dir", str(recdir))
    config.set("transcription", "command",
               f"{sys.executable} {engine_script} --lang {{language}} --file={{input}}")
    config.set("transcription", "language", "ru")
    config.set("transcription", "timeout", timeout)
    config.set("transcription", "min_talk_seconds", min_talk)
    return config


def fresh(session):
    """End the test session's read snapshot and forget loaded rows, to see the worker's commits."""
    session.rollback()
    session.expire_all()


def add_call(session, recdir, name="a.wav", *, outcome="answered", state="finished", kept="kept", talk=30.0,
             with_file=True):
    call = Call(outcome=outcome, state=state, recording_state=kept, recording_path=name, talk_seconds=talk)
    session.add(call)
    session.flush()
    if with_file:
        target = recdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"RIFF....WAVE")
    session.commit()
    return call


def test_only_eligible_calls_are_transcribed_with_text_engine_and_language(session, session_factory, recdir,
                                                                           engine_script):
    good = add_call(session, recdir, "2026/11/23/good.wav")
    add_call(session, recdir, "missed.wav", outcome="missed")
    add_call(session, recdir, "live.wav", state="up")
    add_call(session, recdir, "empty.wav", kept="empty")
    add_call(session, recdir, "short.wav", talk=2.0)
    done = add_call(session, recdir, "done.wav")
    session.add(Transcript(call_id=done.id, text="earlier", language="ru", engine="x"))
    session.commit()

    assert [c.id for c in pending_calls(session, 10, 3.0)] == [good.id]
    counts = run_batch(session_factory, make_config(recdir, engine_script))
    assert counts == {"pending": 1, "transcribed": 1, "failed": 0, "skipped": 0}

    fresh(session)
    row = session.scalars(select(Transcript).where(Transcript.call_id == good.id)).one()
    assert row.text == f"здравствуйте, это тест |--lang|ru|--file={recdir / '2026/11/23/good.wav'}|"
    assert row.engine == os.path.basename(sys.executable) and row.language == "ru"
    assert session.scalars(select(Transcript).where(Transcript.call_id == done.id)).one().text == "earlier"
    assert run_batch(session_factory, make_config(recdir, engine_script))["pending"] == 0


def test_hostile_file_name_is_one_literal_argument_and_runs_nothing(session, session_factory, recdir,
                                                                    engine_script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "my call; $(touch pwned) `touch pwned2` & rm -rf x.wav"
    call = add_call(session, recdir, name)
    config = make_config(recdir, engine_script)
    config.set("transcription", "command", f"{sys.executable} {engine_script} {{input}}")

    assert run_batch(session_factory, config)["transcribed"] == 1
    fresh(session)
    text = session.scalars(select(Transcript.text).where(Transcript.call_id == call.id)).one()
    assert text == f"здравствуйте, это тест |{recdir / name}|"  # exactly one argv item, unchanged
    for where in (tmp_path, recdir, engine_script.parent):
        assert not (where / "pwned").exists() and not (where / "pwned2").exists()


def test_failing_engine_records_error_and_call_is_not_retried(session, session_factory, recdir, engine_script,
                                                              monkeypatch):
    call = add_call(session, recdir)
    monkeypatch.setenv("FAKE_ENGINE_MODE", "fail")
    config = make_config(recdir, engine_script)
    assert run_batch(session_factory, config) == {"pending": 1, "transcribed": 0, "failed": 1, "skipped": 0}
    fresh(session)
    assert session.get(Call, call.id).transcription_error == "engine exited with 3: model not loaded"
    assert session.scalars(select(Transcript)).all() == []

    monkeypatch.setenv("FAKE_ENGINE_MODE", "ok")
    assert run_batch(session_factory, config)["pending"] == 0


def test_missing_file_fails_that_call_but_not_the_batch(session, session_factory, recdir, engine_script):
    lost = add_call(session, recdir, "lost.wav", with_file=False)
    fine = add_call(session, recdir, "fine.wav")
    counts = run_batch(session_factory, make_config(recdir, engine_script))
    assert counts["failed"] == 1 and counts["transcribed"] == 1
    fresh(session)
    assert session.get(Call, lost.id).transcription_error == "recording file not found: lost.wav"
    assert session.get(Call, fine.id).transcription_error is None


def test_path_escaping_the_recordings_dir_is_refused(session, recdir, engine_script, tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"x")
    config = make_config(recdir, engine_script)
    ran = []
    for stored in ("../secret.wav", str(secret)):
        call = add_call(session, recdir, stored, with_file=False)
        result = transcribe_one(call, config, run=lambda argv, timeout: ran.append(argv))
        assert result == Failure("recording path is outside the recordings directory")
        assert ran == []


def test_timeout_kills_the_engine_and_records_it(session, session_factory, recdir, engine_script, monkeypatch):
    call = add_call(session, recdir)
    monkeypatch.setenv("FAKE_ENGINE_MODE", "sleep")
    started = time.monotonic()
    counts = run_batch(session_factory, make_config(recdir, engine_script, timeout=1))
    assert time.monotonic() - started < 10
    assert counts["failed"] == 1
    fresh(session)
    assert session.get(Call, call.id).transcription_error == "engine timed out after 1 s"


def test_missing_engine_stops_the_batch_without_marking_calls(session, session_factory, recdir, engine_script):
    first = add_call(session, recdir, "one.wav")
    add_call(session, recdir, "two.wav")
    config = make_config(recdir, engine_script)
    config.set("transcription", "command", "/nonexistent/whisper-cli -f {input}")
    counts = run_batch(session_factory, config)
    assert counts["engine_missing"] == 1 and counts["failed"] == 0 and counts["transcribed"] == 0
    fresh(session)
    assert session.get(Call, first.id).transcription_error is None
    assert len(pending_calls(session, 10)) == 2  # tried again once the admin installs the engine


def test_build_argv_rejects_templates_without_input():
    with pytest.raises(ValueError, match="no {input}"):
        build_argv("vosk-transcriber -l {language}", "/r/a.wav", "ru")
    with pytest.raises(ValueError, match="cannot be parsed"):
        build_argv("engine 'unclosed {input}", "/r/a.wav", "ru")
    assert build_argv("e -m 'my model' {input}", "/r/a b.wav", "en") == ["e", "-m", "my model", "/r/a b.wav"]


def write_conf(tmp_path, db_url, recdir, command):
    path = tmp_path / "astertrack.conf"
    path.write_text(f"[database]\nurl = {db_url}\n[recordings]\ndir = {recdir}\n"
                    f"[transcription]\ncommand = {command}\n", encoding="utf-8")
    return str(path)


def test_cli_without_a_command_runs_the_bundled_engine(tmp_path, db_url, recdir):
    """No ``[transcription] command``: transcription works out of the box (#26) with the bundled engine."""
    conf = write_conf(tmp_path, db_url, recdir, "")
    result = CliRunner().invoke(main, ["-c", conf, "transcribe"], env={"ASTERTRACK_CONFIG": None})
    assert result.exit_code == 0, result.output
    assert "pending=0 " in result.output and "command is not set" not in result.output


def test_cli_runs_a_batch_and_prints_counts(tmp_path, db_url, session, recdir, engine_script):
    add_call(session, recdir, "one.wav")
    add_call(session, recdir, "two.wav")
    conf = write_conf(tmp_path, db_url, recdir, f"{sys.executable} {engine_script} {{input}}")
    result = CliRunner().invoke(main, ["-c", conf, "transcribe", "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert "pending=1 transcribed=1 failed=0 skipped=0" in result.output
    assert len(session.scalars(select(Transcript)).all()) == 1


def test_cli_loop_ends_cleanly_on_sigterm(tmp_path, db_url, recdir, engine_script):
    conf = write_conf(tmp_path, db_url, recdir, f"{sys.executable} {engine_script} {{input}}")
    script = os.path.join(os.path.dirname(sys.executable), "astertrack")
    process = spawn([script, "-c", conf, "transcribe", "--loop", "--interval", "30"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = process.stdout.readline()
        assert first.startswith("pending=0 "), first + process.stderr.read()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        stop_process(process, 10)
