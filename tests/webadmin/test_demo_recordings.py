"""The demo's answered calls play in the admin's call card (issue #21 §7): the recording the
demo generated is served from the recordings folder the admin reads."""

from __future__ import annotations

from sqlalchemy import select

from astertrack.db.models import Call
from astertrack.samples.demo import DEMO_ADMIN, load_demo


def test_a_demo_call_card_plays_its_recording(client, auth, db, recordings_dir):
    load_demo(db, days=2, calls_per_day=40, recordings_dir=recordings_dir)  # enough calls for a missed one
    assert auth.login(*DEMO_ADMIN).status_code == 302
    answered = db.scalars(select(Call).where(Call.outcome == "answered")).first()
    missed = db.scalars(select(Call).where(Call.outcome != "answered")).first()

    card = client.get(f"/calls/{answered.id}")
    assert card.status_code == 200
    assert f'src="/calls/{answered.id}/recording"'.encode() in card.data
    audio = client.get(f"/calls/{answered.id}/recording")
    assert audio.status_code == 200 and audio.mimetype == "audio/wav"
    assert audio.data[:4] == b"RIFF" and audio.data[8:12] == b"WAVE"
    assert audio.data == (recordings_dir / answered.recording_path).read_bytes()

    assert missed is not None
    assert client.get(f"/calls/{missed.id}/recording").status_code == 404
    assert b'id="recording-none"' in client.get(f"/calls/{missed.id}").data
