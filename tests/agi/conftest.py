"""AGI fixtures: the real FastAGI server on a loopback port, a fake Asterisk, seed helpers."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agi.app import AgiApp
from agi.server import AgiServer
from astertrack.config import load_config
from astertrack.db.models import (
    Manager,
    ManagerGroup,
    NumberAssignment,
    NumberPool,
    RoutingRule,
    Source,
    TrackingNumber,
    VisitorSession,
)
from astertrack.db.types import utcnow
from astertrack.samples.factories import (
    add_dynamic_source,
    add_group,
    add_managers,
    add_numbers,
    add_pool,
    add_rule,
    add_site,
    add_static_source,
)
from tests.agi.fake_asterisk import FakeAsterisk, load_recording
from tests.conftest import RECORDED_ASTERISK

AGI_DIR = RECORDED_ASTERISK / "agi"
GLOBAL_FALLBACK = "PJSIP/200"


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """GET on loopback: (status, body), error statuses included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def recording(name: str):
    return load_recording(AGI_DIR / f"{name}.txt")


def make_config(tmp_path: Path, db_url: str, **agi):
    path = tmp_path / "astertrack.conf"
    path.write_text("")
    values = {"fallback_dial": GLOBAL_FALLBACK, "request_timeout": "10", "metrics_port": "0"}
    values.update({k: str(v) for k, v in agi.items()})
    return load_config(path, environ={}, overrides={"database": {"url": db_url}, "agi": values,
                                                    "general": {"node": "pbx-test"}})


class ServerThread:
    """The real AgiServer on its own event loop in a thread, like a separate daemon."""

    def __init__(self, app: AgiApp):
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.server = AgiServer(app)
        self.address: tuple[str, int] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="agi-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.address = self.loop.run_until_complete(self.server.start("127.0.0.1", 0))
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10), "AGI server did not start"
        return self

    def stop(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self.server.stop(grace=5), self.loop)
        future.result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.app.close()


@pytest.fixture
def start_server(tmp_path):
    started: list[ServerThread] = []

    def start(db_url: str, **agi) -> tuple[ServerThread, FakeAsterisk]:
        config = make_config(tmp_path, db_url, **agi)
        app = AgiApp(config)  # the daemon's own engines: the inline SQLite path, the thread pool
        thread = ServerThread(app).start()
        started.append(thread)
        return thread, FakeAsterisk(*thread.address)

    yield start
    for thread in started:
        thread.stop()


@pytest.fixture
def agi(start_server, db_url):
    """(server thread, fake Asterisk) against the test database."""
    return start_server(db_url)


# ---------------------------------------------------------------- seed helpers


class Seed:
    """The shared factories bound to one session and one site, so each scenario states exactly the data it needs."""

    def __init__(self, session):
        self.session = session
        self.site = add_site(session, "Shop", timezone="Europe/Moscow", domains=["shop.example"])

    def source(self, name: str, kind: str = "static", pool: NumberPool | None = None) -> Source:
        if kind == "dynamic":
            return add_dynamic_source(self.session, self.site, name, pool)
        return add_static_source(self.session, self.site, name)

    def static_number(self, number: str, source_name: str) -> TrackingNumber:
        source = self.source(source_name)
        return add_numbers(self.session, self.site, [number], source=source)[0]

    def pool(self, name: str, source_name: str, numbers: list[str]) -> tuple[NumberPool, list[TrackingNumber]]:
        pool = add_pool(self.session, self.site, name)
        self.source(source_name, kind="dynamic", pool=pool)
        return pool, add_numbers(self.session, self.site, numbers, pool=pool)

    def visit(self, source: Source | None = None, **fields) -> VisitorSession:
        visit = VisitorSession(site_id=self.site.id, source_id=source.id if source else None, **fields)
        self.session.add(visit)
        self.session.flush()
        return visit

    def assign(self, number: TrackingNumber, visit: VisitorSession, released_ago: float | None = None,
               now: dt.datetime | None = None) -> NumberAssignment:
        now = now or utcnow()
        assigned = now - dt.timedelta(minutes=5)
        row = NumberAssignment(number_id=number.id, session_id=visit.id, assigned_at=assigned,
                               last_heartbeat_at=now, expires_at=now + dt.timedelta(minutes=10),
                               hard_expires_at=now + dt.timedelta(hours=1))
        if released_ago is not None:
            row.released_at = now - dt.timedelta(seconds=released_ago)
            row.expires_at = row.released_at
            row.release_reason = "unload"
        self.session.add(row)
        self.session.flush()
        return row

    def managers(self, *extensions: str, tech: str = "PJSIP") -> list[Manager]:
        return add_managers(self.session, extensions, tech=tech)

    def group(self, name: str, managers: list[Manager], queue_name: str | None = None) -> ManagerGroup:
        return add_group(self.session, name, managers, queue_name=queue_name)

    def rule(self, name: str, group: ManagerGroup | None, priority: int = 100, **fields) -> RoutingRule:
        """A rule of this site; ``site_id=None`` makes it global."""
        site = self.site if fields.pop("site_id", self.site.id) is not None else None
        return add_rule(self.session, name, group, site=site, priority=priority, **fields)

    def commit(self) -> None:
        self.session.commit()


@pytest.fixture
def seed(session):
    return Seed(session)
