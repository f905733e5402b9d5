"""The CLI: progress per call, each site's engine and its error, search by a word."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from astertrack.cli.main import main
from astertrack.db.models import SpeechSettings, Transcript
from astertrack.samples.factories import add_site
from astertrack.speech import synth
from tests.speech.conftest import add_call


def write_conf(tmp_path, db_url, recdir) -> str:
    path = tmp_path / "astertrack.conf"
    path.write_text(f"[database]\nurl = {db_url}\n[recordings]\ndir = {recdir}\n"
                    "[transcription]\nmin_talk_seconds = 1\nworkers = 1\nlanguage = en\n", encoding="utf-8")
    path.chmod(0o600)
    return str(path)


def run(*args):
    return CliRunner().invoke(main, list(args), env={"ASTERTRACK_CONFIG": None})


def test_transcribe_shows_progress_and_search_finds_the_call(tmp_path, db_url, session, recdir, needs_espeak):
    conf = write_conf(tmp_path, db_url, recdir)
    good = add_call(session, recdir, "good.wav", channels=[synth.speak("What is the price of the service")])
    empty = add_call(session, recdir, "empty.wav", b"")
    result = run("-c", conf, "transcribe")
    assert result.exit_code == 0, result.output
    assert f"[1/2] call {good.id}: done (" in result.output
    assert f"[2/2] call {empty.id}: empty: the recording file is empty (0 bytes)" in result.output
    assert "done=1 bad_audio=1" in result.output
    session.rollback()
    heard = session.scalars(select(Transcript).where(Transcript.call_id == good.id)).one().text.split()
    result = run("-c", conf, "speech", "search", max(heard, key=len))  # a word the engine heard
    assert result.exit_code == 0 and result.output.startswith(f"{good.id}\t"), result.output
    assert run("-c", conf, "speech", "search", "refrigerator").output == ""


def test_engines_lists_each_site_and_fails_on_a_missing_model(tmp_path, db_url, session, recdir):
    conf = write_conf(tmp_path, db_url, recdir)
    site = add_site(session, "Shop")
    session.commit()
    result = run("-c", conf, "speech", "engines")
    assert result.exit_code == 0, result.output
    assert f"{site.id}\tShop\tpocketsphinx (bundled model, en)\tready" in result.output
    session.add(SpeechSettings(site_id=site.id, engine="vosk", model_path="/srv/models/vosk-ru", language="ru"))
    session.commit()
    add_call(session, recdir, "a.wav", b"x", site=site)
    result = run("-c", conf, "speech", "engines")
    assert result.exit_code == 1
    assert "Shop\tvosk (/srv/models/vosk-ru, ru)\tspeech engine 'vosk' is not installed: pip install vosk" \
        in result.output
    result = run("-c", conf, "transcribe")
    assert result.exit_code == 1
    assert "error: vosk (/srv/models/vosk-ru, ru): speech engine 'vosk' is not installed" in result.output
