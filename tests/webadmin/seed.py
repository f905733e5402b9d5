"""A small, realistic data set for the web admin tests: one site, sources, managers, users, calls."""

from __future__ import annotations

import datetime as dt
import functools
import struct
import wave
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from astertrack.db.models import (
    AdCost,
    Call,
    CallEvent,
    Lead,
    OverflowEvent,
    PoolUsageSample,
    Tag,
    Transcript,
    User,
    VisitorSession,
)
from astertrack.db.types import utcnow
from astertrack.leads.deals import set_state
from astertrack.leads.enquiries import record_enquiry
from astertrack.passwords import hash_password
from astertrack.samples.factories import (
    add_dynamic_source,
    add_managers,
    add_numbers,
    add_pool,
    add_site,
    add_static_source,
)

PASSWORD = "correct-horse-1"
XSS = "<img src=x onerror=alert(1)>"


@functools.cache
def password_hash() -> str:
    """Hashed once per test run: argon2 is deliberately slow and every test seeds four users."""
    return hash_password(PASSWORD)


def write_wav(path: Path, seconds: float = 3.0, rate: int = 8000) -> Path:
    """A real PCM WAV (a 440 Hz-ish square wave) that browsers can play."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = bytearray()
    for i in range(int(seconds * rate)):
        frames += struct.pack("<h", 8000 if (i // 9) % 2 else -8000)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path


def seed(session, recordings_dir: Path | None = None) -> SimpleNamespace:
    now = utcnow()
    site = add_site(session, "Shop", domains=["shop.example"], timezone="Europe/Moscow", target_call_seconds=30,
                    crm_url_template="https://crm.example/search?phone={phone}")
    pool = add_pool(session, site, "Main pool")
    yandex = add_dynamic_source(session, site, "Yandex Direct", pool, channel="cpc",
                                match_rules=[{"field": "utm_source", "op": "equals", "value": "yandex"}])
    organic = add_static_source(session, site, "Organic", channel="organic")
    add_numbers(session, site, [f"+7495100000{i}" for i in range(3)], pool=pool)
    add_numbers(session, site, ["+74952000000"], source=organic)
    anna, = add_managers(session, ["101"], names=["Anna"], extension=None, device_state="NOT_INUSE")
    boris, = add_managers(session, ["102"], names=["Boris"], extension=None, device_state="INUSE")
    users = {
        "admin": User(login="admin", password_hash=password_hash(), role="admin", locale="en"),
        "super": User(login="super", password_hash=password_hash(), role="supervisor", locale="en"),
        "anna": User(login="anna", password_hash=password_hash(), role="manager", manager_id=anna.id,
                     locale="en"),
        "boris": User(login="boris", password_hash=password_hash(), role="manager", manager_id=boris.id,
                      locale="en"),
    }
    session.add_all(users.values())
    visit = VisitorSession(site_id=site.id, source_id=yandex.id, utm_source=XSS, utm_medium="cpc",
                           utm_campaign="winter-sale", keyword="buy sofa", referrer="https://yandex.ru/search",
                           landing_page="https://shop.example/sofas?utm_source=x", first_seen=now - dt.timedelta(hours=3),
                           last_seen=now - dt.timedelta(hours=2))
    session.add(visit)
    session.flush()
    started = now - dt.timedelta(hours=2)
    answered = Call(site_id=site.id, did="+74951000000", caller_number="+79161234567", caller_name="Ivan",
                    started_at=started, answered_at=started + dt.timedelta(seconds=8),
                    ended_at=started + dt.timedelta(seconds=128), state="finished", outcome="answered",
                    wait_seconds=8, talk_seconds=120, total_seconds=128, manager_id=anna.id, routed_manager_id=anna.id,
                    source_id=yandex.id, session_id=visit.id, attribution_kind="dynamic", attribution_confidence=0.95,
                    utm_source=XSS, utm_medium="cpc", utm_campaign="winter-sale", keyword="buy sofa",
                    is_first_call=True, recording_path="2026/01/01/rec-answered.wav", recording_state="kept")
    missed = Call(site_id=site.id, did="+74952000000", caller_number="+79160000001", started_at=now - dt.timedelta(hours=1),
                  ended_at=now - dt.timedelta(hours=1) + dt.timedelta(seconds=20), state="finished", outcome="missed",
                  missed_reason="no_answer", wait_seconds=20, routed_manager_id=boris.id, manager_id=None,
                  source_id=organic.id, is_first_call=True, recording_path="2026/01/01/rec-missed.wav")
    callback = Call(site_id=site.id, did="+74952000000", caller_number="+79160000001",
                    started_at=now - dt.timedelta(minutes=30), answered_at=now - dt.timedelta(minutes=30),
                    state="finished", outcome="answered", wait_seconds=3, talk_seconds=10, manager_id=boris.id,
                    routed_manager_id=boris.id, source_id=organic.id, is_first_call=False)
    session.add_all([answered, missed, callback])
    session.flush()
    tag = Tag(name="hot")
    answered.tags.append(tag)
    session.add(Transcript(call_id=answered.id, text="Hello, I would like a sofa.", language="en"))
    session.add_all([
        CallEvent(call_id=answered.id, linkedid="1700000000.1", name="Newchannel", event_time=started.timestamp(),
                  headers={"Channel": "PJSIP/trunk-00000001", "ChannelStateDesc": "Ring"}),
        CallEvent(call_id=answered.id, linkedid="1700000000.1", name="DialEnd", event_time=started.timestamp() + 8,
                  headers={"DestChannel": "PJSIP/101-00000002", "DialStatus": "ANSWER"}),
    ])
    # The lead as the product makes it: the call's enquiry, then the deal through set_state.
    enquiry = record_enquiry(session, site, "call", at=now, call=answered, source_id=yandex.id, manager_id=anna.id)
    set_state(session, session.get(Lead, enquiry.lead_id), "won", amount=Decimal("50000.00"), currency="RUB")
    session.add(AdCost(source_id=yandex.id, day=now.date(), amount=Decimal("10000.00")))
    session.add(PoolUsageSample(pool_id=pool.id, sampled_at=now - dt.timedelta(minutes=5), live=3, size=3))
    session.add(OverflowEvent(site_id=site.id, pool_id=pool.id, occurred_at=now - dt.timedelta(minutes=4),
                              policy="fallback"))
    session.commit()
    if recordings_dir is not None:
        write_wav(recordings_dir / "2026/01/01/rec-answered.wav")
        write_wav(recordings_dir / "2026/01/01/rec-missed.wav")
    return SimpleNamespace(site=site.id, pool=pool.id, yandex=yandex.id, organic=organic.id, anna=anna.id,
                           boris=boris.id, answered=answered.id, missed=missed.id, callback=callback.id, visit=visit.id,
                           users={k: u.id for k, u in users.items()})
