"""AgiApp.handle: the AGI session ends for Asterisk before our own bookkeeping."""

from __future__ import annotations

import asyncio

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
