"""The AGI's engines: SQLite's WAL checkpoints off the callers' path; decisions on the event loop
when the database is on this machine, in the threads when it is locked."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from agi import store
from agi.app import AgiApp
from agi.database import (
    _CHECKPOINTERS,
    InlineBusy,
    agi_engine,
    close_engine,
    inline_engine,
    on_this_machine,
    run_inline,
    running_inline,
)
from astertrack.ops import metrics
from astertrack.routing import dialplan_vars as v
from tests.agi.conftest import make_config, recording
from tests.agi.fake_asterisk import FakeAsterisk


def _fill_wal(engine, rows: int = 3000) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, body TEXT)"))
    for _ in range(0, rows, 500):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO filler (body) VALUES (:b)"),
                         [{"b": "x" * 2000} for _ in range(500)])


def test_commits_leave_the_checkpoint_to_the_background_thread(tmp_path):
    path = tmp_path / "agi.db"
    engine = agi_engine(make_config(tmp_path, f"sqlite:///{path}"))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        before = path.stat().st_size
        _fill_wal(engine)  # about 1500 pages: past SQLite's 1000-page automatic checkpoint
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 4_000_000
        # no commit copied the log into the database file ...
        assert path.stat().st_size == before
        # ... the checkpoint thread does, within a couple of its 1 s rounds
        deadline = time.monotonic() + 5
        while path.stat().st_size < 4_000_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.stat().st_size > 4_000_000
    finally:
        close_engine(engine)


def test_closing_the_engine_stops_the_thread_and_never_recreates_a_deleted_database(tmp_path):
    path = tmp_path / "agi.db"
    engine = agi_engine(make_config(tmp_path, f"sqlite:///{path}"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER)"))
    checkpointer = _CHECKPOINTERS[engine]
    assert checkpointer.is_alive()
    close_engine(engine)
    assert not checkpointer.is_alive()
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    time.sleep(1.5)
    assert not path.exists()


@contextlib.contextmanager
def _locked(db_url: str):
    """Another process's write lock, as the AMI listener or a backup would hold it: SQLite's
    database lock; on PostgreSQL every manager's row (a decision's reservation must wait)."""
    if db_url.startswith("sqlite"):
        holder = sqlite3.connect(make_url(db_url).database, timeout=5)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
        return
    engine = create_engine(db_url)
    try:
        with engine.connect() as holder:
            holder.execute(text("SELECT id FROM managers FOR UPDATE")).all()
            yield
            holder.rollback()
    finally:
        engine.dispose()


def test_a_locked_database_moves_the_decision_to_the_threads_without_freezing_the_loop(
        start_server, tmp_path, seed, db_url):
    """Another process holds a lock the decision needs for 0.6 s: the call is still decided,
    and meanwhile the event loop keeps answering other calls at once."""
    seed.static_number("+74950000101", "google-ads")
    seed.managers("101")
    seed.commit()
    thread, fake = start_server(db_url)
    env = FakeAsterisk.environment(recording("pjsip_fastagi_1"), script="inbound")
    ping = FakeAsterisk.environment(recording("pjsip_fastagi_1"), script="ping")
    busy_before = metrics.REGISTRY.get_sample_value("astertrack_agi_inline_busy_total")

    async def scenario():
        with _locked(db_url):
            call = asyncio.create_task(fake.session(env, variables={"CHANNEL(linkedid)": "1.1"}))
            await asyncio.sleep(0.2)
            started = asyncio.get_running_loop().time()
            pong = await fake.session(ping)
            ping_seconds = asyncio.get_running_loop().time() - started
            await asyncio.sleep(0.4)
            assert not call.done()  # still waiting for the lock, in a thread
        return await call, pong, ping_seconds

    decided, pong, ping_seconds = asyncio.run(scenario())
    assert pong.variables[v.STATUS] == "OK" and ping_seconds < 0.15  # the loop was never stuck
    assert decided.variables[v.STATUS] == "OK" and decided.variables[v.SOURCE] == "google-ads"
    assert metrics.REGISTRY.get_sample_value("astertrack_agi_inline_busy_total") > busy_before


def test_an_inline_write_behind_a_writer_thread_goes_to_the_threads_instead_of_waiting(tmp_path):
    """A decision in a worker thread holds our own writer lock: the inline step gives up after
    INLINE_BUSY_MS (InlineBusy, for the thread pool to run it) instead of stalling the loop."""
    app = AgiApp(make_config(tmp_path, f"sqlite:///{tmp_path / 'agi.db'}"), db_workers=1, long_running=False)
    holding, done = threading.Event(), threading.Event()

    def writer_thread():
        with store.write_session(app.session_factory):
            holding.set()
            done.wait(5)

    thread = threading.Thread(target=writer_thread)
    thread.start()
    try:
        assert holding.wait(5)
        started = time.monotonic()
        with pytest.raises(InlineBusy):
            run_inline(store.release_call, app.inline_factory, "call-a")
        assert time.monotonic() - started < 1
    finally:
        done.set()
        thread.join(5)
        app.close()
    assert not running_inline()


@pytest.mark.parametrize(("url", "here"), [
    ("sqlite:///var/lib/astertrack/astertrack.db", True),
    ("postgresql+psycopg://astertrack@127.0.0.1:5432/astertrack", True),
    ("postgresql+psycopg://astertrack@localhost/astertrack", True),
    ("postgresql+psycopg://astertrack@[::1]/astertrack", True),
    ("postgresql+psycopg://astertrack@/astertrack?host=/var/run/postgresql", True),
    ("postgresql+psycopg:///astertrack", True),
    ("postgresql+psycopg://astertrack@10.0.0.5/astertrack", False),
    ("postgresql+psycopg://astertrack@db.example.net/astertrack", False),
])
def test_only_a_database_on_this_machine_is_used_on_the_event_loop(tmp_path, url, here):
    """A loopback or socket round trip is a context switch; a network one must never block the loop."""
    assert on_this_machine(url) is here
    config = make_config(tmp_path, url)
    engine = inline_engine(config, checkpoint_thread=False)  # engines connect lazily: nothing is dialled
    try:
        assert (engine is not None) is here
    finally:
        if engine is not None:
            engine.dispose()
    config.values["agi"]["db_inline"] = False
    assert inline_engine(config, checkpoint_thread=False) is None


def test_the_per_call_script_keeps_sqlites_own_checkpoints(tmp_path):
    """A script process exits long before a background checkpoint would run: its commits must
    checkpoint as usual, or a PBX using only the script would grow the WAL without end."""
    app = AgiApp(make_config(tmp_path, f"sqlite:///{tmp_path / 'agi.db'}"), db_workers=1, long_running=False)
    try:
        assert app._own_engine not in _CHECKPOINTERS
        for engine in (app._own_engine, app._inline_engine):
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    finally:
        app.close()
