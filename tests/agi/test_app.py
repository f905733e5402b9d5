"""AgiApp.handle: the AGI session ends for Asterisk before our own bookkeeping."""

from __future__ import annotations

import asyncio
import threading

from agi import app as app_module
from agi.app import AgiApp
from agi.protocol import AGIChannel
from tests.agi.conftest import make_config


class ClosingWire:
    def __init__(self):
        self.sent = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after the session ended"
        self.sent += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def test_the_session_is_closed_before_the_metrics_and_the_log_line(tmp_path, monkeypatch):
    """The dialplan waits for the AGI to end: metrics and logging must not be part of that wait."""
    app = AgiApp(make_config(tmp_path, f"sqlite:///{tmp_path / 'agi.db'}"), db_workers=1, long_running=False)
    wire = ClosingWire()
    closed_when_logged = []
    real_info = app_module.log.info

    def spy(message, *args, **kw):
        closed_when_logged.append(wire.closed)
        real_info(message, *args, **kw)

    monkeypatch.setattr(app_module.log, "info", spy)

    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(b"agi_network_script: ping\nagi_channel: PJSIP/trunk-1\n\n200 result=1\n")
        reader.feed_eof()
        return await app.handle(AGIChannel(reader, wire), "test")

    try:
        request = asyncio.run(main())
    finally:
        app.close()
    assert request.result == "ok" and b'SET VARIABLE CT_STATUS "OK"' in wire.sent
    assert closed_when_logged == [True]


def test_the_daemon_rereads_the_routing_snapshot_off_the_event_loop(tmp_path, monkeypatch):
    """Calls a few seconds apart (a real PBX) must not each pay for reloading rules and numbers:
    the refresher checks them in a worker thread and re-reads them only after a change, which
    shows up within a TTL or two."""
    from agi import snapshot as snapshot_module
    from astertrack.db.engine import make_engine, make_session_factory
    from astertrack.db.models import Base, Site, Source, TrackingNumber

    url = f"sqlite:///{tmp_path / 'agi.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    app = AgiApp(make_config(tmp_path, url, cache_seconds="0.2"), db_workers=1, long_running=False)
    loads: list[int] = []
    real_load = snapshot_module.load_snapshot
    failures = iter([RuntimeError("database is restarting")])

    def counting_load(session):
        loads.append(threading.get_ident())
        if len(loads) == 2:
            raise next(failures)  # one failed reload: the refresher logs it and goes on
        return real_load(session)

    monkeypatch.setattr(snapshot_module, "load_snapshot", counting_load)

    async def main():
        loop_thread = threading.get_ident()
        refresher = asyncio.create_task(app.keep_snapshot_fresh())
        await asyncio.sleep(0.1)
        assert "+74950000999" not in app.snapshots.get(app.session_factory).directory.numbers
        with make_session_factory(engine)() as session:
            site = Site(name="Lab", timezone="Europe/Moscow")
            session.add(site)
            session.flush()
            source = Source(site_id=site.id, name="billboard")
            session.add(source)
            session.flush()
            session.add(TrackingNumber(number="+74950000999", site_id=site.id, source_id=source.id))
            session.commit()
        seen = False
        for _ in range(40):  # "calls" every 25 ms for a second
            seen = seen or "+74950000999" in app.snapshots.get(app.session_factory).directory.numbers
            await asyncio.sleep(0.025)
        loads_after_change = len(loads)
        await asyncio.sleep(1.0)  # five more checks with nothing changed
        refresher.cancel()
        return loop_thread, seen, loads_after_change

    try:
        loop_thread, seen, loads_after_change = asyncio.run(main())
    finally:
        app.close()
        engine.dispose()
    assert seen  # the new number arrived without a call reloading anything
    # first read, the failed re-read after the change, its retry; none while nothing changed
    assert len(loads) == loads_after_change == 3
    assert loop_thread not in loads  # every read ran in a worker thread
